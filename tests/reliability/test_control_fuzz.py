"""Control port fuzzing against a running daemon over real sockets: thousands of random,
oversized, binary and hostile lines, and hostile connection patterns (clients beyond the limit,
half-closed, one byte at a time, idle, reset mid-response, never reading). The daemon survives,
no error changes any state (``vlist``/``rlist`` and override.dump compared before and after), and
another client is served all along."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from .figures import Row, scale, timeout
from .harness import END, Daemon, exchange, wait_until

MAX_CLIENTS = 8
IDLE = 2
XML = """<surealived>
  <virtual name="web" addr="192.0.2.1" port="80" proto="tcp" sched="wrr" rt="dr">
    <tester proto="tcp" testport="{port}" loopdelay="1" timeout="2"/>
    <real name="a" addr="127.0.0.1" port="8080" weight="10"/>
    <real name="b" addr="127.0.0.2" port="8080" weight="20"/>
  </virtual>
  <virtual name="web6" addr="2001:db8::1" port="443" proto="tcp" sched="wlc" rt="masq">
    <tester proto="none"/>
    <real name="s1" addr="::1" port="8443" weight="5"/>
  </virtual>
  <virtual name="marked" proto="fwmark" fwmark="7" sched="wrr" rt="dr">
    <tester proto="none"/>
    <real name="m1" addr="127.0.0.3" port="0" weight="1"/>
  </virtual>
  <virtual name="empty" proto="udp" addr="192.0.2.3" port="53" sched="rr" rt="dr">
    <tester proto="tcp" testport="53"/>
  </virtual>
</surealived>
"""
OVERRIDE = ("rset vproto=tcp vaddr=192.0.2.1 vport=80 raddr=127.0.0.2 rport=8080 "
            "rstate=OFFLINE rweight=50% reason=maintenance window")

# Words of the language, and values that are never a real's exact (raddr, rport): an rset built
# from them is always an error, so the state must never move.
COMMANDS = ["vlist", "rlist", "rset", "stats", "connstats", "help", "VLIST", "rse", "vlistx",
            "", " rlist", "\trset"]
KEYS = ["vproto", "vaddr", "vport", "vfwmark", "raddr", "rport", "rstate", "rweight", "reason",
        "format", "command", "", "=", "vproto=tcp"]
VALUES = ["tcp", "udp", "fwmark", "192.0.2.1", "80", "443", "7", "127.0.0.1", "127.0.0.2",
          "::1", "[::1]", "2001:db8::1", "8081", "0", "-1", "65536", "4294967296", "OFFLINE",
          "ONLINE", "DOWN", "online", "50%", "101%", "%", "json", "text", "1e3", "\x00", "\x1b[2J",
          "\u202e", "0x50", "٣", "9" * 40, "", "$(reboot)", "`id`", ";", "\\", "\r", "\xff"]


def token() -> st.SearchStrategy[str]:
    return st.one_of(
        st.builds(lambda k, v: f"{k}={v}", st.sampled_from(KEYS), st.sampled_from(VALUES)),
        st.text(max_size=12).map(lambda s: s.replace("8080", "80")))


structured = st.builds(lambda c, ts: " ".join([c, *ts]), st.sampled_from(COMMANDS),
                       st.lists(token(), max_size=9))
binary = st.binary(max_size=300).map(lambda b: b.replace(b"8080", b"80"))
LINE = st.one_of(structured.map(lambda s: s.encode("utf-8", "surrogatepass")),
                 st.text(max_size=200).map(lambda s: s.encode("utf-8", "surrogatepass")),
                 binary).map(lambda b: b.replace(b"\n", b" "))


def answered(line: bytes) -> bool:
    """Whether the daemon owes this line a response (blank lines get none)."""
    return bool(line.decode("utf-8", "replace").rstrip("\r").strip(" \t\r\n"))


def fingerprint(daemon: Daemon) -> tuple[Any, ...]:
    reals = [(r["virtual"], r["name"], r["addr"], r["port"], r["rstate"], r["override"],
              r["reason"], r["weight"], r["online"]) for r in daemon.reals()]
    vlist = daemon.command("vlist")
    dump = daemon.state_dir / "override.dump"
    return (tuple(reals), tuple(vlist), dump.read_text() if dump.exists() else None)


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1024)
    root: Path = tmp_path_factory.mktemp("control")
    daemon = Daemon(root, XML.format(port=listener.getsockname()[1]),
                    extra=f"control_max_clients {MAX_CLIENTS}\ncontrol_idle_timeout {IDLE}\n")
    daemon.start()
    wait_until(lambda: all(r["tested"] for r in daemon.reals()), "every real tested")
    assert daemon.command(OVERRIDE)[0].startswith("Set: ")
    wait_until(lambda: "OFFLINE" in (daemon.state_dir / "override.dump").read_text()
               if (daemon.state_dir / "override.dump").exists() else False, "override.dump")
    daemon.baseline = fingerprint(daemon)  # type: ignore[attr-defined]
    daemon.fds_start = daemon.fds()  # type: ignore[attr-defined]
    daemon.rss_start = daemon.rss()  # type: ignore[attr-defined]
    try:
        yield daemon
    finally:
        alive = daemon.alive()
        status = daemon.stop()
        listener.close()
        assert alive, daemon.stderr_tail()
        assert status == 0, daemon.stderr_tail()
        assert "Traceback" not in daemon.stderr_path.read_text(), daemon.stderr_tail(80)


# -- an asyncio client ------------------------------------------------------------------------

async def converse(port: int, payload: bytes, *, timeout: float = 30.0) -> bytes:
    """Send everything, half-close, read to the end: the pipelined responses."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(payload)
        await writer.drain()
        writer.write_eof()
        return await asyncio.wait_for(reader.read(-1), timeout)
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()


