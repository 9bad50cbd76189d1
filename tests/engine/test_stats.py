"""Per-real statistics: the sample window slides, and totals restored from a dump do not count
as samples."""

from __future__ import annotations

from surealived.engine.state import CheckTiming, RealStats


def timing(conn: int, resp: int, problem: str | None = None) -> CheckTiming:
    return CheckTiming(conn_us=conn, resp_us=resp, total_us=conn + resp, problem=problem)


def test_averages_cover_the_last_window_of_checks() -> None:
    stats = RealStats(window=3)
    assert stats.sample_averages() == (0, 0, 0)
    for i in range(1, 6):
        stats.record(timing(i * 100, i * 10), ok=True)
    assert stats.sample_averages() == (400, 40, 440)  # checks 3, 4 and 5
    assert (stats.total, stats.success, stats.sum_conn_us) == (5, 5, 1500)


def test_a_failed_connect_counts_its_whole_time_as_connect_time() -> None:
    stats = RealStats(window=2)
    stats.record(timing(0, 900, problem="conn"), ok=False)
    assert stats.sample_averages() == (900, 900, 900)
    assert (stats.conn_problem, stats.failed) == (1, 1)


def test_a_restored_total_is_not_a_sample() -> None:
    stats = RealStats(window=20)
    stats.total = 1000  # as read back from stats.dump
    stats.record(timing(300, 30), ok=True)
    assert stats.sample_averages() == (300, 30, 330)
    assert stats.total == 1001


def test_no_window_keeps_no_samples() -> None:
    stats = RealStats(window=0)
    stats.record(timing(300, 30), ok=True)
    assert stats.sample_averages() == (0, 0, 0)
    assert stats.total == 1


def test_a_sample_past_what_32_bits_hold_is_kept_at_the_most() -> None:
    """Samples are 32-bit µs (35 minutes): a longer check is kept at that, totals exact."""
    stats = RealStats(window=2)
    stats.record(timing(3_000_000_000, 10), ok=True)
    assert stats.sample_averages() == ((1 << 31) - 1, 10, (1 << 31) - 1)
    assert stats.sum_total_us == 3_000_000_010
