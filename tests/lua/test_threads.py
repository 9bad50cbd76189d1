"""Check threads are reused from one check to the next: nothing of a check (its ``t``, its
sockets, its record) reaches the next, and a check that failed, was killed or was abandoned at
its deadline leaves no trace."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from .helpers import SCRIPTS, dialogue_server, lua_check, write_script

pytestmark = pytest.mark.asyncio

SCRIPT = """
function check(t)
  if t.params == "boom" then error("boom") end
  if t.params == "spin" then while true do end end
  local before = t.seen  -- a t left by an earlier check would show here
  t.seen = t.params
  local seen = t.seen
  local s = sd.tcp()
  local ok, err = s:connect(t.addr, t.port)
  if not ok then return false, "connect: " .. err end
  local line, rerr = s:receive()
  if not line then return false, "receive: " .. rerr end
  if t.params == "slow" then s:receive() end
  return true, tostring(before) .. " " .. line .. " " .. seen
end
"""


async def test_reused_threads_start_clean(tmp_path: Path) -> None:
    script = write_script(tmp_path, SCRIPT)
    async with dialogue_server([("send", b"hello\n"), ("sleep", 5)]) as server:
        runs = [lua_check(script, server.port, params=f"p{i}") for i in range(20)]
        results = await asyncio.gather(*runs)
        assert [r.reason for r, _ in results] == [f"nil hello p{i}" for i in range(20)]
        idle = len(SCRIPTS.get(script).runtime.idle)
        assert idle >= 1  # the threads went back for the next checks

        # an error, the instruction budget and a deadline in the middle of a read each end
        # their check; the checks after them run on clean threads
        failed = await asyncio.gather(
            lua_check(script, server.port, params="boom"),
            lua_check(script, server.port, params="spin"),
            lua_check(script, server.port, params="slow", timeout=0.3))
        reasons = [r.reason for r, _ in failed]
        assert reasons[0].startswith("lua: test.lua:3: boom")
        assert reasons[1].startswith("lua: ") and "exhausted" in reasons[1]
        assert reasons[2].startswith("timeout after 0.3s")
        again = await asyncio.gather(*(lua_check(script, server.port, params=f"q{i}")
                                       for i in range(5)))
        assert [r.reason for r, _ in again] == [f"nil hello q{i}" for i in range(5)]
