"""The four dump formats: the original's lines byte for byte, round trips (IPv6, fwmark), and
a restart that restores overrides, offline reals, statistics and notifier states."""

from __future__ import annotations

import asyncio
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from surealived.config.main import MainConfig
from surealived.engine.state import CheckTiming, DaemonState, RoundReport
from surealived.engine.weights import WeightSpec
from surealived.persist.component import PersistComponent, stats_entries
from surealived.persist.dumps import (
    OverrideEntry,
    RealStatsEntry,
    RKey,
    VirtualStatsEntry,
    VKey,
    format_notify,
    format_offline,
    format_override,
    format_stats,
    parse_notify,
    parse_offline,
    parse_override,
    parse_stats,
)
from surealived.tester_api import Result

from .helpers import check, state_of

V4 = VKey("10.1.1.2", 80, "tcp")
V6 = VKey("2001:db8::1", 443, "udp")
FW = VKey("0.0.0.0", 0, "fwmark", 7)
R4 = RKey("127.0.0.1", 80)
R6 = RKey("2001:db8::a", 8443)


def test_override_lines_are_the_originals():
    text = format_override([OverrideEntry(V4, R4, 50, True, "OFFLINE"),
                            OverrideEntry(V4, R4, 3, False, "DOWN")])
    assert text == ("10.1.1.2:80:0:0 - 127.0.0.1:80 - weight=50% rstate=OFFLINE\n"
                    "10.1.1.2:80:0:0 - 127.0.0.1:80 - weight=3  rstate=DOWN\n")


def test_override_round_trip_ipv6_fwmark_and_drain():
    entries = [OverrideEntry(V6, R6, 0, False, "ONLINE"),  # weight=0: a drain
               OverrideEntry(FW, R4, 100, True, "OFFLINE"),
               OverrideEntry(V4, R6, 65535, False, "DOWN")]
    text = format_override(entries)
    assert "[2001:db8::1]:443:1:0 - [2001:db8::a]:8443 - weight=0  rstate=ONLINE\n" in text
    assert "0.0.0.0:0:2:7 - 127.0.0.1:80 - weight=100% rstate=OFFLINE\n" in text
    assert parse_override(text) == (entries, [])


def test_offline_round_trip():
    entries = [(V4, R4), (V6, R6), (FW, R4)]
    text = format_offline(entries)
    assert text.splitlines()[0] == "10.1.1.2:80:0:0 - 127.0.0.1:80"
    assert text.splitlines()[1] == "[2001:db8::1]:443:1:0 - [2001:db8::a]:8443"
    assert parse_offline(text) == (entries, [])


def test_stats_line_format_and_round_trip():
    real = RealStatsEntry(R4, 13, (227, 436, 663), (2951, 5668, 8619), (1, 2, 3))
    entries = [VirtualStatsEntry(VKey("10.1.1.3", 53, "udp"), 20, 13, (227, 436, 663),
                                 (0, 0, 0), (real,)),
               VirtualStatsEntry(V6, 5, 0, (0, 0, 0), (0, 0, 0),
                                 (RealStatsEntry(R6, 0, (0, 0, 0), (0, 0, 0), (0, 0, 0)),))]
    text = format_stats(entries)
    lines = text.splitlines()
    assert lines[0] == "vstats 10.1.1.3:53:1:0 - 20 13 - 0:0:0 - 227:436:663 - 0:0:0"
    assert lines[1] == ("rstats 127.0.0.1:80 - 13 - 0:0:0 - 227:436:663 - 2:5:8 - "
                        "2951:5668:8619 - 1:2:3")
    assert lines[2] == ""
    assert parse_stats(text) == (entries, [])


def test_notify_round_trip():
    entries = [(V4, "UP"), (V6, "DOWN"), (FW, "UNKNOWN")]
    text = format_notify(entries)
    assert text.splitlines()[0] == "vnotify 10.1.1.2:80:0:0 - state=UP"
    assert parse_notify(text) == (entries, [])


