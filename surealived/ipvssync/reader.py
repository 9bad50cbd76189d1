"""Reading ``ipvsfull.cfg`` and diff lines into the wanted table: pure, text in, table out.

Reads what the original C surealived wrote (IPv4, ``vaddr=0.0.0.0 vport=0`` for fwmark
services) and what ours writes (also IPv6, as plain ``vaddr=2001:db8::1``). The line syntax is
the original's: the first word says the line type, then ``key=value`` tokens in any order;
tokens without ``=`` are ignored, unknown keys are ignored (so newer writers may add keys).

Unlike the original ipvssync, which applied whatever it could read, a snapshot is taken whole
or not at all: an empty file, a file cut short (a last line without its newline, a virtual's
reals without the empty line that always follows them), a missing ``meta`` or ``DIFF`` line, a
``real`` before any ``virtual``, an unknown line, or a value that is not valid (an address such
as ``10.1`` that the original silently turned into 0.0.0.0, a port out of range, an unknown
forwarding method) makes ``parse_snapshot`` raise ``ConfigErrors`` naming file and line, and the
caller keeps the table it last applied.

A diff line is one change of one real (``cmd=addreal|chgreal|delreal`` plus the virtual's key
and the real) or the chain link ``DIFF file=<next diff>``. ``apply_change`` replays a change on
a table: ``addreal`` adds a missing real (and leaves an existing one to the ``chgreal`` that
follows it), ``chgreal`` sets the real (adding it if missing), ``delreal`` removes it. A weight of
0 is a real that stays in the table, quiesced; only ``delreal`` or absence removes a real.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from ..errors import ConfigError, ConfigErrors
from .table import (
    ROUTES,
    Dest,
    ServiceKey,
    Table,
    canonical_addr,
    make_service,
)

COMMANDS = ("addreal", "chgreal", "delreal")  # the writer (sync/formats.py) names them from here
_SCHED_RE = re.compile(r"^[a-z0-9_]{1,15}$")
_LINE_TYPES = "meta, DIFF, virtual and real lines"


class _Bad(Exception):
    """A bad value on one line; turned into a ConfigError with file and line by the caller."""

    def __init__(self, message: str, valid: str | None = None, attribute: str | None = None):
        super().__init__(message)
        self.message = message
        self.valid = valid
        self.attribute = attribute


def fields_of(line: str) -> dict[str, str]:
    """``key=value`` tokens of a line (split on blanks; the value ends at a second ``=``, as the
    original's tokenizer; later duplicates win)."""
    out: dict[str, str] = {}
    for token in line.split():
        key, sep, value = token.partition("=")
        value = value.split("=", 1)[0]
        if sep and key and value:
            out[key] = value
    return out


def _int(fields: dict[str, str], key: str, low: int, high: int,
         default: int | None = None) -> int:
    text = fields.get(key)
    if text is None:
        if default is None:
            raise _Bad(f"missing {key}=", f"an integer {low}..{high}", key)
        return default
    try:
        value = int(text, 10)
    except ValueError:
        raise _Bad(f"{key}={text} is not an integer", f"{low}..{high}", key) from None
    if not low <= value <= high:
        raise _Bad(f"{key}={text} out of range", f"{low}..{high}", key)
    return value


def _addr(fields: dict[str, str], key: str) -> tuple[str, int]:
    text = fields.get(key)
    if text is None:
        raise _Bad(f"missing {key}=", "an IPv4 or IPv6 address", key)
    try:
        return canonical_addr(text)
    except ValueError:
        raise _Bad(f"{key}={text} is not an IP address",
                   "an IPv4 address such as 192.0.2.1 or an IPv6 address such as 2001:db8::1",
                   key) from None


def _route(fields: dict[str, str], key: str, default: str | None = None) -> str:
    text = fields.get(key, default)
    if text is None:
        raise _Bad(f"missing {key}=", ", ".join(ROUTES), key)
    if text not in ROUTES:
        raise _Bad(f"{key}={text} is not a forwarding method", ", ".join(ROUTES), key)
    return text


def service_key(fields: dict[str, str]) -> ServiceKey:
    """The kernel key named by a ``virtual`` line or a diff line."""
    proto = fields.get("vproto")
    if proto not in ("tcp", "udp", "fwmark"):
        raise _Bad(f"vproto={proto} is not a protocol" if proto else "missing vproto=",
                   "tcp, udp, fwmark", "vproto")
    if proto == "fwmark":
        # The original wrote vaddr=0.0.0.0 vport=0 for these; the address only gives the family.
        af = 4
        if "vaddr" in fields:
            af = _addr(fields, "vaddr")[1]
        if fields.get("vaf") in ("inet6", "6", "ipv6"):
            af = 6
        # The original ipvssync silently used fwmark 300 when vfwmark was missing.
        return ServiceKey.for_fwmark(_int(fields, "vfwmark", 1, 2**32 - 1), af)
    addr, af = _addr(fields, "vaddr")
    return ServiceKey(proto, addr, _int(fields, "vport", 0, 65535), 0, af)


def parse_virtual(fields: dict[str, str]) -> tuple[ServiceKey, str, int, bool, str]:
    """``(key, sched, persistence seconds, one-packet, default forwarding)``."""
    key = service_key(fields)
    rt = _route(fields, "vrt")
    sched = fields.get("vsched")
    if sched is None or not _SCHED_RE.match(sched):
        raise _Bad(f"vsched={sched} is not a scheduler name" if sched else "missing vsched=",
                   "1..15 of a-z 0-9 _ (rr, wrr, lc, wlc, sh, dh, sed, nq, mh, fo, ovf, ...)",
                   "vsched")
    pers = _int(fields, "vpers", 0, 2**31 - 1, 0)
    ops = "vops" in fields and fields["vops"] != "0"
    return key, sched, pers, ops, rt


def parse_real(fields: dict[str, str], default_rt: str, warnings: list[str],
               where: str) -> Dest:
    addr, _af = _addr(fields, "raddr")
    port = _int(fields, "rport", 0, 65535)
    weight = _int(fields, "rweight", 0, 2**31 - 1, 1)  # the original's default when absent
    low = _int(fields, "rl_thresh", 0, 2**32 - 1, 0)
    high = _int(fields, "ru_thresh", 0, 2**32 - 1, 0)
    if low > high:
        # The kernel refuses l > u (ERANGE) and the original kept failing silently; an XML real
        # with only lthresh would never be added. Add it without the lower threshold instead.
        warnings.append(f"{where}: rl_thresh={low} is above ru_thresh={high}: the kernel "
                        "refuses that, the lower threshold is ignored")
        low = 0
    return Dest(addr, port, _route(fields, "rrt", default_rt), weight, high, low,
                fields.get("rname", ""))


@dataclass
class Snapshot:
    """A parsed ``ipvsfull.cfg``: the wanted table and the diff file it names."""

    path: str
    table: Table
    diff_file: str
    diff_line: int
    meta: dict[str, str] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)


