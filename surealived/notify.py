"""Notify scripts: the virtual notifier and the real notifier, with the original's arguments.

Virtual notifier (tester attributes ``notify_up``, ``notify_down``, ``notify_min_reals``,
``notify_min_weight``), evaluated at the end of every round of its virtual:

- enough reals: ``notify_min_reals`` is 0, or the reals that are ONLINE and up number at least
  N (or N % of the virtual's reals);
- enough weight: ``notify_min_weight`` is 0, or the sum of effective weights is at least N (or
  N % of the sum of the weights all reals would have if up; a sum of 0 is 0 %). The original's
  absolute form never fired and its percent form divided by zero; both work here.
- state UNKNOWN (at start, unless notify.dump restores it) goes to UP or DOWN at the first
  evaluation, running that script; then DOWN -> UP when both hold, UP -> DOWN when one fails.
  Each transition rewrites notify.dump. A notify.dump older than the last boot is deleted, so
  every notifier runs once after a reboot (the original's rule).

  argv: ``SCRIPT notify=UP|DOWN vname=V vaddr=A vport=P vproto=tcp|udp|fwmark vfwmark=N``

Real notifier (``real_notify_up`` / ``real_notify_down``), at each test-state change of a real
(not at start, not on ``rset``):

  argv: ``SCRIPT notify=UP|DOWN vname= vaddr= vport= vproto= vfwmark= rname= raddr= rport=``

Scripts run without a shell and without PATH search, in their own session, with the daemon's
environment minus the service manager's variables (NOTIFY_SOCKET, WATCHDOG_*), stdin from
/dev/null and stdout/stderr captured into the log. Each has ``notify_timeout`` seconds, then its
process group is killed. The event loop never waits for them; scripts for the same virtual (or
the same real) run one after the other, in order; every child is reaped.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .engine.state import DaemonState, RealState, RoundReport, StateEvent, VirtualState
from .persist.component import BackgroundSaver, read_text, report_problems, vkey_of
from .persist.dumps import format_notify, parse_notify
from .sdnotify import child_environ

if TYPE_CHECKING:
    from .components import DaemonView

OUTPUT_LIMIT = 64 * 1024
def virtual_argv(script: str, nstate: str, v: VirtualState) -> list[str]:
    c = v.config
    return [script, f"notify={nstate}", f"vname={c.name}", f"vaddr={c.addr}", f"vport={c.port}",
            f"vproto={c.proto}", f"vfwmark={c.fwmark}"]


def real_argv(script: str, nstate: str, real: RealState) -> list[str]:
    r = real.config
    return [*virtual_argv(script, nstate, real.virtual), f"rname={r.name}", f"raddr={r.addr}",
            f"rport={r.port}"]


@dataclass(frozen=True)
class Evaluation:
    """The virtual notifier's two conditions, with the figures it logs."""

    enough_reals: bool
    enough_weight: bool
    curr_reals: int
    exp_reals: int
    reals_percent: bool
    curr_weight: int
    exp_weight: int
    weight_percent: bool

    @property
    def ok(self) -> bool:
        return self.enough_reals and self.enough_weight