@pytest.mark.parametrize("parse", [parse_override, parse_offline, parse_stats, parse_notify])
def test_a_bad_line_costs_that_line_only(parse):
    good = {parse_override: "10.1.1.2:80:0:0 - 127.0.0.1:80 - weight=3  rstate=DOWN\n",
            parse_offline: "10.1.1.2:80:0:0 - 127.0.0.1:80\n",
            parse_stats: "vstats 10.1.1.2:80:0:0 - 20 1 - 0:0:0 - 0:0:0 - 0:0:0\n",
            parse_notify: "vnotify 10.1.1.2:80:0:0 - state=UP\n"}[parse]
    entries, problems = parse("garbage here\n" + good + "10.1.1.2:80:9:0 - x\n")
    assert len(entries) == 1
    assert [line for line, _ in problems] == [1, 3]


# Restart: dumps written by one daemon restore the next one's state.

XML = """<surealived>
  <virtual name="web" addr="192.0.2.1" port="80" proto="tcp" sched="wrr" rt="dr">
    <tester proto="tcp" testport="80" retries2ok="2" retries2fail="3"/>
    <real name="a" addr="10.0.0.1" port="80" weight="10"/>
    <real name="b" addr="10.0.0.2" port="80" weight="10"/>
    <real name="c" addr="2001:db8::c" port="80" weight="10"/>
  </virtual>
  <virtual name="fw" proto="fwmark" fwmark="9" sched="wrr" rt="dr">
    <tester proto="tcp" testport="80"/>
    <real name="d" addr="10.0.0.4" port="80" weight="4"/>
  </virtual>
</surealived>
"""


@dataclass
class FakeDaemon:
    """The part of ``components.DaemonView`` that persistence, sync, notify and statslog read."""

    state: DaemonState
    maincfg: MainConfig
    logger: logging.Logger = field(default_factory=lambda: logging.getLogger("test"))


def cfg(tmp: Path, **kw) -> MainConfig:
    return MainConfig(override_dump=str(tmp / "override.dump"),
                      offline_dump=str(tmp / "offline.dump"), stats_dump=str(tmp / "stats.dump"),
                      notify_dump=str(tmp / "notify.dump"), **kw)


def run(coro):
    return asyncio.run(coro)


def test_restart_restores_overrides_offline_reals_and_stats(tmp_path):
    first = state_of(XML)
    comp = PersistComponent()
    run(comp.start(FakeDaemon(first, cfg(tmp_path))))
    a, b, c = first.virtuals[0].reals
    d = first.virtuals[1].reals[0]

    async def session():
        for _ in range(3):
            check(first, b, False)
            check(first, c, False)
        first.record_result(a, Result.up(), CheckTiming(conn_us=1500, resp_us=2500,
                                                        total_us=4000, problem=None))
        first.set_admin(a, rstate="OFFLINE", override=WeightSpec(50, True),
                        reason="disk swap")
        first.set_admin(d, override=WeightSpec(0))  # a drain
        await comp.stop(FakeDaemon(first, cfg(tmp_path)))

    run(session())
    assert (tmp_path / "offline.dump").read_text() == (
        "192.0.2.1:80:0:0 - 10.0.0.2:80\n192.0.2.1:80:0:0 - [2001:db8::c]:80\n")
    assert (tmp_path / "override.dump").read_text() == (
        "192.0.2.1:80:0:0 - 10.0.0.1:80 - weight=50% rstate=OFFLINE\n"
        "0.0.0.0:0:2:9 - 10.0.0.4:80 - weight=0  rstate=ONLINE\n")
    saved_stats = stats_entries(first)

    second = state_of(XML)
    comp2 = PersistComponent()
    run(comp2.start(FakeDaemon(second, cfg(tmp_path))))
    a2, b2, c2 = second.virtuals[0].reals
    d2 = second.virtuals[1].reals[0]
    assert (a2.rstate, a2.override, a2.weight) == ("OFFLINE", WeightSpec(50, True), 0)
    assert a2.override_reason == "disk swap"
    assert (d2.rstate, d2.override, d2.weight) == ("ONLINE", WeightSpec(0), 0)
    assert a2.online and not b2.online and not c2.online
    assert b2.counters.fail_run == 3  # retries2fail
    assert not b2.in_table or b2.weight == 0
    # An offline real needs retries2ok (2) successes to come back.
    assert not check(second, b2, True)
    assert check(second, b2, True)
    assert a2.stats.total == 1 and a2.stats.sum_total_us == 4000
    assert next(r.reals for r in stats_entries(second))[0].sum_us == saved_stats[0].reals[0].sum_us


