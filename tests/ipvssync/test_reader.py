"""ipvsfull.cfg and diff lines: what the original C daemon wrote, what ours writes, what is
refused."""

from __future__ import annotations

from pathlib import Path

import pytest

from surealived.errors import ConfigErrors
from surealived.ipvssync.files import SyncPaths, load_wanted
from surealived.ipvssync.reader import (
    Change,
    Link,
    apply_change,
    parse_diff_line,
    parse_snapshot,
)
from surealived.ipvssync.table import (
    F_ONEPACKET,
    F_PERSISTENT,
    Dest,
    ServiceKey,
)

DATA = Path(__file__).parent / "data"
HEAD = "meta version=1.0 mdate=2024-01-15 mtime=10:00:00\n\nDIFF file=diffs/diff_sync.1\n\n"
ONET = ServiceKey("tcp", "192.168.0.1", 80)
WP = ServiceKey("tcp", "192.168.0.2", 80)


def refused(text: str) -> list[str]:
    with pytest.raises(ConfigErrors) as info:
        parse_snapshot(text, "/x/ipvsfull.cfg")
    return [str(e) for e in info.value.errors]


def test_original_daemon_snapshot_and_diff_chain_replay():
    """The reference's captured files: onet/sg went 10 -> 0 -> 10 -> 0 -> deleted -> 5,
    wp/sg was deleted and came back at 11; the chain link goes to the next (empty) diff."""
    wanted = load_wanted(SyncPaths.from_dir(str(DATA / "original")))
    table = wanted.table
    assert set(table.services) == {ONET, WP}
    onet = table.services[ONET]
    assert (onet.sched, onet.flags, onet.timeout, onet.netmask, onet.name) == (
        "wrr", 0, 0, 32, "onet")
    assert table.dests[ONET] == {("213.180.146.27", 80): Dest("213.180.146.27", 80, "dr", 5)}
    assert table.dests[WP] == {("212.77.100.101", 80): Dest("212.77.100.101", 80, "dr", 11)}
    assert wanted.replayed == 12
    # the snapshot names /var/lib/surealived/diffs/...: found in the folder's diffs/ instead
    assert wanted.tail.path.endswith("diffs/diff_sync.1705312861")


def test_original_variants_fwmark_udp_ops_thresholds_masq():
    wanted = load_wanted(SyncPaths.from_dir(str(DATA / "variants")))
    table = wanted.table
    fw = table.services[ServiceKey.for_fwmark(7)]
    assert fw.flags == F_PERSISTENT and fw.timeout == 300 and fw.sched == "wlc"
    assert table.dests[fw.key][("10.0.0.1", 80)] == Dest("10.0.0.1", 80, "dr", 5, 100, 10)
    assert table.dests[fw.key][("10.0.0.2", 8080)] == Dest("10.0.0.2", 8080, "masq", 0)
    dns = table.services[ServiceKey("udp", "192.168.0.9", 53)]
    assert dns.flags == F_ONEPACKET and dns.rt == "tun" and table.dests[dns.key] == {}


def test_ipv6_as_our_daemon_writes_it():
    text = HEAD + ("virtual vname=v6 vproto=tcp vaddr=2001:db8::1 vport=443 vrt=masq vsched=rr "
                   "vpers=60\nreal rname=a raddr=2001:DB8:0:0::10 rport=8443 rweight=3\n\n"
                   "virtual vname=f6 vproto=fwmark vaddr=:: vport=0 vrt=dr vsched=rr "
                   "vfwmark=9\n")
    snap = parse_snapshot(text, "/x/ipvsfull.cfg")
    key = ServiceKey("tcp", "2001:db8::1", 443, 0, 6)
    assert snap.table.services[key].netmask == 128
    assert snap.table.dests[key] == {("2001:db8::10", 8443): Dest("2001:db8::10", 8443, "masq",
                                                                   3)}
    assert ServiceKey.for_fwmark(9, 6) in snap.table.services


