"""exec: run ``exec addr testport params...`` (no shell); exit status 0 means up.

As the original, argv is ``[exec, real address, testport, *params]`` (params split on blanks).
Unlike it, the program gets a clean environment but for ``PATH``, its output is captured (into the
transcript, and logged at debug) instead of going to the log file, the result is taken as soon as
it exits, and at the deadline its whole process group is killed (no zombies, no leftovers).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
from asyncio.subprocess import DEVNULL, PIPE
from collections.abc import Callable

from surealived.tester_api import Attr, Probe, Result, Tester

log = logging.getLogger("surealived")
_KEEP = 16384  # bytes of each output stream kept (the tail)


async def _tail(stream: asyncio.StreamReader | None) -> bytes:
    kept = b""
    while stream is not None and (chunk := await stream.read(65536)):
        kept = (kept + chunk)[-_KEEP:]
    return kept


async def _exited(pid: int) -> None:
    """Wait for the program itself to exit (``proc.wait()`` also waits for its pipes to close,
    which a child left in the background can hold open)."""
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return
    loop = asyncio.get_running_loop()
    exited: asyncio.Future[None] = loop.create_future()

    def readable() -> None:
        if not exited.done():
            exited.set_result(None)

    loop.add_reader(fd, readable)
    try:
        await exited
    finally:
        loop.remove_reader(fd)
        os.close(fd)


async def _run(argv: list[str], note: Callable[[str], None]) -> tuple[int, bytes, bytes]:
    """Run ``argv``: its exit status and the tails of its output. At its exit, or when the
    check's deadline cancels this, whatever it left behind in its process group goes too (and
    what it wrote until then is noted)."""
    proc = await asyncio.create_subprocess_exec(
        *argv, stdin=DEVNULL, stdout=PIPE, stderr=PIPE, start_new_session=True,
        env={"PATH": os.environ.get("PATH", "/usr/bin:/bin")})
    out_task = asyncio.ensure_future(_tail(proc.stdout))
    err_task = asyncio.ensure_future(_tail(proc.stderr))
    try:
        await _exited(proc.pid)
    except asyncio.CancelledError:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        await asyncio.shield(asyncio.wait([out_task, err_task]))
        _note_output(note, out_task.result(), err_task.result(), " (until the deadline)")
        raise
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        if proc.returncode is None:
            await asyncio.shield(proc.wait())
        if not out_task.done() or not err_task.done():
            await asyncio.shield(asyncio.wait([out_task, err_task]))
    return await proc.wait(), out_task.result(), err_task.result()


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
        status, out, err = await probe.spawn(_run(argv, probe.note))
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