async def served(port: int) -> bool:
    """A well-behaved client gets its whole ``vlist`` answer."""
    data = await converse(port, b"vlist\n", timeout=10)
    lines = data.decode().splitlines()
    return lines[-1:] == [END] and lines[0].startswith("v:0 vname=web ")


STATS = {"lines": 0, "patterns": 0}
STARTED = time.monotonic()


@pytest.mark.timeout(timeout(120))
@settings(max_examples=80 * scale(), deadline=None, database=None,
          suppress_health_check=list(HealthCheck))
@given(st.lists(st.lists(LINE, min_size=5, max_size=60), min_size=1, max_size=4))
def test_random_lines_on_concurrent_connections(daemon: Daemon,
                                                batches: list[list[bytes]]) -> None:
    """Each connection pipelines its lines and half-closes: exactly one framed response per
    non-blank line, on every connection, and errors change nothing."""

    async def run() -> list[bytes]:
        return await asyncio.gather(*(converse(daemon.control_port, b"\n".join(lines) + b"\n")
                                      for lines in batches), served_task(daemon.control_port))

    async def served_task(port: int) -> bytes:
        assert await served(port)
        return b""

    results = asyncio.run(run())
    for lines, data in zip(batches, results, strict=False):
        text = data.decode("utf-8", "replace").split("\n")
        assert text[-1] == ""  # the last response is complete
        assert text.count(END) == sum(answered(line) for line in lines), (lines, text)
        STATS["lines"] += len(lines)
    assert fingerprint(daemon) == daemon.baseline  # type: ignore[attr-defined]


# -- hostile connection patterns --------------------------------------------------------------

async def open_many(port: int, n: int) -> list[tuple[asyncio.StreamReader, asyncio.StreamWriter]]:
    return [await asyncio.open_connection("127.0.0.1", port) for _ in range(n)]


