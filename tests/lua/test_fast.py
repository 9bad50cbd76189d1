"""Lua checks on the engine's fast path give what ``run_check`` gives: the same verdicts, reasons,
problems and bytes for the same servers, whether the fast path serves the whole check or hands
the rest over to the generic driver; and they leave no thread, count or descriptor behind."""

from __future__ import annotations

import asyncio
import contextlib
import os
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from builtin_testers.lua import LuaTester
from surealived.engine.fastpath import FastPath, FastSpec
from surealived.engine.probe import run_check
from surealived.engine.state import CheckTiming
from surealived.tester_api import Result, Target
from tests.testers.helpers import settings

from .cases import CASES, Case
from .helpers import LUA_TESTERS, dialogue_server, lua_target, write_script

pytestmark = pytest.mark.asyncio
Outcome = tuple[Result, CheckTiming]

STATUS = r"""
local request = "GET / HTTP/1.0\r\n\r\n"
function check(t)
  local sock = sd.tcp()
  local ok, err = sock:connect(t.addr, t.port)
  if not ok then return false, "connect: " .. err end
  local sent, serr = sock:send(request)
  if not sent then return false, "send: " .. serr end
  local line, rerr, partial = sock:receive(12)
  if not line then return false, "status: " .. rerr .. " [" .. tostring(partial) .. "]" end
  local rest = sock:receive("*l")
  sock:close()
  if line:sub(10, 12) ~= "200" then return false, "status " .. line:sub(10, 12) end
  return true, "got " .. line .. tostring(rest)
end
"""


def lua_tester(script: str, params: str = "") -> tuple[LuaTester, dict[str, Any]]:
    options = settings(LuaTester, script=script, params=params)
    return LuaTester(options), options


def target(port: int, timeout: float = 2.0, **kw: Any) -> Target:
    return lua_target(port, timeout=timeout, **kw)


async def fast_check(tester: LuaTester, options: dict[str, Any], tgt: Target) -> Outcome:
    """One check through the engine's fast path, as the engine starts it."""
    loop = asyncio.get_running_loop()
    verdict: asyncio.Future[Outcome] = loop.create_future()
    spec = FastSpec.of(tester, tgt)
    assert spec is not None and spec.driver is not None
    path = FastPath(loop, lambda _check, result, timing: verdict.set_result((result, timing)))
    try:
        path.start(SimpleNamespace(tester=tester, settings=options), spec)
        return await verdict
    finally:
        path.close()


async def both(script: str, tgt: Target, params: str = "") -> tuple[Outcome, Outcome]:
    tester, options = lua_tester(script, params)
    generic = await run_check(tester, tgt, options)
    fast = await fast_check(tester, options, tgt)
    assert tester.script.running == 0
    return generic, fast


def same(generic: Outcome, fast: Outcome, *, read_all: bool = True) -> Result:
    """The same verdict and counts (``read_all=False``: a read cut off at a limit, after
    however many bytes the chunks it came in added up to)."""
    (g, gt), (f, ft) = generic, fast
    assert (f.ok, f.reason, f.weight, f.percent) == (g.ok, g.reason, g.weight, g.percent)
    assert (ft.problem, ft.bytes_sent) == (gt.problem, gt.bytes_sent)
    assert ft.bytes_received == gt.bytes_received or not read_all
    assert ft.total_us >= ft.conn_us >= 0 and ft.started > 0
    return f


def open_fds() -> set[str]:
    """What this process has open (descriptors, by what they point at)."""
    found = set()
    for fd in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):  # the listing's own descriptor
            found.add(os.readlink(f"/proc/self/fd/{fd}"))
    return found


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
async def test_every_shipped_script_gives_the_same_verdict(case: Case) -> None:
    async with dialogue_server(case.server) as server:
        generic, fast = await both(str(LUA_TESTERS / case.script), target(server.port),
                                   case.params)
    result = same(generic, fast)
    assert result.ok is case.ok and result.reason.startswith(case.reason), result
    # the same conversation both ways (but for what a close with RST cut off at the end)
    generic_sent, fast_sent = server.received
    assert generic_sent.startswith(fast_sent) or fast_sent.startswith(generic_sent)


