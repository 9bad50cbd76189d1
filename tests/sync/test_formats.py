"""ipvsfull.cfg and diff lines, byte for byte as the original wrote them (reference sections
1.4 and 3.2), and every rule deciding which reals are written with which weight. What is written
is read back with ipvssync's reader, the one production runs."""

from __future__ import annotations

import dataclasses

import pytest

from surealived.engine.weights import WeightSpec
from surealived.errors import ConfigErrors
from surealived.ipvssync.reader import Change, Link, fields_of, parse_snapshot
from surealived.ipvssync.table import ServiceKey
from surealived.sync.formats import (
    diff_lines,
    diff_link,
    diff_path,
    snapshot_body,
    snapshot_text,
    virtual_line,
)

from .helpers import ONETWP, check, read_diff, reals_by_virtual, state_of, virtual_names

EPOCH = 1705312800  # 2024-01-15 10:00:00 UTC
DIFF = "/var/lib/surealived/diffs/diff_sync.1705312800"

ONETWP_SNAPSHOT = """\
meta version=1.0 mdate=2024-01-15 mtime=10:00:00

DIFF file=/var/lib/surealived/diffs/diff_sync.1705312800

virtual vname=onet vproto=tcp vaddr=192.168.0.1 vport=80 vrt=dr vsched=wrr
real rname=sg raddr=213.180.146.27 rport=80 rweight=10

virtual vname=wp vproto=tcp vaddr=192.168.0.2 vport=80 vrt=dr vsched=wrr
real rname=sg raddr=212.77.100.101 rport=80 rweight=11

"""


def test_onetwp_snapshot_is_byte_exact(utc):
    state = state_of(ONETWP)
    assert snapshot_text(state.virtuals, DIFF, EPOCH) == ONETWP_SNAPSHOT
    assert diff_path("/var/lib/surealived/diffs", EPOCH) == DIFF


def test_failed_reals_weight_zero_or_absent(utc):
    state = state_of(ONETWP)
    for real in state.reals():
        check(state, real, False)
    text = snapshot_text(state.virtuals, DIFF, EPOCH)
    assert "real rname=sg raddr=213.180.146.27 rport=80 rweight=0\n" in text
    assert "212.77.100.101" not in text  # wp: remove_on_fail
    assert text.endswith("virtual vname=wp vproto=tcp vaddr=192.168.0.2 vport=80 vrt=dr "
                         "vsched=wrr\n\n")


VARIANTS_XML = """<surealived>
  <virtual name="fw" proto="fwmark" fwmark="7" sched="wlc" rt="dr" pers="300">
    <tester proto="tcp" testport="80"/>
    <real name="r1" addr="10.0.0.1" port="80" weight="5" lthresh="10" uthresh="100"/>
    <real name="r2" addr="10.0.0.2" port="8080" weight="0" rt="masq"/>
  </virtual>
  <virtual name="dns" addr="192.168.0.9" port="53" proto="udp" sched="rr" rt="tun" ops="1">
    <tester proto="tcp" testport="53"/>
  </virtual>
  <virtual name="tcpops" addr="10.0.0.10" port="80" proto="tcp" sched="rr" rt="dr">
    <tester proto="tcp" testport="80"/>
    <real name="x" addr="10.0.0.3" port="80" weight="1"/>
  </virtual>
</surealived>
"""

# Reference 1.4 "other variants" (the original kept vaddr as typed, "10.1"; ours is canonical).
VARIANTS_BODY = """\
virtual vname=fw vproto=fwmark vaddr=0.0.0.0 vport=0 vrt=dr vsched=wlc vpers=300 vfwmark=7
real rname=r1 raddr=10.0.0.1 rport=80 rweight=5 rl_thresh=10 ru_thresh=100
real rname=r2 raddr=10.0.0.2 rport=8080 rweight=0 rrt=masq

virtual vname=dns vproto=udp vaddr=192.168.0.9 vport=53 vrt=tun vsched=rr vops=1
virtual vname=tcpops vproto=tcp vaddr=10.0.0.10 vport=80 vrt=dr vsched=rr
real rname=x raddr=10.0.0.3 rport=80 rweight=1

"""


