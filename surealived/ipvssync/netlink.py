"""The IPVS generic-netlink messages, encoded and decoded with ``struct``: pure, bytes in and out.

Why not pyroute2's message classes for every request: building one request through
``IPVSService``/``IPVSDest`` and ``ipvsmsg.encode()`` costs about 330 us on the development
machine (and ten times that in the test VM), so a full sync of 10,000 reals would spend seconds
building messages before the kernel sees one. These few attributes are simple, and the encoding
is checked against pyroute2's own encoder and decoder in ``tests/ipvssync/test_netlink.py``.
pyroute2 still opens the family (``kernel.open_family``) and is the reference for the format.

Attribute numbers are ``include/uapi/linux/ip_vs.h``. Traps handled here: the netmask attribute
is a raw 32-bit field, a big-endian mask for IPv4 and a host-order prefix length for IPv6 (so
pyroute2 needs ``netmask="128.0.0.0"`` for /128 on x86); fwmark services carry no address, port
or protocol (the kernel forces TCP); dumps report the kernel-internal "hashed" flag.
"""

from __future__ import annotations

import socket
import struct
from collections.abc import Iterator
from dataclasses import dataclass

from .table import (
    FWD_BY_NAME,
    FWD_NAME,
    PROTO_NAME,
    PROTO_NUMBER,
    USER_FLAGS,
    Dest,
    Service,
    ServiceKey,
)

# netlink
NLMSG_ERROR = 2
NLMSG_DONE = 3
NLM_F_REQUEST = 0x1
NLM_F_MULTI = 0x2
NLM_F_ACK = 0x4
NLM_F_DUMP = 0x300
NLM_F_CAPPED = 0x100
NLM_F_ACK_TLVS = 0x200
NLMSGERR_ATTR_MSG = 1
SOL_NETLINK = 270
NETLINK_CAP_ACK = 10
NETLINK_EXT_ACK = 11
GENL_VERSION = 1

# IPVS commands
CMD_NEW_SERVICE = 1
CMD_SET_SERVICE = 2
CMD_DEL_SERVICE = 3
CMD_GET_SERVICE = 4
CMD_NEW_DEST = 5
CMD_SET_DEST = 6
CMD_DEL_DEST = 7
CMD_GET_DEST = 8
CMD_FLUSH = 17

ATTR_SERVICE = 1
ATTR_DEST = 2

SVC_AF = 1
SVC_PROTOCOL = 2
SVC_ADDR = 3
SVC_PORT = 4
SVC_FWMARK = 5
SVC_SCHED_NAME = 6
SVC_FLAGS = 7
SVC_TIMEOUT = 8
SVC_NETMASK = 9

DEST_ADDR = 1
DEST_PORT = 2
DEST_FWD_METHOD = 3
DEST_WEIGHT = 4
DEST_U_THRESH = 5
DEST_L_THRESH = 6
DEST_ADDR_FAMILY = 11

AF_NUMBER = {4: socket.AF_INET, 6: socket.AF_INET6}
AF_VERSION = {socket.AF_INET: 4, socket.AF_INET6: 6}

_HDR = struct.Struct("=IHHII")  # nlmsghdr: len, type, flags, seq, pid
_GENL = struct.Struct("=BBH")  # genlmsghdr: cmd, version, reserved
_NLA = struct.Struct("=HH")  # nlattr: len, type
_U16 = struct.Struct("=H")
_U32 = struct.Struct("=I")
_BE16 = struct.Struct(">H")
_FLAGS = struct.Struct("=II")
_ERR = struct.Struct("=i")


def _attr(kind: int, payload: bytes) -> bytes:
    length = _NLA.size + len(payload)
    return _NLA.pack(length, kind) + payload + b"\0" * (-length % 4)


def _packed_addr(addr: str, af: int) -> bytes:
    return socket.inet_pton(AF_NUMBER[af], addr)


