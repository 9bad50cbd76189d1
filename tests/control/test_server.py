"""The control server over a real socket: transcripts, pipelining, budgets, hostile input."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator
from types import SimpleNamespace
from typing import Any

import pytest
import pytest_asyncio

from surealived.config.main import MainConfig
from surealived.control.protocol import END
from surealived.control.server import ControlServer
from surealived.engine.state import DaemonState

from .conftest import make_state

WEB = "vproto=tcp vaddr=10.1.1.2 vport=80"
H1 = f"{WEB} raddr=127.0.0.1 rport=80"
pytestmark = pytest.mark.asyncio


def stand_in(state: DaemonState, **cfg: Any) -> SimpleNamespace:
    maincfg = MainConfig(listen_addr=cfg.pop("listen_addr", "127.0.0.1"), listen_port=0, **cfg)
    daemon = SimpleNamespace(state=state, maincfg=maincfg, reloads=0)

    def request_reload() -> None:
        daemon.reloads += 1

    daemon.request_reload = request_reload
    return daemon


@pytest_asyncio.fixture
async def served(request: pytest.FixtureRequest) -> AsyncIterator[tuple[Any, ControlServer]]:
    cfg = getattr(request, "param", {})
    daemon = stand_in(make_state(), **cfg)
    server = ControlServer()
    await server.start(daemon)
    try:
        yield daemon, server
    finally:
        await server.stop(daemon)


async def connect(server: ControlServer) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    host, port = server.address
    return await asyncio.open_connection(host, port)


async def response(reader: asyncio.StreamReader) -> list[str]:
    lines = []
    while True:
        raw = await asyncio.wait_for(reader.readline(), 10)
        assert raw, f"connection closed after {lines}"
        line = raw.decode().rstrip("\n")
        if line == END:
            return lines
        lines.append(line)


async def ask(server: ControlServer, line: str) -> list[str]:
    reader, writer = await connect(server)
    try:
        writer.write(line.encode() + b"\n")
        return await response(reader)
    finally:
        writer.close()


async def test_transcript_of_every_command(served: tuple[Any, ControlServer]) -> None:
    daemon, server = served
    reader, writer = await connect(server)
    transcript: list[str] = []
    for line in ("vlist", f"rlist {WEB}", f"rset {H1} rstate=OFFLINE rweight=50% reason=swap",
                 f"rlist {WEB}", "rlist vproto=tcp vaddr=2001:db8::1 vport=443",
                 "rset vproto=tcp vaddr=10.1.1.999 vport=80 raddr=1.1.1.1 rport=1 rstate=DOWN",
                 f"rset {H1} rweight=-5", "vlistXYZ", "stats", "connstats", "help", "reload",
                 "vlist format=json"):
        writer.write(line.encode() + b"\n")
        await writer.drain()
        transcript.append(f"> {line}")
        transcript.extend(await response(reader))
    writer.close()
    text = "\n".join(transcript)
    assert ("> vlist\nv:0 vname=web vproto=tcp vaddr=10.1.1.2 vport=80 vfwmark=0 vrt=dr "
            "vsched=wrr\n") in text
    assert "Set: rstate=OFFLINE, weight=50, inpercent=TRUE\n" in text
    assert ("r:0 rname=h1 raddr=127.0.0.1 rport=80 currwgt=0 confwgt=10 ronline=TRUE "
            "rstate=OFFLINE reason=swap\n") in text
    assert "r:0 rname=s1 raddr=2001:db8::10 rport=443 currwgt=5 " in text
    assert "cmd_find_virt: invalid vaddr [10.1.1.999] (valid: an IPv4 or IPv6 address)\n" in text
    assert "cmd_rset: rweight invalid [-5] (valid: 0..65535, or 0%..100%)\n" in text
    assert "> vlistXYZ\nInvalid request! [vlistXYZ]" in text
    assert "=== memory usage ===\nVmPeak " in text  # read from /proc/self/status
    assert "\nReals:\nr:0.0 real-stats " in text
    assert "> reload\nReload requested\n" in text and daemon.reloads == 1
    assert text.endswith('"rt":"dr","sched":"rr","tester":"tcp","id":"udp:10.1.1.3:53"}]}')
    assert daemon.state.virtuals[0].reals[0].override_reason == "swap"


async def test_every_pipelined_command_runs_in_order(served: tuple[Any, ControlServer]) -> None:
    daemon, server = served
    reader, writer = await connect(server)
    batch = [f"rset {H1} rweight={n}" for n in range(1, 6)] + [f"rlist {WEB}", "nope", "vlist"]
    writer.write(("\n".join(batch) + "\n").encode())  # one write: the original ran only the first
    answers = [await response(reader) for _ in batch]
    writer.close()
    assert [a[0] for a in answers[:5]] == [
        f"Set: rstate=ONLINE, weight={n}, inpercent=FALSE" for n in range(1, 6)]
    assert answers[5][1].startswith("r:0 rname=h1 raddr=127.0.0.1 rport=80 currwgt=5 ")
    assert answers[6][0].startswith("Invalid request! [nope]")
    assert len(answers[7]) == 4
    assert daemon.state.virtuals[0].reals[0].weight == 5


async def test_a_command_split_over_packets_and_eof(served: tuple[Any, ControlServer]) -> None:
    _, server = served
    reader, writer = await connect(server)
    for part in (b"vl", b"is", b"t\r", b"\nhelp\n"):
        writer.write(part)
        await writer.drain()
        await asyncio.sleep(0.01)
    writer.write_eof()  # like `printf ... | nc -N`: the answers still come, then the close
    assert len(await response(reader)) == 4
    assert (await response(reader))[0].startswith("vlist ")
    assert await asyncio.wait_for(reader.read(), 10) == b""
    writer.close()


async def test_long_line_gets_an_error_and_others_do_not_notice(
        served: tuple[Any, ControlServer]) -> None:
    _, server = served
    good_reader, good_writer = await connect(server)
    reader, writer = await connect(server)
    writer.write(b"vlist " + b"x" * 9000)
    answer = await response(reader)
    assert answer == ["Invalid request! line longer than 8192 bytes; closing"]
    assert await asyncio.wait_for(reader.read(), 10) == b""
    writer.close()
    good_writer.write(b"vlist\n")
    assert len(await response(good_reader)) == 4
    good_writer.close()


@pytest.mark.parametrize("served", [{"control_max_clients": 2}], indirect=True)
async def test_too_many_clients_are_refused_without_harm(
        served: tuple[Any, ControlServer]) -> None:
    _, server = served
    first = await connect(server)
    second = await connect(server)
    first[1].write(b"vlist\n")
    await response(first[0])  # both are really accepted before the third comes
    second[1].write(b"vlist\n")
    await response(second[0])
    third_reader, third_writer = await connect(server)
    assert (await response(third_reader))[0].startswith(
        "cmd_connect: too many clients (limit 2)")
    assert await asyncio.wait_for(third_reader.read(), 10) == b""
    third_writer.close()
    for reader, writer in (first, second):
        writer.write(b"help\n")
        assert len(await response(reader)) == 7
    first[1].close()
    await first[1].wait_closed()
    for _ in range(100):  # the server sees the close soon; then a new client fits
        if len(server.clients) < 2:
            break
        await asyncio.sleep(0.02)
    assert len(await ask(server, "vlist")) == 4
    second[1].close()


@pytest.mark.parametrize("served", [{"control_idle_timeout": 1}], indirect=True)
async def test_idle_clients_are_closed(served: tuple[Any, ControlServer]) -> None:
    _, server = served
    reader, writer = await connect(server)
    writer.write(b"vlist\n")
    assert len(await response(reader)) == 4
    assert await asyncio.wait_for(reader.read(), 10) == b""  # closed by the server, not by us
    writer.close()
    assert not server.clients


async def test_a_client_that_does_not_read_does_not_block_others(
        served: tuple[Any, ControlServer]) -> None:
    _, server = served
    reader, writer = await connect(server)
    writer.write(b"connstats\n" * 2000)  # several MB of answers nobody reads yet
    await writer.drain()
    assert len(await ask(server, "vlist")) == 4
    got = 0
    for _ in range(2000):
        await response(reader)
        got += 1
    assert got == 2000
    writer.close()


@pytest.mark.parametrize("served", [{"listen_addr": "::1"}], indirect=True)
async def test_listens_on_ipv6(served: tuple[Any, ControlServer]) -> None:
    _, server = served
    assert server.address[0] == "::1"
    assert len(await ask(server, "vlist")) == 4


async def test_random_garbage_changes_nothing(served: tuple[Any, ControlServer]) -> None:
    daemon, server = served
    before = [(r.rstate, r.override, r.override_reason) for r in daemon.state.reals()]
    rng = random.Random(1337)
    words = ["vlist", "rlist", "rset", "stats", "help", "vproto=tcp", "vaddr=10.1.1.2",
             "vport=80", "raddr=127.0.0.1", "rport=80", "rstate=BAD", "rweight=-1", "=", "%",
             "format=json", "reason=", "\t", "\x00", "\xff"]
    lines = []
    for _ in range(2000):
        if rng.random() < 0.5:
            line = " ".join(rng.choice(words) for _ in range(rng.randint(0, 8)))
        else:
            line = "".join(chr(rng.randint(1, 0x2FF)) for _ in range(rng.randint(0, 60)))
        lines.append(line.replace("\n", " ").replace("\r", " "))
    reader, writer = await connect(server)
    writer.write(("\n".join(lines) + "\nvlist\n").encode("utf-8", "surrogateescape"))
    expected = sum(1 for line in lines if line.strip(" \t")) + 1
    answers = [await response(reader) for _ in range(expected)]
    writer.close()
    assert len(answers[-1]) == 4  # the server is still answering after all that
    after = [(r.rstate, r.override, r.override_reason) for r in daemon.state.reals()]
    # only a valid rset could change something, and the words cannot form one (rstate=BAD)
    assert after == before
