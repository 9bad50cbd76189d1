"""Run Lua checks against loopback servers: a scripted dialogue server and a check runner."""

from __future__ import annotations

import asyncio
import contextlib
import os
import ssl
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from builtin_testers import lua
from surealived.engine.flight import Runner, run_check
from surealived.engine.state import CheckTiming
from surealived.engine.transcript import Transcript
from surealived.lua import ScriptRegistry
from surealived.registry import bind_services
from surealived.services import Services
from surealived.tester_api import Result, Target, Tester
from tests.testers.helpers import settings

LUA_TESTERS = Path(__file__).resolve().parents[2] / "lua_testers"



def lua_tester(scripts: ScriptRegistry) -> type[Tester]:
    """The Lua tester as a registry with these scripts hands it to the engine."""
    return bind_services(lua.LuaTester, Services(lua_scripts=scripts))


# The tests' scripts and the Lua tester bound to them, as a daemon's registry binds it to its own
SCRIPTS = ScriptRegistry()
LuaTester = lua_tester(SCRIPTS)

Step = tuple[Any, ...]


@dataclass
class Dialogue:
    """A running dialogue server: its port, and what every client sent (one entry each)."""

    port: int
    received: list[bytes] = field(default_factory=list)


@contextlib.asynccontextmanager
async def dialogue_server(steps: Sequence[Step], host: str = "127.0.0.1") -> AsyncIterator[
        Dialogue]:
    """A TCP server that plays ``steps`` to every client, in order:

    ``("send", data)``, ``("expect", delimiter)`` (read up to and including it),
    ``("read", n)``, ``("sleep", seconds)``, ``("close",)`` (close now, else after the client).
    """
    dialogue = Dialogue(0)
    tasks: set[asyncio.Task[None]] = set()

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        tasks.add(task)
        got = bytearray()
        dialogue.received.append(b"")
        index = len(dialogue.received) - 1
        try:
            for step in steps:
                if step[0] == "send":
                    writer.write(step[1])
                    await writer.drain()
                elif step[0] == "expect":
                    got += await reader.readuntil(step[1])
                elif step[0] == "read":
                    got += await reader.readexactly(step[1])
                elif step[0] == "sleep":
                    await asyncio.sleep(step[1])
                elif step[0] == "close":
                    break
                dialogue.received[index] = bytes(got)
            else:
                with contextlib.suppress(asyncio.TimeoutError):
                    while chunk := await asyncio.wait_for(reader.read(65536), 5):
                        got += chunk
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.CancelledError):
            pass
        finally:
            dialogue.received[index] = bytes(got)
            writer.transport.abort()
            tasks.discard(task)

    server = await asyncio.start_server(serve, host, 0)
    dialogue.port = int(server.sockets[0].getsockname()[1])
    try:
        yield dialogue
    finally:
        server.close()
        for task in list(tasks):
            task.cancel()
        await asyncio.sleep(0)


def write_script(directory: Path, text: str, name: str = "test.lua") -> str:
    path = directory / name
    path.write_text(text)
    return str(path)


def touch_new(path: str, text: str) -> None:
    """Rewrite a script so that its stat signature surely changes."""
    before = os.stat(path).st_mtime_ns
    with open(path, "w") as handle:
        handle.write(text)
    os.utime(path, ns=(before + 1_000_000_000, before + 1_000_000_000))


def lua_target(port: int, *, timeout: float = 3.0, addr: str = "127.0.0.1",
               **fields: Any) -> Target:
    """The target of the Lua tests' checks: real r1 of virtual v1, ``fields`` replaced."""
    base: dict[str, Any] = {"addr": addr, "port": port, "rname": "r1", "rport": 80,
                            "vname": "v1", "vaddr": "192.0.2.1", "vport": 80, "vproto": "tcp",
                            "vfwmark": 0, "timeout": timeout}
    return Target(**{**base, **fields})


async def lua_check(script: str, port: int, *, params: str = "", timeout: float = 3.0,
                    addr: str = "127.0.0.1", transcript: Transcript | None = None,
                    target: dict[str, Any] | None = None,
                    scripts: ScriptRegistry | None = None) -> tuple[Result, CheckTiming]:
    """One check of ``script`` (of the tests' SCRIPTS, or of ``scripts``)."""
    cls = LuaTester if scripts is None else lua_tester(scripts)
    options = settings(cls, script=script, params=params)
    return await run_check(cls(options),
                           lua_target(port, timeout=timeout, addr=addr, **(target or {})),
                           options, transcript=transcript)