def test_variants_fwmark_pers_thresholds_rrt_ops_and_empty_virtual():
    state = state_of(VARIANTS_XML)
    assert snapshot_body(state.virtuals) == VARIANTS_BODY
    # vops=1 only for udp, even if a tcp virtual somehow carried ops (the XML refuses it).
    tcp = dataclasses.replace(state.virtuals[2].config, ops=True)
    assert virtual_line(tcp) == ("virtual vname=tcpops vproto=tcp vaddr=10.0.0.10 vport=80 "
                                 "vrt=dr vsched=rr")


def test_ipv6_written_plainly_and_parsed_back(utc):
    state = state_of("""<surealived>
      <virtual name="v6" addr="2001:db8::1" port="443" proto="tcp" sched="wrr" rt="dr">
        <tester proto="tcp" testport="443"/>
        <real name="a" addr="2001:db8::a" port="443" weight="3"/>
      </virtual></surealived>""")
    text = snapshot_text(state.virtuals, DIFF, EPOCH)
    assert ("virtual vname=v6 vproto=tcp vaddr=2001:db8::1 vport=443 vrt=dr vsched=wrr\n"
            "real rname=a raddr=2001:db8::a rport=443 rweight=3\n") in text
    snap = parse_snapshot(text, "/x/ipvsfull.cfg")
    key = ServiceKey("tcp", "2001:db8::1", 443, 0, 6)
    assert list(snap.table.services) == [key]
    assert [(d.addr, d.port, d.weight) for d in snap.table.dests[key].values()] == [
        ("2001:db8::a", 443, 3)]
    real = next(state.reals())
    assert diff_lines(real).startswith(
        "cmd=addreal vname=v6 vproto=tcp vaddr=2001:db8::1 vport=443 vfwmark=0 vrt=dr "
        "vsched=wrr rname=a raddr=2001:db8::a rport=443 rweight=3\n")


def _prefix(v: str) -> str:
    if v == "onet":
        return "vname=onet vproto=tcp vaddr=192.168.0.1 vport=80 vfwmark=0 vrt=dr vsched=wrr"
    return "vname=wp vproto=tcp vaddr=192.168.0.2 vport=80 vfwmark=0 vrt=dr vsched=wrr"


def test_captured_diff_sequence_is_byte_exact():
    """Reference 3.2: onet/sg fails, wp/sg fails, wp/sg back, onet/sg back, then rset onet/sg
    OFFLINE, DOWN, ONLINE with rweight=50%, then the next snapshot's link."""
    state = state_of(ONETWP)
    onet, wp = (v.reals[0] for v in state.virtuals)
    out = []
    for real, ok in ((onet, False), (wp, False), (wp, True), (onet, True)):
        assert check(state, real, ok)
        out.append(diff_lines(real))
    for rstate, override in (("OFFLINE", None), ("DOWN", None), ("ONLINE", WeightSpec(50, True))):
        state.set_admin(onet, rstate=rstate, override=override)
        out.append(diff_lines(onet))
    out.append(diff_link("/var/lib/surealived/diffs/diff_sync.1705312861"))
    o = _prefix("onet") + " rname=sg raddr=213.180.146.27 rport=80"
    w = _prefix("wp") + " rname=sg raddr=212.77.100.101 rport=80"
    expected = (
        f"cmd=addreal {o} rweight=0\ncmd=chgreal {o} rweight=0\n"
        f"cmd=delreal {w} rweight=0\n"
        f"cmd=addreal {w} rweight=11\ncmd=chgreal {w} rweight=11\n"
        f"cmd=addreal {o} rweight=10\ncmd=chgreal {o} rweight=10\n"
        f"cmd=addreal {o} rweight=0\ncmd=chgreal {o} rweight=0\n"
        f"cmd=delreal {o} rweight=0\n"
        f"cmd=addreal {o} rweight=5\ncmd=chgreal {o} rweight=5\n"
        "DIFF file=/var/lib/surealived/diffs/diff_sync.1705312861\n")
    assert "".join(out) == expected
    parsed = read_diff(expected)
    changes = [p for p in parsed if isinstance(p, Change)]
    assert [(p.cmd, p.key.addr, p.dest.weight) for p in changes[:3]] == [
        ("addreal", "192.168.0.1", 0), ("chgreal", "192.168.0.1", 0),
        ("delreal", "192.168.0.2", 0)]
    assert [p.dest.weight for p in changes[-2:]] == [5, 5]
    assert parsed[-1] == Link("/var/lib/surealived/diffs/diff_sync.1705312861")


