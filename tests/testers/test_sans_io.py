"""Testers' ``check()`` driven with canned replies and no sockets: the requests a tester makes
are answered from bytes the test gives, as the runner would answer them from a real."""

from __future__ import annotations

import struct
from collections.abc import Coroutine
from typing import Any

import pytest

from builtin_testers.dns import DnsTester
from builtin_testers.http import HttpTester, parse_framing
from builtin_testers.tcp import TcpTester
from surealived import tester_api as api
from surealived.engine.buffer import ReceiveBuffer
from surealived.engine.probe import CheckProbe
from surealived.engine.requests import (
    ALL,
    EXACTLY,
    LINE,
    SOME,
    UNTIL,
    Connect,
    OpenDatagram,
    Receive,
    ReceiveDatagram,
    Send,
)
from surealived.engine.sockets import IOFailure, closed_failure
from surealived.tester_api import ProbeError, Result, Target
from tests.testers.helpers import settings


class Canned:
    """The real's side of a conversation: ``reply`` (a stream) or ``datagrams``."""

    def __init__(self, reply: bytes = b"", datagrams: list[bytes] | None = None,
                 refuse: bool = False) -> None:
        self.buffer = ReceiveBuffer()
        self.buffer.feed(reply)
        self.datagrams = list(datagrams or [])
        self.refuse = refuse
        self.sent = b""
        self.received = 0

    def close(self) -> None:
        pass

    def answer(self, request: Any) -> Any:
        if isinstance(request, Connect | OpenDatagram):
            if self.refuse:
                raise IOFailure("connect: connection refused", "connection refused")
            return self
        if isinstance(request, Send):
            self.sent += request.data
            return len(request.data)
        if isinstance(request, ReceiveDatagram):
            if not self.datagrams:
                raise IOFailure(f"timeout waiting for {request.what}", "timeout")
            return self.datagrams.pop(0)[:request.size]
        assert isinstance(request, Receive)
        buffer, mode = self.buffer, request.mode
        piece = {EXACTLY: lambda: buffer.maybe_extract_exactly(request.size),
                 LINE: lambda: buffer.maybe_extract_line(request.size),
                 UNTIL: lambda: buffer.maybe_extract_until(request.delimiter, request.size),
                 SOME: lambda: buffer.maybe_extract_at_most(request.size) or b"",
                 ALL: buffer.extract_rest}[mode]()
        if piece is None:
            raise closed_failure(0, request.what, buffer.extract_rest())
        return piece


def converse(tester: api.Tester, real: Canned, **target: Any) -> Result:
    """Run ``tester.check`` against ``real``: every request answered at once."""
    t = Target(addr="192.0.2.7", port=80, rname="r", rport=80, vname="v", vaddr="192.0.2.1",
               vport=80, vproto="tcp", vfwmark=0, timeout=5.0, **target)
    coro: Coroutine[Any, Any, Result] = tester.check(
        CheckProbe(t, tester.settings))  # type: ignore[arg-type]
    reply: Any = None
    error: BaseException | None = None
    for _ in range(1000):
        try:
            request = coro.send(reply) if error is None else coro.throw(error)
        except StopIteration as stop:
            result: Result = stop.value
            return result
        except ProbeError as exc:
            return Result.down(str(exc))
        reply, error = None, None
        try:
            reply = real.answer(request)
        except IOFailure as exc:
            error = exc
    raise AssertionError("the check did not end")


def http(**text: str) -> HttpTester:
    return HttpTester(settings(HttpTester, url="/health", host="www.example.test", **text))


# -- tcp ---------------------------------------------------------------------------------------
def test_tcp_is_up_when_it_connects_and_down_when_refused() -> None:
    assert converse(TcpTester({}), Canned()).ok
    assert converse(TcpTester({}), Canned(refuse=True)).reason == "connect: connection refused"


# -- http --------------------------------------------------------------------------------------
def test_naive_http_sends_the_originals_request_and_judges_12_bytes() -> None:
    real = Canned(b"HTTP/1.1 200 OK\r\n")
    assert converse(http(), real) == Result.up("status 200")
    assert real.sent == (b"GET /health HTTP/1.0\r\nHost: www.example.test\r\n"
                         b"User-Agent: SureAliveD\r\n\r\n")


@pytest.mark.parametrize("reply, reason", [
    (b"HTTP/1.0 503 Service Unavailable\r\n", "status 503, expected 200"),
    (b"SSH-2.0-OpenSSH_9.2\r\n", "not an HTTP status line: b'SSH-2.0-Open'"),
    (b"HTTP/1.0 2", "connection closed by the real while waiting for the status line"),
])
def test_naive_http_down(reply: bytes, reason: str) -> None:
    assert converse(http(), Canned(reply)) == Result.down(reason)


def test_status_lists_and_ranges() -> None:
    tester = http(retcode="200,301-302")
    assert converse(tester, Canned(b"HTTP/1.0 302 Found\r\n")).ok
    assert converse(tester, Canned(b"HTTP/1.0 304 Not Modified\r\n")).reason == (
        "status 304, expected 200,301-302")


def test_the_body_is_read_by_content_length_and_matched() -> None:
    reply = b"HTTP/1.1 200 OK\r\nContent-Length: 11\r\n\r\nok healthy\nJUNK"
    assert converse(http(naive="false", body_match="healthy$"), Canned(reply)).ok
    assert converse(http(naive="false", body_match="JUNK"), Canned(reply)).reason == (
        "status 200, but the body does not match 'JUNK'")


