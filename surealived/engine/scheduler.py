"""The scheduler: per-virtual rounds, spread starts, a bound on checks in flight, shared probes.

Strategy. Each virtual runs rounds: start its reals spread over ``startup_delay_ms`` (in batches on
a ``loop_interval_ms`` grid, ``plan_batches``, a pure function), wait until every check of the
round has finished (each is bounded by the tester's ``timeout``), report the round, and start
the next one as the original did: ``timeout`` + ``loopdelay`` after the last batch of this one
started (``next_round_start``), whatever the checks took, so that a real is checked at the
period its XML says; with the tester's ``interval``, ``interval`` after the round's last check
instead (HAProxy's ``inter``). A virtual's first round starts at a random point within
``startup_delay_ms`` so that virtuals do not start in step.

Checks go through one ``Engine.submit``. A check whose probe key (tester class, settings, address,
testport, TLS settings, bindaddr, timeout) is already in flight for another virtual joins that one:
the verdict fans out, and each virtual still applies it to its own real and retries. At most
``max_inflight`` checks run at once (so file descriptors never run out); extra ones wait in a
queue, and the lag between a check's planned start and its real start is measured.

Every check runs on one ``Runner`` (``flight.py``). The clock, the sleep and the timers are
injected, and the runner takes the same ones, so tests drive rounds and checks in fake time.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import time
from array import array
from collections import deque
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from ..config.main import MainConfig
from ..config.model import RealConfig, TesterConfig, VirtualConfig
from ..registry import Registry
from ..tester_api import Result, Target, Tester
from .flight import CallLater, Runner
from .state import CheckTiming, DaemonState, RealState, RoundReport, VirtualState
from .transcript import Transcript

log = logging.getLogger("surealived")

Sleep = Callable[[float], Awaitable[Any]]
_LAG_WINDOW = 1 << 16


def plan_batches(count: int, startup_delay_ms: int, loop_interval_ms: int
                 ) -> list[tuple[float, int]]:
    """Spread ``count`` starts over ``startup_delay_ms``: ``[(offset_seconds, how_many), ...]``.

    Start ``i`` is due at ``i * startup_delay_ms / count`` ms, rounded down to the
    ``loop_interval_ms`` grid; starts due at the same grid point form one batch. Every start is
    planned whatever the two values are (the original could plan none and hang)."""
    if count <= 0:
        return []
    if startup_delay_ms <= 0 or loop_interval_ms <= 0 or count == 1:
        return [(0.0, count)]
    step = loop_interval_ms
    batches: list[tuple[float, int]] = []
    last_slot = -1
    for i in range(count):
        slot = (i * startup_delay_ms // count) // step
        if slot == last_slot:
            offset, n = batches[-1]
            batches[-1] = (offset, n + 1)
        else:
            batches.append((slot * step / 1000.0, 1))
            last_slot = slot
    return batches


def next_round_start(tester: TesterConfig, started: float, spread: float, ended: float
                     ) -> float:
    """When the next round of a virtual starts: its round started at ``started``, its last
    batch ``spread`` seconds later, and its last check ended at ``ended``. The original's
    period (the round waits the timeout out, then loopdelay), or ``interval`` after the end."""
    if tester.interval is not None:
        return ended + tester.interval
    return max(started + spread + tester.timeout + tester.loopdelay, ended)


def default_max_inflight(maincfg: MainConfig) -> int:
    """``max_inflight``, or what ``maxfd`` leaves after a reserve for logs, clients and files."""
    if maincfg.max_inflight > 0:
        return maincfg.max_inflight
    try:
        import resource

        soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    except (ImportError, ValueError, OSError):
        soft = maincfg.maxfd
    limit = min(maincfg.maxfd, soft) if soft > 0 else maincfg.maxfd
    return max(1, limit - max(64, limit // 16))


class EngineMetrics:
    """Figures others show (control port, status page): all cheap to update per check."""

    def __init__(self, on_time_ms: float) -> None:
        self.on_time_ms = on_time_ms
        self.inflight = 0
        self.waiting = 0
        self.peak_inflight = 0
        self.checks_done = 0
        self.checks_started = 0
        self.shared_checks = 0  # submissions that joined a check already in flight
        self.started_late = 0  # started more than on_time_ms after planned
        self.rounds = 0
        self.loop_lag_ms = 0.0
        self.loop_lag_max_ms = 0.0
        self._lags = array("f", bytes(4 * _LAG_WINDOW))
        self._lag_count = 0

    def record_lag(self, lag_s: float) -> None:
        ms = lag_s * 1000.0
        self._lags[self._lag_count % _LAG_WINDOW] = ms
        self._lag_count += 1
        if ms > self.on_time_ms:
            self.started_late += 1

    def lag_percentiles(self) -> tuple[float, float]:
        """Schedule lag p50 and p99 in ms over the last 65,536 starts."""
        n = min(self._lag_count, _LAG_WINDOW)
        if not n:
            return (0.0, 0.0)
        values = sorted(self._lags[:n])
        return (values[n // 2], values[min(n - 1, (n * 99) // 100)])

    @property
    def on_schedule(self) -> float:
        """Fraction of starts within ``on_time_ms`` of their plan."""
        return 1.0 - self.started_late / self.checks_started if self.checks_started else 1.0

    def as_dict(self) -> dict[str, float]:
        p50, p99 = self.lag_percentiles()
        return {"inflight": self.inflight, "waiting": self.waiting,
                "peak_inflight": self.peak_inflight, "checks_done": self.checks_done,
                "checks_started": self.checks_started, "shared_checks": self.shared_checks,
                "rounds": self.rounds, "schedule_lag_p50_ms": round(p50, 3),
                "schedule_lag_p99_ms": round(p99, 3), "on_schedule": round(self.on_schedule, 5),
                "loop_lag_ms": round(self.loop_lag_ms, 3),
                "loop_lag_max_ms": round(self.loop_lag_max_ms, 3)}


class Round:
    """One round of one virtual in progress: its results in XML order, the checks still out."""

    __slots__ = ("finished", "remaining", "results", "runner")

    def __init__(self, runner: VirtualRunner, count: int, finished: asyncio.Future[None]) -> None:
        self.runner = runner
        self.remaining = count
        self.results: list[tuple[RealState, Result, CheckTiming] | None] = [None] * count
        self.finished = finished

    def done(self, index: int, real: RealState, result: Result, timing: CheckTiming) -> None:
        live = self.runner.current(real)
        if live is not None:
            self.runner.engine.record(live, result, timing)
            self.results[index] = (live, result, timing)
        self.remaining -= 1
        if not self.remaining and not self.finished.done():
            self.finished.set_result(None)


# who waits for a check: the round, the real's index in it, the real, its transcript path
Waiter = tuple[Round, int, RealState, str | None]


class Check:
    """One check in flight (or waiting for a slot), and everyone waiting for its verdict."""

    __slots__ = ("due", "key", "settings", "target", "tester", "transcript", "waiters")

    def __init__(self, key: int, tester: Tester, target: Target,
                 settings: Mapping[str, Any], due: float, transcript: Transcript | None) -> None:
        self.key = key
        self.tester = tester
        self.target = target
        self.settings = settings
        self.due = due
        self.transcript = transcript
        self.waiters: list[Waiter] = []


class Plan:
    """How one real of one virtual is checked: built once per configuration."""

    __slots__ = ("comm_path", "key", "settings", "target", "tester")

    def __init__(self, engine: Engine, vconf: VirtualConfig, rconf: RealConfig) -> None:
        t = vconf.tester
        cls = engine.registry.get(t.proto)
        if cls is None:
            raise KeyError(f"tester {t.proto!r} is not loaded")
        self.settings = rconf.options
        self.tester = engine.tester_instance(cls, rconf.options)
        self.target = Target(
            addr=rconf.addr, port=rconf.testport, rname=rconf.name, rport=rconf.port,
            vname=vconf.name, vaddr=vconf.addr, vport=vconf.port, vproto=vconf.proto,
            vfwmark=vconf.fwmark, timeout=t.timeout, ssl=t.ssl, sni=t.sni,
            ssl_verify=t.ssl_verify, ssl_ca=t.ssl_ca, bindaddr=rconf.bindaddr or t.bindaddr)
        m = engine.maincfg
        self.comm_path = (os.path.join(m.debug_comm_path, f"{vconf.name}_{rconf.name}")
                          if m.debug_comm == 1 and t.debugcomm else None)
        self.key = engine.probe_id((
            cls, rconf.options, rconf.addr, rconf.testport, t.ssl, t.sni, t.ssl_verify, t.ssl_ca,
            self.target.bindaddr, t.timeout, self.comm_path is not None,
            vconf.name if not cls.shared else None))


class VirtualRunner:
    """The rounds of one virtual."""

    def __init__(self, engine: Engine, vstate: VirtualState, first_delay: float) -> None:
        self.engine = engine
        self.vstate = vstate
        self.next_start = engine.clock() + first_delay
        self.plans: dict[RealState, Plan] = {}  # by identity: no hashing of configs per check
        self.task: asyncio.Task[None] | None = None
        self.stopping = False
        self._batches_key: tuple[int, int, int] | None = None
        self._batches: tuple[tuple[float, int], ...] = ()

    def plan(self, real: RealState) -> Plan:
        plan = self.plans.get(real)
        if plan is None:
            plan = self.plans[real] = Plan(self.engine, self.vstate.config, real.config)
        return plan

    async def run(self) -> None:
        engine = self.engine
        while not self.stopping:
            delay = self.next_start - engine.clock()
            if delay > 0:
                await engine.sleep(delay)
            if self.stopping:
                break
            started = engine.clock()
            spread = await self.round()
            self.next_start = next_round_start(self.vstate.config.tester, started, spread,
                                               engine.clock())

    def current(self, real: RealState) -> RealState | None:
        """The real's state object now (a reload replaces state objects; the config decides)."""
        if real.virtual is self.vstate:
            return real
        found = self.vstate.by_key.get(real.config.key)
        return found if found is not None and found.config == real.config else None

    def batches(self, count: int) -> tuple[tuple[float, int], ...]:
        m = self.engine.maincfg
        key = (count, m.startup_delay_ms, m.loop_interval_ms)
        if self._batches_key != key:
            self._batches_key = key
            self._batches = tuple(plan_batches(*key))
        return self._batches

    async def round(self) -> float:
        """One round; returns the offset of its last batch (its spread)."""
        engine = self.engine
        reals = list(self.vstate.reals)
        started_wall = time.time()
        start = engine.clock()
        tally = Round(self, len(reals), asyncio.get_running_loop().create_future())
        index, offset = 0, 0.0
        for offset, count in self.batches(len(reals)):
            due = start + offset
            delay = due - engine.clock()
            if delay > 0:
                await engine.sleep(delay)
            for real in reals[index:index + count]:
                plan = self.plans.get(real) or self.plan(real)
                engine.submit(plan, due, (tally, index, real, plan.comm_path))
                index += 1
        if tally.remaining:
            await tally.finished
        report = tuple(r for r in tally.results if r is not None)
        if self.current_virtual_unchanged():
            engine.state.finish_round(RoundReport(self.vstate, started_wall, time.time(), report))
        engine.metrics.rounds += 1
        return offset

    def current_virtual_unchanged(self) -> bool:
        return self.engine.state.by_key.get(self.vstate.config.key) is self.vstate


