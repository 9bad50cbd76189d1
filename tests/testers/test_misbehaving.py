"""tcp and http against servers that misbehave: every failure is "down" with a clear reason,
within the deadline, whatever the server does."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from builtin_testers.http import HttpTester
from builtin_testers.tcp import TcpTester
from tests.servers import Nginx, bad_tcp_server, nginx

from .helpers import check

pytestmark = pytest.mark.asyncio
HTTP = {"url": "/", "host": "www.example.test"}


@pytest.fixture(scope="module")
def web(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Nginx]:
    with nginx(tmp_path_factory.mktemp("nginx")) as server:
        yield server


@pytest.mark.parametrize(("mode", "reason"), [
    ("silent", "timeout after 0.5s waiting for the status line"),
    ("close", "connection closed by the real while waiting for the status line"),
    ("close_mid", "connection closed by the real after 10 bytes while waiting for the status "
                  "line"),
    ("garbage", "not an HTTP status line: b'\\x00\\x01\\x02"),
    ("drip", "timeout after 0.5s waiting for the status line"),
])
async def test_http_against_a_bad_server(mode: str, reason: str) -> None:
    async with bad_tcp_server(mode) as port:
        result, _ = await check(HttpTester, port, timeout=0.5, **HTTP)
    assert not result.ok
    assert result.reason.startswith(reason)


async def test_http_against_a_reset() -> None:
    async with bad_tcp_server("reset") as port:
        result, _ = await check(HttpTester, port, timeout=2, **HTTP)
    assert not result.ok
    assert result.reason in ("connection closed by the real while waiting for the status line",
                             "sending: connection reset by peer",
                             "waiting for the status line: connection reset by peer")


async def test_an_endless_body_is_cut_at_max_body() -> None:
    async with bad_tcp_server("endless") as port:
        result, timing = await check(HttpTester, port, timeout=3, naive="false",
                                     max_body="100000", **HTTP)
    assert result.ok, result.reason
    assert timing.bytes_received < 100_000 + 2 * 65536


async def test_an_endless_body_does_not_matter_when_naive() -> None:
    async with bad_tcp_server("endless") as port:
        result, _ = await check(HttpTester, port, timeout=3, **HTTP)
    assert result.ok, result.reason
    assert result.reason == "status 200"


async def test_a_huge_header_line_is_refused() -> None:
    reply = b"HTTP/1.0 200 OK\r\nX-Junk: " + b"j" * 100_000 + b"\r\n\r\n"
    async with bad_tcp_server("http", reply=reply) as port:
        result, _ = await check(HttpTester, port, timeout=3, naive="false", **HTTP)
    assert not result.ok
    assert result.reason == "no b'\\r\\n\\r\\n' within 65536 bytes"  # the end of the head


async def test_tls_against_garbage() -> None:
    async with bad_tcp_server("tls_garbage") as port:
        result, _ = await check(HttpTester, port, timeout=2, target={"ssl": True}, **HTTP)
    assert not result.ok
    assert result.reason.startswith("TLS handshake: ")


async def test_tls_against_a_silent_server_times_out_in_the_handshake() -> None:
    async with bad_tcp_server("silent") as port:
        result, timing = await check(TcpTester, port, timeout=0.5, target={"ssl": True})
    assert result.reason == "timeout after 0.5s TLS handshake"
    assert timing.problem == "conn"  # as the original: the connect time includes TLS


async def test_tcp_is_up_when_the_connection_is_accepted() -> None:
    async with bad_tcp_server("silent") as port:
        result, timing = await check(TcpTester, port)
    assert result.ok
    assert timing.problem is None


async def test_tcp_refused_is_an_rst_problem() -> None:
    async with bad_tcp_server("silent") as port:
        pass
    result, timing = await check(TcpTester, port)
    assert result.reason == "connect: connection refused"
    assert timing.problem == "rst"


async def test_tcp_with_tls_verified_against_the_address(web: Nginx) -> None:
    ok, _ = await check(TcpTester, web.tls_port, target={
        "ssl": True, "ssl_verify": True, "ssl_ca": str(web.ca_file)})
    assert ok.ok, ok.reason
    plain, _ = await check(TcpTester, web.port, timeout=1, target={"ssl": True})
    assert not plain.ok  # TLS to a plain HTTP port
    assert plain.reason.startswith("TLS handshake: ")
