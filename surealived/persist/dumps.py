"""The four dump files' line formats, pure: entries in, text out, and back.

Keys are the original's: ``VADDR:VPORT:PROTO:FWMARK`` with the protocol as a number (0 tcp,
1 udp, 2 fwmark; fwmark virtuals have address 0.0.0.0 and port 0) and ``RADDR:RPORT``. IPv6
addresses are bracketed (``[2001:db8::1]:80:0:0``), so the last colons still split the fields.

- override.dump: ``VKEY - RKEY - weight=50% rstate=OFFLINE`` or
  ``VKEY - RKEY - weight=3  rstate=DOWN`` (an absolute weight is followed by two spaces, as
  the original's ``"weight=%u "`` printed it).
  ``weight=0`` is a drain (the original read it as "no override").
- offline.dump: ``VKEY - RKEY``, one line per real whose test state is offline.
- stats.dump: a ``vstats`` line per virtual, an ``rstats`` line per real, an empty line.
- notify.dump: ``vnotify VKEY - state=UP|DOWN|UNKNOWN``.

Parsers return the good entries and a list of ``(line, message)`` for the bad ones, so a damaged
line costs that line only (the original stopped reading at the first bad line).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass

from ..config.model import PROTO_NUMBER, host_port

PROTO_NAME = {n: name for name, n in PROTO_NUMBER.items()}
NOTIFY_STATES = ("UP", "DOWN", "UNKNOWN")
RSTATES = ("ONLINE", "OFFLINE", "DOWN")

Problems = list[tuple[int, str]]


@dataclass(frozen=True, slots=True)
class VKey:
    """A virtual's identity as the dumps write it."""

    addr: str
    port: int
    proto: str  # tcp | udp | fwmark
    fwmark: int = 0

    def __str__(self) -> str:
        return f"{host_port(self.addr, self.port)}:{PROTO_NUMBER[self.proto]}:{self.fwmark}"


@dataclass(frozen=True, slots=True)
class RKey:
    addr: str
    port: int

    def __str__(self) -> str:
        return host_port(self.addr, self.port)


def _addr(text: str) -> str:
    if text.startswith("[") and text.endswith("]"):
        text = text[1:-1]
    return ipaddress.ip_address(text).compressed


def _port(text: str) -> int:
    value = int(text)
    if not 0 <= value <= 65535:
        raise ValueError(f"port {value} is out of range")
    return value


def parse_vkey(text: str) -> VKey:
    parts = text.rsplit(":", 3)
    if len(parts) != 4:
        raise ValueError(f"{text!r} is not VADDR:VPORT:PROTO:FWMARK")
    addr, port, proto, fwmark = parts
    number = int(proto)
    if number not in PROTO_NAME:
        raise ValueError(f"protocol {number} is not 0 (tcp), 1 (udp) or 2 (fwmark)")
    return VKey(_addr(addr), _port(port), PROTO_NAME[number], int(fwmark))


def parse_rkey(text: str) -> RKey:
    addr, sep, port = text.rpartition(":")
    if not sep:
        raise ValueError(f"{text!r} is not RADDR:RPORT")
    return RKey(_addr(addr), _port(port))


def _lines(text: str) -> Iterable[tuple[int, str]]:
    for number, line in enumerate(text.splitlines(), start=1):
        if line.strip():
            yield number, line.strip()


# override.dump

@dataclass(frozen=True, slots=True)
class OverrideEntry:
    virtual: VKey
    real: RKey
    weight: int
    percent: bool
    rstate: str
    reason: str = ""


def format_override(entries: Iterable[OverrideEntry]) -> str:
    out = []
    for e in entries:
        weight = f"weight={e.weight}%" if e.percent else f"weight={e.weight} "
        out.append(f"{e.virtual} - {e.real} - {weight} rstate={e.rstate}\n")
    return "".join(out)


def parse_override(text: str) -> tuple[list[OverrideEntry], Problems]:
    entries: list[OverrideEntry] = []
    problems: Problems = []
    for number, line in _lines(text):
        try:
            vtext, rtext, rest = (p.strip() for p in line.split(" - ", 2))
            fields = dict(t.partition("=")[::2] for t in rest.split())
            weight_text = fields["weight"]
            percent = weight_text.endswith("%")
            weight = int(weight_text.rstrip("%"))
            rstate = fields["rstate"]
            if rstate not in RSTATES:
                raise ValueError(f"rstate {rstate!r} is not one of {', '.join(RSTATES)}")
            if weight < 0 or (percent and weight > 100):
                raise ValueError(f"weight {weight_text} is out of range")
            entries.append(OverrideEntry(parse_vkey(vtext), parse_rkey(rtext), weight, percent,
                                         rstate))
        except (ValueError, KeyError) as exc:
            problems.append((number, f"not 'VKEY - RKEY - weight=W[%] rstate=S': {exc}"))
    return entries, problems


# override.dump.reasons: the ``rset ... reason=`` texts, beside override.dump so that the
# original's reader (which stops at the first line it does not match) still reads that file.

def reasons_path(override_path: str) -> str:
    return override_path + ".reasons"


