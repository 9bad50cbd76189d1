"""The scheduler in fake time: spreading, rounds, the in-flight bound, shared probes, reload."""

from __future__ import annotations

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from surealived.config.main import MainConfig
from surealived.engine.scheduler import Engine, plan_batches
from surealived.engine.state import DaemonState

from .fakes import FakeTime, ScriptedChecks, config_from


def virtual(name: str, reals: int, *, addr_base: int = 1, loopdelay: float = 3,
            timeout: float = 1, retries2fail: int = 1, port: int = 80,
            init_state: str | None = None) -> str:
    init = f' init_state="{init_state}"' if init_state else ""
    lines = [f'<virtual name="{name}" addr="10.0.0.{port % 250}" port="{port}" proto="tcp" '
             f'sched="wrr" rt="dr">',
             f'<tester proto="tcp" testport="80" loopdelay="{loopdelay}" timeout="{timeout}" '
             f'retries2fail="{retries2fail}"{init}/>']
    for i in range(reals):
        lines.append(f'<real name="r{i}" addr="127.0.{addr_base}.{i + 1}" port="80" '
                     'weight="1"/>')
    lines.append("</virtual>")
    return "\n".join(lines)


def make_engine(xml: str, *, duration: float = 0.0, max_inflight: int | None = None,
                **maincfg: int) -> tuple[Engine, FakeTime, ScriptedChecks]:
    time = FakeTime()
    runner = ScriptedChecks(time, duration)
    settings = {"startup_delay_ms": 1000, "loop_interval_ms": 100, **maincfg}
    state = DaemonState(config_from(f"<surealived>{xml}</surealived>"))
    engine = Engine(state, runner.registry(), MainConfig(**settings), clock=time.clock,
                    sleep=time.sleep, call_later=time.call_later, rng=random.Random(7),
                    max_inflight=max_inflight)
    return engine, time, runner


def test_plan_of_the_originals_example() -> None:
    batches = plan_batches(23, 1000, 100)
    assert sum(n for _, n in batches) == 23
    assert [offset for offset, _ in batches] == pytest.approx([i / 10 for i in range(10)])


def test_plan_when_delay_is_not_a_multiple_of_the_interval() -> None:
    # the original planned no start at all here and the virtual hung forever
    batches = plan_batches(3, 1000, 300)
    assert sum(n for _, n in batches) == 3
    assert [offset for offset, _ in batches] == pytest.approx([0.0, 0.3, 0.6])


def test_plan_without_spreading_starts_everything_at_once() -> None:
    assert plan_batches(5, 0, 100) == [(0.0, 5)]
    assert plan_batches(0, 1000, 100) == []
    assert plan_batches(1, 1000, 100) == [(0.0, 1)]


@given(st.integers(0, 5000), st.integers(0, 10_000), st.integers(1, 5000))
def test_plan_starts_every_real_inside_the_window(count: int, delay: int, step: int) -> None:
    batches = plan_batches(count, delay, step)
    assert sum(n for _, n in batches) == count
    offsets = [offset for offset, _ in batches]
    assert offsets == sorted(set(offsets))
    for offset in offsets:
        assert offset * 1000 <= max(delay, 0)
        assert round(offset * 1000) % step == 0


@pytest.mark.asyncio
async def test_rounds_are_spread_and_come_at_the_originals_period() -> None:
    """timeout + loopdelay after the last batch of a round started, however fast the checks
    are: the period the original had for the same XML."""
    engine, time, runner = make_engine(virtual("web", 10, loopdelay=3, timeout=1))
    t0 = time.now
    engine.start()
    await time.run_until(t0 + 12)
    first = [t for _, _, t in runner.starts[:10]]
    begin = first[0]
    assert begin - t0 < 1.0  # the first round starts within startup_delay_ms
    assert [round(t - begin, 3) for t in first] == [i / 10 for i in range(10)]
    second = [t for _, _, t in runner.starts[10:20]]
    assert round(second[0] - first[-1], 3) == 4.0  # timeout 1 + loopdelay 3
    assert [round(t - second[0], 3) for t in second] == [i / 10 for i in range(10)]
    assert engine.state.virtuals[0].rounds >= 2
    await engine.stop()


