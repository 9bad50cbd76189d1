"""``require``: modules from the script's folder and from lua_path, loaded once per runtime and
kept across checks, loaded again when their file changes (a broken edit keeps the last good
version and says where), and held to the sandbox's limits like script code."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest
from click.testing import CliRunner

from surealived.cli import main
from surealived.config.main import parse_maincfg
from surealived.lua import Limits, ScriptRegistry

from .helpers import SCRIPTS, dialogue_server, lua_check, touch_new, write_script

pytestmark = pytest.mark.asyncio

COUNTER = """
local _M = { loads = 0, n = 0 }
_M.loads = _M.loads + 1
function _M.bump() _M.n = _M.n + 1 return _M.n end
return _M
"""

USES_COUNTER = """
local counter = require "counter"
runs = (runs or 0) + 1  -- the main chunk runs once per version
function check(t)
  return true, counter.bump() .. " " .. counter.loads .. " " .. runs
end
"""


def write(path: Path, text: str) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return str(path)


async def reasons(script: str, n: int, scripts: ScriptRegistry | None = None, **kw: str
                  ) -> list[str]:
    return [(await lua_check(script, 9, scripts=scripts, **kw))[0].reason for _ in range(n)]


async def test_a_module_from_the_script_folder_is_loaded_once_and_kept(tmp_path: Path) -> None:
    write(tmp_path / "counter.lua", COUNTER)
    script = write_script(tmp_path, USES_COUNTER)
    assert await reasons(script, 3) == ["1 1 1", "2 1 1", "3 1 1"]


async def test_modules_from_lua_path_folders_and_templates(tmp_path: Path) -> None:
    lib, other = tmp_path / "lib", tmp_path / "other"
    write(lib / "resty" / "thing.lua", "return { name = 'thing' }")
    write(lib / "pkg" / "init.lua", "return { name = 'pkg' }")
    write(other / "mod_x.lua", "return { name = 'x' }")
    cfg = parse_maincfg(f"lua_path lib;;{other}/mod_?.lua\n", str(tmp_path / "surealived.cfg"))
    assert cfg.lua_path == (f"{lib}/?.lua", f"{lib}/?/init.lua", f"{other}/mod_?.lua")
    scripts = ScriptRegistry(lua_path=cfg.lua_path)
    (tmp_path / "scripts").mkdir()
    script = write_script(tmp_path / "scripts", """
        local a, b, c = require "resty.thing", require("pkg"), require 'x'
        function check(t) return true, a.name .. b.name .. c.name end""")
    assert await reasons(script, 1, scripts) == ["thingpkgx"]
    # the script's folder comes first; a module already loaded stays until its file changes
    write(Path(script).parent / "pkg.lua", "return { name = 'mine' }")
    touch_new(script, Path(script).read_text())
    assert await reasons(script, 1, scripts) == ["thingpkgx"]
    assert await reasons(script, 1, ScriptRegistry(lua_path=cfg.lua_path)) == ["thingminex"]


async def test_module_errors_name_the_module_file(tmp_path: Path) -> None:
    write(tmp_path / "resty" / "bad.lua", "local _M = {}\nfunction _M.go(x)\n  return x.y\nend\n"
                                          "return _M\n")
    script = write_script(tmp_path, "local bad = require 'resty.bad'\n"
                                    "function check(t) return bad.go(nil) end\n")
    result, _ = await lua_check(script, 9)
    assert result.reason == "lua: resty/bad.lua:3: attempt to index local 'x' (a nil value)"


async def test_a_lazy_require_in_check_is_kept_too(tmp_path: Path) -> None:
    write(tmp_path / "counter.lua", COUNTER)
    script = write_script(tmp_path, """
        function check(t)
          local c = require("counter")
          return true, c.bump() .. " " .. c.loads
        end""")
    assert await reasons(script, 3) == ["1 1", "2 1", "3 1"]


async def test_interleaved_checks_share_module_state(tmp_path: Path) -> None:
    """Checks of many reals run as coroutines in one runtime, as OpenResty's request handlers
    in one worker: they see one module table."""
    write(tmp_path / "counter.lua", COUNTER)
    script = write_script(tmp_path, """
        local counter = require "counter"
        function check(t)
          local s = sd.tcp()
          assert(s:connect(t.addr, t.port))
          local line = s:receive()
          return true, tostring(counter.bump())
        end""")
    async with dialogue_server([("sleep", 0.2), ("send", b"hi\n")]) as server:
        results = await asyncio.gather(*(lua_check(script, server.port) for _ in range(10)))
    assert sorted(int(r.reason) for r, _ in results) == list(range(1, 11))


async def test_hot_edit_of_a_module(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    module = write(tmp_path / "ver.lua", "return { v = 'v1' }\n")
    write(tmp_path / "counter.lua", COUNTER)
    script = write_script(tmp_path, """
        local ver, counter = require "ver", require "counter"
        function check(t) return true, ver.v .. " " .. counter.bump() end""")
    assert await reasons(script, 2) == ["v1 1", "v1 2"]

    touch_new(module, "return { v = 'v2' }\n")
    # a new version: the script's main chunk again, the changed module again, the other kept
    assert await reasons(script, 2) == ["v2 3", "v2 4"]

    touch_new(module, "local x = 1\nreturn { v = = 'v3' }\n")
    assert await reasons(script, 3) == ["v2 5", "v2 6", "v2 7"]  # the last good version runs
    problem = SCRIPTS.errors()[script]
    assert problem.message == f"{module}:2: unexpected symbol near '='" and problem.running_old
    logged = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
    assert logged == [f"Lua script {script}: {problem.message} (the previous version keeps "
                      "running)"]

    touch_new(module, "return { v = 'v4' }\n")
    assert await reasons(script, 1) == ["v4 8"]
    assert script not in SCRIPTS.errors()


async def test_hot_edit_of_a_module_required_in_check(tmp_path: Path) -> None:
    module = write(tmp_path / "ver.lua", "return { v = 'v1' }\n")
    script = write_script(tmp_path, "function check(t) return true, require('ver').v end")
    assert await reasons(script, 1) == ["v1"]
    touch_new(module, "return { v = 'v2' }\n")
    assert await reasons(script, 1) == ["v2"]
    touch_new(module, "error('broken on purpose')\n")
    assert await reasons(script, 2) == ["v2", "v2"]
    problem = SCRIPTS.errors()[script]
    assert problem.message == f"{module}:1: broken on purpose"
    os.unlink(module)  # a module gone: the version that needs it keeps it
    assert await reasons(script, 1) == ["v2"]


async def test_an_edit_of_the_script_keeps_the_state_of_its_modules(tmp_path: Path) -> None:
    write(tmp_path / "counter.lua", COUNTER)
    script = write_script(tmp_path, USES_COUNTER)
    assert await reasons(script, 2) == ["1 1 1", "2 1 1"]
    touch_new(script, USES_COUNTER + "-- edited\n")
    assert await reasons(script, 2) == ["3 1 1", "4 1 1"]  # same module table, fresh globals


async def test_the_script_main_chunk_runs_once_per_version(tmp_path: Path) -> None:
    script = write_script(tmp_path, """
        loads = (loads or 0) + 1
        local seen = {}
        function check(t)
          seen[#seen + 1] = t.params
          return true, loads .. " " .. #seen
        end""")
    assert [(await lua_check(script, 9, params=p))[0].reason for p in "abc"] == [
        "1 1", "1 2", "1 3"]
    touch_new(script, Path(script).read_text() + "\n")
    assert await reasons(script, 1) == ["1 1"]  # a new version starts from a fresh environment


async def test_original_api_scripts_keep_fresh_globals_but_share_modules(tmp_path: Path) -> None:
    write(tmp_path / "counter.lua", COUNTER)
    script = write_script(tmp_path, """
        local counter = require "counter"
        seen = (seen or 0) + 1
        function prepare() end
        function process_event(txt)
          if seen ~= 1 then return "efail" end
          counter.bump()
          if counter.n == 3 then return "efail" end
          return "eok"
        end""")
    async with dialogue_server([]) as server:
        results = [(await lua_check(script, server.port))[0] for _ in range(3)]
    assert [r.ok for r in results] == [True, True, False]


@pytest.mark.parametrize(("name", "text"), [
    ("../../etc/passwd", "bad argument #1 to 'require' (a module name such as resty.redis"),
    ("/etc/passwd", "bad argument #1 to 'require'"),
    ("a\\0b", "bad argument #1 to 'require'"),
    ("a..b", "bad argument #1 to 'require'"),
    (".a", "bad argument #1 to 'require'"),
    ("a.", "bad argument #1 to 'require'"),
    ("", "bad argument #1 to 'require'"),
])
async def test_names_that_could_escape_are_refused(tmp_path: Path, name: str, text: str) -> None:
    script = write_script(tmp_path, f"""
        function check(t)
          local ok, err = pcall(require, "{name}")
          return false, not ok and err or "loaded!"
        end""")
    result, _ = await lua_check(script, 9)
    assert result.reason.startswith(text), result.reason


async def test_require_of_a_non_string_is_refused(tmp_path: Path) -> None:
    script = write_script(tmp_path, "function check(t) local m = require({}) return m end")
    result, _ = await lua_check(script, 9)
    assert result.reason == ("lua: test.lua:1: bad argument #1 to 'require' (string expected, "
                             "got table)")


async def test_missing_module(tmp_path: Path) -> None:
    script = write_script(tmp_path, "function check(t)\n  local m = require('resty.nope')\nend")
    result, _ = await lua_check(script, 9)
    assert result.reason == (f"lua: test.lua:2: module 'resty.nope' not found (no file "
                             f"{tmp_path}/resty/nope.lua, {tmp_path}/resty/nope/init.lua)")
    optional = write_script(tmp_path, """
        local ok = pcall(require, "ffi")  -- as OpenResty's libraries probe for it (LuaJIT only)
        local has_new = pcall(require, "table.new")  -- a built-in module
        function check(t) return not ok and has_new end""", "optional.lua")
    assert (await lua_check(optional, 9))[0].ok


async def test_a_require_cycle_is_an_error(tmp_path: Path) -> None:
    write(tmp_path / "a.lua", "local b = require 'b'\nreturn {}\n")
    write(tmp_path / "b.lua", "\nlocal a = require 'a'\nreturn {}\n")
    script = write_script(tmp_path, "function check(t) return require('a') end")
    result, _ = await lua_check(script, 9)
    assert result.reason == "lua: b.lua:2: require cycle: a -> b -> a"
    at_load = write_script(tmp_path, "require 'a'\nfunction check(t) return true end",
                           "load.lua")
    assert SCRIPTS.get(at_load).error == f"{tmp_path}/b.lua:2: require cycle: a -> b -> a"


async def test_a_module_that_requires_itself(tmp_path: Path) -> None:
    write(tmp_path / "me.lua", "require 'me'\nreturn {}\n")
    script = write_script(tmp_path, "function check(t) return require('me') end")
    assert (await lua_check(script, 9))[0].reason == "lua: me.lua:1: require cycle: me -> me"


@pytest.mark.parametrize(("body", "expected"), [
    ("", "boolean true"),
    ("return false", "boolean false"),
    ("return function() return 42 end", "function"),
    ("return 1, 2", "number 1"),
    ("return 'text'", "string text"),
])
async def test_a_module_returning_odd_values(tmp_path: Path, body: str, expected: str) -> None:
    write(tmp_path / "odd.lua", body)
    script = write_script(tmp_path, """
        local odd = require "odd"
        function check(t)
          local again = require "odd"
          if again ~= odd then return false, "not kept" end
          if type(odd) == "function" then return true, "function" end
          return true, type(odd) .. " " .. tostring(odd)
        end""")
    assert await reasons(script, 2) == [expected, expected]


async def test_a_module_raising_a_table(tmp_path: Path) -> None:
    write(tmp_path / "raise.lua", "error({ code = 1 })")
    script = write_script(tmp_path, """
        function check(t)
          local ok, err = pcall(require, "raise")
          return true, type(err) .. " " .. tostring(err.code)
        end""")
    assert await reasons(script, 1) == ["table 1"]


async def test_module_globals_are_its_own(tmp_path: Path) -> None:
    write(tmp_path / "leaky.lua", "helper = 1\nreturn { seen = mine }\n")
    script = write_script(tmp_path, """
        mine = "script's"
        local leaky = require "leaky"
        function check(t) return true, tostring(helper) .. " " .. tostring(leaky.seen) end""")
    assert await reasons(script, 1) == ["nil nil"]


async def test_an_endless_loop_in_a_module_main_chunk_is_stopped(tmp_path: Path) -> None:
    write(tmp_path / "spin.lua", "while true do end")
    script = write_script(tmp_path, "function check(t) return require('spin') end")
    result, _ = await lua_check(script, 9)
    assert result.reason.startswith("lua: ") and "exhausted" in result.reason
    at_load = write_script(tmp_path, "require 'spin'\nfunction check(t) return true end",
                           "load.lua")
    error = SCRIPTS.get(at_load).error
    assert error.startswith(f"{at_load}: ") and "exhausted" in error


async def test_a_memory_bomb_in_a_module_is_stopped(tmp_path: Path) -> None:
    write(tmp_path / "bomb.lua", "local t = {}\nfor i = 1, 1e9 do t[i] = ('x'):rep(1000) .. i end")
    scripts = ScriptRegistry(Limits(memory=16 << 20, instructions=100_000_000))
    script = write_script(tmp_path, """
        function check(t)
          if t.params == "bomb" then return require('bomb') end
          return true, "fine"
        end""")
    # the cap, or the CPU the collector burns near it, ends the check; the next one runs
    stopped = ("lua: memory limit of the Lua runtime reached",
               "lua: CPU time limit exhausted (0.2 s without I/O)")
    result, _ = await lua_check(script, 9, params="bomb", scripts=scripts)
    assert result.reason in stopped
    assert (await lua_check(script, 9, scripts=scripts))[0].reason == "fine"
    at_load = write_script(tmp_path, "require 'bomb'\nfunction check(t) return true end",
                           "load.lua")
    assert scripts.get(at_load).error in [f"{at_load}: {s[5:]}" for s in stopped]


async def test_no_io_in_a_module_main_chunk(tmp_path: Path) -> None:
    write(tmp_path / "io.lua", "local s = sd.tcp()\nlocal ok = s:connect('127.0.0.1', 9)\n")
    script = write_script(tmp_path, "function check(t) return require('io') end")
    result, _ = await lua_check(script, 9)
    assert result.reason.startswith("lua: io.lua:2: no I/O while the script loads")


async def test_files_a_module_may_not_be(tmp_path: Path) -> None:
    write(tmp_path / "huge.lua", "return {}\n" + "-- padding\n" * 100_000)
    write(tmp_path / "bin.lua", "\x1bLua garbage")
    (tmp_path / "dir.lua").mkdir()
    os.mkfifo(tmp_path / "fifo.lua")
    script = write_script(tmp_path, """
        function check(t)
          local ok, err = pcall(require, t.params)
          return false, err
        end""")
    got = {p: (await lua_check(script, 9, params=p))[0].reason for p in
           ("huge", "bin", "dir", "fifo")}
    assert got == {
        "huge": f"{tmp_path}/huge.lua: larger than 1048576 bytes",
        "bin": "bin.lua: binary chunks are refused",
        "dir": f"{tmp_path}/dir.lua: not a regular file",
        "fifo": f"{tmp_path}/fifo.lua: not a regular file",
    }


async def test_many_missing_lookups_end_in_the_budget(tmp_path: Path) -> None:
    scripts = ScriptRegistry(Limits(instructions=1_000_000))
    script = write_script(tmp_path, """
        function check(t)
          for i = 1, 1e9 do pcall(require, "nope" .. i) end
        end""")
    result, _ = await lua_check(script, 9, scripts=scripts)
    assert "instruction budget exhausted" in result.reason


async def test_two_registries_load_their_own_modules(tmp_path: Path) -> None:
    write(tmp_path / "counter.lua", COUNTER)
    script = write_script(tmp_path, USES_COUNTER)
    one, two = ScriptRegistry(), ScriptRegistry()
    assert await reasons(script, 2, one) == ["1 1 1", "2 1 1"]
    assert await reasons(script, 1, two) == ["1 1 1"]


@pytest.mark.filterwarnings("ignore:The test <Function")
def test_check_config_reports_a_broken_module_with_file_and_line(tmp_path: Path) -> None:
    lib = tmp_path / "lib"
    broken = write(lib / "resty" / "broken.lua", "local _M = {}\n\nfunction _M.x(\nreturn _M\n")
    lazy = write(lib / "resty" / "lazy.lua", "return {\n  a = 1,,\n}\n")
    script = write_script(tmp_path, "local b = require 'resty.broken'\n"
                                    "function check(t) return true end\n", "uses.lua")
    lazily = write_script(tmp_path, "function check(t)\n  return require('resty.lazy')\nend\n"
                                    "-- require 'resty.commented'\n"
                                    "local function f() return require 'resty.dir' end\n",
                          "lazily.lua")
    missing = write_script(tmp_path, "function check(t)\n\n  return require 'resty.gone'\nend\n",
                           "missing.lua")  # optional, maybe: found when it runs
    xml = tmp_path / "sd.xml"
    virtuals = "".join(
        f'<virtual name="v{i}" addr="192.0.2.{i + 1}" port="80" proto="tcp" sched="wrr" rt="dr">'
        f'<tester proto="lua" testport="80" script="{path}"/>'
        f'<real name="r1" addr="192.0.2.100" port="80" weight="1"/></virtual>'
        for i, path in enumerate((script, lazily, missing)))
    (lib / "resty" / "dir.lua").mkdir()
    xml.write_text(f"<surealived>{virtuals}</surealived>")
    cfg = tmp_path / "surealived.cfg"
    cfg.write_text("lua_path lib\n")
    result = CliRunner().invoke(main, ["-t", "-c", str(cfg), str(xml)])
    assert result.exit_code == 1
    assert f"{broken}:4: <name> or '...' expected near 'return'" in result.output
    assert f"{lazy}:2: unexpected symbol near ','" in result.output
    assert f"{lazily}:5: {lib}/resty/dir.lua: not a regular file" in result.output
    assert "resty.gone" not in result.output and "resty.commented" not in result.output


async def test_a_module_that_holds_a_changed_module_is_loaded_again(tmp_path: Path) -> None:
    """``helper`` keeps ``ver`` in a local: when ver.lua changes, helper is loaded again too
    (else it would go on with the old ver), and a module that did not use it keeps its state."""
    module = write(tmp_path / "ver.lua", "return { v = 'v1' }\n")
    write(tmp_path / "helper.lua", "local ver = require 'ver'\n"
                                   "return { get = function() return ver.v end }\n")
    write(tmp_path / "counter.lua", COUNTER)
    script = write_script(tmp_path, """
        local helper, counter = require "helper", require "counter"
        function check(t) return true, helper.get() .. " " .. counter.bump() end""")
    assert await reasons(script, 1) == ["v1 1"]
    touch_new(module, "return { v = 'v2' }\n")
    assert await reasons(script, 1) == ["v2 2"]


async def test_a_socket_kept_across_checks_serves_only_its_own_check(tmp_path: Path) -> None:
    """State lives on between checks, but a socket is its check's: one kept in a module (or the
    script's globals) and used by a later check is refused by name, as OpenResty refuses a
    cosocket of another request."""
    write(tmp_path / "keeper.lua", "return { sock = false }\n")
    script = write_script(tmp_path, """
        local keeper = require "keeper"
        function check(t)
          if not keeper.sock then
            keeper.sock = sd.tcp()
            keeper.sock:settimeout(100)  -- its own check: fine
            return true
          end
          keeper.sock:settimeout(100)
          return true
        end""")
    first, _ = await lua_check(script, 9)
    assert first.ok, first.reason
    second, _ = await lua_check(script, 9)
    assert second.reason == ("lua: test.lua:9: bad argument #1 to 'settimeout' (a socket of "
                             "another check: make sockets in the check that uses them)")
