"""The control language as pure functions: exact formats, rset rules, every error, framing."""

from __future__ import annotations

import json

import pytest

from surealived.config.main import MainConfig
from surealived.control.protocol import (
    END,
    Context,
    LineReader,
    LineTooLong,
    execute,
    parse_weight,
)
from surealived.engine.state import CheckTiming, DaemonState, StateEvent
from surealived.engine.weights import WeightSpec
from surealived.errors import ControlError
from surealived.tester_api import Result

from .conftest import FAKE_PROCESS

WEB = "vproto=tcp vaddr=10.1.1.2 vport=80"
H1 = f"{WEB} raddr=127.0.0.1 rport=80"


def run(ctx: Context, line: str) -> list[str]:
    lines = execute(line, ctx)
    assert lines[-1] == END, lines
    return lines[:-1]


def fingerprint(state: DaemonState) -> list[tuple[object, ...]]:
    return [(r.rstate, r.override, r.override_reason, r.weight, r.dynamic)
            for r in state.reals()]


# --- listings -----------------------------------------------------------------------------

def test_vlist_is_the_original_format(ctx: Context) -> None:
    assert run(ctx, "vlist") == [
        "v:0 vname=web vproto=tcp vaddr=10.1.1.2 vport=80 vfwmark=0 vrt=dr vsched=wrr",
        "v:1 vname=web6 vproto=tcp vaddr=2001:db8::1 vport=443 vfwmark=0 vrt=masq vsched=wlc",
        "v:2 vname=marked vproto=fwmark vaddr=0.0.0.0 vport=0 vfwmark=7 vrt=dr vsched=wrr",
        "v:3 vname=empty vproto=udp vaddr=10.1.1.3 vport=53 vfwmark=0 vrt=dr vsched=rr",
    ]


def test_rlist_is_the_original_format(ctx: Context) -> None:
    assert run(ctx, f"rlist {WEB}") == [
        "vname=web vproto=tcp vaddr=10.1.1.2 vport=80 vfwmark=0 vrt=dr vsched=wrr",
        "r:0 rname=h1 raddr=127.0.0.1 rport=80 currwgt=10 confwgt=10 ronline=TRUE rstate=ONLINE",
        "r:1 rname=h2 raddr=127.0.0.2 rport=81 currwgt=20 confwgt=20 ronline=TRUE rstate=ONLINE",
    ]


def test_rlist_shows_a_failing_real(ctx: Context, state: DaemonState) -> None:
    real = state.virtuals[0].reals[1]
    state.record_result(real, Result.down("connection refused"), CheckTiming(problem="rst"))
    assert run(ctx, f"rlist {WEB}")[2] == ("r:1 rname=h2 raddr=127.0.0.2 rport=81 currwgt=0 "
                                           "confwgt=20 ronline=FALSE rstate=ONLINE")


def test_rlist_ipv6_fwmark_and_empty(ctx: Context) -> None:
    assert run(ctx, "rlist vproto=tcp vaddr=2001:db8::1 vport=443")[1].startswith(
        "r:0 rname=s1 raddr=2001:db8::10 rport=443 ")
    # an IPv6 address in any spelling, brackets included
    assert run(ctx, "rlist vproto=tcp vaddr=[2001:0db8:0::1] vport=443")[0].startswith(
        "vname=web6 ")
    # vfwmark wins; vproto must still be there
    assert run(ctx, "rlist vproto=tcp vfwmark=7")[0].startswith("vname=marked ")
    assert run(ctx, "rlist vproto=udp vaddr=10.1.1.3 vport=53") == [
        "vname=empty vproto=udp vaddr=10.1.1.3 vport=53 vfwmark=0 vrt=dr vsched=rr",
        "EMPTY LIST - no reals defined in virtual",
    ]


def test_json_listings_are_one_line(ctx: Context) -> None:
    for line in ("vlist format=json", f"rlist {WEB} format=json", "stats format=json",
                 "connstats format=json", "help format=json"):
        lines = run(ctx, line)
        assert len(lines) == 1
        json.loads(lines[0])
    data = json.loads(run(ctx, f"rlist {WEB} format=json")[0])
    assert data["virtual"]["name"] == "web"
    assert [r["name"] for r in data["reals"]] == ["h1", "h2"]
    assert data["reals"][0]["weight"] == 10 and data["reals"][0]["rstate"] == "ONLINE"
    assert json.loads(run(ctx, "vlist format=json")[0])["virtuals"][1]["addr"] == "2001:db8::1"


# --- rset ---------------------------------------------------------------------------------

