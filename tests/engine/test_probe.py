"""The probe layer on loopback: source address, connect deadline, reasons, tester bugs."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import Iterator

import pytest

from builtin_testers.tcp import TcpTester
from surealived import tester_api as api
from surealived.engine import probe as probe_module
from surealived.engine.probe import CheckProbe, Transcript, run_check
from surealived.tester_api import Probe, Result, Target

pytestmark = pytest.mark.asyncio


def target(port: int, addr: str = "127.0.0.1", timeout: float = 2.0, **kw: object) -> Target:
    return Target(addr=addr, port=port, rname="r", rport=80, vname="v", vaddr="192.0.2.1",
                  vport=80, vproto="tcp", vfwmark=0, timeout=timeout, **kw)  # type: ignore[arg-type]


@pytest.fixture
def full_backlog() -> Iterator[int]:
    """A port whose accept queue is full: new SYNs are dropped, so connects hang."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(0)
    port = server.getsockname()[1]
    fillers = []
    for _ in range(4):
        sock = socket.socket()
        sock.setblocking(False)
        with contextlib.suppress(BlockingIOError):
            sock.connect(("127.0.0.1", port))
        fillers.append(sock)
    yield port
    for sock in fillers:
        sock.close()
    server.close()


async def test_a_connect_that_hangs_is_a_timeout_and_a_conn_problem(full_backlog: int) -> None:
    result, timing = await run_check(TcpTester({}), target(full_backlog, timeout=0.3))
    assert result.reason == "timeout after 0.3s connecting"
    assert timing.problem == "conn"
    assert timing.conn_us == 0 and timing.total_us > 0  # no connect time; the wait is counted


async def test_bindaddr_is_the_source_address() -> None:
    peers: list[str] = []

    async def accept(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peers.append(writer.get_extra_info("peername")[0])
        writer.close()

    server = await asyncio.start_server(accept, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    async with server:
        for source in ("127.0.0.2", "127.0.0.3"):
            result, _ = await run_check(TcpTester({}), target(port, bindaddr=source))
            assert result.ok, result.reason
        for _ in range(50):
            if len(peers) == 2:
                break
            await asyncio.sleep(0.01)
    assert peers == ["127.0.0.2", "127.0.0.3"]


async def test_bindaddr_of_the_other_family_is_refused_clearly() -> None:
    result, _ = await run_check(TcpTester({}), target(80, "::1", bindaddr="127.0.0.2"))
    assert result.reason == ("bindaddr 127.0.0.2 and real ::1 are of different address "
                             "families")


class Buggy(api.Tester):
    name = "buggy"

    async def check(self, probe: Probe) -> Result:
        return {}["missing"]  # type: ignore[no-any-return]


async def test_a_tester_bug_is_down_and_logged_once(caplog: pytest.LogCaptureFixture,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(probe_module, "_reported_bugs", set())
    logger = logging.getLogger("surealived")
    logger.addHandler(caplog.handler)
    monkeypatch.setattr(logger, "level", logging.INFO)
    monkeypatch.setattr(logger, "propagate", False)
    try:
        for _ in range(3):
            result, _ = await run_check(Buggy({}), target(80))
            assert result.reason == "tester error: KeyError: 'missing'"
    finally:
        logger.removeHandler(caplog.handler)
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1
    assert "a bug in the tester" in errors[0].getMessage()
    assert errors[0].exc_info is not None


class Talker(api.Tester):
    name = "talker"

    async def check(self, probe: Probe) -> Result:
        conn = await probe.connect()
        await conn.send(b"PING\r\n")
        line = await conn.receive_line(what="the pong")
        probe.note("got a pong")
        rest = await conn.receive_all(100, what="the end")
        return Result.up(f"{line.decode()} {rest.decode()}")


async def test_connection_primitives_and_the_transcript() -> None:
    async def pong(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readline()
        writer.write(b"+PONG\r\nbye")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(pong, "127.0.0.1", 0)
    async with server:
        transcript = Transcript()
        result, timing = await run_check(Talker({}), target(server.sockets[0].getsockname()[1]),
                                         transcript=transcript)
    assert (result.ok, result.reason) == (True, "+PONG bye")
    assert (timing.bytes_sent, timing.bytes_received) == (6, 10)
    text = transcript.render().decode()
    assert "]  sd_write ->\nPING\r\n\n" in text
    assert "]  sd_read <-\n+PONG\r\nbye\n" in text or "]  sd_read <-\n+PONG\r\n\n" in text
    assert "]  note:\ngot a pong\n" in text
    assert text.endswith("]  note:\nresult: up +PONG bye\n")


async def test_the_probe_is_what_the_protocol_says() -> None:
    probe: Probe = CheckProbe(target(80), {})
    assert probe.step == "starting"
