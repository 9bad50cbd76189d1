"""The pure part of the end-to-end test: request log and table events in, checks and timeline out.

No I/O here: ``lvs_e2e.py`` collects what happened (the client's requests, the moments the
kernel table and surealived's view changed, the moments the test acted) and these functions
judge it. Times are CLOCK_MONOTONIC seconds throughout.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

FAILURES = frozenset({"refused", "ctimeout", "rtimeout", "reset", "badreply", "error"})


@dataclass(frozen=True)
class Request:
    """One client request (one TCP connection)."""

    t0: float
    t1: float
    vip: str
    result: str  # the backend's name, or one of FAILURES
    detail: str = ""

    @property
    def ok(self) -> bool:
        return self.result not in FAILURES

    @classmethod
    def from_json(cls, item: dict[str, Any]) -> Request:
        return cls(float(item["t0"]), float(item["t1"]), str(item["vip"]), str(item["result"]),
                   str(item.get("detail", "")))


@dataclass
class Check:
    """One named property of the run, with the figures it was judged on."""

    name: str
    ok: bool
    detail: str

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "ok": self.ok, "detail": self.detail}


@dataclass
class Checks:
    items: list[Check] = field(default_factory=list)

    def add(self, name: str, ok: bool, detail: str) -> bool:
        self.items.append(Check(name, bool(ok), detail))
        return bool(ok)

    @property
    def ok(self) -> bool:
        return bool(self.items) and all(c.ok for c in self.items)


def between(requests: Iterable[Request], start: float, end: float,
            vip: str | None = None) -> list[Request]:
    """Requests that started in [start, end), optionally to one VIP."""
    return [r for r in requests if start <= r.t0 < end and (vip is None or r.vip == vip)]


def first_after(requests: Sequence[Request], start: float, end: float,
                vip: str | None = None) -> Request | None:
    """The first request that started in [start, end)."""
    span = sorted(between(requests, start, end, vip), key=lambda r: r.t0)
    return span[0] if span else None


def last_where(requests: Sequence[Request], start: float, end: float,
               predicate: Callable[[Request], bool]) -> float | None:
    """Start of the last request in [start, end) for which the predicate holds."""
    starts = [r.t0 for r in between(requests, start, end) if predicate(r)]
    return max(starts) if starts else None


def first_served_by(requests: Sequence[Request], start: float, end: float, backend: str,
                    vip: str | None = None) -> float | None:
    """Start of the first request in [start, end) that the backend answered."""
    for request in sorted(between(requests, start, end, vip), key=lambda r: r.t0):
        if request.result == backend:
            return request.t0
    return None


def tally(requests: Iterable[Request]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for request in requests:
        counts[request.result] = counts.get(request.result, 0) + 1
    return dict(sorted(counts.items()))


def tally_text(requests: Iterable[Request]) -> str:
    counts = tally(requests)
    return " ".join(f"{k}={v}" for k, v in counts.items()) or "no requests"


def since(t: float | None, origin: float) -> str:
    return "never" if t is None else f"+{t - origin:.2f} s"


def timeline_rows(origin: float, rows: Sequence[tuple[str, float | None]]) -> list[dict[str, Any]]:
    """Rows of one scenario's timeline, each with seconds since the scenario's event."""
    return [{"what": what, "t": t, "after_s": None if t is None else round(t - origin, 3)}
            for what, t in rows]


def format_timeline(title: str, rows: Sequence[dict[str, Any]]) -> list[str]:
    lines = [title]
    for row in rows:
        after = "never" if row["after_s"] is None else f"{row['after_s']:+7.2f} s"
        lines.append(f"  {row['what']:<62} {after}")
    return lines
