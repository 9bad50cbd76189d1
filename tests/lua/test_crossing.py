"""What a script hands to Python stays bounded where it crosses: reasons, errors and log lines cut
to their documented sizes and escaped (a newline cannot forge a log line), sd.log limited per
check and per script, the caches that keep reasons and errors bounded in bytes; and each check
has a random state of its own, seeded from the system."""

from __future__ import annotations

import logging
import subprocess
from pathlib import Path

import pytest

from surealived.engine.transcript import Transcript
from surealived.lua.crossing import ERROR_MAX, LOG_MAX, REASON_MAX, clean, first_line
from surealived.lua.scripts import LOG_BURST, REPORTED
from tests.daemon_harness import BIN

from .helpers import SCRIPTS, dialogue_server, lua_check, write_script

MB = 1 << 20


def test_clean_cuts_and_escapes() -> None:
    assert clean(b"fine reason", REASON_MAX) == "fine reason"
    assert clean(b"x" * 600, 512) == "x" * 512 + "..."
    assert clean(b"a\nb\r\x1b[31m\x7f\tc", 100) == "a\\nb\\r\\x1b[31m\\x7f\tc"
    assert clean("u\u2028v\x85".encode(), 100) == "u\\u2028v\\x85"
    assert first_line("boom\nstack traceback:\n" + "x" * MB) == "boom"
    assert first_line("y" * MB) == "y" * ERROR_MAX + "..."


@pytest.mark.asyncio
async def test_huge_reasons_are_cut_and_the_cache_stays_small(tmp_path: Path) -> None:
    """A 1 MB reason that changes every check (the issue's 12 MB one took the daemon to 1.5 GB:
    every distinct reason was kept)."""
    script = write_script(tmp_path, """
        n = 0
        function check(t)
          return false, ("r"):rep(2^20) .. math.random() .. "\\nforged line"
        end""")
    async with dialogue_server([]) as server:
        for _ in range(80):
            result, _ = await lua_check(script, server.port)
            assert not result.ok and len(result.reason) == REASON_MAX + 3
            assert "\n" not in result.reason
    kept = SCRIPTS.get(script).verdicts
    assert len(kept) <= 64
    assert sum(len(k[2]) for k in kept) <= 64 * (REASON_MAX + 1)


@pytest.mark.asyncio
async def test_huge_errors_are_cut_in_the_reason_and_the_log(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    script = write_script(tmp_path, """
        function check(t) error(("e"):rep(2^20) .. math.random() .. "\\nsecond line", 0) end""")
    async with dialogue_server([]) as server:
        for _ in range(REPORTED + 20):
            result, _ = await lua_check(script, server.port)
            assert result.reason == "lua: " + "e" * ERROR_MAX + "..."
    logged = [r.getMessage() for r in caplog.records if "logged once" in r.getMessage()]
    # the cut errors are all alike: logged once, and the set of logged errors stays small
    assert len(logged) == 1 and len(logged[0]) < 2 * ERROR_MAX
    assert sum(map(len, SCRIPTS.get(script).reported)) <= REPORTED * 4 * (ERROR_MAX + 3)


@pytest.mark.asyncio
async def test_sd_log_is_cut_escaped_and_limited_per_check(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """The transcript (surealived probe, debugcomm) shows every line the check may log; the
    log shows the same lines, as one log line each."""
    caplog.set_level(logging.DEBUG, "surealived")
    script = write_script(tmp_path, """
        function check(t)
          sd.log("info", "one\\nsurealived: forged daemon line")
          sd.log("info", ("L"):rep(2^20))
          for i = 1, 10000 do
            sd.log("debug", "line ", i)
            if i % 1000 == 0 then sd.sleep(0) end  -- flushed at each request: still one limit
          end
          return true
        end""")
    transcript = Transcript()
    async with dialogue_server([]) as server:
        result, _ = await lua_check(script, server.port, transcript=transcript)
    assert result.ok, result.reason
    notes = [n for n in transcript.render().decode().split("\n") if n.startswith("lua ")]
    assert notes[0] == "lua info: one\\nsurealived: forged daemon line"
    assert notes[1] == "lua info: " + "L" * LOG_MAX + "..."
    assert len(notes) == 100 + 1
    assert notes[-1] == "lua warn: 9902 more log lines of this check dropped (at most 100 a check)"
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("lua test.lua")]
    assert lines[0].endswith(notes[0][len("lua info: "):])
    assert all("\n" not in line for line in lines)


@pytest.mark.asyncio
async def test_sd_log_is_limited_per_script(tmp_path: Path,
                                            caplog: pytest.LogCaptureFixture) -> None:
    """Many reals of one script, each within the per-check limit, still log at most the
    script's burst, then its rate."""
    caplog.set_level(logging.DEBUG, "surealived")
    script = write_script(tmp_path, """
        function check(t) for i = 1, 100 do sd.log("info", "x") end return true end""")
    async with dialogue_server([]) as server:
        for _ in range(10):
            await lua_check(script, server.port)
    lines = [r for r in caplog.records if r.getMessage().startswith("lua test.lua")]
    assert LOG_BURST <= len(lines) < LOG_BURST + 50  # the rate refills a little meanwhile


RANDOM = """
function check(t)
  if t.args.seed then math.randomseed(7) return true end
  if t.args.seeded then math.randomseed(7) end
  local out = {}
  for i = 1, 4 do out[i] = math.random(1e9) end
  return true, table.concat(out, " ")
end"""


@pytest.mark.asyncio
async def test_randomseed_is_the_checks_own(tmp_path: Path) -> None:
    """A seed set by one check (of this script or another) changes no other check's numbers;
    a seeded check's numbers are reproducible."""
    mine = write_script(tmp_path, RANDOM, "mine.lua")
    other = write_script(tmp_path, RANDOM, "other.lua")
    async with dialogue_server([]) as server:
        seeded, _ = await lua_check(mine, server.port, params="seeded")
        again, _ = await lua_check(other, server.port, params="seeded")
        draws = []
        for script in (mine, other):
            await lua_check(other, server.port, params="seed")
            result, _ = await lua_check(script, server.port)
            draws.append(result.reason)
    assert seeded.reason == again.reason
    assert seeded.reason not in draws and draws[0] != draws[1]


def test_every_start_draws_other_numbers(tmp_path: Path) -> None:
    script = write_script(tmp_path, RANDOM)
    outs = [subprocess.run([str(BIN / "surealived"), "probe", "lua", "-q", "--addr",
                            "127.0.0.1", "--port", "9", f"script={script}"],
                           capture_output=True, text=True, timeout=60).stdout
            for _ in range(2)]
    assert outs[0].startswith("verdict: up") and outs[0] != outs[1]
