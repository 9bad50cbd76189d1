"""The check runner's contract, each case once, against real loopback servers: what a check
gives (verdict, reason, problem, timings, bytes) for every way a real can answer or not."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
import random
import socket
import weakref
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from builtin_testers.http import HttpTester
from builtin_testers.tcp import TcpTester
from surealived import tester_api as api
from surealived.config.main import MainConfig
from surealived.engine.flight import Runner, run_check
from surealived.engine.scheduler import Engine
from surealived.engine.state import CheckTiming, DaemonState
from surealived.engine.transcript import Transcript
from surealived.tester_api import Probe, ProbeError, Result, Target
from tests.lua.helpers import LuaTester
from tests.servers import Nginx, bad_tcp_server, nginx
from tests.testers.helpers import settings

from .fakes import REGISTRY, config_from

pytestmark = pytest.mark.asyncio
HTTP = {"url": "/", "host": "www.example.test"}


def target(port: int, addr: str = "127.0.0.1", timeout: float = 2.0, **kw: Any) -> Target:
    return Target(addr=addr, port=port, rname="r", rport=80, vname="v", vaddr="192.0.2.1",
                  vport=80, vproto="tcp", vfwmark=0, timeout=timeout, **kw)


def http(**text: str) -> HttpTester:
    return HttpTester(settings(HttpTester, **{**HTTP, **text}))


@pytest.fixture(scope="module")
def web(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Nginx]:
    with nginx(tmp_path_factory.mktemp("nginx")) as server:
        yield server


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


def closed_port() -> int:
    with socket.socket() as spare:
        spare.bind(("127.0.0.1", 0))
        return int(spare.getsockname()[1])


def sane(timing: CheckTiming) -> None:
    assert timing.total_us >= timing.conn_us >= 0 and timing.started > 0
    assert timing.total_us >= timing.resp_us >= 0


# -- connecting ------------------------------------------------------------------------------
async def test_a_refused_connect_is_an_rst_problem() -> None:
    result, timing = await run_check(TcpTester({}), target(closed_port()))
    assert result.reason == "connect: connection refused"
    assert timing.problem == "rst"
    # the connect is what took the time: until the refusal came
    assert timing.conn_us > 0 and timing.conn_us + timing.resp_us == timing.total_us
    sane(timing)


async def test_a_connect_that_hangs_times_out_as_a_conn_problem(full_backlog: int) -> None:
    result, timing = await run_check(TcpTester({}), target(full_backlog, timeout=0.3))
    assert result.reason == "timeout after 0.3s connecting"
    assert timing.problem == "conn"
    assert timing.conn_us == 0 and timing.total_us > 0  # no connect time; the wait is counted


async def test_bindaddr_is_the_source_address() -> None:
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(8)
        server.settimeout(2)
        port = server.getsockname()[1]
        for source in ("127.0.0.2", "127.0.0.3"):
            full = TcpTester({"half_open": False})
            result, _ = await run_check(full, target(port, bindaddr=source))
            assert result.ok, result.reason
            peer, (peer_addr, _port) = server.accept()  # queued even if reset since
            peer.close()
            assert peer_addr == source


async def test_a_half_open_check_never_reaches_the_reals_application() -> None:
    """The tcp tester's default: the port answers its SYN, and the connection is reset before
    the listening application could accept it; half_open="0" completes the handshake."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(8)
        server.settimeout(0.3)
        port = server.getsockname()[1]
        result, timing = await run_check(TcpTester({}), target(port))
        assert (result.ok, timing.bytes_sent) == (True, 0)
        with pytest.raises(TimeoutError):
            server.accept()  # nothing was queued for the application
        result, _ = await run_check(TcpTester({"half_open": False}), target(port))
        assert result.ok
        peer, _ = server.accept()
        peer.close()


