"""The engine's fast path gives what ``run_check`` gives: the same verdicts, reasons, problems and
byte counts against the same servers (good, misbehaving, absent, silent), and the engine uses it
only where it applies."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import os
import random
import socket
import weakref
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from builtin_testers.http import HttpTester
from builtin_testers.lua import LuaTester
from builtin_testers.tcp import TcpTester
from surealived import tester_api as api
from surealived.engine.fastpath import FastPath, FastSpec, exchange_of
from surealived.engine.probe import run_check
from surealived.engine.scheduler import Engine
from surealived.engine.state import CheckTiming, DaemonState
from surealived.maincfg import MainConfig
from surealived.tester_api import Probe, Result, Target
from tests.servers import Nginx, bad_tcp_server, nginx
from tests.testers.helpers import settings

from .fakes import REGISTRY, config_from

pytestmark = pytest.mark.asyncio
HTTP = {"url": "/", "host": "www.example.test"}


def target(port: int, addr: str = "127.0.0.1", timeout: float = 2.0, **kw: Any) -> Target:
    return Target(addr=addr, port=port, rname="r", rport=80, vname="v", vaddr="192.0.2.1",
                  vport=80, vproto="tcp", vfwmark=0, timeout=timeout, **kw)


async def fast_check(tester: api.Tester, tgt: Target) -> tuple[Result, CheckTiming]:
    """One check through the engine's fast path."""
    loop = asyncio.get_running_loop()
    verdict: asyncio.Future[tuple[Result, CheckTiming]] = loop.create_future()
    spec = FastSpec.of(tester, tgt)
    assert spec is not None
    path = FastPath(loop, lambda _check, result, timing: verdict.set_result((result, timing)))
    try:
        path.start(SimpleNamespace(tester=tester), spec)
        return await verdict
    finally:
        path.close()


async def both(tester: api.Tester, tgt: Target) -> tuple[tuple[Result, CheckTiming], ...]:
    return (await run_check(tester, tgt), await fast_check(tester, tgt))


def same(generic: tuple[Result, CheckTiming], fast: tuple[Result, CheckTiming]) -> None:
    (g, gt), (f, ft) = generic, fast
    assert (f.ok, f.reason, f.weight) == (g.ok, g.reason, g.weight)
    assert (ft.problem, ft.bytes_sent) == (gt.problem, gt.bytes_sent)
    assert (ft.bytes_received > 0) == (gt.bytes_received > 0)
    assert ft.total_us >= ft.conn_us >= 0 and ft.started > 0


@pytest.fixture(scope="module")
def web(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Nginx]:
    with nginx(tmp_path_factory.mktemp("nginx")) as server:
        yield server


def http(**text: str) -> HttpTester:
    return HttpTester(settings(HttpTester, **{**HTTP, **text}))


async def test_against_nginx(web: Nginx) -> None:
    for tester, port, addr in ((TcpTester({}), web.port, "127.0.0.1"),
                               (TcpTester({}), web.port, "::1"),
                               (http(), web.port, "127.0.0.1"),
                               (http(), web.port, "::1"),
                               (http(url="/missing"), web.port, "127.0.0.1"),
                               (http(url="/missing", retcode="200,404"), web.port, "127.0.0.1")):
        generic, fast = await both(tester, target(port, addr))
        same(generic, fast)
    assert fast[0].ok and fast[0].reason == "status 404"


@pytest.mark.parametrize("mode", ["silent", "close", "close_mid", "garbage", "drip", "endless"])
async def test_http_against_a_bad_server(mode: str) -> None:
    async with bad_tcp_server(mode) as port:
        generic, fast = await both(http(), target(port, timeout=0.5))
    same(generic, fast)


async def test_http_against_a_reset() -> None:
    async with bad_tcp_server("reset") as port:
        result, _ = await fast_check(http(), target(port))
    assert result.reason in ("connection closed by the real while waiting for the status line",
                             "sending: connection reset by peer",
                             "waiting for the status line: connection reset by peer")


async def test_tcp_against_a_silent_server_and_nothing() -> None:
    async with bad_tcp_server("silent") as port:
        same(*await both(TcpTester({}), target(port)))
    generic, fast = await both(TcpTester({}), target(port))  # closed now: refused
    same(generic, fast)
    assert fast[0].reason == "connect: connection refused" and fast[1].problem == "rst"


async def test_a_connect_that_hangs_times_out_as_a_conn_problem() -> None:
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(0)
    port = server.getsockname()[1]
    fillers = []
    for _ in range(4):  # fill the accept queue: further SYNs are dropped
        sock = socket.socket()
        sock.setblocking(False)
        with contextlib.suppress(BlockingIOError):
            sock.connect(("127.0.0.1", port))
        fillers.append(sock)
    try:
        generic, fast = await both(TcpTester({}), target(port, timeout=0.3))
    finally:
        for sock in fillers:
            sock.close()
        server.close()
    same(generic, fast)
    assert fast[0].reason == "timeout after 0.3s connecting"
    assert fast[1].problem == "conn" and fast[1].conn_us == 0 and fast[1].total_us > 0


