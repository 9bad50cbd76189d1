"""Round trip: what our daemon's writer (surealived.sync.formats) prints, ipvssync reads back as
the same table, IPv6 and fwmark included; and its diff lines move the table the same way."""

from __future__ import annotations

import time

from surealived.config.xml import parse_config_bytes
from surealived.engine.state import CheckTiming, DaemonState
from surealived.ipvssync.reader import Change, apply_change, parse_diff_line, parse_snapshot
from surealived.ipvssync.table import F_ONEPACKET, F_PERSISTENT, Dest, ServiceKey
from surealived.registry import load_testers
from surealived.sync.formats import diff_lines, snapshot_text
from surealived.tester_api import Result

XML = """<surealived>
  <virtual name="web" addr="192.0.2.1" port="80" proto="tcp" sched="wrr" rt="dr" pers="300">
    <tester proto="tcp" testport="80" init_state="up"/>
    <real name="a" addr="10.0.0.1" port="80" weight="10" uthresh="100" lthresh="10"/>
    <real name="b" addr="10.0.0.2" port="8080" weight="5" rt="masq"/>
  </virtual>
  <virtual name="dns" addr="2001:db8::53" port="53" proto="udp" sched="rr" rt="masq" ops="1">
    <tester proto="tcp" testport="53" remove_on_fail="1" init_state="up"/>
    <real name="c" addr="2001:db8::10" port="53" weight="1"/>
  </virtual>
  <virtual name="mark" proto="fwmark" fwmark="7" af="inet6" sched="sh" rt="tun">
    <tester proto="tcp" testport="80" init_state="up"/>
    <real name="d" addr="2001:db8::20" port="80" weight="2"/>
  </virtual>
  <virtual name="empty" addr="192.0.2.9" port="25" proto="tcp" sched="rr" rt="dr">
    <tester proto="tcp" testport="25" init_state="up"/>
  </virtual>
</surealived>
"""

WEB = ServiceKey("tcp", "192.0.2.1", 80)
DNS = ServiceKey("udp", "2001:db8::53", 53, 0, 6)
MARK = ServiceKey.for_fwmark(7, 6)


def test_our_writer_read_back_by_ipvssync():
    state = DaemonState(parse_config_bytes(XML.encode(), "/x/t.xml", load_testers()))
    text = snapshot_text(state.virtuals, "/var/lib/surealived/diffs/diff_sync.1", time.time())
    table = parse_snapshot(text, "/x/ipvsfull.cfg").table
    assert set(table.services) == {WEB, DNS, MARK, ServiceKey("tcp", "192.0.2.9", 25)}
    web = table.services[WEB]
    assert (web.sched, web.flags, web.timeout) == ("wrr", F_PERSISTENT, 300)
    assert table.dests[WEB] == {("10.0.0.1", 80): Dest("10.0.0.1", 80, "dr", 10, 100, 10),
                                ("10.0.0.2", 8080): Dest("10.0.0.2", 8080, "masq", 5)}
    assert table.services[DNS].flags == F_ONEPACKET
    assert table.dests[DNS] == {("2001:db8::10", 53): Dest("2001:db8::10", 53, "masq", 1)}
    assert table.services[MARK].sched == "sh"
    assert table.dests[MARK] == {("2001:db8::20", 80): Dest("2001:db8::20", 80, "tun", 2)}

    # a failing real: weight 0 where remove_on_fail=0, removed where remove_on_fail=1
    for vstate in state.virtuals:
        for real in vstate.reals:
            if real.config.name in ("a", "c"):
                for _ in range(3):
                    state.record_result(real, Result.down("refused"),
                                        CheckTiming(started=time.time()))
                for line in diff_lines(real).splitlines():
                    change = parse_diff_line(line)
                    assert isinstance(change, Change)
                    apply_change(table, change)
    assert table.dests[WEB][("10.0.0.1", 80)].weight == 0
    assert table.dests[DNS] == {}
    again = parse_snapshot(snapshot_text(state.virtuals, "/d/diff_sync.2", time.time()),
                           "/x/ipvsfull.cfg").table
    assert again == table
