"""The daemon's state: one object that the engine writes and everyone else reads.

Rule 1: every change to a real's state goes through ``DaemonState.record_result`` (a check
finished) or ``DaemonState.set_admin`` (``rset`` or a restored override). Rule 2: this module
knows nothing about the control port, the sync files or persistence; they subscribe to
``StateEvent``s through ``DaemonState.listeners`` and read the state when they need it.

A real has two independent states, as in the original: ``online`` (what the tests say, moved by
retries2ok / retries2fail in ``verdict.py``) and ``rstate`` (ONLINE / OFFLINE / DOWN, set by the
operator). The weight written to IPVS derives from both (``weights.py``).

A real whose test state is not known (new in a reload, or at a start without offline.dump) starts
down, one passing check from up (``initial_counters``), so it enters IPVS only once a check has
passed; ``init_state="up"`` on the tester gives the original's start, up at once.
"""

from __future__ import annotations

import dataclasses
import time
from array import array
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Literal

from ..config.model import Config, RealConfig, TesterConfig, VirtualConfig, host_port
from ..tester_api import Result
from .verdict import Counters, apply
from .weights import WeightSpec, effective_weight, serving_weight

RSTATES = ("ONLINE", "OFFLINE", "DOWN")
EventKind = Literal["test", "admin", "weight"]


@dataclass(slots=True)
class CheckTiming:
    """Timings of one check in microseconds; ``problem`` is conn, arp or rst as the original
    counted them (no connection before the deadline; an error after 1 s; an error within 1 s)."""

    started: float = 0.0  # wall clock, seconds
    conn_us: int = 0
    resp_us: int = 0
    total_us: int = 0
    problem: str | None = None
    bytes_sent: int = 0
    bytes_received: int = 0


_SAMPLE_MAX = (1 << 31) - 1