def parse_snapshot(text: str, path: str) -> Snapshot:
    """Parse a whole snapshot; raise ``ConfigErrors`` listing every problem found."""
    errors: list[ConfigError] = []
    warnings: list[str] = []
    table = Table()

    def error(line: int, message: str, valid: str | None = None,
              attribute: str | None = None) -> None:
        errors.append(ConfigError(path, line, message, attribute=attribute, valid=valid))

    lines = text.split("\n")
    if text.endswith("\n"):
        lines.pop()  # what follows the last newline is not a line
    if not text.strip():
        error(1, "empty snapshot: surealived writes at least a meta and a DIFF line")
        raise ConfigErrors(errors)
    if not text.endswith("\n"):
        error(len(lines), "last line has no newline: the file was cut short while being written")
    meta: dict[str, str] = {}
    seen_meta = False
    diff_file = ""
    diff_line = 0
    current: ServiceKey | None = None
    current_rt = "dr"
    current_bad = False
    last_kind = ""
    last_number = 0
    for number, raw in enumerate(lines, start=1):
        line = raw.strip()
        if not line:
            last_kind = "blank" if last_kind else ""
            continue
        kind = line.split(None, 1)[0]
        if not seen_meta and kind != "meta":
            error(number, f"expected the 'meta version=...' line first, found {kind!r}",
                  "a snapshot written by surealived")
            raise ConfigErrors(errors)
        fields = fields_of(line)
        try:
            if kind == "meta":
                if seen_meta:
                    raise _Bad("a second meta line")
                seen_meta = True
                meta = fields
            elif kind == "DIFF":
                if diff_file:
                    raise _Bad(f"a second DIFF line (the first is on line {diff_line})")
                diff_file = fields.get("file", "")
                diff_line = number
                if not diff_file:
                    raise _Bad("DIFF line without file=", "DIFF file=<path of the diff>", "file")
            elif kind == "virtual":
                current_bad = True
                key, sched, pers, ops, rt = parse_virtual(fields)
                name = fields.get("vname", "")
                if key in table.services:
                    warnings.append(f"{path}:{number}: virtual {key.text} appears twice; the "
                                    "later settings win and the reals are merged")
                table.add_service(make_service(key, sched, pers, ops, name=name, rt=rt))
                current, current_rt, current_bad = key, rt, False
            elif kind == "real":
                if current is None:
                    if current_bad:
                        continue  # its virtual line was already reported
                    raise _Bad("real line before any virtual line")
                if current_bad:
                    continue
                dest = parse_real(fields, current_rt, warnings, f"{path}:{number}")
                if dest.key in table.dests[current]:
                    warnings.append(f"{path}:{number}: real {dest.label} appears twice in "
                                    f"{current.text}; the later line wins")
                table.set_dest(current, dest)
            else:
                raise _Bad(f"unknown line type {kind!r}", _LINE_TYPES)
        except _Bad as bad:
            error(number, bad.message, bad.valid, bad.attribute)
        last_kind, last_number = kind, number
    if last_kind == "real":
        error(last_number, "the last real is not followed by the empty line surealived writes "
                           "after a virtual's reals: the file was cut short")
    if not diff_file:
        error(len(lines), "no 'DIFF file=' line: cannot know which diff follows this snapshot")
    if errors:
        raise ConfigErrors(errors)
    return Snapshot(path, table, diff_file, diff_line, meta, warnings)


