"""The IPVS table as ipvssync sees it: services, their settings and their destinations (reals).

One model serves both sides: the *wanted* table (built by ``reader`` from ``ipvsfull.cfg`` and the
diffs) and the *kernel* table (read back over netlink by ``kernel``). ``planner.plan`` compares two
of them. Values are normalised so that equal means "nothing to do": addresses are canonical text,
the netmask is a prefix length, the timeout counts only for persistent services, and flags hold
only the bits a user can set (the kernel's internal "hashed" bit is dropped).
"""

from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass, field

# IPVS service flags (include/uapi/linux/ip_vs.h).
F_PERSISTENT = 0x0001
F_HASHED = 0x0002  # kernel-internal, reported by dumps, never compared
F_ONEPACKET = 0x0004
F_SCHED1 = 0x0008
F_SCHED2 = 0x0010
F_SCHED3 = 0x0020
USER_FLAGS = F_PERSISTENT | F_ONEPACKET | F_SCHED1 | F_SCHED2 | F_SCHED3

# Forwarding methods (IP_VS_CONN_F_*): the value sent to and read from the kernel.
FWD_BY_NAME = {"masq": 0, "local": 1, "tun": 2, "dr": 3, "bypass": 4}
FWD_NAME = {v: k for k, v in FWD_BY_NAME.items()}
ROUTES = ("dr", "masq", "tun")

PROTO_NUMBER = {"tcp": socket.IPPROTO_TCP, "udp": socket.IPPROTO_UDP, "sctp": 132}
PROTO_NAME = {v: k for k, v in PROTO_NUMBER.items()}

DestKey = tuple[str, int]


def canonical_addr(text: str) -> tuple[str, int]:
    """``(canonical text, 4 or 6)``; raises ``ValueError`` for anything but a plain address
    (no ``10.1``, no leading zeros, no brackets, no zone)."""
    addr = ipaddress.ip_address(text)
    return addr.compressed, addr.version


def addr_sort_key(text: str) -> bytes:
    """Numeric order of addresses (IPv4 before IPv6), cheap enough for 100,000 reals."""
    try:
        return b"\x04" + socket.inet_pton(socket.AF_INET, text)
    except OSError:
        try:
            return b"\x06" + socket.inet_pton(socket.AF_INET6, text)
        except OSError:
            return b"\x07" + text.encode()


def host_port(addr: str, port: int) -> str:
    return f"[{addr}]:{port}" if ":" in addr else f"{addr}:{port}"


@dataclass(frozen=True)
class ServiceKey:
    """What identifies a service in the kernel: protocol, address and port, or an fwmark."""

    proto: str  # tcp | udp | sctp | fwmark (or "proto<N>" for a kernel service of another kind)
    addr: str  # canonical; "" for fwmark services
    port: int
    fwmark: int = 0
    af: int = 4  # 4 or 6

    @staticmethod
    def for_fwmark(fwmark: int, af: int = 4) -> ServiceKey:
        return ServiceKey("fwmark", "", 0, fwmark, af)

    def sort_key(self) -> tuple[int, int, bytes, int, str]:
        return (self.af, self.fwmark, addr_sort_key(self.addr), self.port, self.proto)

    @property
    def text(self) -> str:
        """``tcp 192.168.0.1:80``, ``udp [2001:db8::1]:53``, ``fwmark 7``, ``fwmark 7 ipv6``."""
        if self.proto == "fwmark":
            return f"fwmark {self.fwmark}" + (" ipv6" if self.af == 6 else "")
        return f"{self.proto} {host_port(self.addr, self.port)}"

    @property
    def ipvsadm(self) -> str:
        """The service as ipvsadm names it: ``-t 192.168.0.1:80``, ``-f 7``, ``-6 -f 7``."""
        if self.proto == "fwmark":
            return ("-6 " if self.af == 6 else "") + f"-f {self.fwmark}"
        flag = {"tcp": "-t", "udp": "-u", "sctp": "--sctp-service"}.get(self.proto, "-t")
        return f"{flag} {host_port(self.addr, self.port)}"


@dataclass(frozen=True)
class Service:
    """A service's settings. Equality compares what the kernel holds; names are for logs."""

    key: ServiceKey
    sched: str = "wlc"
    flags: int = 0  # USER_FLAGS bits only
    timeout: int = 0  # persistence seconds; 0 unless F_PERSISTENT
    netmask: int = 32  # persistence granularity as a prefix length (32 or 128: per client)
    name: str = field(default="", compare=False)
    rt: str = field(default="dr", compare=False)  # default forwarding of the virtual's reals

    @property
    def label(self) -> str:
        return f"{self.key.text} ({self.name})" if self.name else self.key.text

    def settings_text(self) -> str:
        text = f"sched={self.sched}"
        if self.flags & F_PERSISTENT:
            text += f" persistent={self.timeout}"
        if self.flags & F_ONEPACKET:
            text += " ops"
        if self.flags & ~(F_PERSISTENT | F_ONEPACKET):
            text += f" flags=0x{self.flags:x}"
        full = 32 if self.key.af == 4 else 128
        if self.netmask != full:
            text += f" netmask=/{self.netmask}"
        return text

    def changes_from(self, old: Service) -> str:
        """``sched wlc -> wrr, persistent 0 -> 300`` (what an edit changes)."""
        parts = []
        if old.sched != self.sched:
            parts.append(f"sched {old.sched} -> {self.sched}")
        if old.flags & F_PERSISTENT != self.flags & F_PERSISTENT or old.timeout != self.timeout:
            parts.append(f"persistent {old.timeout if old.flags & F_PERSISTENT else 'off'} -> "
                         f"{self.timeout if self.flags & F_PERSISTENT else 'off'}")
        if old.flags & F_ONEPACKET != self.flags & F_ONEPACKET:
            parts.append(f"ops {'on' if old.flags & F_ONEPACKET else 'off'} -> "
                         f"{'on' if self.flags & F_ONEPACKET else 'off'}")
        rest = ~(F_PERSISTENT | F_ONEPACKET)
        if old.flags & rest != self.flags & rest:
            parts.append(f"flags 0x{old.flags:x} -> 0x{self.flags:x}")
        if old.netmask != self.netmask:
            parts.append(f"netmask /{old.netmask} -> /{self.netmask}")
        return ", ".join(parts)