REPLY = b"HTTP/1.1 200 OK\r\nServer: x\r\n\r\n"


@pytest.mark.parametrize("server, verdict", [
    (((("expect", b"\r\n\r\n"), ("send", REPLY))), "got HTTP/1.1 200 OK"),
    # the reply in pieces: each read waits for the socket
    ((("expect", b"\r\n\r\n"), ("send", b"HTTP/1.1"), ("sleep", 0.05), ("send", b" 2"),
      ("sleep", 0.05), ("send", b"00 OK\r\n")), "got HTTP/1.1 200 OK"),
    # closed mid-reply: nil, "closed", and what had come
    ((("expect", b"\r\n\r\n"), ("send", b"HTTP/1"), ("close",)), "status: closed [HTTP/1]"),
    # closed at once: nothing to send to
    ((("close",),), None),
    # a status line without its end of line: the line read fails (closed), the verdict stands
    ((("expect", b"\r\n\r\n"), ("send", b"HTTP/1.1 200"), ("close",)), "got HTTP/1.1 200nil"),
])
async def test_a_fast_exchange_matches_run_check(tmp_path: Path, server: Any,
                                                 verdict: str | None) -> None:
    script = write_script(tmp_path, STATUS)
    before = open_fds()
    async with dialogue_server(server) as dialogue:
        generic, fast = await both(script, target(dialogue.port))
    result = same(generic, fast)
    if verdict is not None:
        assert result.reason == verdict
    await asyncio.sleep(0.05)  # the server's side of aborted connections closes late
    assert open_fds() - before == set()


READ_ALL = r"""
function check(t)
  local sock = sd.tcp()
  assert(sock:connect(t.addr, t.port))
  sock:send("GET / HTTP/1.0\r\n\r\n")
  local head = sock:receive(4)
  local body, err, partial = sock:receive("*a")
  if not body then return false, "*a: " .. err .. " " .. tostring(partial and #partial) end
  return true, head .. " and " .. #body .. " bytes"
end
"""


@pytest.mark.parametrize("body, verdict", [
    (b"x" * 100_000, "HTTP and 100026 bytes"),
    (b"", "HTTP and 26 bytes"),
    (b"x" * (2 << 20), "*a: more than 1048576 bytes while waiting for the end of the reply nil"),
])
async def test_reading_to_the_end_matches_run_check(tmp_path: Path, body: bytes,
                                                    verdict: str) -> None:
    server = [("expect", b"\r\n\r\n"), ("send", REPLY + body), ("close",)]
    async with dialogue_server(server) as dialogue:
        generic, fast = await both(write_script(tmp_path, READ_ALL), target(dialogue.port))
    assert same(generic, fast, read_all=len(body) < 1 << 20).reason == verdict


async def test_a_refused_connect_is_the_scripts_to_judge(tmp_path: Path) -> None:
    probe = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    port = probe.sockets[0].getsockname()[1]
    probe.close()
    await probe.wait_closed()
    generic, fast = await both(write_script(tmp_path, STATUS), target(port))
    assert same(generic, fast).reason == "connect: connection refused"


async def test_the_deadline_ends_a_silent_exchange_and_the_thread_is_not_reused(
        tmp_path: Path) -> None:
    script = write_script(tmp_path, STATUS)
    async with dialogue_server([("expect", b"\r\n\r\n"), ("sleep", 5)]) as dialogue:
        generic, fast = await both(script, target(dialogue.port, timeout=0.3))
    result = same(generic, fast)
    assert result.reason == "timeout after 0.3s waiting for 12 bytes"

    tester, _ = lua_tester(script)
    assert tester.script.running == 0