async def test_bindaddr_of_the_other_family_is_refused_clearly() -> None:
    result, timing = await run_check(TcpTester({}), target(80, "::1", bindaddr="127.0.0.2"))
    assert result.reason == ("bindaddr 127.0.0.2 and real ::1 are of different address "
                             "families")
    assert timing.problem is None


# -- the real's answers ----------------------------------------------------------------------
@pytest.mark.parametrize("mode, reason, problem", [
    ("silent", "timeout after 0.5s waiting for the status line", None),
    ("close", "connection closed by the real while waiting for the status line", None),
    ("close_mid", "connection closed by the real after 10 bytes while waiting for the status "
                  "line", None),
    ("garbage", "not an HTTP status line: b'\\x00\\x01\\x02\\x03\\x04\\x05\\x06\\x07\\x08\\t"
                "\\n\\x0b'", None),
    ("drip", "timeout after 0.5s waiting for the status line", None),
])
async def test_naive_http_against_a_bad_server(mode: str, reason: str,
                                               problem: str | None) -> None:
    async with bad_tcp_server(mode) as port:
        result, timing = await run_check(http(), target(port, timeout=0.5))
    assert (result.ok, result.reason, timing.problem) == (False, reason, problem)
    assert timing.conn_us > 0 and timing.bytes_sent == len(http().request)
    sane(timing)


@pytest.mark.parametrize("mode, reason", [
    ("silent", "timeout after 0.5s waiting for the status line"),
    ("close_mid", "connection closed by the real after 10 bytes while waiting for the status "
                  "line"),
    ("drip", "timeout after 0.5s waiting for the status line"),
    ("endless", "status 200, but the body does not match 'never'"),
])
async def test_reading_http_against_a_bad_server(mode: str, reason: str) -> None:
    async with bad_tcp_server(mode) as port:
        result, _ = await run_check(http(naive="false", body_match="never", max_body="100000"),
                                    target(port, timeout=0.5))
    assert (result.ok, result.reason) == (False, reason)


async def test_a_reset_mid_check() -> None:
    async with bad_tcp_server("reset") as port:
        result, _ = await run_check(http(), target(port))
    assert result.reason in ("connection closed by the real while waiting for the status line",
                             "sending: connection reset by peer",
                             "waiting for the status line: connection reset by peer")


async def test_tls_against_garbage_is_a_handshake_error() -> None:
    async with bad_tcp_server("tls_garbage") as port:
        result, timing = await run_check(TcpTester({}), target(port, ssl=True))
    assert result.reason.startswith("TLS handshake: ")
    assert timing.problem is None


async def test_a_huge_reply_is_cut_at_its_limit() -> None:
    class ToTheEnd(api.Tester):
        name = "totheend"

        async def check(self, probe: Probe) -> Result:
            conn = await probe.connect()
            await conn.send(b"GET / HTTP/1.0\r\n\r\n")
            body = await conn.receive_all(100_000, what="the whole reply")
            return Result.up(str(len(body)))

    async with bad_tcp_server("endless") as port:
        result, timing = await run_check(ToTheEnd({}), target(port))
    assert result.reason == "more than 100000 bytes while waiting for the whole reply"
    assert timing.bytes_received > 100_000


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