@dataclass(frozen=True)
class Change:
    """One ``cmd=addreal|chgreal|delreal`` diff line."""

    cmd: str
    key: ServiceKey
    dest: Dest  # forwarding from rrt, or the virtual's vrt of the diff line
    rrt_given: bool
    vname: str = ""

    @property
    def label(self) -> str:
        who = f"{self.vname}/{self.dest.name}" if self.vname or self.dest.name else ""
        return (f"{self.cmd} {self.key.text} > {self.dest.label}"
                + (f" [{who}]" if who else "") + f" weight={self.dest.weight}")


@dataclass(frozen=True)
class Link:
    """``DIFF file=<path>``: the diff continues in the named file."""

    path: str


def parse_diff_line(line: str) -> Change | Link:
    """Parse one complete diff line; raises ``ValueError`` with a message naming the key."""
    text = line.strip()
    fields = fields_of(text)
    try:
        if text.split(None, 1)[0:1] == ["DIFF"]:
            if not fields.get("file"):
                raise _Bad("DIFF line without file=", "DIFF file=<path>", "file")
            return Link(fields["file"])
        cmd = fields.get("cmd")
        if cmd not in COMMANDS:
            raise _Bad(f"cmd={cmd} is not a diff command" if cmd else "missing cmd=",
                       ", ".join(COMMANDS), "cmd")
        key = service_key(fields)
        vrt = _route(fields, "vrt", "dr")
        warnings: list[str] = []
        dest = parse_real(fields, vrt, warnings, "diff")
    except _Bad as bad:
        message = bad.message + (f" (valid: {bad.valid})" if bad.valid else "")
        raise ValueError(message) from None
    return Change(cmd, key, dest, "rrt" in fields, fields.get("vname", ""))


def apply_change(table: Table, change: Change) -> str:
    """Replay a diff change on ``table``; returns what happened:
    ``added``, ``changed``, ``removed``, ``unchanged``, ``absent`` (delreal of a real not in
    the table) or ``unknown-virtual`` (a diff never creates a virtual)."""
    service = table.services.get(change.key)
    if service is None:
        return "unknown-virtual"
    dest = change.dest
    if not change.rrt_given and dest.fwd != service.rt:
        # As the original: a real without rrt forwards like its virtual in the snapshot.
        dest = Dest(dest.addr, dest.port, service.rt, dest.weight, dest.u_thresh,
                    dest.l_thresh, dest.name)
    dests = table.dests[change.key]
    old = dests.get(dest.key)
    if change.cmd == "delreal":
        if old is None:
            return "absent"
        del dests[dest.key]
        return "removed"
    if old is None:
        dests[dest.key] = dest
        return "added"
    if change.cmd == "addreal" or old == dest:
        return "unchanged"
    dests[dest.key] = dest
    return "changed"