async def test_errors_and_verdicts_of_the_script(tmp_path: Path) -> None:
    scripts = {
        "error after io": ("local s = sd.tcp(); s:connect(t.addr, t.port); "
                            "s:send('x'); error('boom')"),
        "weight": "local s = sd.tcp(); assert(s:connect(t.addr, t.port)); return 7",
        "percent": "local s = sd.tcp(); assert(s:connect(t.addr, t.port)); return '40%'",
        "no io": "return false, 'nothing to do'",
        "bad verdict": "local s = sd.tcp(); s:connect(t.addr, t.port); return {}",
        "endless loop": "local s = sd.tcp(); s:connect(t.addr, t.port); while true do end",
        # requests answered at once spend the budget as a plain loop does
        "endless sd.now()": ("local s = sd.tcp(); s:connect(t.addr, t.port); "
                             "while true do sd.now() end"),
        "endless empty reads": ("local s = sd.tcp(); s:connect(t.addr, t.port); "
                                "while true do s:receive(0) end"),
        "now": "local s = sd.tcp(); s:connect(t.addr, t.port); return sd.now() > 0",
    }
    async with dialogue_server([("sleep", 1)]) as dialogue:
        for name, body in scripts.items():
            script = write_script(tmp_path, f"function check(t) {body} end", f"{name}.lua")
            generic, fast = await both(script, target(dialogue.port))
            result = same(generic, fast)
            assert result.ok is (name in ("weight", "percent", "now")), (name, result)


# Requests the fast path leaves to the generic driver: the check goes on there, with its
# connection, what it had read and its byte counts.
HANDED_OVER = {
    "receiveuntil after a fast read": """
        local s = sd.tcp(); assert(s:connect(t.addr, t.port)); s:send("HELLO\\r\\n")
        local a = s:receive(3)
        local reader = s:receiveuntil("--")
        local b = reader()
        return false, a .. "|" .. tostring(b) .. "|" .. s:receive("*l")""",
    "sleep and log": """
        local s = sd.tcp(); assert(s:connect(t.addr, t.port)); s:send("HELLO\\r\\n")
        sd.log("info", "waiting"); sd.sleep(10)
        return false, s:receive("*l")""",
    "a second socket": """
        local s = sd.tcp(); assert(s:connect(t.addr, t.port)); s:send("HELLO\\r\\n")
        local s2 = sd.tcp(); local ok, err = s2:connect(t.addr, t.port)
        return false, tostring(ok) .. "|" .. s:receive("*l")""",
    "receiveany": """
        local s = sd.tcp(); assert(s:connect(t.addr, t.port)); s:send("HELLO\\r\\n")
        return false, s:receiveany(4) .. "|" .. s:receive("*a")""",
    "closed then used": """
        local s = sd.tcp(); assert(s:connect(t.addr, t.port)); s:close()
        local ok, err = s:send("x"); local c, cerr = s:close()
        return false, tostring(ok) .. "|" .. err .. "|" .. tostring(c) .. "|" .. cerr""",
    "udp": """
        local u = sd.udp(); assert(u:setpeername(t.addr, t.port)); u:send("x")
        return false, "sent" """,
}


# Socket timeouts, served on the fast path: a read that times out leaves the socket usable.
TIMEOUTS = {
    "settimeout": """
        local s = sd.tcp(); assert(s:connect(t.addr, t.port)); s:send("HELLO\\r\\n")
        s:settimeout(1000)
        local a = s:receive(3)
        local b, err = s:receive(100)
        return false, a .. "|" .. tostring(b) .. "|" .. tostring(err)""",
    "connect with a timeout": """
        local s = sd.tcp(); s:settimeout(500); assert(s:connect(t.addr, t.port))
        s:send("HELLO\\r\\n")
        return false, s:receive("*l")""",
    "a read times out, the next one gets the data": """
        local s = sd.tcp(); s:settimeouts(500, 500, 100); assert(s:connect(t.addr, t.port))
        local a, err = s:receive(3)
        s:settimeout(1000)
        local b, berr = s:receive("*l")
        s:settimeout(50)
        local c, cerr = s:receive(1)
        return false, tostring(a) .. "|" .. err .. "|" .. tostring(b) .. "|" .. tostring(berr)
          .. "|" .. tostring(c) .. "|" .. cerr""",
}


@pytest.mark.parametrize("name", TIMEOUTS)
async def test_socket_timeouts_give_the_same_replies(tmp_path: Path, name: str) -> None:
    script = write_script(tmp_path, f"function check(t) {TIMEOUTS[name]} end")
    server = [("sleep", 0.4), ("send", b"abc\r\n"), ("sleep", 1)]
    if name != "a read times out, the next one gets the data":
        server = [("expect", b"\r\n"), ("send", b"abcdef--ghi\r\nmore"), ("sleep", 0.5)]
    async with dialogue_server(server) as dialogue:
        generic, fast = await both(script, target(dialogue.port))
    result = same(generic, fast)
    if name == "a read times out, the next one gets the data":
        assert result.reason == "nil|timeout|abc|nil|nil|timeout", result