def test_a_chunked_body_is_dechunked_before_matching() -> None:
    reply = (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
             b"4\r\nheal\r\n3;ext=1\r\nthy\r\n0\r\n\r\n")
    assert converse(http(naive="false", body_match="^healthy$"), Canned(reply)).ok


def test_a_bad_chunk_size_is_down() -> None:
    reply = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n"
    assert converse(http(naive="false"), Canned(reply)).reason == "bad chunk size b'zz'"


def test_the_body_is_cut_at_max_body() -> None:
    reply = b"HTTP/1.0 200 OK\r\n\r\n" + b"y" * 5000 + b"needle"
    assert not converse(http(naive="false", body_match="needle", max_body="5000"),
                        Canned(reply)).ok
    assert converse(http(naive="false", body_match="needle", max_body="6000"),
                    Canned(reply)).ok


def test_too_many_header_lines_are_down() -> None:
    reply = b"HTTP/1.0 200 OK\r\n" + b"X-A: b\r\n" * 300 + b"\r\n"
    assert converse(http(naive="false"), Canned(reply)).reason == "more than 200 header lines"


@pytest.mark.parametrize("block, end, framing", [
    (b"Server: x\r\nContent-Length: 12", b"\r\n", (False, 12)),
    (b"content-LENGTH:  7 \r\nX: y", b"\r\n", (False, 7)),  # any case, blanks around
    (b"Content-Length: 3\r\nContent-Length: 5", b"\r\n", (False, 5)),  # the last counts
    (b"Content-Length: -1", b"\r\n", (False, None)),  # not a number: read to the end
    (b"Content-Length: " + b"0" * 5000 + b"7", b"\r\n", (False, 7)),
    (b"Content-Length: " + b"9" * 5000, b"\r\n", (False, 10**18)),  # more than any body
    (b"Content-Length : 3", b"\r\n", (False, None)),  # a blank before the colon names nothing
    (b"X-Content-Length: 3", b"\r\n", (False, None)),  # a name that only ends the same
    (b"X: a\r\n Content-Length: 3", b"\r\n", (False, None)),  # a continuation line
    (b"Transfer-Encoding: Chunked\r\nContent-Length: 9", b"\r\n", (True, 9)),
    (b"Transfer-Encoding: gzip, chunked", b"\r\n", (False, None)),
    (b"Content-Length: 3\nTransfer-Encoding: chunked", b"\n", (True, 3)),  # bare LF
])
def test_the_framing_of_a_body(block: bytes, end: bytes, framing: tuple[bool, int | None]) -> None:
    assert parse_framing(block, end) == framing


def test_head_and_204_have_no_body() -> None:
    assert converse(http(naive="false", method="head", body_match="x"),
                    Canned(b"HTTP/1.0 200 OK\r\nContent-Length: 99\r\n\r\n")).reason == (
        "status 200, but the body does not match 'x'")
    assert converse(http(naive="false", retcode="204"),
                    Canned(b"HTTP/1.0 204 No Content\r\n\r\n")).ok


# -- dns ---------------------------------------------------------------------------------------
def soa_reply(query: bytes, rcode: int = 0, answers: int = 1) -> bytes:
    """A reply to ``query`` with ``answers`` SOA records for its name."""
    qid, question = query[:2], query[12:]
    header = qid + struct.pack(">HHHHH", 0x8180 | rcode, 1, answers, 0, 0)
    rdata = b"\x03ns1\xc0\x0c\x0ahostmaster\xc0\x0c" + struct.pack(">IIIII", 1, 2, 3, 4, 5)
    record = b"\xc0\x0c" + struct.pack(">HHIH", 6, 1, 60, len(rdata)) + rdata
    return header + question + record * answers


class Replier(Canned):
    """A DNS server: answers the query it was sent, after ``stray`` datagrams of another ID."""

    def __init__(self, stray: int = 0, **reply: Any) -> None:
        super().__init__()
        self.stray = stray
        self.reply = reply

    def answer(self, request: Any) -> Any:
        if isinstance(request, ReceiveDatagram) and not self.datagrams:
            wrong = bytes([self.sent[0] ^ 0xFF]) + self.sent[1:]
            self.datagrams = [soa_reply(wrong)] * self.stray + [soa_reply(self.sent,
                                                                         **self.reply)]
        return super().answer(request)


def dns(**text: str) -> DnsTester:
    return DnsTester(settings(DnsTester, request="example.test", **text))


def test_dns_up_on_an_answer_with_the_querys_id() -> None:
    assert converse(dns(), Replier(stray=3)) == Result.up("1 answers")


def test_dns_down_on_rcode_or_no_answer() -> None:
    assert converse(dns(), Replier(rcode=3)).reason == "rcode NXDOMAIN"
    assert converse(dns(), Replier(answers=0)).reason == "no SOA answer"


def test_dns_gives_up_after_eight_stray_datagrams() -> None:
    assert converse(dns(), Replier(stray=8)).reason == "no reply with the query's ID"


def test_a_lenient_server_with_bare_line_feeds_is_read_too() -> None:
    reply = b"HTTP/1.0 200 OK\nContent-Length: 3\nX-A: b\n\nok!"
    assert converse(http(naive="false", body_match="^ok!$"), Canned(reply)).ok
    assert converse(http(naive="false", body_match="^ok!$"),
                    Canned(b"HTTP/1.0 200 OK\n\nok!")).ok  # no header at all