def evaluate(v: VirtualState) -> Evaluation:
    """Pure: the virtual notifier's conditions for the virtual's current state."""
    tester = v.config.tester
    reals = v.reals
    online = sum(1 for r in reals if r.rstate == "ONLINE" and r.online)
    min_reals, reals_pct = tester.notify_min_reals
    curr_reals = (online * 100 // len(reals) if reals else 0) if reals_pct else online
    online_weight = sum(r.weight for r in reals)
    total_weight = sum(r.full_weight for r in reals)
    min_weight, weight_pct = tester.notify_min_weight
    if weight_pct:
        curr_weight = online_weight * 100 // total_weight if total_weight else 0
    else:
        curr_weight = online_weight
    return Evaluation(min_reals == 0 or curr_reals >= min_reals,
                      min_weight == 0 or curr_weight >= min_weight,
                      curr_reals, min_reals, reals_pct, curr_weight, min_weight, weight_pct)


def next_state(current: str, ok: bool) -> str | None:
    """The transition, if any: UNKNOWN always moves; UP moves on a failure; DOWN on success."""
    wanted = "UP" if ok else "DOWN"
    return None if wanted == current else wanted


def has_notifier(v: VirtualState) -> bool:
    return bool(v.config.tester.notify_up or v.config.tester.notify_down)


class ScriptRunner:
    """Runs scripts in the background with a deadline; one queue per key keeps their order."""

    def __init__(self, log: logging.Logger, timeout: float) -> None:
        self.log = log
        self.timeout = timeout
        self.tasks: set[asyncio.Task[None]] = set()
        self.last: dict[object, asyncio.Task[None]] = {}

    def run(self, key: object, argv: Sequence[str]) -> asyncio.Task[None]:
        previous = self.last.get(key)
        task = asyncio.get_running_loop().create_task(self._run(list(argv), previous))
        self.tasks.add(task)
        self.last[key] = task

        def done(t: asyncio.Task[None]) -> None:
            self.tasks.discard(t)
            if self.last.get(key) is t:
                del self.last[key]

        task.add_done_callback(done)
        return task

    async def _run(self, argv: list[str], previous: asyncio.Task[None] | None) -> None:
        if previous is not None:
            await asyncio.wait([previous])
        script = argv[0]
        try:
            proc = await asyncio.create_subprocess_exec(
                *argv, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.STDOUT, env=child_environ(), start_new_session=True)
        except OSError as exc:
            self.log.warning("Can't exec notify line [%s]: %s", " ".join(argv), exc.strerror)
            return
        output = b""
        try:
            assert proc.stdout is not None
            async with asyncio.timeout(self.timeout):
                while chunk := await proc.stdout.read(65536):
                    if len(output) < OUTPUT_LIMIT:
                        output += chunk[:OUTPUT_LIMIT - len(output)]
                status = await proc.wait()
        except TimeoutError:
            self._kill(proc.pid)
            status = await proc.wait()
            self.log.warning("notify script %s killed after %g s", script, self.timeout)
        except asyncio.CancelledError:
            self._kill(proc.pid)
            await asyncio.shield(proc.wait())
            raise
        for line in output.decode(errors="replace").splitlines():
            self.log.info("notify script %s: %s", script, line)
        if status > 0:
            self.log.warning("notify script %s exited with status %d", script, status)

    @staticmethod
    def _kill(pid: int) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGKILL)

    async def close(self, grace: float) -> None:
        """Give running scripts ``grace`` seconds, then kill them; every child is reaped."""
        if not self.tasks:
            return
        _, pending = await asyncio.wait(set(self.tasks), timeout=grace)
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.wait(pending)


def booted_after(mtime: float, uptime_text: str | None, now: float) -> bool:
    """Whether a file last written at ``mtime`` was written since the last boot."""
    if uptime_text is None:
        return True
    try:
        uptime = float(uptime_text.split()[0])
    except (ValueError, IndexError):
        return True
    return mtime > now - uptime