def test_no_dumpfile_neither_reads_nor_writes_offline(tmp_path):
    (tmp_path / "offline.dump").write_text("192.0.2.1:80:0:0 - 10.0.0.2:80\n")
    state = state_of(XML, started_up=False)
    daemon = FakeDaemon(state, cfg(tmp_path, use_offline_dump=False))  # what -k sets
    comp = PersistComponent()
    run(comp.start(daemon))
    # nothing is known: every real waits for its first passing check, the dump is not read
    assert not any(r.online for r in state.reals())
    assert all(r.counters.fail_run == 0 for r in state.reals())
    check(state, state.virtuals[0].reals[0], False)

    async def stop():
        await comp.stop(daemon)

    run(stop())
    assert (tmp_path / "offline.dump").read_text() == "192.0.2.1:80:0:0 - 10.0.0.2:80\n"


def test_unknown_and_rstate_only_entries(tmp_path, caplog):
    (tmp_path / "override.dump").write_text(
        "192.0.2.1:80:0:0 - 10.0.0.2:80 - weight=10  rstate=DOWN\n"  # rstate only (XML weight)
        "192.0.2.99:80:0:0 - 10.0.0.2:80 - weight=1  rstate=DOWN\n"  # no such virtual
        "bad line\n")
    state = state_of(XML)
    comp = PersistComponent()
    with caplog.at_level(logging.INFO):
        run(comp.start(FakeDaemon(state, cfg(tmp_path))))

    async def stop():
        await comp.stop(FakeDaemon(state, cfg(tmp_path)))

    run(stop())
    b = state.virtuals[0].reals[1]
    assert (b.rstate, b.override) == ("DOWN", None)
    assert "Unable to find real: 192.0.2.99:80:0:0 - 10.0.0.2:80" in caplog.text
    assert "override.dump:3:" in caplog.text
    # the file is rewritten from the matched entries only
    assert (tmp_path / "override.dump").read_text() == (
        "192.0.2.1:80:0:0 - 10.0.0.2:80 - weight=10  rstate=DOWN\n")
    assert not any(n.endswith(".tmp") for n in os.listdir(tmp_path))


def test_reload_gives_changed_reals_their_dumped_state(tmp_path):
    """A real whose definition changed is new to the state after SIGHUP; like a restart, it
    takes its override and offline state from the dumps. Unchanged reals keep theirs."""
    state = state_of(XML)
    comp = PersistComponent()
    d = FakeDaemon(state, cfg(tmp_path))

    async def scenario() -> None:
        await comp.start(d)
        a, b, c = state.virtuals[0].reals
        state.set_admin(a, rstate="OFFLINE", override=WeightSpec(3))
        check(state, c, True)
        for _ in range(3):
            check(state, b, False)
        comp.on_round(RoundReport(state.virtuals[0], 0.0, 0.0, ()))
        state.load(state_of(XML.replace('weight="10"/>', 'weight="12"/>')).config, keep=True)
        a2, b2, c2 = state.virtuals[0].reals
        # a weight change keeps the test state (the real stays in IPVS), not the admin state
        assert (a2.rstate, a2.override, b2.online, c2.online) == ("ONLINE", None, False, True)
        await comp.reloaded(d)
        assert (a2.rstate, a2.override) == ("OFFLINE", WeightSpec(3))
        assert not b2.online and c2.online
        await comp.stop(d)

    run(scenario())


def test_override_reasons_round_trip_beside_the_original_format() -> None:
    from surealived.persist.dumps import format_reasons, parse_reasons, parse_rkey, parse_vkey

    v = parse_vkey("[2001:db8::1]:80:0:0")
    r = parse_rkey("127.0.0.1:80")
    r2 = parse_rkey("127.0.0.2:80")
    entries = [OverrideEntry(v, r, 10, False, "OFFLINE", "kernel upgrade - ticket 42"),
               OverrideEntry(v, r2, 5, True, "ONLINE")]
    assert format_override(entries) == (
        "[2001:db8::1]:80:0:0 - 127.0.0.1:80 - weight=10  rstate=OFFLINE\n"
        "[2001:db8::1]:80:0:0 - 127.0.0.2:80 - weight=5% rstate=ONLINE\n")
    text = format_reasons(entries)
    assert text == "[2001:db8::1]:80:0:0 - 127.0.0.1:80 - reason=kernel upgrade - ticket 42\n"
    reasons, problems = parse_reasons(text + "garbage\n")
    assert reasons == {(v, r): "kernel upgrade - ticket 42"}
    assert problems and problems[0][0] == 2