@dataclass(slots=True)
class RealStats:
    """Per-real statistics as the original's connstats and stats.dump show them."""

    window: int = 20
    total: int = 0
    last: CheckTiming = field(default_factory=CheckTiming)
    # the last ``window`` (conn, resp, total) µs as a ring of 32-bit integers (a sample is at
    # most 35 minutes): at 50,000 reals and 20 samples, tuples of Python ints cost about 150 MB;
    # this costs 12 MB
    samples: array[int] = field(init=False)
    sampled: int = 0  # samples recorded (``total`` may come from a dump)
    sum_conn_us: int = 0
    sum_resp_us: int = 0
    sum_total_us: int = 0
    conn_problem: int = 0
    arp_problem: int = 0
    rst_problem: int = 0
    success: int = 0
    failed: int = 0
    online_set: int = 0
    offline_set: int = 0

    def __post_init__(self) -> None:
        self.window = max(self.window, 0)
        self.samples = array("i", bytes(12 * self.window))

    def record(self, timing: CheckTiming, ok: bool) -> None:
        conn = timing.conn_us if timing.problem is None else timing.total_us
        if self.window:
            slot = self.sampled % self.window * 3
            samples = self.samples
            try:
                samples[slot] = conn
                samples[slot + 1] = timing.resp_us
                samples[slot + 2] = timing.total_us
            except OverflowError:  # over 35 minutes: kept as the most a sample holds
                samples[slot] = min(conn, _SAMPLE_MAX)
                samples[slot + 1] = min(timing.resp_us, _SAMPLE_MAX)
                samples[slot + 2] = min(timing.total_us, _SAMPLE_MAX)
            self.sampled += 1
        self.total += 1
        self.last = timing
        self.sum_conn_us += max(conn, 0)
        self.sum_resp_us += timing.resp_us
        self.sum_total_us += timing.total_us
        if timing.problem == "conn":
            self.conn_problem += 1
        elif timing.problem == "arp":
            self.arp_problem += 1
        elif timing.problem == "rst":
            self.rst_problem += 1
        if ok:
            self.success += 1
        else:
            self.failed += 1

    def sample_averages(self) -> tuple[int, int, int]:
        """Mean conn, resp and total time (µs) over the sample window."""
        n = min(self.sampled, self.window)
        if not n:
            return (0, 0, 0)
        s = self.samples
        return (sum(s[0:3 * n:3]) // n, sum(s[1:3 * n:3]) // n, sum(s[2:3 * n:3]) // n)


@dataclass(slots=True)
class GlobalCounters:
    """Process-wide counters behind ``stats`` (t_*)."""

    t_success: int = 0
    t_failed: int = 0
    t_online_set: int = 0
    t_offline_set: int = 0
    t_conn_problem: int = 0
    t_arp_problem: int = 0
    t_rst_problem: int = 0
    t_bytes_rcvd: int = 0
    t_bytes_sent: int = 0
    lua_errors: int = 0


def initial_counters(tester: TesterConfig) -> Counters:
    """The test state of a real nothing is known about yet."""
    if tester.init_state == "up":
        return Counters()
    return Counters(online=False, ok_run=tester.retries2ok - 1)


class RealState:
    """One real inside one virtual: configuration, test state, administrative state, stats."""

    __slots__ = ("changed", "config", "counters", "dynamic", "last_check", "last_duration",
                 "last_ok", "last_reason", "override", "override_reason", "rstate", "stats",
                 "tested", "virtual")

    def __init__(self, virtual: VirtualState, config: RealConfig) -> None:
        self.virtual = virtual
        self.config = config
        self.counters = initial_counters(virtual.config.tester)
        self.rstate = "ONLINE"
        self.override: WeightSpec | None = None
        self.override_reason = ""
        self.dynamic: WeightSpec | None = None
        self.tested = False
        self.last_ok: bool | None = None
        self.last_reason = ""
        self.last_check = 0.0
        self.last_duration = 0.0
        # wall clock of the last change of test state or rstate; 0: none since start
        self.changed = 0.0
        self.stats = RealStats(window=virtual.config.tester.stats_samples)

    @property
    def online(self) -> bool:
        return self.counters.online

    @property
    def weight(self) -> int:
        """Effective weight (``currwgt``)."""
        return effective_weight(self.config.weight, self.counters.online, self.rstate,
                                self.override, self.dynamic)

    @property
    def full_weight(self) -> int:
        """The weight if it were up and ONLINE (the notifier's total)."""
        return serving_weight(self.config.weight, self.override, self.dynamic)

    @property
    def in_table(self) -> bool:
        """Whether the real belongs in the IPVS table (else it is removed)."""
        if self.rstate == "DOWN":
            return False
        return self.counters.online or not self.virtual.config.tester.remove_on_fail

    @property
    def label(self) -> str:
        """``VNAME:RNAME - VADDR:VPORT:PROTO RADDR:RPORT`` as the original logged reals."""
        v = self.virtual.config
        return (f"{v.name}:{self.config.name} - {host_port(v.addr, v.port)}:{v.proto} "
                f"{host_port(self.config.addr, self.config.port)}")


class VirtualState:
    """One virtual service and its reals."""

    __slots__ = ("by_key", "config", "notify_state", "reals", "rounds", "tested")

    def __init__(self, config: VirtualConfig) -> None:
        self.config = config
        self.reals = [RealState(self, r) for r in config.reals]
        self.by_key = {r.config.key: r for r in self.reals}
        self.tested = not self.reals  # a virtual without reals counts as tested
        self.notify_state = "UNKNOWN"
        self.rounds = 0


@dataclass(frozen=True, slots=True)
class StateEvent:
    """Something about a real changed. ``kind``: test (online flipped), admin (rset or a
    restored override), weight (the tester reported another weight)."""

    kind: EventKind
    real: RealState
    detail: str = ""


Listener = Callable[[StateEvent], None]


@dataclass(frozen=True, slots=True)
class RoundReport:
    """One finished round of one virtual: every real's result and timings, in XML order.
    Round listeners write offline.dump, stats logs, periodic snapshots and run the virtual
    notifier."""

    virtual: VirtualState
    started: float  # wall clock
    ended: float
    results: tuple[tuple[RealState, Result, CheckTiming], ...]


RoundListener = Callable[[RoundReport], None]


_KEPT_ON_RELOAD = ("changed", "counters", "rstate", "override", "override_reason", "dynamic",
                   "tested", "last_ok", "last_reason", "last_check", "last_duration", "stats")


def _service(vconf: VirtualConfig) -> VirtualConfig:
    """A virtual's definition without its reals: what must be unchanged for reals to keep state."""
    return dataclasses.replace(vconf, reals=())


class DaemonState:
    """All virtuals, global counters, and the listeners told about every change."""

    def __init__(self, config: Config, clock: Callable[[], float] = time.time) -> None:
        self.clock = clock
        self.started = clock()
        self.counters = GlobalCounters()
        self.listeners: list[Listener] = []
        self.round_listeners: list[RoundListener] = []
        self.config = config
        self.virtuals: list[VirtualState] = []
        self.by_key: dict[tuple[str, int, str, int], VirtualState] = {}
        self.load(config)

    def load(self, config: Config, keep: bool = True) -> None:
        """Install a (new) configuration. With ``keep``, a real whose definition is unchanged, in
        a virtual whose service and tester are unchanged, keeps its state, counters, overrides
        and statistics, even when other reals of that virtual were added, removed or changed.
        (Line numbers are not part of a definition: moving an element keeps its state.)
        A real whose definition changed (its weight, say) but whose address and port did not, in
        a virtual of the same address, keeps its test state only, so that it stays in IPVS.
        Readiness (``tested``) survives a reload: what the reload adds starts out of IPVS until
        tested (``initial_counters``), so nothing that carries traffic is untested."""
        old_virtuals = {_service(v.config): v for v in self.virtuals} if keep else {}
        old_by_key = {v.config.key: v for v in self.virtuals} if keep else {}
        was_ready = keep and bool(self.virtuals) and self.all_tested
        virtuals = []
        for vconf in config.virtuals:
            vstate = VirtualState(vconf)
            previous = old_virtuals.get(_service(vconf))
            if previous is not None:
                vstate.notify_state = previous.notify_state
                vstate.rounds = previous.rounds
                old_reals = {r.config: r for r in previous.reals}
                for real in vstate.reals:
                    before = old_reals.get(real.config)
                    if before is not None:
                        for slot in _KEPT_ON_RELOAD:
                            setattr(real, slot, getattr(before, slot))
            same_key = previous or old_by_key.get(vconf.key)
            if same_key is not None:
                vstate.tested = same_key.tested or not vstate.reals
                for real in vstate.reals:
                    before = same_key.by_key.get(real.config.key)
                    kept = previous is not None and before is not None and (
                        before.config == real.config)
                    if before is not None and not kept:
                        real.counters = before.counters
            elif was_ready:
                vstate.tested = True
            virtuals.append(vstate)
        self.config = config
        self.virtuals = virtuals
        self.by_key = {v.config.key: v for v in virtuals}

    def reals(self) -> Iterator[RealState]:
        for v in self.virtuals:
            yield from v.reals

    @property
    def all_tested(self) -> bool:
        return all(v.tested for v in self.virtuals)

    def find_virtual(self, proto: str, addr: str = "0.0.0.0", port: int = 0,
                     fwmark: int = 0) -> VirtualState | None:
        """The original's lookup: by fwmark when given, else by address, port and protocol."""
        if fwmark > 0:
            for v in self.virtuals:
                if v.config.fwmark == fwmark:
                    return v
            return None
        for v in self.virtuals:
            c = v.config
            if c.fwmark == 0 and c.proto == proto and c.addr == addr and c.port == port:
                return v
        return None

    def emit(self, event: StateEvent) -> None:
        for listener in list(self.listeners):
            listener(event)

    def finish_round(self, report: RoundReport) -> None:
        """The engine calls this when a virtual's round is over."""
        report.virtual.tested = True
        report.virtual.rounds += 1
        for listener in list(self.round_listeners):
            listener(report)

    def record_result(self, real: RealState, result: Result, timing: CheckTiming) -> bool:
        """Apply one check result. Returns True when the test state flipped."""
        tester = real.virtual.config.tester
        before = real.counters
        real.counters = apply(before, result.ok, tester.retries2ok, tester.retries2fail)
        real.tested = True
        real.last_ok = result.ok
        real.last_reason = result.reason
        real.last_check = timing.started or self.clock()
        real.last_duration = timing.total_us / 1e6
        real.stats.record(timing, result.ok)
        c = self.counters
        if result.ok:
            c.t_success += 1
        else:
            c.t_failed += 1
        if timing.problem == "conn":
            c.t_conn_problem += 1
        elif timing.problem == "arp":
            c.t_arp_problem += 1
        elif timing.problem == "rst":
            c.t_rst_problem += 1
        c.t_bytes_sent += timing.bytes_sent
        c.t_bytes_rcvd += timing.bytes_received
        old_dynamic = real.dynamic
        new_dynamic = None
        if result.ok and result.weight is not None:
            new_dynamic = WeightSpec(result.weight, result.percent)
        # only the test state and the dynamic weight move here: the weight is compared (it costs
        # a little per check) only when the dynamic weight changed
        old_weight = real.weight if new_dynamic != old_dynamic else 0
        real.dynamic = new_dynamic
        flipped = real.counters.online != before.online
        if flipped:
            real.changed = real.last_check + real.last_duration  # when the verdict came
            if real.counters.online:
                c.t_online_set += 1
                real.stats.online_set += 1
            else:
                c.t_offline_set += 1
                real.stats.offline_set += 1
            self.emit(StateEvent("test", real, result.reason))
        elif new_dynamic != old_dynamic and real.weight != old_weight:
            self.emit(StateEvent("weight", real, str(new_dynamic)))
        return flipped

    def set_admin(self, real: RealState, rstate: str | None = None,
                  override: WeightSpec | None = None, reason: str | None = None,
                  clear_override: bool = False) -> None:
        """Change the administrative state (``rset``); absent values keep what was there."""
        if rstate is not None:
            if rstate not in RSTATES:
                raise ValueError(f"rstate {rstate!r} is not one of {', '.join(RSTATES)}")
            if rstate != real.rstate:
                real.changed = self.clock()
            real.rstate = rstate
        if clear_override:
            real.override = None
        elif override is not None:
            if override.value < 0 or (override.percent and override.value > 100):
                raise ValueError(f"weight {override} is out of range")
            real.override = override
        if reason is not None:
            real.override_reason = reason
        self.emit(StateEvent("admin", real, reason or ""))