@pytest.mark.asyncio
async def test_a_round_that_outlasts_the_period_is_followed_at_once() -> None:
    # 3 checks, one slot: the round takes 3 s of checks, longer than timeout + loopdelay
    engine, time, runner = make_engine(virtual("web", 3, loopdelay=0.5, timeout=1),
                                       duration=1.0, max_inflight=1, startup_delay_ms=0)
    engine.start()
    await time.run_until(time.now + 3.5)
    starts = [t for _, _, t in runner.starts]
    assert [round(t - starts[0], 3) for t in starts[:4]] == [0.0, 1.0, 2.0, 3.0]
    await engine.stop()


@pytest.mark.asyncio
async def test_interval_counts_from_the_end_of_a_round() -> None:
    xml = virtual("web", 2, loopdelay=3, timeout=5).replace('timeout="5"',
                                                            'timeout="5" interval="2"')
    engine, time, runner = make_engine(xml, duration=0.25, startup_delay_ms=0)
    engine.start()
    await time.run_until(time.now + 5)
    starts = sorted({t for _, _, t in runner.starts})
    assert [round(t - starts[0], 3) for t in starts[:3]] == [0.0, 2.25, 4.5]
    await engine.stop()


@pytest.mark.asyncio
async def test_results_reach_the_state_and_flip_after_retries2fail() -> None:
    # up from the start (the original's), so that r1 has something to flip from
    engine, time, runner = make_engine(virtual("web", 2, loopdelay=1, retries2fail=2,
                                               init_state="up"), startup_delay_ms=0)
    runner.verdicts["r1"] = False
    engine.start()
    await time.run_until(time.now + 0.5)  # first round only
    r0, r1 = engine.state.virtuals[0].reals
    assert r0.online and r0.tested
    assert r1.online and r1.last_ok is False  # one failure of two needed
    await time.run_until(time.now + 2.0)  # the next round: timeout 1 + loopdelay 1
    assert not r1.online
    assert engine.state.counters.t_failed == 2
    await engine.stop()


@pytest.mark.asyncio
async def test_checks_in_flight_are_bounded_and_the_rest_wait() -> None:
    engine, time, runner = make_engine(virtual("web", 10, timeout=5), duration=1.0,
                                       max_inflight=3, startup_delay_ms=0)
    engine.start()
    await time.run_until(time.now + 2.5)
    assert engine.metrics.peak_inflight == 3
    assert engine.metrics.waiting > 0
    await time.run_until(time.now + 5)
    assert {r for _, r, _ in runner.starts} == {f"r{i}" for i in range(10)}
    assert engine.state.virtuals[0].rounds >= 1
    _p50, p99 = engine.metrics.lag_percentiles()
    assert p99 >= 1000.0  # the last checks waited whole seconds for a slot
    await engine.stop()


@pytest.mark.asyncio
async def test_virtuals_sharing_a_real_share_the_check_in_flight() -> None:
    xml = virtual("a", 1, port=80) + virtual("b", 1, port=81)  # same real 127.0.1.1:80
    engine, time, runner = make_engine(xml, duration=0.5, startup_delay_ms=0)
    engine.start()
    await time.run_until(time.now + 1.0)
    assert len(runner.starts) == 1
    assert engine.metrics.shared_checks == 1
    a, b = engine.state.virtuals
    assert a.reals[0].tested and b.reals[0].tested
    assert a.reals[0] is not b.reals[0]  # each virtual keeps its own state
    await engine.stop()


@pytest.mark.asyncio
async def test_reload_keeps_unchanged_virtuals_in_place_and_stops_removed_ones() -> None:
    xml_a, xml_b = virtual("a", 2, port=80), virtual("b", 2, addr_base=2, port=81)
    engine, time, runner = make_engine(xml_a + xml_b, startup_delay_ms=0)
    engine.start()
    await time.run_until(time.now + 0.5)
    runner_a = engine.runners[engine.state.virtuals[0].config]
    engine.state.load(config_from(f"<surealived>{xml_a}</surealived>"), keep=True)
    engine.reschedule()
    assert list(engine.runners.values()) == [runner_a]
    runner.starts.clear()
    await time.run_until(time.now + 8)
    assert {v for v, _, _ in runner.starts} == {"a"}
    await engine.stop()