RULES_XML = """<surealived>
  <virtual name="keep" addr="10.1.0.1" port="80" proto="tcp" sched="wrr" rt="dr">
    <tester proto="tcp" testport="80"/>
    <real name="a" addr="10.0.0.1" port="80" weight="20"/>
  </virtual>
  <virtual name="rof" addr="10.1.0.2" port="80" proto="tcp" sched="wrr" rt="dr">
    <tester proto="tcp" testport="80" remove_on_fail="1"/>
    <real name="a" addr="10.0.0.1" port="80" weight="20"/>
  </virtual>
</surealived>
"""


@pytest.mark.parametrize(("vname", "ok", "rstate", "override", "present", "weight"), [
    ("keep", True, "ONLINE", None, True, 20),
    ("keep", False, "ONLINE", None, True, 0),  # failed, remove_on_fail=0: quiesced
    ("rof", False, "ONLINE", None, False, 0),  # failed, remove_on_fail=1: removed
    ("rof", True, "OFFLINE", None, True, 0),  # OFFLINE but tested up: weight 0 even with rof
    ("keep", False, "OFFLINE", None, True, 0),
    ("rof", False, "OFFLINE", None, False, 0),
    ("keep", True, "DOWN", None, False, 0),  # DOWN: always removed
    ("rof", True, "DOWN", None, False, 0),
    ("keep", True, "ONLINE", WeightSpec(7), True, 7),
    ("keep", True, "ONLINE", WeightSpec(50, True), True, 10),
    ("keep", True, "ONLINE", WeightSpec(1, True), True, 1),  # percent is at least 1
    ("keep", True, "ONLINE", WeightSpec(0), True, 0),  # rweight=0 drains (original: ignored)
    ("keep", False, "ONLINE", WeightSpec(7), True, 0),
])
def test_presence_and_weight_rules(vname, ok, rstate, override, present, weight):
    state = state_of(RULES_XML)
    real = state.by_key[(f"10.1.0.{1 if vname == 'keep' else 2}", 80, "tcp", 0)].reals[0]
    check(state, real, ok)
    state.set_admin(real, rstate=rstate, override=override)
    body = snapshot_body([real.virtual])
    line = "real rname=a raddr=10.0.0.1 rport=80 rweight="
    if present:
        assert f"{line}{weight}\n" in body
        assert diff_lines(real).count(f"rweight={weight}\n") == 2
        assert diff_lines(real).startswith("cmd=addreal ")
    else:
        assert line not in body
        assert diff_lines(real).startswith("cmd=delreal ")
        assert diff_lines(real).endswith(" rweight=0\n")


def test_the_reader_takes_what_the_writer_wrote_and_rejects_incomplete_snapshots():
    good = ONETWP_SNAPSHOT
    snap = parse_snapshot(good, "/x/ipvsfull.cfg")
    assert virtual_names(snap) == ["onet", "wp"]
    assert {v: [(d.name, d.addr, d.weight) for d in ds]
            for v, ds in reals_by_virtual(snap).items()} == {
        "onet": [("sg", "213.180.146.27", 10)], "wp": [("sg", "212.77.100.101", 11)]}
    assert snap.diff_file == DIFF
    for bad in (good[:-1].rstrip("\n") + "\nreal rname=x", "", good + "real rname=x\n",
                good.replace("DIFF file=", "DIFF nofile="), good.replace("meta", "mota")):
        with pytest.raises(ConfigErrors):
            parse_snapshot(bad, "/x/ipvsfull.cfg")
    with pytest.raises(ConfigErrors):
        parse_snapshot("meta version=1.0\n\nDIFF file=/x\n\nreal rname=a raddr=1.2.3.4 "
                       "rport=1 rweight=1\n", "/x/ipvsfull.cfg")


def test_every_written_value_survives_the_readers_tokenizer():
    """Each ``key=value`` the writer puts on a line is read back as written by ``fields_of``
    (no blank or second ``=`` inside a value), for every variant of virtual and real."""
    state = state_of(VARIANTS_XML)
    for real in state.reals():
        for line in diff_lines(real).splitlines():
            tokens = dict(t.split("=", 1) for t in line.split())
            assert fields_of(line) == tokens
    for line in snapshot_body(state.virtuals).splitlines():
        if line:
            tokens = dict(t.split("=", 1) for t in line.split()[1:])
            assert fields_of(line) == tokens