def test_virtual_without_reals_needs_no_empty_line_but_reals_do():
    ok = HEAD + "virtual vname=a vproto=tcp vaddr=10.0.0.1 vport=80 vrt=dr vsched=rr\n"
    assert len(parse_snapshot(ok, "/x/s").table.services) == 1
    cut = ok + "real rname=r raddr=10.0.0.2 rport=80 rweight=1\n"
    assert any("cut short" in e and ":6:" in e for e in refused(cut))


@pytest.mark.parametrize(("text", "expected"), [
    ("", "empty snapshot"),
    ("\n\n", "empty snapshot"),
    (HEAD + "virtual vname=a vproto=tcp vaddr=10.0.0.1 vport=80 vrt=dr vsched=rr",
     "/x/ipvsfull.cfg:5: last line has no newline"),
    ("meta version=1.0\n\nvirtual vname=a vproto=tcp vaddr=10.0.0.1 vport=80 vrt=dr "
     "vsched=rr\n", "no 'DIFF file=' line"),
    (HEAD + "real rname=r raddr=10.0.0.2 rport=80\n\n", ":5: real line before any virtual"),
    ("virtual vname=a vproto=tcp vaddr=10.0.0.1 vport=80 vrt=dr vsched=rr\n",
     ":1: expected the 'meta version=...' line first"),
    (HEAD + "virtual vname=a vproto=tcp vaddr=10.1 vport=80 vrt=dr vsched=rr\n",
     ":5: vaddr: vaddr=10.1 is not an IP address"),
    (HEAD + "virtual vname=a vproto=tcp vaddr=10.0.0.1 vport=80 vrt=dr vsched=rr\n"
     "real rname=r raddr=192.168.000.001 rport=80\n\n", ":6: raddr: raddr=192.168.000.001"),
    (HEAD + "virtual vname=a vproto=tcp vaddr=10.0.0.1 vport=99999 vrt=dr vsched=rr\n",
     "vport=99999 out of range (valid: 0..65535)"),
    (HEAD + "virtual vname=a vproto=sctp vaddr=10.0.0.1 vport=80 vrt=dr vsched=rr\n",
     "vproto=sctp is not a protocol (valid: tcp, udp, fwmark)"),
    (HEAD + "virtual vname=a vproto=tcp vaddr=10.0.0.1 vport=80 vrt=nat vsched=rr\n",
     "vrt=nat is not a forwarding method (valid: dr, masq, tun)"),
    (HEAD + "virtual vname=a vproto=fwmark vaddr=0.0.0.0 vport=0 vrt=dr vsched=rr\n",
     "missing vfwmark="),
    (HEAD + "garbage here\n", ":5: unknown line type 'garbage'"),
    (HEAD + "DIFF file=other\n\n", "a second DIFF line (the first is on line 3)"),
])
def test_refused_snapshots_name_file_and_line(text, expected):
    errors = refused(text)
    assert any(expected in e for e in errors), errors
    assert all(e.startswith("/x/ipvsfull.cfg:") for e in errors)


def test_every_error_is_reported_not_just_the_first():
    text = HEAD + ("virtual vname=a vproto=tcp vaddr=10.1 vport=80 vrt=dr vsched=rr\n"
                   "virtual vname=b vproto=tcp vaddr=10.0.0.2 vport=80 vrt=xx vsched=rr\n")
    assert len(refused(text)) == 2


def test_missing_diff_file_refuses_the_snapshot(tmp_path):
    (tmp_path / "ipvsfull.cfg").write_text(HEAD)
    with pytest.raises(ConfigErrors) as info:
        load_wanted(SyncPaths.from_dir(str(tmp_path)))
    assert "ipvsfull.cfg:3: file: DIFF names diffs/diff_sync.1, which does not exist" in str(
        info.value)