def format_reasons(entries: Iterable[OverrideEntry]) -> str:
    return "".join(f"{e.virtual} - {e.real} - reason={e.reason}\n" for e in entries if e.reason)


def parse_reasons(text: str) -> tuple[dict[tuple[VKey, RKey], str], Problems]:
    reasons: dict[tuple[VKey, RKey], str] = {}
    problems: Problems = []
    for number, line in _lines(text):
        try:
            vtext, rtext, rest = (p.strip() for p in line.split(" - ", 2))
            if not rest.startswith("reason="):
                raise ValueError("no reason=")
            reasons[(parse_vkey(vtext), parse_rkey(rtext))] = rest[len("reason="):]
        except ValueError as exc:
            problems.append((number, f"not 'VKEY - RKEY - reason=TEXT': {exc}"))
    return reasons, problems


# offline.dump

def format_offline(entries: Iterable[tuple[VKey, RKey]]) -> str:
    return "".join(f"{v} - {r}\n" for v, r in entries)


def parse_offline(text: str) -> tuple[list[tuple[VKey, RKey]], Problems]:
    entries: list[tuple[VKey, RKey]] = []
    problems: Problems = []
    for number, line in _lines(text):
        try:
            vtext, rtext = (p.strip() for p in line.split(" - "))
            entries.append((parse_vkey(vtext), parse_rkey(rtext)))
        except ValueError as exc:
            problems.append((number, f"not 'VKEY - RKEY': {exc}"))
    return entries, problems


# stats.dump

@dataclass(frozen=True, slots=True)
class RealStatsEntry:
    """A real's saved statistics; times in µs (the file also shows them in ms)."""

    real: RKey
    total: int
    avg_us: tuple[int, int, int]  # conn, resp, total: sample averages
    sum_us: tuple[int, int, int]  # running sums
    problems: tuple[int, int, int]  # conn, arp, rst


@dataclass(frozen=True, slots=True)
class VirtualStatsEntry:
    virtual: VKey
    samples: int
    total: int
    avg_us: tuple[int, int, int]
    problems: tuple[int, int, int]
    reals: tuple[RealStatsEntry, ...]


def _ms_us(values: tuple[int, int, int]) -> str:
    ms = ":".join(str(v // 1000) for v in values)
    us = ":".join(str(v) for v in values)
    return f"{ms} - {us}"


def _triple(text: str) -> tuple[int, int, int]:
    a, b, c = (int(x) for x in text.split(":"))
    return a, b, c


def format_stats(entries: Iterable[VirtualStatsEntry]) -> str:
    out = []
    for v in entries:
        out.append(f"vstats {v.virtual} - {v.samples} {v.total} - {_ms_us(v.avg_us)} - "
                   f"{':'.join(map(str, v.problems))}\n")
        for r in v.reals:
            out.append(f"rstats {r.real} - {r.total} - {_ms_us(r.avg_us)} - {_ms_us(r.sum_us)}"
                       f" - {':'.join(map(str, r.problems))}\n")
        out.append("\n")
    return "".join(out)


def parse_stats(text: str) -> tuple[list[VirtualStatsEntry], Problems]:
    virtuals: list[VirtualStatsEntry] = []
    problems: Problems = []
    reals: list[RealStatsEntry] = []
    current: VirtualStatsEntry | None = None

    def close() -> None:
        if current is not None:
            virtuals.append(VirtualStatsEntry(current.virtual, current.samples, current.total,
                                              current.avg_us, current.problems, tuple(reals)))
        reals.clear()

    for number, line in _lines(text):
        try:
            kind, _, rest = line.partition(" ")
            parts = [p.strip() for p in rest.split(" - ")]
            if kind == "vstats" and len(parts) == 5:
                close()
                samples, total = (int(x) for x in parts[1].split())
                current = VirtualStatsEntry(parse_vkey(parts[0]), samples, total,
                                            _triple(parts[3]), _triple(parts[4]), ())
            elif kind == "rstats" and len(parts) == 7:
                if current is None:
                    raise ValueError("rstats line before any vstats line")
                reals.append(RealStatsEntry(parse_rkey(parts[0]), int(parts[1]),
                                            _triple(parts[3]), _triple(parts[5]),
                                            _triple(parts[6])))
            else:
                raise ValueError("not a vstats or rstats line")
        except ValueError as exc:
            problems.append((number, str(exc)))
    close()
    return virtuals, problems


# notify.dump

def format_notify(entries: Iterable[tuple[VKey, str]]) -> str:
    return "".join(f"vnotify {v} - state={s}\n" for v, s in entries)


def parse_notify(text: str) -> tuple[list[tuple[VKey, str]], Problems]:
    entries: list[tuple[VKey, str]] = []
    problems: Problems = []
    for number, line in _lines(text):
        try:
            kind, _, rest = line.partition(" ")
            vtext, state_text = (p.strip() for p in rest.split(" - "))
            key, _, state = state_text.partition("=")
            if kind != "vnotify" or key != "state" or state not in NOTIFY_STATES:
                raise ValueError("expected 'vnotify VKEY - state=UP|DOWN|UNKNOWN'")
            entries.append((parse_vkey(vtext), state))
        except ValueError as exc:
            problems.append((number, str(exc)))
    return entries, problems
