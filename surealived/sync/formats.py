"""The original's ``ipvsfull.cfg`` and diff line formats, writer half, pure: state in, text out.

Snapshot (``ipvsfull.cfg``)::

    meta version=1.0 mdate=2024-01-15 mtime=10:00:00
    <empty>
    DIFF file=/var/lib/surealived/diffs/diff_sync.1705312800
    <empty>
    virtual vname=onet vproto=tcp vaddr=192.168.0.1 vport=80 vrt=dr vsched=wrr
    real rname=sg raddr=213.180.146.27 rport=80 rweight=10
    <empty>            (only after a virtual that has reals in the XML)

Diff line (one change of one real, appended to the current diff file)::

    cmd=addreal vname=... vproto=... vaddr=... vport=... vfwmark=... vrt=... vsched=...
        rname=... raddr=... rport=... rweight=...[ rl_thresh=..][ ru_thresh=..][ rrt=..]

A real absent from IPVS (rstate DOWN, or failing with ``remove_on_fail``) is omitted from the
snapshot and gets ``delreal``; any other real is written with its effective weight and gets
``addreal`` then ``chgreal`` (so the line is idempotent). The weight and presence rules are the
engine's (``RealState.weight`` / ``RealState.in_table``); this module only prints them.

IPv6 addresses are written as they are (``vaddr=2001:db8::1``): every field is a ``key=value``
token, so the colons are unambiguous. The original ipvssync parses addresses as IPv4 only and
cannot use such lines; ours can.

The one reader of these files is ipvssync's (``ipvssync/reader.py`` and ``ipvssync/files.py``),
the one production runs; the tests check this writer against it. The line keywords (``COMMANDS``)
and the diff file names (``DIFF_PREFIX``) come from there, so the two sides cannot drift.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable

from ..config.model import VirtualConfig
from ..engine.state import RealState, VirtualState
from ..ipvssync.files import DIFF_PREFIX
from ..ipvssync.reader import COMMANDS

ADD, CHANGE, DELETE = COMMANDS


def meta_line(when: float) -> str:
    """``meta version=1.0 mdate=%F mtime=%T`` in local time, as the original."""
    t = time.localtime(when)
    return f"meta version=1.0 {time.strftime('mdate=%Y-%m-%d mtime=%H:%M:%S', t)}"


def diff_link(path: str) -> str:
    """The chain link line: at the top of a snapshot, and the last line of a closed diff."""
    return f"DIFF file={path}\n"


def diff_path(diff_dir: str, epoch: int, serial: int = 0) -> str:
    """``<dir>/diff_sync.<epoch>``; a second file in the same second gets ``.<serial>``, which
    still sorts after the first and before the next second (ipvssync cleans up by name)."""
    name = f"{DIFF_PREFIX}{epoch}" if serial == 0 else f"{DIFF_PREFIX}{epoch}.{serial}"
    return os.path.join(diff_dir, name)


def virtual_line(v: VirtualConfig) -> str:
    line = (f"virtual vname={v.name} vproto={v.proto} vaddr={v.addr} vport={v.port} "
            f"vrt={v.rt} vsched={v.sched}")
    if v.pers:
        line += f" vpers={v.pers}"
    if v.fwmark:
        line += f" vfwmark={v.fwmark}"
    if v.ops and v.proto == "udp":
        line += " vops=1"
    return line


def real_fields(real: RealState) -> str:
    """``rname=.. raddr=.. rport=.. rweight=..`` plus thresholds and a per-real ``rrt``."""
    r = real.config
    text = f"rname={r.name} raddr={r.addr} rport={r.port} rweight={real.weight}"
    if r.lthresh > 0:
        text += f" rl_thresh={r.lthresh}"
    if r.uthresh > 0:
        text += f" ru_thresh={r.uthresh}"
    if r.rt != real.virtual.config.rt:
        text += f" rrt={r.rt}"
    return text


def snapshot_header(diff_file: str, when: float) -> str:
    """The meta and DIFF lines, each followed by an empty line."""
    return f"{meta_line(when)}\n\n{diff_link(diff_file)}\n"


def snapshot_body(virtuals: Iterable[VirtualState]) -> str:
    """The virtual and real lines, in XML order."""
    out: list[str] = []
    for vstate in virtuals:
        out += [virtual_line(vstate.config), "\n"]
        for real in vstate.reals:
            if real.in_table:
                out += ["real ", real_fields(real), "\n"]
        if vstate.config.reals:
            out.append("\n")
    return "".join(out)


def snapshot_text(virtuals: Iterable[VirtualState], diff_file: str, when: float) -> str:
    """The whole ``ipvsfull.cfg``, byte for byte as the original wrote it."""
    return snapshot_header(diff_file, when) + snapshot_body(virtuals)


def real_entry(real: RealState) -> tuple[bool, str]:
    """What the files say about one real: present?, and its fields. Two equal entries need no
    new diff line."""
    return real.in_table, real_fields(real)


def diff_lines(real: RealState) -> str:
    """The diff text for one real's current state: ``delreal``, or ``addreal`` + ``chgreal``."""
    v = real.virtual.config
    prefix = (f"vname={v.name} vproto={v.proto} vaddr={v.addr} vport={v.port} "
              f"vfwmark={v.fwmark} vrt={v.rt} vsched={v.sched}")
    payload = f"{prefix} {real_fields(real)}\n"
    if not real.in_table:
        return f"cmd={DELETE} {payload}"
    return f"cmd={ADD} {payload}cmd={CHANGE} {payload}"