# A script whose check compares Lua expressions with what they should be (both Lua source)
# and fails with the differences: many cases for the price of one check.
EXPECT_PRELUDE = r"""
local fails = {}
local function show(v)
  if type(v) == "string" then return string.format("%q", v) end
  return tostring(v)
end
local function expect(name, want, ok, got)
  if not ok then
    fails[#fails + 1] = name .. ": raised " .. tostring(got)
  elseif got ~= want and not (got ~= got and want ~= want) then
    fails[#fails + 1] = name .. ": got " .. show(got) .. ", want " .. show(want)
  end
end
"""


def expect_script(cases: Sequence[tuple[str, str]], setup: str = "") -> str:
    """The text of a script checking each ``(expression, expected)`` pair (Lua source): up, or
    down with every difference."""
    lines = [EXPECT_PRELUDE, "function check(t)", setup]
    for expr, want in cases:
        name = expr.replace("]==]", "] ==]")
        lines.append(f"  expect([==[{name}]==], {want}, pcall(function() return ({expr}) end))")
    lines.append('  return #fails == 0, table.concat(fails, "; ")')
    lines.append("end")
    return "\n".join(lines)


async def run_body(directory: Path, body: str, *, port: int = 1, params: str = "",
                   transcript: Transcript | None = None) -> Result:
    """The verdict of one check whose check(t) is ``body``."""
    script = write_script(directory, "function check(t)\n" + body + "\nend\n")
    result, _ = await lua_check(script, port, params=params, transcript=transcript)
    return result


async def run_expect(directory: Path, cases: Sequence[tuple[str, str]], setup: str = ""
                     ) -> Result:
    script = write_script(directory, expect_script(cases, setup))
    result, _ = await lua_check(script, 1)
    return result


@dataclass
class LineServer:
    """A running ``line_server``: its port, how many connections it took, and the open ones."""

    port: int
    connections: int = 0
    open: set[asyncio.StreamWriter] = field(default_factory=set)

    def close_all(self) -> None:
        for writer in list(self.open):
            writer.transport.abort()


@contextlib.asynccontextmanager
async def line_server(host: str = "127.0.0.1", port: int = 0,
                      tls: ssl.SSLContext | None = None) -> AsyncIterator[LineServer]:
    """A server for connections kept alive: each line gets an answer, on the same connection
    for as long as the client keeps it. ``ping`` → ``pong N`` (N: the connection's number),
    ``two`` → two lines, ``later`` → ``late`` 0.2 s later, ``bye`` → the server closes."""
    server_info = LineServer(0)
    tasks: set[asyncio.Task[None]] = set()

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        tasks.add(task)
        server_info.connections += 1
        number = server_info.connections
        server_info.open.add(writer)
        try:
            while line := (await reader.readline()).strip():
                if line == b"ping":
                    writer.write(b"pong %d\r\n" % number)
                elif line == b"two":
                    writer.write(b"one\r\ntwo\r\n")
                elif line == b"later":
                    await asyncio.sleep(0.2)
                    writer.write(b"late\r\n")
                elif line == b"bye":
                    break
                else:
                    writer.write(b"what?\r\n")
                await writer.drain()
        except (ConnectionError, ssl.SSLError, asyncio.CancelledError):
            pass
        finally:
            server_info.open.discard(writer)
            writer.transport.abort()
            tasks.discard(task)

    server = await asyncio.start_server(serve, host, port, ssl=tls)
    server_info.port = int(server.sockets[0].getsockname()[1])
    try:
        yield server_info
    finally:
        server.close()
        for task in list(tasks):
            task.cancel()
        await asyncio.sleep(0)


class Checks:
    """Lua checks on one runner, as the daemon runs them: its keepalive pool is theirs.
    ``clock``/``call_later``: fake time (tests/engine/fakes.py) to drive idle timeouts."""

    def __init__(self, clock: Any = None, call_later: Any = None) -> None:
        loop = asyncio.get_running_loop()
        self.runner = Runner(loop, self._finish, clock=clock or time.monotonic,
                             call_later=call_later)

    @staticmethod
    def _finish(verdict: asyncio.Future[Any], result: Result, timing: CheckTiming) -> None:
        if not verdict.done():
            verdict.set_result(result)

    async def run(self, script: str, port: int, *, params: str = "", timeout: float = 3.0,
                  addr: str = "127.0.0.1", **fields: Any) -> Result:
        options = settings(LuaTester, script=script, params=params)
        verdict: asyncio.Future[Result] = asyncio.get_running_loop().create_future()
        self.runner.start(verdict, LuaTester(options),
                          lua_target(port, timeout=timeout, addr=addr, **fields), options)
        return await verdict

    def close(self) -> None:
        self.runner.close()


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))