def test_rset_offline_then_online(ctx: Context, state: DaemonState) -> None:
    events: list[StateEvent] = []
    state.listeners.append(events.append)
    real = state.virtuals[0].reals[0]
    assert run(ctx, f"rset {H1} rstate=OFFLINE") == [
        "Set: rstate=OFFLINE, weight=10, inpercent=FALSE"]
    assert real.rstate == "OFFLINE" and real.weight == 0
    assert real.override == WeightSpec(10)  # as the original: no override becomes the XML weight
    assert [e.kind for e in events] == ["admin"] and events[0].real is real
    assert run(ctx, f"rset {H1} rstate=ONLINE") == [
        "Set: rstate=ONLINE, weight=10, inpercent=FALSE"]
    assert real.override is None and real.weight == 10  # ONLINE at the XML weight: entry deleted


def test_rset_weights(ctx: Context, state: DaemonState) -> None:
    h2 = state.virtuals[0].reals[1]
    h2_sel = f"{WEB} raddr=127.0.0.2 rport=81"
    assert run(ctx, f"rset {h2_sel} rweight=50%") == [
        "Set: rstate=ONLINE, weight=50, inpercent=TRUE"]
    assert h2.weight == 10
    assert run(ctx, f"rset {h2_sel} rweight=1%") == ["Set: rstate=ONLINE, weight=1, inpercent=TRUE"]
    assert h2.weight == 1  # max(1, 20 * 1 // 100)
    run(ctx, f"rset {h2_sel} rweight=7")
    assert h2.weight == 7
    run(ctx, f"rset {h2_sel} rweight=0")
    assert h2.weight == 0 and h2.override == WeightSpec(0)  # 0 drains (the original ignored it)
    run(ctx, f"rset {h2_sel} rstate=OFFLINE")
    assert h2.override == WeightSpec(0)  # a missing rweight keeps the previous override
    run(ctx, f"rset {h2_sel} rstate=ONLINE rweight=100%")
    assert h2.override is None and h2.weight == 20
    run(ctx, f"rset {h2_sel} rstate=DOWN")
    assert not h2.in_table and h2.weight == 0
    assert run(ctx, f"rlist {WEB}")[2].endswith("currwgt=0 confwgt=20 ronline=TRUE rstate=DOWN")


def test_rset_reason_is_kept_and_shown(ctx: Context, state: DaemonState) -> None:
    real = state.virtuals[0].reals[0]
    run(ctx, f"rset {H1} rstate=OFFLINE reason=disk swap, ticket OPS-12")
    assert real.override_reason == "disk swap, ticket OPS-12"
    assert run(ctx, f"rlist {WEB}")[1].endswith("rstate=OFFLINE reason=disk swap, ticket OPS-12")
    # the untouched real keeps the original line
    assert run(ctx, f"rlist {WEB}")[2].endswith("rstate=ONLINE")
    data = json.loads(run(ctx, f"rlist {WEB} format=json")[0])
    assert data["reals"][0]["reason"] == "disk swap, ticket OPS-12"
    run(ctx, f"rset {H1} rstate=ONLINE")
    assert real.override_reason == ""


def test_rset_ipv6_and_json(ctx: Context, state: DaemonState) -> None:
    line = ("rset vproto=tcp vaddr=2001:db8::1 vport=443 raddr=2001:DB8:0::10 rport=443 "
            "rweight=3 format=json")
    data = json.loads(run(ctx, line)[0])
    assert data["weight"] == 3 and data["inpercent"] is False and data["rstate"] == "ONLINE"
    assert state.virtuals[1].reals[0].weight == 3


# --- errors -------------------------------------------------------------------------------

