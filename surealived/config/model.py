"""The configuration model: immutable dataclasses for virtuals, testers and reals.

The core XML attributes are declared here as ``Attr`` tables, exactly as a tester declares its own,
so one converter (``config.attrs``) and one reader (``config.xml``) handle both. Defaults are the
documented ones (loopdelay 3, timeout 5, retries2ok 1, retries2fail 1); the original silently used
0 for absent attributes, which is a bug we do not copy.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from ..tester_api import Attr
from .attrs import SCHEDULERS


class FrozenOptions(Mapping[str, Any]):
    """An immutable, hashable mapping of tester attribute values (so configs compare and hash)."""

    __slots__ = ("_data", "_hash")

    def __init__(self, data: Mapping[str, Any] | None = None) -> None:
        self._data = dict(data or {})
        self._hash: int | None = None

    def __getitem__(self, key: str) -> Any:
        return self._data[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)

    def __hash__(self) -> int:
        if self._hash is None:
            self._hash = hash(tuple(sorted(self._data.items())))
        return self._hash

    def __eq__(self, other: object) -> bool:
        if isinstance(other, FrozenOptions):
            return self._data == other._data
        return isinstance(other, Mapping) and self._data == dict(other)

    def __repr__(self) -> str:
        return f"FrozenOptions({self._data!r})"


PROTO_NUMBER = {"tcp": 0, "udp": 1, "fwmark": 2}
ROUTES = ("dr", "masq", "tun")

VIRTUAL_ATTRS: tuple[Attr, ...] = (
    Attr("name", "name", mandatory=True, help="virtual name (1..31 of A-Z a-z 0-9 _ . -)"),
    Attr("proto", "choice", mandatory=True, choices=("tcp", "udp", "fwmark"),
         help="IPVS service protocol"),
    Attr("addr", "addr", help="virtual address (IPv4 or IPv6); not with fwmark"),
    Attr("port", "port", help="virtual port; not with fwmark"),
    Attr("fwmark", "uint", 0, minimum=1, limit=2**32 - 1, help="firewall mark (proto=fwmark)"),
    Attr("af", "choice", "inet", choices=("inet", "inet6"),
         help="address family of an fwmark service"),
    Attr("sched", "choice", mandatory=True, choices=SCHEDULERS, help="IPVS scheduler"),
    Attr("rt", "choice", mandatory=True, choices=ROUTES, help="default forwarding method"),
    Attr("pers", "uint", 0, help="persistence timeout in seconds (0: none)"),
    Attr("ops", "bool", False, help="one-packet scheduling (udp only)"),
)

TESTER_ATTRS: tuple[Attr, ...] = (
    Attr("proto", "str", mandatory=True, limit=64, help="tester name: tcp, http, dns, exec, lua, "
         "no-test, or a third-party tester"),
    Attr("testport", "port", help="port tested on every real (mandatory but for no-test)"),
    Attr("loopdelay", "seconds", 3.0, help="seconds added to timeout between the starts of two "
         "rounds (the original's period: timeout + loopdelay)"),
    Attr("interval", "seconds", None, minimum=0.001, limit=86400,
         help="seconds from the end of a round (its last check) to the next, instead of "
              "the original's period (HAProxy's inter)"),
    Attr("timeout", "seconds", 5.0, minimum=0.001, limit=3600,
         help="seconds a check may take"),
    Attr("retries2ok", "uint", 1, minimum=1, limit=1000,
         help="successes in a row that bring a real online"),
    Attr("retries2fail", "uint", 1, minimum=1, limit=1000,
         help="failures in a row that take a real offline"),
    Attr("remove_on_fail", "bool", False, help="remove a failed real instead of weight 0"),
    Attr("init_state", "choice", "down", choices=("down", "up"),
         help="state of a real not known yet (new, or no offline.dump): down keeps it out "
              "until its first passing check; up, the original's, puts it in at once"),
    Attr("debugcomm", "bool", False, help="dump conversations (with debug_comm 1)"),
    Attr("logmicro", "bool", False, help="microseconds in stats logs and connstats"),
    Attr("stats_samples", "uint", 20, minimum=1, limit=20, help="window of averages"),
    Attr("SSL", "bool", False, help="wrap TCP checks in TLS"),
    Attr("sni", "str", None, limit=253, help="TLS server name (default: http host)"),
    Attr("ssl_verify", "bool", False, help="verify the real's certificate"),
    Attr("ssl_ca", "path", None, help="CA file for ssl_verify (default: system store)"),
    Attr("bindaddr", "addr", None, help="source address of checks"),
    Attr("notify_up", "exec", None, help="run when the virtual has enough reals"),
    Attr("notify_down", "exec", None, help="run when it has not"),
    Attr("notify_min_reals", "threshold", (0, False), help="N or N% of reals up"),
    Attr("notify_min_weight", "threshold", (0, False), help="N or N% of weight up"),
    Attr("real_notify_up", "exec", None, help="run when a real comes online"),
    Attr("real_notify_down", "exec", None, help="run when a real goes offline"),
)

REAL_ATTRS: tuple[Attr, ...] = (
    Attr("name", "name", mandatory=True, help="real name"),
    Attr("addr", "addr", mandatory=True, help="real address (IPv4 or IPv6)"),
    Attr("port", "port", mandatory=True, help="IPVS port of the real"),
    Attr("weight", "int", mandatory=True, limit=65535, help="configured weight 0..65535"),
    Attr("testport", "port", None, help="port tested (default: the tester's testport)"),
    Attr("uthresh", "uint", 0, help="upper connection threshold (0: none)"),
    Attr("lthresh", "uint", 0, help="lower connection threshold (0: none; needs uthresh)"),
    Attr("bindaddr", "addr", None, help="source address of this real's checks"),
    Attr("rt", "choice", None, choices=ROUTES, help="forwarding method (default: virtual's)"),
)


@dataclass(frozen=True, slots=True)
class TesterConfig:
    proto: str  # canonical tester name
    testport: int
    loopdelay: float
    timeout: float
    retries2ok: int
    retries2fail: int
    remove_on_fail: bool
    debugcomm: bool
    logmicro: bool
    stats_samples: int
    ssl: bool
    sni: str | None
    ssl_verify: bool
    ssl_ca: str | None
    bindaddr: str | None
    notify_up: str | None
    notify_down: str | None
    notify_min_reals: tuple[int, bool]
    notify_min_weight: tuple[int, bool]
    real_notify_up: str | None
    real_notify_down: str | None
    options: FrozenOptions  # the tester's own attributes
    init_state: str = "down"
    interval: float | None = None  # next round this long after the last check of one, if set
    line: int = field(default=0, compare=False)  # where it was read; not part of identity


@dataclass(frozen=True, slots=True)
class RealConfig:
    name: str
    addr: str
    port: int
    weight: int
    testport: int
    uthresh: int
    lthresh: int
    bindaddr: str | None
    rt: str
    options: FrozenOptions  # tester attributes with this real's overrides applied
    line: int = field(default=0, compare=False)  # where it was read; not part of identity

    @property
    def key(self) -> tuple[str, int]:
        return (self.addr, self.port)


@dataclass(frozen=True, slots=True)
class VirtualConfig:
    name: str
    proto: str  # tcp | udp | fwmark
    addr: str  # "0.0.0.0" (or "::") for fwmark virtuals
    port: int
    fwmark: int
    sched: str
    rt: str
    pers: int
    ops: bool
    tester: TesterConfig
    reals: tuple[RealConfig, ...]
    line: int = field(default=0, compare=False)  # where it was read; not part of identity
    af: str = "inet"

    @property
    def key(self) -> tuple[str, int, str, int]:
        """Identity as the original used it: address, port, protocol, fwmark."""
        return (self.addr, self.port, self.proto, self.fwmark)

    @property
    def key_text(self) -> str:
        """``VADDR:VPORT:PROTO:FWMARK`` as in the dumps (protocol as a number, IPv6 in [])."""
        return f"{host_port(self.addr, self.port)}:{PROTO_NUMBER[self.proto]}:{self.fwmark}"


@dataclass(frozen=True)
class Config:
    path: str
    virtuals: tuple[VirtualConfig, ...] = field(default_factory=tuple)

    @property
    def real_count(self) -> int:
        return sum(len(v.reals) for v in self.virtuals)


def host_port(addr: str, port: int) -> str:
    """``addr:port``, with brackets around IPv6 addresses (``[2001:db8::1]:80``)."""
    return f"[{addr}]:{port}" if ":" in addr else f"{addr}:{port}"