def test_lower_threshold_above_upper_is_dropped_with_a_warning():
    text = HEAD + ("virtual vname=a vproto=tcp vaddr=10.0.0.1 vport=80 vrt=dr vsched=rr\n"
                   "real rname=r raddr=10.0.0.2 rport=80 rweight=1 rl_thresh=10\n\n")
    snap = parse_snapshot(text, "/x/s")
    dest = snap.table.dests[ServiceKey("tcp", "10.0.0.1", 80)][("10.0.0.2", 80)]
    assert (dest.l_thresh, dest.u_thresh) == (0, 0)
    assert "/x/s:6: rl_thresh=10 is above ru_thresh=0" in snap.warnings[0]


def test_leading_blank_line_and_unknown_keys_are_fine():
    text = "\n" + HEAD + ("virtual vname=a vproto=tcp vaddr=10.0.0.1 vport=80 vrt=dr vsched=rr "
                          "vfuture=1\nreal rname=r raddr=10.0.0.2 rport=80 rnew=x\n\n")
    snap = parse_snapshot(text, "/x/s")
    assert snap.table.dests[ServiceKey("tcp", "10.0.0.1", 80)][("10.0.0.2", 80)].weight == 1


def _change(line: str) -> Change:
    parsed = parse_diff_line(line)
    assert isinstance(parsed, Change)
    return parsed


PREFIX = "vname=onet vproto=tcp vaddr=192.168.0.1 vport=80 vfwmark=0 vrt=dr vsched=wrr"


def test_diff_commands_on_a_table():
    snap = parse_snapshot(HEAD + f"virtual {PREFIX}\nreal rname=sg raddr=10.0.0.1 rport=80 "
                          "rweight=10\n\n", "/x/s")
    table = snap.table
    line = f"{PREFIX} rname=sg raddr=10.0.0.1 rport=80"
    assert apply_change(table, _change(f"cmd=addreal {line} rweight=0")) == "unchanged"
    assert apply_change(table, _change(f"cmd=chgreal {line} rweight=0")) == "changed"
    assert table.dests[ONET][("10.0.0.1", 80)].weight == 0  # quiesced, still there
    assert apply_change(table, _change(f"cmd=delreal {line} rweight=0")) == "removed"
    assert table.dests[ONET] == {}
    assert apply_change(table, _change(f"cmd=delreal {line} rweight=0")) == "absent"
    assert apply_change(table, _change(f"cmd=chgreal {line} rweight=4 rrt=masq")) == "added"
    assert table.dests[ONET][("10.0.0.1", 80)] == Dest("10.0.0.1", 80, "masq", 4)
    other = "cmd=addreal vproto=tcp vaddr=10.9.9.9 vport=80 vrt=dr raddr=10.0.0.1 rport=80"
    assert apply_change(table, _change(other)) == "unknown-virtual"


def test_diff_real_without_rrt_forwards_like_the_snapshot_virtual():
    snap = parse_snapshot(HEAD + f"virtual {PREFIX.replace('vrt=dr', 'vrt=tun')}\n", "/x/s")
    apply_change(snap.table, _change(f"cmd=addreal {PREFIX} raddr=10.0.0.5 rport=80 rweight=2"))
    assert snap.table.dests[ONET][("10.0.0.5", 80)].fwd == "tun"


@pytest.mark.parametrize(("line", "expected"), [
    ("cmd=frobreal vproto=tcp vaddr=1.2.3.4 vport=1 raddr=1.2.3.5 rport=1",
     "cmd=frobreal is not a diff command"),
    ("vproto=tcp vaddr=1.2.3.4 vport=1 raddr=1.2.3.5 rport=1", "missing cmd="),
    ("cmd=addreal vproto=tcp vaddr=1.2.3.4 vport=1 raddr=nope rport=1", "raddr=nope"),
    ("cmd=addreal vproto=tcp vaddr=1.2.3.4 vport=1 raddr=1.2.3.5", "missing rport="),
])
def test_bad_diff_lines(line, expected):
    with pytest.raises(ValueError, match=expected):
        parse_diff_line(line)


def test_diff_link():
    assert parse_diff_line("DIFF file=/var/lib/surealived/diffs/diff_sync.9") == Link(
        "/var/lib/surealived/diffs/diff_sync.9")