async def test_a_send_larger_than_the_socket_buffer_waits_and_counts_it_all() -> None:
    size = 8 << 20
    got = 0

    async def sink(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal got
        while got < size and (chunk := await reader.read(1 << 20)):
            got += len(chunk)
        writer.write(b"ok\n")
        await writer.drain()
        writer.close()

    class Big(api.Tester):
        name = "big"

        async def check(self, probe: Probe) -> Result:
            conn = await probe.connect()
            await conn.send(b"x" * size)
            return Result.up((await conn.receive_line()).decode())

    server = await asyncio.start_server(sink, "127.0.0.1", 0)
    async with server:
        result, timing = await run_check(Big({}), target(server.sockets[0].getsockname()[1],
                                                          timeout=10))
    assert (result.ok, result.reason) == (True, "ok")
    assert timing.bytes_sent == size == got


async def test_a_send_to_a_real_that_never_reads_times_out_sending() -> None:
    class Flood(api.Tester):
        name = "flood"

        async def check(self, probe: Probe) -> Result:
            conn = await probe.connect()
            await conn.send(b"x" * (64 << 20))
            return Result.up()

    with socket.socket() as server:  # accepts (the kernel does) but never reads
        server.bind(("127.0.0.1", 0))
        server.listen(1)
        result, _ = await run_check(Flood({}), target(server.getsockname()[1], timeout=0.5))
    assert result.reason == "timeout after 0.5s sending"


# -- what a tester may do wrong --------------------------------------------------------------
class Buggy(api.Tester):
    name = "buggy"

    async def check(self, probe: Probe) -> Result:
        return {}["missing"]  # type: ignore[no-any-return]


ErrorsLogged = Callable[[], list[logging.LogRecord]]


@pytest.fixture
def errors_logged(caplog: pytest.LogCaptureFixture,
                  monkeypatch: pytest.MonkeyPatch) -> Iterator[ErrorsLogged]:
    """What gives the ERROR records of the "surealived" logger so far."""
    logger = logging.getLogger("surealived")
    logger.addHandler(caplog.handler)
    monkeypatch.setattr(logger, "level", logging.INFO)
    monkeypatch.setattr(logger, "propagate", False)
    try:
        yield lambda: [r for r in caplog.records if r.levelno == logging.ERROR]
    finally:
        logger.removeHandler(caplog.handler)


async def checks_in_turn(*checks: tuple[api.Tester, Target]) -> list[Result]:
    """The verdicts of ``checks`` run one after the other on one runner."""
    verdicts: list[Result] = []
    done = asyncio.Event()

    def finish(_check: Any, result: Result, _timing: CheckTiming) -> None:
        verdicts.append(result)
        done.set()

    runner = Runner(asyncio.get_running_loop(), finish)
    try:
        for tester, where in checks:
            done.clear()
            runner.start(None, tester, where, {})
            await done.wait()
    finally:
        runner.close()
    return verdicts


async def test_a_tester_bug_is_down_and_logged_once(errors_logged: ErrorsLogged) -> None:
    verdicts = await checks_in_turn(*[(Buggy({}), target(80))] * 3)
    assert [r.reason for r in verdicts] == ["tester error: KeyError: 'missing'"] * 3
    errors = errors_logged()
    assert len(errors) == 1
    assert "a bug in the tester" in errors[0].getMessage()
    assert errors[0].exc_info is not None


@pytest.mark.parametrize("broken", ["connect", "send"])
async def test_a_bug_of_the_runner_is_not_blamed_on_the_tester(
        web: Nginx, broken: str, errors_logged: ErrorsLogged) -> None:
    """A request the runner fails to serve (here made to raise where it never should), as the
    check starts or once it is under way: that check is down, logged as surealived's bug with
    its traceback, and the runner goes on serving the next check."""
    from surealived.engine import flight, requests

    kind = {"connect": requests.Connect, "send": requests.Send}[broken]
    serve, calls = flight.SERVE[kind], []

    def serve_broken_once(flight_: Any, request: Any) -> Any:
        calls.append(request)
        if len(calls) == 1:
            raise RuntimeError("broken serve")
        return serve(flight_, request)

    with pytest.MonkeyPatch.context() as patch:
        patch.setitem(flight.SERVE, kind, serve_broken_once)
        verdicts = await checks_in_turn(*[(http(), target(web.port))] * 2)
    assert [(r.ok, r.reason) for r in verdicts] == [(False, "internal error"),
                                                    (True, "status 200")]
    errors = errors_logged()
    assert len(errors) == 1 and "a bug of surealived" in errors[0].getMessage()
    assert all("a bug in the tester" not in r.getMessage() for r in errors)
    assert errors[0].exc_info is not None and "broken serve" in str(errors[0].exc_info[1])


class Fussy(HttpTester):
    """A tester bug in the judging of the status line."""

    def judge_status(self, status: int) -> Result:
        raise ValueError("fussy")


async def test_a_tester_bug_in_the_judge(web: Nginx) -> None:
    result, timing = await run_check(Fussy(settings(HttpTester, **HTTP)), target(web.port))
    assert result.reason == "tester error: ValueError: fussy"
    assert timing.problem is None


async def test_a_check_that_returns_no_result_is_a_tester_bug() -> None:
    class Sloppy(api.Tester):
        name = "sloppy"

        async def check(self, probe: Probe) -> Result:
            return True  # type: ignore[return-value]

    result, _ = await run_check(Sloppy({}), target(80))
    assert result.reason == "tester error: TypeError: check() returned True, not a Result"


async def test_a_tester_sends_bytes_like_data_and_a_str_is_its_own_bug(web: Nginx) -> None:
    # bytes, bytearray and memoryview are sent as the socket takes them; a str is a tester
    # error of that check, never an internal error of the runner (compiled or not)
    class Careless(api.Tester):
        name = "careless"

        async def check(self, probe: Probe) -> Result:
            conn = await probe.connect()
            await conn.send(probe.settings["request"])
            return Result.up(bytes(await conn.receive_exactly(12)).decode())

    request = "GET / HTTP/1.0\r\n\r\n"
    for data in (request.encode(), bytearray(request.encode()), memoryview(request.encode())):
        result, _ = await run_check(Careless({"request": data}), target(web.port))
        assert result.ok and result.reason.startswith("HTTP/1.1 "), (type(data), result)
    result, _ = await run_check(Careless({"request": request}), target(web.port))
    assert not result.ok and result.reason.startswith("tester error: TypeError"), result


async def test_an_asyncio_future_awaited_directly_is_waited_for() -> None:
    class Patient(api.Tester):
        name = "patient"

        async def check(self, probe: Probe) -> Result:
            await asyncio.sleep(0.01)
            return Result.up("slept")

    result, _ = await run_check(Patient({}), target(80))
    assert (result.ok, result.reason) == (True, "slept")


async def test_spawned_work_gives_its_result_and_is_cancelled_at_the_deadline() -> None:
    cancelled = asyncio.Event()

    async def forever() -> None:
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            cancelled.set()
            raise

    class Spawner(api.Tester):
        name = "spawner"

        async def check(self, probe: Probe) -> Result:
            if self.settings.get("hang"):
                probe.step = "in forever()"
                await probe.spawn(forever())
            value = await probe.spawn(asyncio.sleep(0, "done"))
            return Result.up(value)

    result, _ = await run_check(Spawner({}), target(80))
    assert (result.ok, result.reason) == (True, "done")
    result, _ = await run_check(Spawner({"hang": True}), target(80, timeout=0.2))
    assert result.reason == "timeout after 0.2s in forever()"
    await asyncio.wait_for(cancelled.wait(), 2)


async def test_a_probe_error_from_the_tester_is_its_reason() -> None:
    class Picky(api.Tester):
        name = "picky"

        async def check(self, probe: Probe) -> Result:
            raise ProbeError("not my kind of real")

    result, timing = await run_check(Picky({}), target(80))
    assert (result.ok, result.reason, timing.problem) == (False, "not my kind of real", None)


async def test_sleep_counts_against_the_deadline() -> None:
    class Sleepy(api.Tester):
        name = "sleepy"

        async def check(self, probe: Probe) -> Result:
            await probe.sleep(5)
            return Result.up()

    result, timing = await run_check(Sleepy({}), target(80, timeout=0.2))
    assert result.reason == "timeout after 0.2s sleeping"
    assert timing.problem == "conn"  # nothing connected before the deadline


# -- the engine on the runner ----------------------------------------------------------------
def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


async def test_the_engine_runs_checks_and_stops_clean(web: Nginx) -> None:
    """Real sockets through the engine: one real up, one refused; after stop no fd is left."""
    xml = ('<surealived><virtual name="web" addr="10.0.0.1" port="80" proto="tcp" sched="wrr" '
           f'rt="dr"><tester proto="http" url="/" host="h" testport="{web.port}" loopdelay="0.2" '
           'timeout="1"/><real name="up" addr="127.0.0.1" port="80" weight="1"/>'
           f'<real name="down" addr="127.0.0.2" port="80" testport="{closed_port()}" '
           'weight="1"/></virtual></surealived>')
    state = DaemonState(config_from(xml))
    before = open_fds()
    engine = Engine(state, REGISTRY, MainConfig(startup_delay_ms=0), rng=random.Random(1))
    engine.start()
    up, down = state.virtuals[0].reals
    for _ in range(200):
        await asyncio.sleep(0.02)
        if state.virtuals[0].rounds >= 2:
            break
    await engine.stop()
    assert (up.online, up.last_reason) == (True, "status 200")
    assert (down.online, down.last_reason) == (False, "connect: connection refused")
    assert down.stats.rst_problem >= 1 and up.stats.success >= 2
    assert open_fds() <= before


async def test_closing_the_runner_drops_checks_in_flight(tmp_path: Path) -> None:
    script = tmp_path / "hang.lua"
    script.write_text("function check(t) local s = sd.tcp() s:connect(t.addr, t.port) "
                      "return s:receive(1) ~= nil end")
    lua = LuaTester(settings(LuaTester, script=str(script)))
    verdicts: list[Result] = []
    async with bad_tcp_server("silent") as port:
        runner = Runner(asyncio.get_running_loop(), lambda *_: verdicts.append(_[1]))
        for tester in (TcpTester({}), http(), lua, http(naive="false")):
            runner.start(None, tester, target(port, timeout=30), tester.settings)
        await asyncio.sleep(0.2)
        runner.close()
        assert not runner.sockets  # every socket it opened is closed
    assert verdicts[:1] == [Result.up()]  # the tcp check was done before
    assert len(verdicts) == 1
    assert lua.script.running == 0  # the Lua thread went back (not reused)


class FakeCheck:
    """A check of the engine's (a class: weak references work)."""


async def test_finished_checks_are_freed_before_their_timeout(web: Nginx,
                                                              tmp_path: Path) -> None:
    """A check's objects go as soon as its verdict is given, not when its timeout has passed
    (at thousands of checks a second, the garbage collector would walk them again and again)."""
    script = tmp_path / "status.lua"
    script.write_text('function check(t) local s = sd.tcp() assert(s:connect(t.addr, t.port))'
                      ' s:send("GET / HTTP/1.0\\r\\n\\r\\n") return s:receive(12) ~= nil end')
    testers = [TcpTester({}), http(), http(naive="false"),
               LuaTester(settings(LuaTester, script=str(script)))]
    verdicts: list[Result] = []
    done = asyncio.Event()

    def finish(_check: Any, result: Result, _timing: CheckTiming) -> None:
        verdicts.append(result)
        done.set()

    runner = Runner(asyncio.get_running_loop(), finish)
    gc.disable()  # only reference counting may free them
    try:
        for tester in testers:
            checks = [FakeCheck() for _ in range(3)]
            alive = [weakref.ref(check) for check in checks]
            for check in checks:
                runner.start(check, tester, target(web.port, timeout=60.0), tester.settings)
            del checks, check
            while len(verdicts) < 3:
                done.clear()
                await done.wait()
            assert all(v.ok for v in verdicts), verdicts
            verdicts.clear()
            assert [ref() for ref in alive] == [None] * 3, type(tester).__name__
    finally:
        gc.enable()
        runner.close()