def netmask_bytes(prefix: int, af: int) -> bytes:
    """The raw netmask attribute: a big-endian mask (IPv4) or a host-order prefix (IPv6)."""
    if af == 6:
        return _U32.pack(prefix)
    return struct.pack(">I", (0xFFFFFFFF << (32 - prefix)) & 0xFFFFFFFF if prefix else 0)


def netmask_prefix(raw: bytes, af: int) -> int:
    if af == 6:
        return int(_U32.unpack(raw[:4])[0])
    return bin(struct.unpack(">I", raw[:4])[0]).count("1")


def service_attrs(service: Service, full: bool) -> bytes:
    """The nested ``IPVS_CMD_ATTR_SERVICE``: the key, plus the settings when ``full``."""
    key = service.key
    parts = [_attr(SVC_AF, _U16.pack(AF_NUMBER[key.af]))]
    if key.proto == "fwmark":
        parts.append(_attr(SVC_FWMARK, _U32.pack(key.fwmark)))
    else:
        parts.append(_attr(SVC_PROTOCOL, _U16.pack(proto_number(key.proto))))
        parts.append(_attr(SVC_ADDR, _packed_addr(key.addr, key.af)))
        parts.append(_attr(SVC_PORT, _BE16.pack(key.port)))
    if full:
        parts.append(_attr(SVC_SCHED_NAME, service.sched.encode() + b"\0"))
        parts.append(_attr(SVC_FLAGS, _FLAGS.pack(service.flags, 0xFFFFFFFF)))
        parts.append(_attr(SVC_TIMEOUT, _U32.pack(service.timeout)))
        parts.append(_attr(SVC_NETMASK, netmask_bytes(service.netmask, key.af)))
    return _attr(ATTR_SERVICE, b"".join(parts))


def dest_attrs(dest: Dest, full: bool) -> bytes:
    """The nested ``IPVS_CMD_ATTR_DEST``: address and port, plus the settings when ``full``."""
    af = 6 if ":" in dest.addr else 4
    parts = [
        _attr(DEST_ADDR, _packed_addr(dest.addr, af)),
        _attr(DEST_PORT, _BE16.pack(dest.port)),
        _attr(DEST_ADDR_FAMILY, _U16.pack(AF_NUMBER[af])),
    ]
    if full:
        parts.append(_attr(DEST_FWD_METHOD, _U32.pack(FWD_BY_NAME[dest.fwd])))
        parts.append(_attr(DEST_WEIGHT, _U32.pack(dest.weight)))
        parts.append(_attr(DEST_U_THRESH, _U32.pack(dest.u_thresh)))
        parts.append(_attr(DEST_L_THRESH, _U32.pack(dest.l_thresh)))
    return _attr(ATTR_DEST, b"".join(parts))


def proto_number(name: str) -> int:
    if name in PROTO_NUMBER:
        return PROTO_NUMBER[name]
    if name.startswith("proto"):
        return int(name[5:])
    raise ValueError(f"unknown protocol {name!r}")


def message(family: int, cmd: int, payload: bytes, seq: int,
            flags: int = NLM_F_REQUEST | NLM_F_ACK) -> bytes:
    body = _GENL.pack(cmd, GENL_VERSION, 0) + payload
    return _HDR.pack(_HDR.size + len(body), family, flags, seq, 0) + body


@dataclass(frozen=True)
class Reply:
    """One netlink message received: an ack/error (``error`` set), a dump end, or data."""

    kind: int
    flags: int
    seq: int
    error: int | None = None  # 0 for an ack, a positive errno for a failure
    text: str = ""  # the kernel's extended-ack message, when it gave one
    attrs: dict[int, bytes] | None = None  # top-level attributes of a data message


