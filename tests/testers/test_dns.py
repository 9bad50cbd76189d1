"""dns: the wire format (pure) and checks against a real dnsmasq and bad UDP servers."""

from __future__ import annotations

from collections.abc import Iterator

import dns.message
import pytest

from builtin_testers.dns import DnsTester, decode_reply, encode_query
from tests.servers import Dnsmasq, bad_udp_server, dnsmasq, free_port

from .helpers import check


def test_query_is_the_originals_datagram() -> None:
    # verified against the original: 2374 0400 0001 0000 0000 0000 07example03com00 0006 0001
    expected = bytes.fromhex("237404000001000000000000") + b"\x07example\x03com\x00" \
        + bytes.fromhex("00060001")
    assert encode_query(0x2374, "example.com", 6) == expected
    assert encode_query(0x2374, "example.com.", 6) == expected  # the original broke on this


def test_decode_reply_of_every_supported_type() -> None:
    query = dns.message.make_query("example.test", "SOA")
    reply = dns.message.make_response(query)
    for rtype, text in (("SOA", "ns1.example.test. hostmaster.example.test. 7 1 2 3 4"),
                        ("A", "192.0.2.10"), ("AAAA", "2001:db8::1"), ("MX", "10 mx.example."),
                        ("TXT", '"hello world"'), ("NS", "ns.example."),
                        ("SRV", "1 2 53 ns.example.")):
        reply.answer.append(dns.rrset.from_text("example.test.", 60, "IN", rtype, text))
    qid, flags, rcode, answers = decode_reply(reply.to_wire())
    assert (qid, rcode) == (query.id, 0)
    assert flags & 0x8000
    assert answers == ["ns1.example.test. hostmaster.example.test. 7 1 2 3 4", "192.0.2.10",
                       "2001:db8::1", "10 mx.example.", "hello world", "ns.example.",
                       "1 2 53 ns.example."]


@pytest.mark.parametrize("data", [b"", b"\x00" * 5, bytes.fromhex("000084000001000100000000")
                                  + b"\x07example\x00\x00\x06\x00\x01" + b"\xc0"])
def test_decode_reply_rejects_malformed_replies(data: bytes) -> None:
    with pytest.raises(ValueError, match="malformed"):
        decode_reply(data)


def test_a_compression_loop_is_malformed() -> None:
    loop = bytes.fromhex("000084000000000100000000") + b"\xc0\x0c" + b"\x00" * 10
    with pytest.raises(ValueError):
        decode_reply(loop)


@pytest.fixture(scope="module")
def server() -> Iterator[Dnsmasq]:
    with dnsmasq() as running:
        yield running


@pytest.mark.asyncio
@pytest.mark.parametrize(("attrs", "ok", "reason"), [
    ({"request": "example.test"}, True, "1 answers"),
    ({"request": "example.test", "expect": "hostmaster.example.test"}, True, "1 answers"),
    ({"request": "www.example.test", "qtype": "a", "expect": "192.0.2.10"}, True, "1 answers"),
    ({"request": "www.example.test", "qtype": "a", "expect": "192.0.2.99"}, False,
     "no answer contains '192.0.2.99': 192.0.2.10"),
    ({"request": "txt.example.test", "qtype": "txt", "expect": "check-ok"}, True, "1 answers"),
    ({"request": "www.example.test"}, False, "no SOA answer"),
    ({"request": "nope.example.test", "qtype": "a"}, False, "rcode NXDOMAIN"),
    ({"request": "example.com"}, False, "rcode REFUSED"),
])
async def test_against_dnsmasq(server: Dnsmasq, attrs: dict[str, str], ok: bool,
                               reason: str) -> None:
    result, timing = await check(DnsTester, server.port, **attrs)
    assert (result.ok, result.reason) == (ok, reason)
    assert timing.bytes_received > 12


@pytest.mark.asyncio
async def test_nothing_listening_is_refused_at_once() -> None:
    port = free_port(kind=2)
    result, _ = await check(DnsTester, port, timeout=3, request="example.test")
    assert result.reason == "waiting for the SOA reply: connection refused"


@pytest.mark.asyncio
@pytest.mark.parametrize(("mode", "reason"), [
    ("silent", "timeout after 0.5s waiting for the SOA reply"),
    ("wrong_id", "timeout after 0.5s waiting for the SOA reply"),  # a stray reply is ignored
    ("garbage", "malformed reply"),
    ("truncated_header", "malformed reply"),
])
async def test_against_bad_servers(mode: str, reason: str) -> None:
    async with bad_udp_server(mode) as port:
        result, _ = await check(DnsTester, port, timeout=0.5, request="example.test")
    assert not result.ok
    assert result.reason.startswith(reason)


@pytest.mark.asyncio
async def test_ipv6(server: Dnsmasq) -> None:
    async with bad_udp_server("silent", "::1") as port:
        result, _ = await check(DnsTester, port, "::1", timeout=0.3, request="example.test")
    assert result.reason == "timeout after 0.3s waiting for the SOA reply"
