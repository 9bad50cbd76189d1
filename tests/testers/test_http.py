"""http against a real nginx on loopback: plain, TLS (SNI, verification), IPv6, statuses, bodies."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from builtin_testers.http import HttpTester
from surealived.engine.transcript import Transcript
from tests.servers import Nginx, nginx

from .helpers import check

pytestmark = pytest.mark.asyncio
HOST = "www.example.test"


@pytest.fixture(scope="module")
def web(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Nginx]:
    with nginx(tmp_path_factory.mktemp("nginx")) as server:
        yield server


async def test_the_originals_request_and_a_200(web: Nginx) -> None:
    transcript = Transcript()
    result, timing = await check(HttpTester, web.port, url="/", host=HOST,
                                 transcript=transcript)
    assert result.ok, result.reason
    assert result.reason == "status 200"
    text = transcript.render()
    request = b"GET / HTTP/1.0\r\nHost: www.example.test\r\nUser-Agent: SureAliveD\r\n\r\n"
    assert re.search(rb"\[\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{6}\]  sd_write ->\n"
                     + re.escape(request) + b"\n", text)
    assert b"]  sd_read <-\nHTTP/1.1 200" in text
    assert timing.bytes_sent == len(request)
    assert timing.conn_us > 0 and timing.total_us >= timing.conn_us


async def test_a_wrong_status_is_down_with_the_status_in_the_reason(web: Nginx) -> None:
    result, _ = await check(HttpTester, web.port, url="/down", host=HOST)
    assert not result.ok
    assert result.reason == "status 503, expected 200"


@pytest.mark.parametrize(("url", "retcode", "ok"), [
    ("/down", "200,500-599", True),
    ("/moved", "301-302", True),
    ("/missing", "404", True),
    ("/missing", "200-399", False),
])
async def test_status_lists_and_ranges(web: Nginx, url: str, retcode: str, ok: bool) -> None:
    result, _ = await check(HttpTester, web.port, url=url, host=HOST, retcode=retcode)
    assert result.ok is ok, result.reason


async def test_body_match(web: Nginx) -> None:
    good, _ = await check(HttpTester, web.port, url="/health", host=HOST, body_match="heal+thy")
    assert good.ok, good.reason
    bad, _ = await check(HttpTester, web.port, url="/health", host=HOST, body_match="^sick")
    assert not bad.ok
    assert "does not match '^sick'" in bad.reason


async def test_naive_reads_only_the_status_line(web: Nginx) -> None:
    result, timing = await check(HttpTester, web.port, url="/big.bin", host=HOST)
    assert result.ok
    assert timing.bytes_received < 65536 * 2


async def test_a_big_body_is_read_no_further_than_max_body(web: Nginx) -> None:
    result, timing = await check(HttpTester, web.port, url="/big.bin", host=HOST, naive="false",
                                 max_body="1000", body_match="^x+$")
    assert result.ok, result.reason
    assert timing.bytes_received < 200_000  # of a 4 MiB file


async def test_http11_with_a_chunked_body(web: Nginx) -> None:
    transcript = Transcript()
    result, _ = await check(HttpTester, web.port, url="/chunked", host=HOST, http11="true",
                            body_match="part two", transcript=transcript)
    assert result.ok, result.reason
    assert b"HTTP/1.1\r\nHost: www.example.test\r\nUser-Agent: SureAliveD\r\n" \
           b"Connection: close\r\n\r\n" in transcript.render()
    assert b"Transfer-Encoding: chunked" in transcript.render()


async def test_head_and_post(web: Nginx) -> None:
    head, _ = await check(HttpTester, web.port, url="/", host=HOST, method="head",
                          naive="false")
    assert head.ok, head.reason
    post, _ = await check(HttpTester, web.port, url="/", host=HOST, method="post")
    assert not post.ok  # nginx answers 405 to POST on a static file
    assert post.reason.startswith("status 405")


async def test_ipv6(web: Nginx) -> None:
    result, _ = await check(HttpTester, web.port, "::1", url="/", host=HOST)
    assert result.ok, result.reason
    tls, _ = await check(HttpTester, web.tls_port, "::1", url="/", host="real1.example.test",
                         target={"ssl": True, "ssl_verify": True, "ssl_ca": str(web.ca_file)})
    assert tls.ok, tls.reason


async def test_https_without_verification_as_the_original(web: Nginx) -> None:
    result, _ = await check(HttpTester, web.tls_port, url="/", host=HOST, target={"ssl": True})
    assert result.ok, result.reason


async def test_https_sni_defaults_to_the_host_attribute(web: Nginx) -> None:
    result, _ = await check(HttpTester, web.tls_port, url="/", host="real2.example.test",
                            body_match="this is real2", target={"ssl": True})
    assert result.ok, result.reason


@pytest.mark.parametrize(("sni", "ok", "why"), [
    ("real1.example.test", True, ""),
    ("real2.example.test", True, ""),
    ("wrong.example.test", False, "TLS handshake: certificate verify failed: Hostname mismatch"),
    (None, False, "TLS handshake: certificate verify failed: Hostname mismatch, certificate "
                  "is not valid for 'www.example.test'"),  # SNI and name default to host
])
async def test_https_verification(web: Nginx, sni: str | None, ok: bool, why: str) -> None:
    result, _ = await check(HttpTester, web.tls_port, url="/", host=HOST, target={
        "ssl": True, "sni": sni, "ssl_verify": True, "ssl_ca": str(web.ca_file)})
    assert result.ok is ok, result.reason
    assert result.reason.startswith(why)


async def test_https_verification_fails_against_another_ca(web: Nginx, tmp_path: Path) -> None:
    import trustme

    other = tmp_path / "other-ca.pem"
    trustme.CA().cert_pem.write_to_path(str(other))
    result, _ = await check(HttpTester, web.tls_port, url="/", host=HOST, target={
        "ssl": True, "sni": "real1.example.test", "ssl_verify": True, "ssl_ca": str(other)})
    assert not result.ok
    assert "certificate verify failed: unable to get local issuer certificate" in result.reason