def make_service(key: ServiceKey, sched: str, persistent: int = 0, ops: bool = False,
                 netmask: int | None = None, name: str = "", rt: str = "dr",
                 extra_flags: int = 0) -> Service:
    """A service with normalised flags/timeout/netmask."""
    flags = (F_PERSISTENT if persistent else 0) | (F_ONEPACKET if ops else 0) | extra_flags
    if netmask is None:
        netmask = 32 if key.af == 4 else 128
    return Service(key, sched, flags & USER_FLAGS, persistent if flags & F_PERSISTENT else 0,
                   netmask, name, rt)


@dataclass(frozen=True)
class Dest:
    """A real server of a service. Equality compares what the kernel holds; the name is for logs."""

    addr: str
    port: int
    fwd: str = "dr"  # dr | masq | tun (| local | bypass as read from a kernel)
    weight: int = 1
    u_thresh: int = 0
    l_thresh: int = 0
    name: str = field(default="", compare=False)

    @property
    def key(self) -> DestKey:
        return (self.addr, self.port)

    @property
    def label(self) -> str:
        text = host_port(self.addr, self.port)
        return f"{text} ({self.name})" if self.name else text

    def settings_text(self) -> str:
        text = f"{self.fwd} weight={self.weight}"
        if self.u_thresh or self.l_thresh:
            text += f" thresholds={self.l_thresh}..{self.u_thresh}"
        return text

    def changes_from(self, old: Dest) -> str:
        parts = []
        if old.weight != self.weight:
            parts.append(f"weight {old.weight} -> {self.weight}")
        if old.fwd != self.fwd:
            parts.append(f"forwarding {old.fwd} -> {self.fwd}")
        if old.u_thresh != self.u_thresh:
            parts.append(f"upper threshold {old.u_thresh} -> {self.u_thresh}")
        if old.l_thresh != self.l_thresh:
            parts.append(f"lower threshold {old.l_thresh} -> {self.l_thresh}")
        return ", ".join(parts)


def dest_sort_key(key: DestKey) -> tuple[bytes, int]:
    return (addr_sort_key(key[0]), key[1])


class Table:
    """Services and their destinations. The reader mutates one; the planner only reads."""

    def __init__(self) -> None:
        self.services: dict[ServiceKey, Service] = {}
        self.dests: dict[ServiceKey, dict[DestKey, Dest]] = {}

    def add_service(self, service: Service) -> None:
        self.services[service.key] = service
        self.dests.setdefault(service.key, {})

    def remove_service(self, key: ServiceKey) -> None:
        self.services.pop(key, None)
        self.dests.pop(key, None)

    def set_dest(self, key: ServiceKey, dest: Dest) -> None:
        self.dests[key][dest.key] = dest

    def remove_dest(self, key: ServiceKey, dest_key: DestKey) -> Dest | None:
        return self.dests[key].pop(dest_key, None)

    def subset(self, keys: set[ServiceKey]) -> Table:
        """A table holding only ``keys`` (those present), sharing nothing mutable with this one."""
        out = Table()
        for key in keys:
            service = self.services.get(key)
            if service is not None:
                out.services[key] = service
                out.dests[key] = dict(self.dests.get(key, {}))
        return out

    def copy(self) -> Table:
        return self.subset(set(self.services))

    def count_dests(self) -> int:
        return sum(len(d) for d in self.dests.values())

    def __eq__(self, other: object) -> bool:
        return (isinstance(other, Table) and self.services == other.services
                and {k: v for k, v in self.dests.items() if k in self.services}
                == {k: v for k, v in other.dests.items() if k in other.services})

    def __repr__(self) -> str:
        return f"<Table {len(self.services)} services, {self.count_dests()} dests>"

    def describe(self) -> list[str]:
        """The table as lines, ordered like ``ipvsadm -Ln`` (for ``--plan`` and test messages)."""
        lines = []
        for key in sorted(self.services, key=ServiceKey.sort_key):
            service = self.services[key]
            lines.append(f"{service.label} {service.settings_text()}")
            dests = self.dests.get(key, {})
            for dkey in sorted(dests, key=dest_sort_key):
                lines.append(f"  -> {dests[dkey].label} {dests[dkey].settings_text()}")
        return lines
