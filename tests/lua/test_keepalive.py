"""setkeepalive and the runner's keepalive pool: reuse by later checks of the same real only,
its bounds (size, idle time, the whole pool), connections the real closes or talks on while
idle, descriptors, and scripts that misuse it."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio

from tests.engine.fakes import FakeTime

from .helpers import Checks, line_server, open_fds, write_script

pytestmark = pytest.mark.asyncio

# one ping per check on a pooled connection: "<reply> reused=<n> keep=<ok>/<err>"
PING = """
function check(t)
  local s = sd.tcp()
  s:settimeout(2000)
  local opts = t.args.pool and { pool = t.args.pool } or nil
  local ok, err = s:connect(t.addr, t.port, opts)
  if not ok then return false, err end
  local reused = s:getreusedtimes()
  s:send((t.args.cmd or "ping") .. "\\n")
  local line, rerr = s:receive()
  if not line then return false, rerr end
  local kok, kerr = s:setkeepalive(tonumber(t.args.idle), tonumber(t.args.size))
  return true, line .. " reused=" .. reused .. " keep=" .. tostring(kok) .. "/" .. tostring(kerr)
end
"""


@pytest_asyncio.fixture
async def checks() -> AsyncIterator[Checks]:
    runner = Checks()
    try:
        yield runner
    finally:
        runner.close()


async def test_a_later_check_of_the_same_real_reuses_the_connection(
        tmp_path: Path, checks: Checks) -> None:
    script = write_script(tmp_path, PING)
    async with line_server() as srv:
        reasons = [(await checks.run(script, srv.port)).reason for _ in range(3)]
    assert reasons == ["pong 1 reused=0 keep=1/nil", "pong 1 reused=1 keep=1/nil",
                       "pong 1 reused=2 keep=1/nil"]
    assert srv.connections == 1


async def test_a_pool_never_serves_another_target(tmp_path: Path, checks: Checks) -> None:
    """Another address, port, script, params or pool name: a connection of its own."""
    script = write_script(tmp_path, PING)
    other_script = write_script(tmp_path, PING, "other.lua")
    async with line_server() as one, line_server("127.0.0.2", one.port) as same_port, \
            line_server() as two:
        first = await checks.run(script, one.port)
        others = [
            await checks.run(script, same_port.port, addr="127.0.0.2"),
            await checks.run(script, two.port),
            await checks.run(other_script, one.port),
            await checks.run(script, one.port, params="user=b"),
            await checks.run(script, one.port, params="pool=mine"),
        ]
        again = await checks.run(script, one.port)
    assert first.reason == "pong 1 reused=0 keep=1/nil"
    assert [r.reason.split(" keep")[0] for r in others] == [
        "pong 1 reused=0", "pong 1 reused=0", "pong 2 reused=0", "pong 3 reused=0",
        "pong 4 reused=0"]
    assert again.reason == "pong 1 reused=1 keep=1/nil"


async def test_unread_data_is_a_dubious_state_and_the_socket_stays(
        tmp_path: Path, checks: Checks) -> None:
    script = write_script(tmp_path, """
        function check(t)
          local s = sd.tcp()
          assert(s:connect(t.addr, t.port))
          s:send("two\\n")
          local one = s:receive()
          sd.sleep(100)  -- "two" is in
          local ok, err = s:setkeepalive()
          local two = s:receive()
          return false, table.concat({one, tostring(ok), err, two}, "|")
        end""")
    async with line_server() as srv:
        result = await checks.run(script, srv.port)
    assert result.reason == "one|nil|connection in dubious state|two"
    assert len(checks.runner.pool) == 0


async def test_data_coming_while_idle_drops_the_connection(
        tmp_path: Path, checks: Checks) -> None:
    """A request half done (its answer comes after setkeepalive) is never handed on."""
    script = write_script(tmp_path, """
        function check(t)
          local s = sd.tcp()
          assert(s:connect(t.addr, t.port))
          s:send(t.args.cmd .. "\\n")
          return s:setkeepalive()
        end""")
    async with line_server() as srv:
        assert (await checks.run(script, srv.port, params="cmd=later")).ok
        assert len(checks.runner.pool) == 1
        for _ in range(100):  # the late answer comes 0.2 s later
            if not len(checks.runner.pool):
                break
            await asyncio.sleep(0.02)
        assert len(checks.runner.pool) == 0
        ping = write_script(tmp_path, PING, "ping.lua")
        assert (await checks.run(ping, srv.port)).reason.startswith("pong 2 reused=0")


async def test_a_connection_the_real_closes_while_idle_is_dropped(
        tmp_path: Path, checks: Checks) -> None:
    script = write_script(tmp_path, PING)
    async with line_server() as srv:
        await checks.run(script, srv.port)
        srv.close_all()
        for _ in range(100):
            if not len(checks.runner.pool):
                break
            await asyncio.sleep(0.01)
        assert len(checks.runner.pool) == 0
        await checks.run(script, srv.port)
        srv.close_all()
        await asyncio.sleep(0.05)
        again = await checks.run(script, srv.port)
    assert again.reason.startswith("pong 3 reused=0")


async def test_idle_time_in_the_runners_clock(tmp_path: Path) -> None:
    """setkeepalive(ms): gone after ms; without one (or 0), after 60 s."""
    fake = FakeTime()
    checks = Checks(clock=fake.clock, call_later=fake.call_later)
    script = write_script(tmp_path, PING)
    try:
        async with line_server() as srv:
            await checks.run(script, srv.port, params="idle=5000")
            await fake.run_until(fake.now + 4)
            assert (await checks.run(script, srv.port, params="idle=5000")).reason.startswith(
                "pong 1 reused=1")
            await fake.run_until(fake.now + 6)
            assert len(checks.runner.pool) == 0
            for idle in ("", "idle=0"):
                await checks.run(script, srv.port, params=idle)
                await fake.run_until(fake.now + 59)
                assert len(checks.runner.pool) == 1
                await fake.run_until(fake.now + 2)
                assert len(checks.runner.pool) == 0
    finally:
        checks.close()


async def test_a_keys_pool_keeps_its_size(tmp_path: Path, checks: Checks) -> None:
    """The size a key's pool is made with (the first setkeepalive's) lasts while it holds
    connections: its oldest leave for newer ones. The default is 4, a huge size is 16. Each
    round opens ``n`` connections (the reuse counts show what the pool held), then parks
    them."""
    script = write_script(tmp_path, """
        local function round(t, n, size, pool)
          local socks, reused = {}, {}
          for i = 1, n do
            socks[i] = sd.tcp()
            assert(socks[i]:connect(t.addr, t.port, { pool = pool }))
            reused[i] = socks[i]:getreusedtimes()
          end
          for i = 1, n do assert(socks[i]:setkeepalive(nil, size)) end
          return table.concat(reused, ",")
        end
        function check(t)
          return true, table.concat({round(t, 5, 2), round(t, 1, 10), round(t, 3),
            round(t, 6), round(t, 6), round(t, 16, 1e300, "y"), round(t, 16, 2^53, "y")}, " ")
        end""")
    async with line_server() as srv:
        result = await checks.run(script, srv.port)
    assert result.reason.split(" ") == [
        # newest first: 2 kept of 5; the one taken back keeps the size 2; then 4 (default)
        "0,0,0,0,0", "1", "2,1,0", "1,2,3,0,0,0", "1,1,1,4,0,0", ",".join(["0"] * 16),
        ",".join(["1"] * 16)]
    assert len(checks.runner.pool) == 4 + 16


async def test_descriptors_stay_bounded_and_close_with_the_runner(tmp_path: Path) -> None:
    """1,000 checks, each parking a connection under a pool name of its own: the runner's
    whole pool is bounded (here made 20), and closing the runner closes every one."""
    script = write_script(tmp_path, """
        function check(t)
          local s = sd.tcp()
          assert(s:connect(t.addr, t.port, { pool = t.args.pool }))
          return s:setkeepalive()
        end""")
    async with line_server() as srv:
        checks = Checks()
        checks.runner.pool.max_idle = 20
        await checks.run(script, srv.port, params="pool=warm")  # the runtime, first of all
        before = open_fds()
        for i in range(1000):
            result = await checks.run(script, srv.port, params=f"pool={i % 500}")
            assert result.ok, result
            if i % 100 == 0:
                assert open_fds() <= before + 2 * 20  # ours and the server's ends
        assert len(checks.runner.pool) == 20
        checks.close()
        for _ in range(100):
            if open_fds() <= before - 2 or not srv.open:
                break
            await asyncio.sleep(0.01)
        assert open_fds() <= before - 1  # the warm one's too
        assert not srv.open


@pytest.mark.parametrize(("body", "reason"), [
    ("for i = 1, 1000 do local ok, err = s:setkeepalive()"
     " if not ok then return false, i .. ' ' .. err end end", "2 closed"),
    ("assert(s:setkeepalive()) local n, err = s:send('ping\\n') return false, tostring(n) .. err",
     "nilclosed"),
    ("assert(s:setkeepalive()) return false, tostring(select(2, s:receive()))", "closed"),
    ("local ok, err = sd.tcp():setkeepalive() return false, err", "closed"),
    ("s:send('bye\\n') s:receive('*a') local ok, err = s:setkeepalive() return false, err",
     "closed"),
    ("return s:setkeepalive(-1)", "bad argument #1 to 'setkeepalive' (milliseconds "
     "0..2147483647 expected, got -1)"),
    ("return s:setkeepalive(1e300)", "bad argument #1 to 'setkeepalive' (milliseconds"),
    ("return s:setkeepalive(0 / 0)", "bad argument #1 to 'setkeepalive' (milliseconds"),
    ("return s:setkeepalive(10, 0)", "bad argument #2 to 'setkeepalive' (a pool size of at "
     "least 1 expected, got 0)"),
    ("return s:setkeepalive(10, -1e300)", "bad argument #2 to 'setkeepalive'"),
    ("return s:setkeepalive(10, 'many')", "bad argument #2 to 'setkeepalive'"),
    ("return s:connect(t.addr, t.port, { pool_size = 0 })", "bad \"pool_size\" option value: 0"),
    ("return s:connect(t.addr, t.port, { pool = {} })", "bad \"pool\" option (a string of at "
     "most 256 bytes expected"),
    ("return s:connect(t.addr, t.port, { pool = ('x'):rep(300) })", "bad \"pool\" option"),
    ("return s:connect(t.addr, t.port, 'opts')", "bad argument #3 to 'connect' (table "
     "expected, got string)"),
    ("return s.setkeepalive({})", "bad argument #1 to 'setkeepalive' (socket expected"),
])
async def test_misuse_gets_a_clear_answer(tmp_path: Path, checks: Checks, body: str,
                                          reason: str) -> None:
    script = write_script(tmp_path, "function check(t)\nlocal s = sd.tcp()\n"
                                    "assert(s:connect(t.addr, t.port))\n" + body + "\nend\n")
    async with line_server() as srv:
        result = await checks.run(script, srv.port)
    assert not result.ok and reason in result.reason, result.reason
    assert len(checks.runner.pool) <= 1


async def test_a_huge_pool_size_option_is_bounded(tmp_path: Path, checks: Checks) -> None:
    script = write_script(tmp_path, """
        function check(t)
          local socks = {}
          for i = 1, 16 do
            socks[i] = sd.tcp()
            assert(socks[i]:connect(t.addr, t.port, { pool_size = 2^60, backlog = 5 }))
          end
          for i = 1, 16 do assert(socks[i]:setkeepalive()) end
          return true
        end""")
    async with line_server() as srv:
        for _ in range(3):
            assert (await checks.run(script, srv.port)).ok
        assert srv.connections == 16
    assert len(checks.runner.pool) == 16
