"""Run Lua checks against loopback servers: a scripted dialogue server and a check runner."""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from builtin_testers import lua
from surealived.engine.flight import run_check
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