async def test_bindaddr_is_the_source_address() -> None:
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(8)
        server.settimeout(2)
        tgt = target(server.getsockname()[1], bindaddr="127.0.0.3")
        result, _ = await fast_check(TcpTester({}), tgt)
        assert result.ok, result.reason
        peer, (source, _port) = server.accept()
        peer.close()
    assert source == "127.0.0.3"


class Fussy(HttpTester):
    """A tester bug in the judging of the status line."""

    def judge_status_line(self, head: bytes) -> Result:
        raise ValueError("fussy")


class Chatty(TcpTester):
    """Replaces check(): the parent's fast exchange no longer describes it."""

    async def check(self, probe: Probe) -> Result:
        return Result.down("chatty")


async def test_a_tester_bug_in_the_judge_is_the_same_verdict(web: Nginx) -> None:
    tester = Fussy(settings(HttpTester, **HTTP))
    generic, fast = await both(tester, target(web.port))
    same(generic, fast)
    assert fast[0].reason == "tester error: ValueError: fussy"


async def test_only_plain_exchanges_take_the_fast_path() -> None:
    assert exchange_of(TcpTester({})) is not None
    assert exchange_of(http()) is not None
    assert exchange_of(http(naive="false")) is None  # reads headers and body: run_check
    assert exchange_of(http(body_match="ok")) is None
    assert exchange_of(Chatty({})) is None
    assert FastSpec.of(TcpTester({}), target(80, ssl=True)) is None
    assert FastSpec.of(TcpTester({}), target(80, "::1", bindaddr="127.0.0.2")) is None


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


async def test_the_engine_runs_fast_checks_and_stops_clean(web: Nginx) -> None:
    """Real sockets through the engine: one real up, one refused; after stop no fd is left."""
    with socket.socket() as spare:
        spare.bind(("127.0.0.1", 0))
        closed_port = spare.getsockname()[1]
    xml = ('<surealived><virtual name="web" addr="10.0.0.1" port="80" proto="tcp" sched="wrr" '
           f'rt="dr"><tester proto="http" url="/" host="h" testport="{web.port}" loopdelay="0.2" '
           'timeout="1"/><real name="up" addr="127.0.0.1" port="80" weight="1"/>'
           f'<real name="down" addr="127.0.0.2" port="80" testport="{closed_port}" weight="1"/>'
           '</virtual></surealived>')
    state = DaemonState(config_from(xml))
    before = open_fds()
    engine = Engine(state, REGISTRY, MainConfig(startup_delay_ms=0), rng=random.Random(1))
    engine.start()
    up, down = state.virtuals[0].reals
    for _ in range(200):
        await asyncio.sleep(0.02)
        if state.virtuals[0].rounds >= 2:
            break
    runner = engine.runners[state.virtuals[0].config]
    assert all(plan.fast is not None for plan in runner.plans.values())
    await engine.stop()
    assert (up.online, up.last_reason) == (True, "status 200")
    assert (down.online, down.last_reason) == (False, "connect: connection refused")
    assert down.stats.rst_problem >= 1 and up.stats.success >= 2
    assert open_fds() <= before


class FakeCheck:
    """What the fast path reads of the engine's Check (a class: weak references work)."""

    def __init__(self, tester: api.Tester) -> None:
        self.tester = tester
        self.settings = tester.settings


async def test_finished_checks_are_freed_before_their_timeout(web: Nginx,
                                                              tmp_path: Path) -> None:
    """A check's objects go as soon as its verdict is given, not when its timeout has passed
    (at thousands of checks a second, the garbage collector would walk them again and again)."""
    script = tmp_path / "status.lua"
    script.write_text('function check(t) local s = sd.tcp() assert(s:connect(t.addr, t.port))'
                      ' s:send("GET / HTTP/1.0\\r\\n\\r\\n") return s:receive(12) ~= nil end')
    testers = [TcpTester({}), http(), LuaTester(settings(LuaTester, script=str(script)))]
    loop = asyncio.get_running_loop()
    verdicts: list[Result] = []
    done = asyncio.Event()
    path = FastPath(loop, lambda _check, result, _timing: (verdicts.append(result), done.set()))
    gc.disable()  # only reference counting may free them
    try:
        for tester in testers:
            spec = FastSpec.of(tester, target(web.port, timeout=60.0))
            assert spec is not None
            checks = [FakeCheck(tester) for _ in range(3)]
            alive = [weakref.ref(check) for check in checks]
            for check in checks:
                path.start(check, spec)
            del checks, check
            while len(verdicts) < 3:
                done.clear()
                await done.wait()
            assert all(v.ok for v in verdicts), verdicts
            verdicts.clear()
            assert [ref() for ref in alive] == [None] * 3, type(tester).__name__
    finally:
        gc.enable()
        path.close()