def parse_attrs(data: bytes, offset: int = 0, end: int | None = None) -> dict[int, bytes]:
    out: dict[int, bytes] = {}
    end = len(data) if end is None else end
    while offset + _NLA.size <= end:
        length, kind = _NLA.unpack_from(data, offset)
        if length < _NLA.size:
            break
        out[kind & 0x3FFF] = data[offset + _NLA.size: offset + length]
        offset += (length + 3) & ~3
    return out


def parse_replies(data: bytes) -> Iterator[Reply]:
    """Split a received datagram into its netlink messages."""
    offset = 0
    while offset + _HDR.size <= len(data):
        length, kind, flags, seq, _pid = _HDR.unpack_from(data, offset)
        if length < _HDR.size:
            break
        end = offset + length
        body = offset + _HDR.size
        if kind == NLMSG_ERROR:
            code = -_ERR.unpack_from(data, body)[0]
            text = ""
            if flags & NLM_F_ACK_TLVS:
                inner_len = _HDR.unpack_from(data, body + 4)[0]
                tlv_start = body + 4 + (_HDR.size if flags & NLM_F_CAPPED else inner_len)
                msg = parse_attrs(data, (tlv_start + 3) & ~3, end).get(NLMSGERR_ATTR_MSG)
                if msg:
                    text = msg.rstrip(b"\0").decode(errors="replace")
            yield Reply(kind, flags, seq, code, text)
        elif kind == NLMSG_DONE:
            yield Reply(kind, flags, seq)
        else:
            yield Reply(kind, flags, seq, attrs=parse_attrs(data, body + _GENL.size, end))
        offset += (length + 3) & ~3


def decode_service(raw: bytes) -> Service:
    """A dumped service as the normalised model (flags without "hashed", timeout only when
    persistent, netmask as a prefix length)."""
    a = parse_attrs(raw)
    af = AF_VERSION.get(_U16.unpack(a[SVC_AF][:2])[0], 4)
    fwmark = _U32.unpack(a[SVC_FWMARK][:4])[0] if SVC_FWMARK in a else 0
    if fwmark:
        key = ServiceKey.for_fwmark(fwmark, af)
    else:
        number = _U16.unpack(a[SVC_PROTOCOL][:2])[0]
        size = 4 if af == 4 else 16
        addr = socket.inet_ntop(AF_NUMBER[af], a[SVC_ADDR][:size])
        key = ServiceKey(PROTO_NAME.get(number, f"proto{number}"), addr,
                         _BE16.unpack(a[SVC_PORT][:2])[0], 0, af)
    flags = _FLAGS.unpack(a[SVC_FLAGS][:8])[0] & USER_FLAGS if SVC_FLAGS in a else 0
    timeout = _U32.unpack(a[SVC_TIMEOUT][:4])[0] if SVC_TIMEOUT in a else 0
    netmask = netmask_prefix(a[SVC_NETMASK], af) if SVC_NETMASK in a else (
        32 if af == 4 else 128)
    sched = a.get(SVC_SCHED_NAME, b"").split(b"\0", 1)[0].decode(errors="replace")
    return Service(key, sched, flags, timeout if flags & 0x1 else 0, netmask)


def decode_dest(raw: bytes, service_af: int) -> Dest:
    a = parse_attrs(raw)
    af = service_af
    if DEST_ADDR_FAMILY in a:
        af = AF_VERSION.get(_U16.unpack(a[DEST_ADDR_FAMILY][:2])[0], service_af)
    size = 4 if af == 4 else 16
    addr = socket.inet_ntop(AF_NUMBER[af], a[DEST_ADDR][:size])
    fwd = _U32.unpack(a[DEST_FWD_METHOD][:4])[0] & 0x7
    return Dest(addr, _BE16.unpack(a[DEST_PORT][:2])[0], FWD_NAME.get(fwd, f"fwd{fwd}"),
                _U32.unpack(a[DEST_WEIGHT][:4])[0], _U32.unpack(a[DEST_U_THRESH][:4])[0],
                _U32.unpack(a[DEST_L_THRESH][:4])[0])
