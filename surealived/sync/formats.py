"""The original's ``ipvsfull.cfg`` and diff line formats, pure: state in, text out, and back.

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
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from ..engine.state import RealState, VirtualState
from ..model import VirtualConfig

DIFF_PREFIX = "diff_sync."
COMMANDS = ("addreal", "chgreal", "delreal")


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
        return f"cmd=delreal {payload}"
    return f"cmd=addreal {payload}cmd=chgreal {payload}"


# Reader side: strict parsing, used by the crash tests and available to ipvssync.

class FormatError(ValueError):
    """A snapshot or diff line that does not follow the format; ``line`` is 1-based."""

    def __init__(self, line: int, message: str) -> None:
        super().__init__(f"line {line}: {message}")
        self.line = line


@dataclass
class SnapVirtual:
    fields: dict[str, str]
    reals: list[dict[str, str]] = field(default_factory=list)


@dataclass
class Snapshot:
    meta: dict[str, str]
    diff_file: str
    virtuals: list[SnapVirtual]


def tokens(line: str) -> dict[str, str]:
    """``key=value`` tokens of one line (the leading keyword has no ``=`` and is skipped)."""
    result = {}
    for token in line.split():
        key, sep, value = token.partition("=")
        if sep and key and value:
            result[key] = value
    return result


_VIRTUAL_KEYS = ("vname", "vproto", "vaddr", "vport", "vrt", "vsched")
_REAL_KEYS = ("rname", "raddr", "rport", "rweight")
_DIFF_KEYS = ("cmd", "vproto", "vaddr", "vport", "vfwmark", "vrt", "vsched", "raddr", "rport",
              "rweight")


def _require(fields: dict[str, str], keys: Iterable[str], number: int, kind: str) -> None:
    missing = [k for k in keys if k not in fields]
    if missing:
        raise FormatError(number, f"{kind} line lacks {', '.join(missing)}")


def parse_snapshot(text: str) -> Snapshot:
    """Parse a whole ``ipvsfull.cfg``; raise ``FormatError`` on anything a writer of this format
    would not produce (a missing meta or DIFF line, a real before any virtual, a cut last line)."""
    if not text.endswith("\n"):
        raise FormatError(text.count("\n") + 1, "the file does not end with a newline")
    meta: dict[str, str] | None = None
    diff_file: str | None = None
    virtuals: list[SnapVirtual] = []
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line:
            continue
        if meta is None:
            if not line.startswith("meta "):
                raise FormatError(number, "the first line must be the meta line")
            meta = tokens(line)
            continue
        if line.startswith("DIFF "):
            if diff_file is not None or virtuals:
                raise FormatError(number, "the DIFF line must come once, before the virtuals")
            diff_file = tokens(line).get("file")
            if not diff_file:
                raise FormatError(number, "DIFF line without file=")
        elif line.startswith("virtual "):
            if diff_file is None:
                raise FormatError(number, "virtual line before the DIFF line")
            fields = tokens(line)
            _require(fields, _VIRTUAL_KEYS, number, "virtual")
            virtuals.append(SnapVirtual(fields))
        elif line.startswith("real "):
            if not virtuals:
                raise FormatError(number, "real line before any virtual line")
            fields = tokens(line)
            _require(fields, _REAL_KEYS, number, "real")
            virtuals[-1].reals.append(fields)
        else:
            raise FormatError(number, f"unknown line {line[:40]!r}")
    if meta is None or diff_file is None:
        raise FormatError(1, "no meta or no DIFF line")
    return Snapshot(meta, diff_file, virtuals)


@dataclass(frozen=True)
class DiffLine:
    """One parsed diff line: a change (``cmd`` set) or a chain link (``link`` set)."""

    cmd: str = ""
    fields: dict[str, str] = field(default_factory=dict)
    link: str = ""


def parse_diff_line(line: str, number: int = 1) -> DiffLine:
    text = line.strip()
    if text.startswith("DIFF "):
        target = tokens(text).get("file")
        if not target:
            raise FormatError(number, "DIFF line without file=")
        return DiffLine(link=target)
    fields = tokens(text)
    _require(fields, _DIFF_KEYS, number, "diff")
    if fields["cmd"] not in COMMANDS:
        raise FormatError(number, f"unknown cmd={fields['cmd']}")
    return DiffLine(cmd=fields["cmd"], fields=fields)


def parse_diff(text: str) -> Iterator[DiffLine]:
    """Every complete line of a diff file (a cut last line is not returned)."""
    lines = text.split("\n")
    for number, line in enumerate(lines[:-1], start=1):
        if line.strip():
            yield parse_diff_line(line, number)
