"""The last hour of each real, minute by minute, for the status page's small pictures.

Per real and per minute: the slowest check (on a log scale, one byte), whether any check failed,
and whether the real's state changed. Sixty minutes cost 180 bytes per real (about 6 MB at
20,000 reals, with the objects around them). Fed by round reports (results and durations) and
state events (changes); read with ``minutes(real, now)``, oldest minute first.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from ..engine.state import RealState, RoundReport, StateEvent
from .metrics import RealKey, real_key

MINUTES = 60
_FAILED = 1
_CHANGED = 2


def latency_code(seconds: float) -> int:
    """1..255 on a log scale, 32 steps a decade (1 µs is 1, 1 ms 97, 1 s 193); 0: no check."""
    micros = max(seconds * 1e6, 1.0)
    return min(255, 1 + round(32 * math.log10(micros)))


def latency_of(code: int) -> float:
    """Seconds from ``latency_code`` (the middle of its step)."""
    return 10 ** ((code - 1) / 32) / 1e6


@dataclass(frozen=True, slots=True)
class Minute:
    latency: int  # latency_code of the slowest check, 0 when there was none
    failed: bool
    changed: bool


class _Ring:
    __slots__ = ("data", "newest")

    def __init__(self, minute: int) -> None:
        self.newest = minute
        self.data = bytearray(2 * MINUTES)  # per slot: latency code, flags

    def slot(self, minute: int) -> int | None:
        """The offset of ``minute``, clearing the minutes skipped since the newest one."""
        if minute > self.newest:
            for skipped in range(self.newest + 1, min(minute, self.newest + MINUTES) + 1):
                at = skipped % MINUTES * 2
                self.data[at] = self.data[at + 1] = 0
            self.newest = minute
        elif minute <= self.newest - MINUTES:
            return None  # older than the hour kept
        return minute % MINUTES * 2


class RecentChecks:
    """Every real's last hour; survives reloads by the real's key, as ``CheckHistory``."""

    def __init__(self) -> None:
        self.reals: dict[RealKey, _Ring] = {}

    def _ring(self, real: RealState, minute: int) -> _Ring:
        ring = self.reals.get(real_key(real))
        if ring is None:
            ring = self.reals[real_key(real)] = _Ring(minute)
        return ring

    def record(self, real: RealState, ok: bool, seconds: float, when: float) -> None:
        minute = int(when // 60)
        ring = self._ring(real, minute)
        at = ring.slot(minute)
        if at is None:
            return
        code = latency_code(seconds)
        data = ring.data
        if code > data[at]:
            data[at] = code
        if not ok:
            data[at + 1] |= _FAILED

    def mark_change(self, real: RealState, when: float) -> None:
        minute = int(when // 60)
        ring = self._ring(real, minute)
        at = ring.slot(minute)
        if at is not None:
            ring.data[at + 1] |= _CHANGED

    def on_round(self, report: RoundReport) -> None:
        for real, result, timing in report.results:
            self.record(real, result.ok, timing.total_us / 1e6, timing.started or report.ended)

    def on_event(self, event: StateEvent) -> None:
        if event.kind in ("test", "admin") and event.real.changed:
            self.mark_change(event.real, event.real.changed)

    def minutes(self, real: RealState, now: float) -> list[Minute]:
        """The ``MINUTES`` minutes up to ``now``, oldest first (empty minutes included)."""
        ring = self.reals.get(real_key(real))
        current = int(now // 60)
        out = []
        for minute in range(current - MINUTES + 1, current + 1):
            if ring is None or minute > ring.newest or minute <= ring.newest - MINUTES:
                out.append(Minute(0, False, False))
                continue
            at = minute % MINUTES * 2
            flags = ring.data[at + 1]
            out.append(Minute(ring.data[at], bool(flags & _FAILED), bool(flags & _CHANGED)))
        return out