BAD = [
    ("vlistXYZ", "Invalid request! [vlistXYZ]"),
    ("  ", None),
    ("VLIST", "Invalid request! [VLIST]"),
    ("vlist extra", "cmd_vlist: argument without '=' [extra]"),
    ("vlist vproto=tcp", "cmd_vlist: unknown argument [vproto]"),
    ("vlist format=xml", "cmd_vlist: format unknown [xml] (valid: text, json)"),
    ("rlist", "cmd_find_virt: No vproto specified"),
    ("rlist vproto=TCP", "cmd_find_virt: invalid vproto [TCP] (valid: tcp, udp, fwmark)"),
    ("rlist vproto=tcp vaddr=10.1.1.999 vport=80",
     "cmd_find_virt: invalid vaddr [10.1.1.999] (valid: an IPv4 or IPv6 address)"),
    ("rlist vproto=tcp vaddr=10.1.1.2 vport=-1", "cmd_find_virt: invalid vport [-1] (valid: "
     "0..65535)"),
    ("rlist vproto=tcp vaddr=10.1.1.2 vport=65536", "cmd_find_virt: invalid vport [65536]"),
    ("rlist vproto=tcp vaddr=10.1.1.2 vport=81", "cmd_find_virt: Virt not found"),
    ("rlist vproto=tcp vaddr=10.1.1.2 vport=80 vport=80", "cmd_rlist: argument given twice"),
    ("rlist vproto=tcp vaddr=10.1.1.2 vport=80 raddr=1.2.3.4", "cmd_rlist: unknown argument"),
    (f"rset {WEB}", "cmd_rset: you need to set at least 'rstate' or 'rweight'"),
    (f"rset {H1} rstate=online",
     "cmd_rset: rstate unknown [online] (valid: ONLINE, OFFLINE, DOWN)"),
    (f"rset {H1} rweight=-5", "cmd_rset: rweight invalid [-5] (valid: 0..65535, or 0%..100%)"),
    (f"rset {H1} rweight=101%", "cmd_rset: rweight invalid [101%]"),
    (f"rset {H1} rweight=65536", "cmd_rset: rweight invalid [65536]"),
    (f"rset {H1} rweight=5x", "cmd_rset: rweight invalid [5x]"),
    (f"rset {H1} rweight=%", "cmd_rset: rweight invalid [%]"),
    (f"rset {H1} rweight=\uff11\uff12", "cmd_rset: rweight invalid"),
    (f"rset {WEB} rstate=OFFLINE", "cmd_find_real: raddr not found"),
    (f"rset {WEB} raddr=127.0.0.1 rstate=OFFLINE", "cmd_find_real: rport not found"),
    (f"rset {WEB} raddr=banana rport=80 rstate=OFFLINE",
     "cmd_find_real: invalid IP [banana] (valid: an IPv4 or IPv6 address)"),
    (f"rset {WEB} raddr=127.0.0.1 rport=99 rstate=OFFLINE", "cmd_find_real: Real not found"),
    ("rset vproto=udp vaddr=10.1.1.3 vport=53 raddr=127.0.0.1 rport=80 rstate=OFFLINE",
     "cmd_find_real: empty realArr"),
    (f"rset {H1} rstate=OFFLINE reason=bell\x07", "cmd_rset: reason invalid"),
    (f"rset {H1} rstate=OFFLINE reason={'x' * 201}", "cmd_rset: reason invalid"),
    ("rlist vproto=tcp reason=x", "cmd_rlist: unknown argument [reason]"),
    ("help nosuch", "cmd_help: no such command [nosuch]"),
    ("vlist\x00\x1b[2J", "Invalid request! [vlist??[2J]"),
]


@pytest.mark.parametrize(("line", "expected"), BAD)
def test_errors_are_one_line_and_change_nothing(ctx: Context, state: DaemonState, line: str,
                                                expected: str | None) -> None:
    before = fingerprint(state)
    lines = execute(line, ctx)
    assert fingerprint(state) == before
    if expected is None:
        assert lines == []
        return
    assert len(lines) == 2 and lines[1] == END
    assert lines[0].startswith(expected), lines[0]
    assert "\n" not in lines[0]


def test_errors_say_the_usage_when_arguments_are_missing(ctx: Context) -> None:
    line = run(ctx, "rlist")[0]
    assert "(usage: rlist vproto=tcp|udp|fwmark" in line


def test_error_in_json_mode_is_json(ctx: Context) -> None:
    data = json.loads(run(ctx, "rlist vproto=tcp vaddr=1.1.1.1 vport=1 format=json")[0])
    assert data["error"].startswith("cmd_find_virt: Virt not found")
    data = json.loads(run(ctx, "nosuch format=json")[0])
    assert data["error"].startswith("Invalid request!")


# --- stats, connstats, help, reload -------------------------------------------------------

def test_stats_layout(ctx: Context, state: DaemonState) -> None:
    state.record_result(state.virtuals[0].reals[0], Result.down("refused"),
                        CheckTiming(problem="rst", bytes_sent=10))
    run(ctx, f"rset {WEB} raddr=127.0.0.2 rport=81 rstate=DOWN")
    lines = run(ctx, "stats")
    assert lines[:5] == ["=== global stats ===", "watchdog_pid   : -1", "tester_pid     : 4242",
                         "virtuals       : 4", "reals          : 4"]
    text = "\n".join(lines)
    assert ("=== real settings ===\nronline        : 3\nroffline       : 0\n"
            "rdown          : 1\noffline_size   : 1\noverride_size  : 1\n") in text
    assert "=== real stats ===\nsuccess        : 3\nfailed         : 1\n" in text
    assert "t_failed       : 1\nt_online_set   : 0\nt_offline_set  : 1\n" in text
    assert "t_rst_problem  : 1\nt_bytes_rcvd   : 0\nt_bytes_sent   : 10\n" in text
    assert "user_time      : 0.025015 sec\nsystem_time    : 1.500000 sec\n" in text
    assert "fd_used        : 12\n" in text
    assert lines[-3:] == ["=== memory usage ===", "VmPeak         : 48164  kB",
                          "VmSize         : 48104  kB"]
    data = json.loads(run(ctx, "stats format=json")[0])
    assert data["real_settings"]["rdown"] == 1 and data["memory_usage"]["VmPeak_kb"] == 48164


