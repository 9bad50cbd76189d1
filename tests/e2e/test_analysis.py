"""The end-to-end test's judging functions (``analysis.py``) on made-up request logs.

Pure functions: the VM test trusts them to find the first clean request, the last failure and
the requests of a span, so their edges are pinned here without a VM.
"""

from __future__ import annotations

from typing import Any

from .analysis import (
    Checks,
    Request,
    between,
    first_after,
    first_served_by,
    last_where,
    tally_text,
    timeline_rows,
)

NAT, DR = "10.0.0.100:80", "10.0.0.101:80"


def log(*items: tuple[float, str, str]) -> list[Any]:
    return [Request(t, t + 0.01, vip, result) for t, vip, result in items]


REQS = log((1.0, NAT, "rs1"), (1.1, DR, "rs2"), (1.2, NAT, "refused"), (1.3, DR, "rs3"),
           (1.4, NAT, "rtimeout"), (1.5, DR, "rs1"), (1.6, NAT, "rs2"))


def test_between_is_half_open_and_filters_by_vip() -> None:
    assert [r.t0 for r in between(REQS, 1.1, 1.4)] == [1.1, 1.2, 1.3]
    assert [r.t0 for r in between(REQS, 1.0, 2.0, DR)] == [1.1, 1.3, 1.5]


def test_failures_are_not_ok() -> None:
    assert [r.ok for r in REQS] == [True, True, False, True, False, True, True]


def test_first_after_and_first_served_by() -> None:
    first = first_after(REQS, 1.25, 2.0)
    assert first is not None and first.t0 == 1.3
    assert first_after(REQS, 1.7, 2.0) is None
    assert first_served_by(REQS, 1.0, 2.0, "rs2", NAT) == 1.6
    assert first_served_by(REQS, 1.0, 2.0, "rs2") == 1.1
    assert first_served_by(REQS, 1.0, 1.6, "rs2", NAT) is None


def test_last_where_finds_the_last_failure() -> None:
    assert last_where(REQS, 0.0, 2.0, lambda r: not r.ok) == 1.4
    assert last_where(REQS, 1.5, 2.0, lambda r: not r.ok) is None


def test_tally_and_timeline_rows() -> None:
    assert tally_text(REQS) == "refused=1 rs1=2 rs2=2 rs3=1 rtimeout=1"
    assert tally_text([]) == "no requests"
    rows = timeline_rows(10.0, [("event", 10.0), ("change", 12.5), ("missing", None)])
    assert [r["after_s"] for r in rows] == [0.0, 2.5, None]


def test_checks_fail_when_empty_or_any_fails() -> None:
    checks = Checks()
    assert not checks.ok
    checks.add("a", True, "")
    assert checks.ok
    checks.add("b", False, "why")
    assert not checks.ok
