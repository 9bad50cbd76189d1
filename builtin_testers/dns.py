"""dns: a query (SOA by default) for ``request`` sent to the real; up when it holds answers.

The query is the original's datagram (flags 0x0400: AA set, no recursion wanted) sent over the
probe's connected UDP socket, so thousands of DNS reals cost no resolver threads. Beyond the
original, the reply must carry the query's ID with QR set and RCODE 0 (it checked only ANCOUNT),
the query type is ``qtype``, and ``expect`` is text one answer must contain.
``encode_query``/``decode_reply`` are the pure wire format.
"""

from __future__ import annotations

import ipaddress
import random
import struct
from collections.abc import Mapping
from typing import Any

from surealived.tester_api import Attr, Probe, ProbeError, Result, Tester

QTYPES = {"a": 1, "ns": 2, "cname": 5, "soa": 6, "ptr": 12, "mx": 15, "txt": 16, "aaaa": 28,
          "srv": 33}
RCODES = {1: "FORMERR", 2: "SERVFAIL", 3: "NXDOMAIN", 4: "NOTIMP", 5: "REFUSED"}


def encode_query(qid: int, name: str, qtype: int) -> bytes:
    """Header (ID, flags 0x0400, QDCOUNT 1), QNAME, QTYPE, QCLASS IN."""
    labels = [label.encode("idna") for label in name.rstrip(".").split(".") if label]
    qname = b"".join(bytes([len(label)]) + label for label in labels) + b"\0"
    return struct.pack(">HHHHHH", qid, 0x0400, 1, 0, 0, 0) + qname + struct.pack(">HH", qtype, 1)


def _name(data: bytes, offset: int) -> tuple[str, int]:
    """A (possibly compressed) name at ``offset``; returns it and the offset after it."""
    labels: list[str] = []
    end: int | None = None
    jumps = 0
    while True:
        length = data[offset]
        if length >= 0xC0:
            if jumps > 32:
                raise ValueError("compression loop")
            end = offset + 2 if end is None else end
            offset, jumps = struct.unpack_from(">H", data, offset)[0] & 0x3FFF, jumps + 1
        elif length == 0:
            return ".".join(labels) + ".", (offset + 1 if end is None else end)
        else:
            labels.append(data[offset + 1:offset + 1 + length].decode("ascii", "replace"))
            offset += 1 + length


def _rdata(data: bytes, rtype: int, start: int, size: int) -> str:
    rdata = data[start:start + size]
    if (rtype, size) in ((1, 4), (28, 16)):
        return ipaddress.ip_address(rdata).compressed
    if rtype in (2, 5, 12):
        return _name(data, start)[0]
    if rtype == 15:
        return f"{struct.unpack_from('>H', data, start)[0]} {_name(data, start + 2)[0]}"
    if rtype == 6:
        mname, at = _name(data, start)
        rname, at = _name(data, at)
        return " ".join([mname, rname, *map(str, struct.unpack_from(">5I", data, at))])
    if rtype == 33:
        prio, weight, port = struct.unpack_from(">HHH", data, start)
        return f"{prio} {weight} {port} {_name(data, start + 6)[0]}"
    if rtype == 16:
        parts, at = [], 0
        while at < size:
            parts.append(rdata[at + 1:at + 1 + rdata[at]].decode("utf-8", "replace"))
            at += 1 + rdata[at]
        return " ".join(parts)
    return rdata.hex()


def decode_reply(data: bytes) -> tuple[int, int, int, list[str]]:
    """(ID, flags, RCODE, answers as text). Raises ValueError on a malformed reply."""
    try:
        qid, flags, qdcount, ancount = struct.unpack_from(">HHHH", data)
        offset = 12
        for _ in range(qdcount):
            offset = _name(data, offset)[1] + 4
        answers = []
        for _ in range(ancount):
            offset = _name(data, offset)[1]
            rtype, _cls, _ttl, size = struct.unpack_from(">HHIH", data, offset)
            offset += 10
            if offset + size > len(data):
                raise ValueError("answer runs past the end")
            answers.append(_rdata(data, rtype, offset, size))
            offset += size
    except (IndexError, struct.error, UnicodeError) as exc:
        raise ValueError(f"malformed reply ({exc})") from None
    return qid, flags, flags & 0xF, answers


class DnsTester(Tester):
    name = "dns"
    transport = "udp"
    attributes = (
        Attr("request", "str", mandatory=True, limit=253, help="domain to query"),
        Attr("qtype", "choice", "soa", choices=("soa", "a", "aaaa", "ns", "mx", "txt", "cname",
                                                  "ptr", "srv"), help="query type"),
        Attr("expect", "str", None, limit=255, help="text one answer must contain"),
    )

    @classmethod
    def validate(cls, settings: Mapping[str, Any]) -> list[tuple[str, str]]:
        try:
            encode_query(0, settings["request"], 6)
        except UnicodeError as exc:
            return [("request", f"not a domain name: {exc}")]
        return []

    async def check(self, probe: Probe) -> Result:
        qid = random.getrandbits(16)
        qtype = self.settings["qtype"]
        sock = await probe.datagram()
        await sock.send(encode_query(qid, self.settings["request"], QTYPES[qtype]))
        want = qid.to_bytes(2, "big")
        for _ in range(8):  # skip stray datagrams (say, a late reply to an old query)
            data = await sock.receive(4096, what=f"the {qtype.upper()} reply")
            if data[:2] == want and len(data) > 2 and data[2] & 0x80:
                break
        else:
            raise ProbeError("no reply with the query's ID")
        try:
            _, _, rcode, answers = decode_reply(data)
        except ValueError as exc:
            raise ProbeError(str(exc)) from None
        if rcode:
            return Result.down(f"rcode {RCODES.get(rcode, rcode)}")
        if not answers:
            return Result.down(f"no {qtype.upper()} answer")
        expect = self.settings["expect"]
        if expect and not any(expect.lower() in answer.lower() for answer in answers):
            return Result.down(f"no answer contains {expect!r}: {'; '.join(answers)[:200]}")
        return Result.up(f"{len(answers)} answers")
