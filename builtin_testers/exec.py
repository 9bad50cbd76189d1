"""exec: run ``exec addr testport params...`` (no shell); exit status 0 means up.

As the original, argv is ``[exec, real address, testport, *params]`` (params split on blanks).
Unlike it, the program gets a clean environment but for ``PATH``, its output is captured (into the
transcript, and logged at debug) instead of going to the log file, the result is taken as soon as
it exits (not when its pipes close), and everything it started, in its process group, in a new
session or double-forked, is killed when it exits or at the deadline (``surealived.proctree``:
a subreaper shepherd per program), so no process or descriptor outlives the check.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from collections.abc import Callable
from typing import ClassVar

from surealived import proctree
from surealived.tester_api import Attr, Probe, Result, Tester

log = logging.getLogger("surealived")
_KEEP = 16384  # bytes of each output stream kept (the tail)
_GRACE = 0.5  # seconds the tails may take after the exit (within the engine's 1 s)


class _Tail:
    """The last ``_KEEP`` bytes of one output pipe, read as they come, until its end or until
    it is closed."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.kept = b""
        self.loop = asyncio.get_running_loop()
        self.ended: asyncio.Future[None] = self.loop.create_future()
        self.loop.add_reader(fd, self.read)

    def read(self) -> None:
        try:
            chunk = os.read(self.fd, 65536)
        except BlockingIOError:
            return
        except OSError:
            chunk = b""
        if chunk:
            self.kept = (self.kept + chunk)[-_KEEP:]
        else:
            self.close()

    def close(self) -> None:
        if self.fd >= 0:
            self.loop.remove_reader(self.fd)
            os.close(self.fd)
            self.fd = -1
        if not self.ended.done():
            self.ended.set_result(None)


async def _drain(tails: tuple[_Tail, _Tail]) -> None:
    """What is left in the pipes: their writers are being killed, so the ends come at once;
    the grace only bounds a writer that could not be killed."""
    await asyncio.wait([tail.ended for tail in tails], timeout=_GRACE)
    for tail in tails:
        tail.close()


async def _run(trees: proctree.Helper, argv: list[str], note: Callable[[str], None]
               ) -> tuple[int, bytes, bytes]:
    """Run ``argv``: its exit status, as soon as it exits, and the tails of its output. Its
    whole tree is ended then, or when the check's deadline cancels this (and what it wrote
    until then is noted)."""
    tree = await trees.spawn(argv, {"PATH": os.environ.get("PATH", "/usr/bin:/bin")})
    tails = (_Tail(tree.stdout), _Tail(tree.stderr))
    try:
        try:
            status = await tree.wait()
        except asyncio.CancelledError:
            tree.end()
            await asyncio.shield(_drain(tails))
            _note_output(note, tails[0].kept, tails[1].kept, " (until the deadline)")
            raise
        tree.end()
        await _drain(tails)
    finally:
        tree.end()
        for tail in tails:
            tail.close()
    return status, tails[0].kept, tails[1].kept


def _note_output(note: Callable[[str], None], out: bytes, err: bytes, when: str = "") -> None:
    for label, data in (("stdout", out), ("stderr", err)):
        if data:
            note(f"{label}{when}:\n" + data.decode("utf-8", "replace"))


def _last_line(data: bytes) -> str:
    lines = data.decode("utf-8", "replace").strip().splitlines()
    return lines[-1][:200] if lines else ""


class ExecTester(Tester):
    name = "exec"
    transport = "exec"
    uses = ("process_trees",)
    process_trees: ClassVar[proctree.Helper]  # the daemon's helper process, set by the registry
    attributes = (
        Attr("exec", "exec", mandatory=True, per_real=False, help="program to run"),
        Attr("params", "str", "", limit=1024, help="extra arguments, split on blanks"),
    )

    async def check(self, probe: Probe) -> Result:
        target = probe.target
        argv = [self.settings["exec"], target.addr, str(target.port),
                *self.settings["params"].split()]
        probe.step = f"running {argv[0]}"
        probe.note("exec " + " ".join(argv))
        try:
            status, out, err = await probe.spawn(_run(self.process_trees, argv, probe.note))
        except OSError as exc:  # it could not start (a script's interpreter is missing)
            text = os.strerror(exc.errno) if exc.errno else str(exc)
            return Result.down(f"{probe.step}: {text[:1].lower()}{text[1:]}")
        _note_output(probe.note, out, err)
        for label, data in (("stdout", out), ("stderr", err)):
            if data:
                log.debug("exec %s %s %s: %s", argv[0], target.addr, label, _last_line(data))
        if status == 0:
            return Result.up("exit status 0")
        why = (f"killed by signal {signal.Signals(-status).name}" if status < 0
               else f"exit status {status}")
        last = _last_line(err)
        return Result.down(f"{why}: {last}" if last else why)