def test_connstats_layout(ctx: Context, state: DaemonState) -> None:
    real = state.virtuals[0].reals[0]
    state.record_result(real, Result.up(), CheckTiming(conn_us=1500, resp_us=2500,
                                                       total_us=4000))
    state.record_result(real, Result.down("refused"), CheckTiming(problem="rst",
                                                                  total_us=3000))
    lines = run(ctx, "connstats")
    assert lines[0] == "Virtual:"
    assert lines[1] == ("v:0 vname=web vproto=tcp vaddr=10.1.1.2 vport=80 vfwmark=0 vrt=dr "
                        "vsched=wrr samples=20 total=0 savgconn=1ms savgresp=0ms savgtotal=1ms "
                        "connprob=0 arpprob=0 rstprob=1")
    assert lines[2:4] == ["", "Reals:"]
    head = ("vname=web vproto=tcp vaddr=10.1.1.2 vport=80 vfwmark=0 rname=h1 raddr=127.0.0.1 "
            "rport=80 total=2 ")
    assert lines[4] == f"r:0.0 real-stats {head}connprob=0 arpprob=0 rstprob=1"
    assert lines[5] == f"r:0.0 lstats_ms  {head}lastconn=-3ms lastresp=0ms lasttotal=3ms"
    assert lines[6] == f"r:0.0 lstats_us  {head}lastconn=-3000us lastresp=0us lasttotal=3000us"
    assert lines[8] == f"r:0.0 sstats_us  {head}savgconn=2250us savgresp=1250us savgtotal=3500us"
    assert lines[10] == f"r:0.0 tstats_us  {head}tavgconn=2250us tavgresp=1250us tavgtotal=3500us"
    assert lines[11] == ""
    # the empty virtual: no "-----"
    assert lines[-5:] == ["Virtual:", lines[-4], "", "Reals:", ""]
    assert lines[-4].startswith("v:3 vname=empty ")


def test_connstats_off(state: DaemonState) -> None:
    ctx = Context(state, MainConfig(gather_stats=False), process=lambda: FAKE_PROCESS)
    assert run(ctx, "connstats") == ["Gathering statistics is OFF"]


def test_help_lists_every_command_and_one_usage(ctx: Context) -> None:
    names = [line.split()[0] for line in run(ctx, "help")]
    assert names == ["vlist", "rlist", "rset", "stats", "connstats", "help", "reload"]
    assert run(ctx, "help rset")[0].startswith("rset vproto=tcp|udp|fwmark")
    assert run(ctx, "help command=rset") == run(ctx, "help rset")


def test_reload_requests_a_reload(ctx: Context) -> None:
    assert run(ctx, "reload") == ["Reload requested"]
    assert ctx.reloads == [1]  # type: ignore[attr-defined]
    ctx.request_reload = None
    assert run(ctx, "reload")[0].startswith("cmd_reload: reload is not available")


# --- framing and values -------------------------------------------------------------------

def test_line_reader_splits_and_keeps_partial_lines() -> None:
    reader = LineReader(16)
    assert reader.feed(b"vlist\r\nsta") == ["vlist"]
    assert reader.feed(b"ts\n\nhelp\n") == ["stats", "", "help"]
    assert reader.feed(b"\xff\xfe\n") == ["\ufffd\ufffd"]
    with pytest.raises(LineTooLong):
        reader.feed(b"x" * 17)
    with pytest.raises(LineTooLong):
        LineReader(16).feed(b"y" * 20 + b"\n")


def test_parse_weight() -> None:
    assert parse_weight("0") == WeightSpec(0)
    assert parse_weight("65535") == WeightSpec(65535)
    assert parse_weight("100%") == WeightSpec(100, True)
    for bad in ("", "-1", "+1", "1.5", "1e3", "100%%", "%5", " 5", "0x10"):
        with pytest.raises(ControlError):
            parse_weight(bad)
