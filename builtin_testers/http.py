"""http: one request, the status line judged against ``retcode`` (and optionally the body).

As the original: ``GET url HTTP/1.0`` with ``Host`` and ``User-Agent: SureAliveD``, and with
``naive`` (the default) only the 12 bytes ``HTTP/1.x NNN`` are read. Beyond it: another method,
HTTP/1.1 (with ``Connection: close``), status lists and ranges (``200,301-302``), and a regular
expression the body must match. Without ``naive`` (or with ``body_match``) the headers and at most
``max_body`` bytes of body are read, so a huge or endless body cannot stall the check.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from mypy_extensions import mypyc_attr

from surealived.tester_api import Attr, Connection, Probe, ProbeError, Result, Tester

_NO_BODY = (204, 304)
MAX_HEADERS = 200
HEAD_LIMIT = 65536  # bytes of header lines


def parse_status(line: bytes) -> int:
    """The status code of ``HTTP/1.x NNN ...`` (the first 12 bytes are enough)."""
    if not line.startswith(b"HTTP/") or len(line) < 12 or not line[9:12].isdigit():
        raise ProbeError(f"not an HTTP status line: {line[:40]!r}")
    return int(line[9:12])


def format_statuses(ranges: tuple[tuple[int, int], ...]) -> str:
    return ",".join(str(lo) if lo == hi else f"{lo}-{hi}" for lo, hi in ranges)


def parse_framing(block: bytes, end: bytes) -> tuple[bool, int | None]:
    """How the body after a response head's header lines is framed: chunked or not, and its
    ``Content-Length`` (None when absent or not a number). Names are matched in any case, with
    no blank before the colon (RFC 9112 forbids one); the last field of a name counts."""
    head = end + block.lower()
    if head.count(end) > MAX_HEADERS:
        raise ProbeError(f"more than {MAX_HEADERS} header lines")
    encoding = _field(head, end, end + b"transfer-encoding:")
    length = _field(head, end, end + b"content-length:")
    return encoding == b"chunked", _count(length)


def _count(digits: bytes | None) -> int | None:
    """A Content-Length's number (None: not one); one of more than 18 digits is taken as 10**18,
    more than any body read (``int()`` refuses a string of thousands of digits)."""
    if digits is None or not digits.isdigit():
        return None
    digits = digits.lstrip(b"0") or b"0"
    return int(digits) if len(digits) <= 18 else 10**18


def _field(head: bytes, end: bytes, start: bytes) -> bytes | None:
    """The value of the last field that begins with ``start`` (its line end and name)."""
    at = head.rfind(start)
    if at < 0:
        return None
    at += len(start)
    stop = head.find(end, at)
    return head[at:stop if stop >= 0 else len(head)].strip()


async def read_framing(conn: Connection, end: bytes) -> tuple[bool, int | None]:
    """The body's framing from the header lines after the status line, whose line end (CRLF,
    or a bare LF from a lenient server) they share: all of them in one read up to the blank
    line."""
    first = await conn.receive_exactly(len(end), what="the response headers")
    if first == end:
        return False, None  # no header at all
    block = first + await conn.receive_until(end + end, HEAD_LIMIT, what="the response headers")
    return parse_framing(block, end)


@mypyc_attr(allow_interpreted_subclasses=True)  # a tester of the operator's may build on it
class HttpTester(Tester):
    name = "http"
    transport = "tcp"
    attributes = (
        Attr("url", "str", mandatory=True, limit=8192, help="request target, e.g. /health"),
        Attr("host", "str", mandatory=True, limit=255, help="Host header (and default SNI)"),
        Attr("naive", "bool", True, help="judge on the status line only (no body read)"),
        Attr("retcode", "statuslist", "200", help="accepted status codes: 200 or 200,301-302"),
        Attr("method", "choice", "get", choices=("get", "head", "post", "options"),
             help="request method"),
        Attr("http11", "bool", False, help="send HTTP/1.1 with Connection: close"),
        Attr("body_match", "regex", None, help="regular expression the body must match"),
        Attr("max_body", "uint", 65536, minimum=1, limit=16 << 20,
             help="bytes of body read at most"),
    )

    def __init__(self, settings: Mapping[str, Any]) -> None:
        super().__init__(settings)
        self.method = settings["method"].upper()
        lines = [f"{self.method} {settings['url']} HTTP/1.{1 if settings['http11'] else 0}",
                 f"Host: {settings['host']}", "User-Agent: SureAliveD"]
        if settings["http11"]:
            lines.append("Connection: close")
        self.request = ("\r\n".join(lines) + "\r\n\r\n").encode()
        self.statuses: tuple[tuple[int, int], ...] = settings["retcode"]
        pattern = settings["body_match"]
        self.body_re = re.compile(pattern.encode()) if pattern else None
        self.quick = settings["naive"] and self.body_re is None
        self.max_body: int = settings["max_body"]
        self._verdicts: dict[int, Result] = {}

    def judge_status(self, status: int) -> Result:
        """The verdict on a status code (cached: a few codes ever occur)."""
        verdict = self._verdicts.get(status)
        if verdict is None:
            verdict = Result.down(f"status {status}, expected {format_statuses(self.statuses)}")
            for lo, hi in self.statuses:
                if lo <= status <= hi:
                    verdict = Result.up(f"status {status}")
                    break
            if len(self._verdicts) < 64:
                self._verdicts[status] = verdict
        return verdict

    @classmethod
    def validate(cls, settings: Mapping[str, Any]) -> list[tuple[str, str]]:
        problems = []
        for name in ("url", "host"):
            if any(c in settings.get(name, "") for c in " \r\n\t"):
                problems.append((name, "must not contain blanks or line breaks"))
        return problems

    async def check(self, probe: Probe) -> Result:
        conn = await probe.connect(hold_ack=True)  # the request carries the handshake's ACK
        await conn.send(self.request)
        if self.quick:
            head = await conn.receive_exactly(12, what="the status line")
            return self.judge_status(parse_status(head))
        line = await conn.receive_until(b"\n", 8192, what="the status line")
        status = parse_status(line)
        verdict = self.judge_status(status)
        if not verdict.ok:
            return verdict
        chunked, length = await read_framing(conn, b"\r\n" if line.endswith(b"\r") else b"\n")
        body = await self.read_body(conn, status, chunked, length)
        if self.body_re is not None and not self.body_re.search(body):
            return Result.down(f"status {status}, but the body does not match "
                               f"{self.body_re.pattern.decode()!r}")
        return verdict

    async def read_body(self, conn: Connection, status: int, chunked: bool,
                        length: int | None) -> bytes:
        """At most ``max_body`` bytes of body (de-chunked)."""
        if self.method == "HEAD" or status < 200 or status in _NO_BODY:
            return b""
        if chunked:
            return await self.read_chunked(conn)
        if length is not None:
            return await conn.receive_exactly(min(length, self.max_body), what="the body")
        body = b""
        while len(body) < self.max_body:
            piece = await conn.receive_some(self.max_body - len(body), what="the body")
            if not piece:
                break
            body += piece
        return body

    async def read_chunked(self, conn: Connection) -> bytes:
        body = b""
        while len(body) < self.max_body:
            size_line = await conn.receive_line(1024, what="a chunk size")
            try:
                size = int(size_line.split(b";")[0], 16)
            except ValueError:
                raise ProbeError(f"bad chunk size {size_line[:20]!r}") from None
            if size == 0:
                break
            body += await conn.receive_exactly(min(size, self.max_body - len(body)),
                                               what="a chunk")
            if len(body) < self.max_body:
                await conn.receive_line(2, what="the end of a chunk")
        return body