@pytest.mark.parametrize("name", HANDED_OVER)
async def test_what_the_fast_path_hands_over_goes_on_the_same(tmp_path: Path,
                                                             name: str) -> None:
    script = write_script(tmp_path, f"function check(t) {HANDED_OVER[name]} end")
    before = open_fds()
    server = [("expect", b"\r\n"), ("send", b"abcdef--ghi\r\nmore"), ("sleep", 0.2)]
    async with dialogue_server(server) as dialogue:
        generic, fast = await both(script, target(dialogue.port))
    result = same(generic, fast)
    assert not result.ok and result.reason, result
    # what each way said (a connection reset at once may never reach the server: not counted)
    spoken = [c for c in dialogue.received if c]
    half = len(spoken) // 2
    assert sorted(spoken[:half]) == sorted(spoken[half:])
    await asyncio.sleep(0.05)  # the server's side of aborted connections closes late
    assert open_fds() - before == set()


async def test_a_send_larger_than_the_socket_buffer_waits_and_counts_it_all(
        tmp_path: Path) -> None:
    size = 8 << 20
    script = write_script(tmp_path, f"""function check(t)
        local s = sd.tcp(); assert(s:connect(t.addr, t.port))
        local n, err = s:send(string.rep("x", {size}))
        return false, tostring(n) .. " " .. tostring(err) .. " " .. s:receive("*l") end""")
    async with dialogue_server([("read", size), ("send", b"got it\r\n")]) as dialogue:
        generic, fast = await both(script, target(dialogue.port, timeout=10))
    assert same(generic, fast).reason == f"{size} nil got it"
    assert fast[1].bytes_sent == size


async def test_a_script_that_does_not_compile_fails_its_checks(tmp_path: Path) -> None:
    generic, fast = await both(write_script(tmp_path, "function check(t"), target(1))
    assert same(generic, fast).reason.startswith("lua: ")


async def test_ssl_and_transcripts_keep_to_run_check(tmp_path: Path) -> None:
    tester, _ = lua_tester(write_script(tmp_path, STATUS))
    assert FastSpec.of(tester, target(1, ssl=True)) is None
    assert FastSpec.of(tester, target(1)) is not None


async def test_threads_go_back_for_the_next_checks(tmp_path: Path) -> None:
    script = write_script(tmp_path, STATUS)
    tester, options = lua_tester(script)
    server = [("expect", b"\r\n\r\n"), ("send", REPLY)]
    async with dialogue_server(server) as dialogue:
        results = await asyncio.gather(*(fast_check(tester, options, target(dialogue.port))
                                         for _ in range(20)))
    assert all(r.ok for r, _ in results)
    assert tester.script.running == 0
    assert len(tester.script.runtime.idle) >= 1


async def test_closing_the_fast_path_drops_checks_in_flight(tmp_path: Path) -> None:
    """The engine stopping: no verdicts, and no socket, thread count or task left behind."""
    script = write_script(tmp_path, HANDED_OVER["sleep and log"].join(
        ("function check(t) local s = sd.tcp(); assert(s:connect(t.addr, t.port)) "
         "if t.params == 'slow' then ", " end s:send('x'); return s:receive(100) end")))
    before = open_fds()
    verdicts: list[Result] = []
    async with dialogue_server([("sleep", 5)]) as dialogue:
        loop = asyncio.get_running_loop()
        path = FastPath(loop, lambda _check, result, _timing: verdicts.append(result))
        for params in ("", "slow"):  # one waits on the fast path, one was handed over
            tester, options = lua_tester(script, params)
            spec = FastSpec.of(tester, target(dialogue.port, timeout=5))
            assert spec is not None
            path.start(SimpleNamespace(tester=tester, settings=options), spec)
        await asyncio.sleep(0.3)
        path.close()
        await asyncio.sleep(0.05)
    assert verdicts == []
    assert tester.script.running == 0
    await asyncio.sleep(0.05)
    assert open_fds() - before == set()