class Engine:
    """All virtual runners, the in-flight bound and the shared checks."""

    def __init__(self, state: DaemonState, registry: Registry, maincfg: MainConfig, *,
                 clock: Callable[[], float] = time.monotonic, sleep: Sleep = asyncio.sleep,
                 call_later: CallLater | None = None, rng: random.Random | None = None,
                 max_inflight: int | None = None) -> None:
        self.state = state
        self.registry = registry
        self.maincfg = maincfg
        self.clock = clock
        self.sleep = sleep
        self.call_later = call_later
        self.rng = rng or random.Random()
        self.max_inflight = max_inflight or default_max_inflight(maincfg)
        self.metrics = EngineMetrics(on_time_ms=float(max(maincfg.loop_interval_ms, 1)))
        self.runners: dict[VirtualConfig, VirtualRunner] = {}
        self.inflight: dict[int, Check] = {}
        self.queue: deque[Check] = deque()
        self.tasks: set[asyncio.Task[None]] = set()
        self._testers: dict[tuple[type[Tester], Any], Tester] = {}
        self._probe_ids: dict[tuple[Any, ...], int] = {}
        self._runner: Runner | None = None
        self._stopped = asyncio.Event()
        self._comm_error_logged = False

    def probe_id(self, key: tuple[Any, ...]) -> int:
        """A small integer per distinct probe key (checked per submission: cheap to hash)."""
        found = self._probe_ids.get(key)
        if found is None:
            found = self._probe_ids[key] = len(self._probe_ids)
        return found

    def tester_instance(self, cls: type[Tester], settings: Mapping[str, Any]) -> Tester:
        """One tester object per distinct (class, settings), as the tester API promises."""
        key = (cls, settings)
        tester = self._testers.get(key)
        if tester is None:
            tester = self._testers[key] = cls(settings)
        return tester

    # -- rounds ---------------------------------------------------------------------------
    def start(self) -> None:
        """Start a runner per virtual and the loop-lag watch (from inside the running loop)."""
        self.reschedule()
        watch = asyncio.get_running_loop().create_task(self._watch_loop_lag())
        self.tasks.add(watch)
        watch.add_done_callback(self.tasks.discard)

    async def _watch_loop_lag(self, period: float = 0.25) -> None:
        """How late the event loop wakes up: the delay every callback suffers."""
        m = self.metrics
        while True:
            before = self.clock()
            await self.sleep(period)
            m.loop_lag_ms = max(0.0, (self.clock() - before - period) * 1000.0)
            # a decaying maximum: recent stalls stay visible for about a minute
            m.loop_lag_max_ms = max(m.loop_lag_ms, m.loop_lag_max_ms * 0.996)

    def reschedule(self) -> None:
        """Match runners to ``state.virtuals`` after a (re)load: an unchanged virtual keeps its
        runner and its place in time; a new one starts within startup_delay_ms; a removed one
        stops after its current round."""
        old = self.runners
        self.runners = {}
        spread = self.maincfg.startup_delay_ms / 1000.0
        for vstate in self.state.virtuals:
            runner = old.pop(vstate.config, None)
            if runner is None:
                runner = VirtualRunner(self, vstate, self.rng.random() * spread)
                runner.task = asyncio.get_running_loop().create_task(runner.run())
            else:
                runner.vstate = vstate
                runner.plans = {}
            self.runners[vstate.config] = runner
        for runner in old.values():
            runner.stopping = True
            if runner.task is not None:
                runner.task.cancel()

    async def stop(self) -> None:
        """Stop scheduling and cancel checks in flight."""
        tasks = [r.task for r in self.runners.values() if r.task is not None]
        for runner in self.runners.values():
            runner.stopping = True
        for task in (*tasks, *self.tasks):
            task.cancel()
        await asyncio.gather(*tasks, *self.tasks, return_exceptions=True)
        self.queue.clear()
        self.metrics.waiting = 0
        if self._runner is not None:
            self._runner.close()
            self._runner = None
        self._stopped.set()

    # -- checks ---------------------------------------------------------------------------
    def submit(self, plan: Plan, due: float, waiter: Waiter) -> None:
        """Run ``plan``'s check (or join the identical one in flight); ``waiter`` gets the
        verdict."""
        check = self.inflight.get(plan.key)
        if check is not None:
            check.waiters.append(waiter)
            self.metrics.shared_checks += 1
            return
        transcript = Transcript() if plan.comm_path is not None else None
        check = Check(plan.key, plan.tester, plan.target, plan.settings, due, transcript)
        check.waiters.append(waiter)
        self.inflight[plan.key] = check
        if self.metrics.inflight < self.max_inflight:
            self._launch(check)
        else:
            self.queue.append(check)
            self.metrics.waiting += 1

    def _launch(self, check: Check) -> None:
        m = self.metrics
        m.inflight += 1
        if m.inflight > m.peak_inflight:
            m.peak_inflight = m.inflight
        m.checks_started += 1
        m.record_lag(self.clock() - check.due)
        runner = self._runner
        if runner is None:
            runner = self._runner = Runner(asyncio.get_running_loop(), self._finish,
                                           clock=self.clock, call_later=self.call_later)
        runner.start(check, check.tester, check.target, check.settings, check.transcript)

    def _release(self, check: Check) -> None:
        """A slot is free: start the next waiting check."""
        self.metrics.inflight -= 1
        del self.inflight[check.key]
        while self.queue and self.metrics.inflight < self.max_inflight:
            self.metrics.waiting -= 1
            self._launch(self.queue.popleft())

    def _finish(self, check: Check, result: Result, timing: CheckTiming) -> None:
        self._release(check)
        self.metrics.checks_done += 1
        for tally, index, real, comm_path in check.waiters:
            if comm_path is not None and check.transcript is not None:
                self.save_transcript(comm_path, check.transcript)
            tally.done(index, real, result, timing)

    def record(self, real: RealState, result: Result, timing: CheckTiming) -> None:
        flipped = self.state.record_result(real, result, timing)
        if flipped:
            log.info("Real: [%s] changed its test state to %s (rstate = %s)%s", real.label,
                     "ONLINE" if real.online else "OFFLINE", real.rstate,
                     f": {result.reason}" if result.reason else "")
        elif log.isEnabledFor(logging.DEBUG):
            log.debug("Real: [%s] test %s%s", real.label, "ok" if result.ok else "failed",
                      f": {result.reason}" if result.reason else "")

    def save_transcript(self, path: str, transcript: Transcript) -> None:
        try:
            transcript.save(path)
        except OSError as exc:
            if not self._comm_error_logged:  # once: a missing folder would flood the log
                self._comm_error_logged = True
                log.error("Can't write conversation dump %s: %s (debug_comm_path)", path,
                          exc.strerror)