async def patterns(port: int) -> dict[str, int]:
    done: dict[str, int] = {}

    # 1. far more clients than the limit: the extra ones are told why and closed; once the
    # crowd leaves, a new client is served.
    crowd = await open_many(port, MAX_CLIENTS * 4)
    answers = await asyncio.gather(*(asyncio.wait_for(reader.read(-1), IDLE * 5)
                                     for reader, _ in crowd))
    for _, writer in crowd:
        writer.close()
    # the admitted ones are closed when idle, the others at once with the reason
    assert sum(b"too many clients" in a for a in answers) == MAX_CLIENTS * 3
    assert answers.count(b"") == MAX_CLIENTS
    await asyncio.sleep(0.2)
    assert await served(port)
    done["beyond the client limit"] = MAX_CLIENTS * 4

    # 2. oversized lines (with and without a newline): one error line, connection closed.
    for size in (8193, 65536, 1 << 20):
        for tail in (b"", b"\n"):
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(b"vlist " + b"A" * size + tail)
            with contextlib.suppress(ConnectionError):
                await writer.drain()
            data = await asyncio.wait_for(reader.read(-1), 10)
            assert b"line longer than" in data and data.endswith(END.encode() + b"\n"), size
            writer.close()
            done["oversized line"] = done.get("oversized line", 0) + 1
    assert await served(port)

    # 3. slow: one byte at a time, and a line split at every byte boundary.
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    for byte in b"rlist vproto=tcp vaddr=192.0.2.1 vport=80\n":
        writer.write(bytes([byte]))
        await writer.drain()
        await asyncio.sleep(0.005)
    data = await asyncio.wait_for(reader.readuntil(END.encode() + b"\n"), 10)
    assert b"rname=a raddr=127.0.0.1" in data
    writer.close()
    done["one byte at a time"] = 1

    # 4. half-closed: a complete line then EOF is answered; half a line then EOF is not, and
    # the connection is closed (not left hanging).
    assert (await converse(port, b"stats\n")).endswith(END.encode() + b"\n")
    assert await converse(port, b"vli", timeout=10) == b""
    done["half-closed"] = 2

    # 5. idle clients are closed after control_idle_timeout; the others are served meanwhile.
    idle = await open_many(port, MAX_CLIENTS - 2)
    assert await served(port)
    for reader, writer in idle:
        assert await asyncio.wait_for(reader.read(-1), IDLE * 5) == b""
        writer.close()
    done["idle"] = len(idle)

    # 6. a client that never reads: thousands of pipelined commands; another client is served.
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.transport.set_write_buffer_limits(high=1 << 24)
    writer.write(b"vlist format=json\nconnstats\n" * 20000)
    await asyncio.sleep(0.5)
    assert await served(port)
    done["never reads (40,000 commands pipelined)"] = 1

    # 7. reset mid-response: the reader above goes away with an RST.
    sock = writer.get_extra_info("socket")
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()
    for _ in range(20):
        r, w = await asyncio.open_connection("127.0.0.1", port)
        w.write(b"rlist vproto=tcp vaddr=192.0.2.1 vport=80 format=json\n" * 50)
        await w.drain()
        await r.read(100)
        w.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                              struct.pack("ii", 1, 0))
        w.transport.abort()
    assert await served(port)
    done["reset mid-response"] = 21

    # 8. connect and RST at once, many times.
    for _ in range(200):
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        s.connect(("127.0.0.1", port))
        s.close()
    await asyncio.sleep(0.2)
    assert await served(port)
    done["connect and reset"] = 200
    return done


def test_hostile_connection_patterns(daemon: Daemon) -> None:
    done = asyncio.run(patterns(daemon.control_port))
    STATS["patterns"] = sum(done.values())
    assert daemon.alive()
    assert fingerprint(daemon) == daemon.baseline  # type: ignore[attr-defined]


def test_no_state_change_and_fds_back(daemon: Daemon) -> None:
    """After everything: same state, and the daemon's fds back to where they were."""
    assert daemon.alive(), daemon.stderr_tail()
    assert fingerprint(daemon) == daemon.baseline  # type: ignore[attr-defined]
    start = daemon.fds_start  # type: ignore[attr-defined]
    fds = wait_until(lambda: (n if (n := daemon.fds()) <= start + 2 else 0), "fds to settle",
                     seconds=IDLE * 5)
    row = Row("control port: random lines", cases=STATS["lines"], started=STARTED)
    row.fds_before, row.fds_after = start, fds
    row.rss_before_kb, row.rss_after_kb = daemon.rss_start, daemon.rss()  # type: ignore[attr-defined]
    row.done()
    Row("control port: connection patterns", cases=STATS["patterns"],
        note="beyond limit, oversized, slow, half-closed, idle, unread, reset").done()
    # exchange() a last time through the plain client too
    assert exchange(daemon.control_port, "help")[-1] == END
    time.sleep(0)