class NotifyComponent:
    """Both notifiers and notify.dump."""

    def __init__(self) -> None:
        self.state: DaemonState | None = None
        self.log = logging.getLogger("surealived.notify")
        self.runner: ScriptRunner | None = None
        self.saver: BackgroundSaver | None = None
        self.dump_path = ""

    async def start(self, daemon: DaemonView) -> None:
        self.log = daemon.logger
        self.state = daemon.state
        self.dump_path = daemon.maincfg.notify_dump
        self.runner = ScriptRunner(self.log, float(daemon.maincfg.notify_timeout))
        self.saver = BackgroundSaver(self.log)
        self.restore()
        self.state.listeners.append(self.on_event)
        self.state.round_listeners.append(self.on_round)

    async def reloaded(self, daemon: DaemonView) -> None:
        self.state = daemon.state
        self.save()

    async def stop(self, daemon: DaemonView) -> None:
        if self.state is None or self.runner is None:
            return
        if self.on_event in self.state.listeners:
            self.state.listeners.remove(self.on_event)
        if self.on_round in self.state.round_listeners:
            self.state.round_listeners.remove(self.on_round)
        self.save()
        await self.runner.close(min(self.runner.timeout, 5.0))
        if self.saver is not None:
            await self.saver.drain()
            await asyncio.to_thread(self.saver.close)

    def restore(self) -> None:
        assert self.state is not None
        try:
            mtime = os.stat(self.dump_path).st_mtime
        except FileNotFoundError:
            self.log.info("No notify dump yet [%s]", self.dump_path)
            return
        except OSError as exc:
            self.log.warning("Can't stat %s [%s]", self.dump_path, exc.strerror)
            return
        uptime = read_text("/proc/uptime", self.log, "uptime")
        if not booted_after(mtime, uptime, time.time()):
            self.log.info("Probably system restart was performed (uptime = %s). Executing all "
                          "notifiers", (uptime or "?").split()[0])
            with contextlib.suppress(OSError):
                os.unlink(self.dump_path)
            return
        text = read_text(self.dump_path, self.log, "notify dump")
        if text is None:
            return
        entries, problems = parse_notify(text)
        report_problems(self.dump_path, problems, self.log)
        for vkey, nstate in entries:
            v = self.state.find_virtual(vkey.proto, vkey.addr, vkey.port, vkey.fwmark)
            if v is None:
                self.log.warning("\tUnable to find virtual: %s (removing from notify dump)", vkey)
            else:
                v.notify_state = nstate

    def save(self) -> None:
        if self.state is None or self.saver is None:
            return
        self.saver.save(self.dump_path, format_notify(
            (vkey_of(v), v.notify_state) for v in self.state.virtuals
            if has_notifier(v) and v.reals))

    # Listeners (event loop thread)

    def on_event(self, event: StateEvent) -> None:
        if event.kind != "test" or self.runner is None:
            return
        real = event.real
        tester = real.virtual.config.tester
        nstate = "UP" if real.online else "DOWN"
        script = tester.real_notify_up if real.online else tester.real_notify_down
        if script:
            self.log.info(" * trying to execute real notify script [nstate = %s, script = %s]",
                          nstate, script)
            self.runner.run(("real", real.virtual.config.key, real.config.key),
                            real_argv(script, nstate, real))

    def on_round(self, report: RoundReport) -> None:
        v = report.virtual
        if self.runner is None or not has_notifier(v) or not v.reals:
            return
        ev = evaluate(v)
        nstate = next_state(v.notify_state, ev.ok)
        if nstate is None:
            return
        v.notify_state = nstate
        c = v.config
        self.log.info("NOTIFY %s: [vname=%s vaddr=%s vport=%d vproto=%s vfwmark=%d]", nstate,
                      c.name, c.addr, c.port, c.proto, c.fwmark)
        if ev.exp_reals:
            pct = "%" if ev.reals_percent else ""
            self.log.info(" * is enough reals:  %s, curr_reals = %d%s / exp_reals = %d%s",
                          "TRUE" if ev.enough_reals else "FALSE", ev.curr_reals, pct,
                          ev.exp_reals, pct)
        if ev.exp_weight:
            pct = "%" if ev.weight_percent else ""
            self.log.info(" * is enough weight: %s, curr_weight = %d%s / exp_weight = %d%s",
                          "TRUE" if ev.enough_weight else "FALSE", ev.curr_weight, pct,
                          ev.exp_weight, pct)
        script = c.tester.notify_up if nstate == "UP" else c.tester.notify_down
        if script:
            self.log.info(" * trying to execute notify script [nstate = %s, script = %s]",
                          nstate, script)
            self.runner.run(("virtual", c.key), virtual_argv(script, nstate, v))
        self.save()
