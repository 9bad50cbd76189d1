"""Hostile scripts: every escape, bomb and loop we could think of fails its own check with a clear
reason, while the runtime and other checks go on."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from .helpers import SCRIPTS, dialogue_server, lua_check, write_script

pytestmark = pytest.mark.asyncio

# (name, body of check(t), expected: "up" or a substring of the down reason)
ESCAPES = [
    ("python global", "return python.eval('1')", "attempt to index global 'python'"),
    ("python via _G", "return _G.python == nil", "up"),
    ("string metatable", "return getmetatable('').__index.dump",
     "attempt to index a boolean value"),
    ("string.dump", "return string.dump(check)", "attempt to call field 'dump'"),
    ("dump via method", "return ('').dump == nil", "up"),
    ("bytecode via loadstring",
     r"local f, err = loadstring('\27Lua\81\0\1\4\8\4\8\0'); return f == nil, err", "up"),
    ("bytecode via load",
     r"local n = 0; local f, err = load(function() n = n + 1;"
     r" if n == 1 then return '\27Lua' end end);"
     " return f == nil and err == 'attempt to load a binary chunk'", "up"),
    ("debug library", "return debug.getinfo(1)", "attempt to index global 'debug'"),
    ("absent globals",
     "return io == nil and dofile == nil and loadfile == nil and package == nil"
     " and module == nil and getfenv == nil and setfenv == nil and newproxy == nil"
     " and gcinfo == nil and os.execute == nil and os.exit == nil and os.getenv == nil"
     " and os.remove == nil and string.dump == nil", "up"),
    ("getfenv(0)", "return getfenv(0)", "attempt to call global 'getfenv'"),
    ("loadstring env",
     "local f = loadstring('return os.execute or io or debug'); return f() == nil", "up"),
    ("_G walk", """
        local seen, bad = {}, {}
        local function walk(t, depth)
          if seen[t] or depth > 4 then return end
          seen[t] = true
          for k, v in pairs(t) do
            if type(v) == 'userdata' or type(v) == 'thread' then bad[#bad + 1] = tostring(k) end
            if type(v) == 'table' then walk(v, depth + 1) end
          end
          local mt = getmetatable(t)
          if type(mt) == 'table' then walk(mt, depth + 1) end
        end
        walk(_G, 0)
        walk(t, 0)
        return #bad == 0, table.concat(bad, ',')""", "up"),
    ("env metatable", "return getmetatable(_G) == false and getmetatable(string) == false", "up"),
    ("modify string lib", "string.format = nil", "read-only table 'string'"),
    ("setmetatable on lib", "setmetatable(string, {})", "cannot change a protected metatable"),
    ("collectgarbage stop", "collectgarbage('stop')", "only \"count\" and \"collect\""),
    ("yield at top level", "coroutine.yield('connect', 1, '192.0.2.1', 80)",
     "attempt to yield from outside a coroutine"),
    ("forged request in a user coroutine", """
        local co = coroutine.create(function() coroutine.yield('connect', 1, '192.0.2.1', 80) end)
        local ok, op = coroutine.resume(co)
        return ok and op == 'connect'""", "up"),
    ("resume the check thread", "return coroutine.resume(coroutine.running())",
     "bad argument #1 to 'resume'"),
    ("error with a table", "error({code = 1})", "error object is not a string"),
    ("error with a looping __tostring",
     "error(setmetatable({}, {__tostring = function() while true do end end}))",
     "error object is not a string"),
    ("connect elsewhere",
     "local s = sd.tcp(); local ok, err = s:connect('127.0.0.2', t.port); return ok, err",
     "only the real under test (127.0.0.1) may be reached"),
    ("connect after changing t.addr",
     "t.addr = '127.0.0.2'; local s = sd.tcp(); local ok, err = s:connect(t.addr, t.port);"
     " return ok, err", "only the real under test (127.0.0.1) may be reached"),
    ("udp elsewhere",
     "local s = sd.udp(); local ok, err = s:setpeername('127.0.0.2', t.port); return ok, err",
     "only the real under test (127.0.0.1) may be reached"),
    ("connect by name",
     "local s = sd.tcp(); local ok, err = s:connect('localhost', t.port); return ok, err",
     "only the real under test"),
    ("too many open sockets",
     "for i = 1, 100 do local s = sd.tcp(); local ok, err = s:connect(t.addr, t.port)"
     " if not ok then return false, i .. ': ' .. err end end",
     "17: too many sockets (at most 16 open per check)"),
    ("forged socket ids",
     "local s = sd.tcp() for i = 2, 40 do rawset(s, '_id', i + 0.5)"
     " local ok, err = s:connect(t.addr, t.port) if not ok then return false, err end end",
     "not a socket of this check"),
    ("pattern bomb",
     "return string.find(('a'):rep(20000), ('a?'):rep(20000) .. ('a'):rep(20000))",
     "pattern longer than 512 bytes"),
    ("pattern bomb via method", "return ('a'):rep(100):match(('(a?)'):rep(300))",
     "pattern longer than 512 bytes"),
    # C's rep loops n times even for "": returned at once instead
    ("rep of an empty string", "return ('').rep('', 2^31 - 1) == ''", "up"),
    ("rep bomb", "return ('x'):rep(1e9)", "result longer than"),
    # numbers as strings, negative and NaN counts go through the same check
    ("rep count as a string", "return ('x'):rep('1e9')", "result longer than"),
    ("rep of a number", "return string.rep(12345, 2^30)", "result longer than"),
    ("rep with a negative count", "return ('x'):rep(-2^62) == '' and ('x'):rep(0/0) == ''", "up"),
    ("concat with a huge separator",
     "local t = {} for i = 1, 1000 do t[i] = '' end return table.concat(t, ('x'):rep(2^20))",
     "result longer than"),
    ("concat of one big string many times",
     "local big, t = ('x'):rep(2^20), {} for i = 1, 100 do t[i] = big end"
     " return table.concat(t)", "result longer than"),
    ("gsub growing its result",
     "return (('x'):rep(2^16):gsub('x', ('y'):rep(2^10)))", "gsub result longer than"),
    ("gsub with a table of big values",
     "return (('x'):rep(2^16):gsub('.', {x = ('y'):rep(2^10)}))", "gsub result longer than"),
    ("format of a huge %q", "return string.format('%q', ('\\0'):rep(2^23))",
     "result longer than"),
    ("insert at the front of a big table",
     "local t = {} for i = 1, 2^20 + 10 do t[i] = i end table.insert(t, 1, 0)",
     "moves more than"),
    ("os.date with a long format", "return os.date(('%c'):rep(1e4))", "format longer than"),
    ("loadstring of a huge chunk",
     "local f, err = loadstring(('x = 1 '):rep(1e5)) return f ~= nil, err",
     "chunk longer than"),
    # numbers Python cannot take: NaN and infinity
    ("sleep for NaN", "sd.sleep(0/0)", "bad argument #1 to 'sleep'"),
    ("sleep forever", "sd.sleep(math.huge)", "bad argument #1 to 'sleep'"),
    ("NaN timeout", "local s = sd.tcp() s:settimeout(0/0)", "bad argument #1 to 'settimeout'"),
    ("infinite timeouts", "local s = sd.tcp() s:settimeouts(1, math.huge, 1)",
     "bad argument #2 to 'settimeouts'"),
    ("receiveany of NaN",
     "local s = sd.tcp() assert(s:connect(t.addr, t.port)) return s:receiveany(0/0)",
     "bad argument #1 to 'receiveany'"),
    ("receiveany of infinity",
     "local s = sd.tcp() assert(s:connect(t.addr, t.port)) return s:receiveany(math.huge)",
     "bad argument #1 to 'receiveany'"),
    ("udp receive of NaN",
     "local u = sd.udp() assert(u:setpeername(t.addr, t.port)) return u:receive(0/0)",
     "bad argument #1 to 'receive'"),
    ("receive of infinity",
     "local s = sd.tcp() assert(s:connect(t.addr, t.port)) return s:receive(math.huge)",
     "bad argument #1 to 'receive'"),
    ("random of infinity", "return math.random(math.huge)", "bad argument #1 to 'random'"),
]

# a memory bomb meets the memory cap, or on a busy machine the CPU slice first: both contain it
MEMORY = "memory limit of the Lua runtime reached|CPU time limit exhausted"
# work in C: the instruction budget or the CPU slice stops it, whichever first
CUT_OFF = "instruction budget exhausted|CPU time limit exhausted"
BOMBS = [
    ("endless loop", "while true do end", "instruction budget exhausted"),
    ("endless loop in pcall in a loop",
     "while true do pcall(function() while true do end end) end", "instruction budget exhausted"),
    ("endless loop in xpcall handler",
     "xpcall(function() error('x') end, function() while true do end end)",
     "instruction budget exhausted"),
    ("endless coroutine",
     "local co = coroutine.wrap(function() while true do coroutine.yield() end end)"
     " while true do co() end", "instruction budget exhausted"),
    ("endless sd.now()", "while true do sd.now() end", "instruction budget exhausted"),
    ("endless closes of a closed socket", "local s = sd.tcp() while true do s:close() end",
     "instruction budget exhausted"),
    ("endless empty reads",
     "local s = sd.tcp() assert(s:connect(t.addr, t.port)) while true do s:receive(0) end",
     "instruction budget exhausted"),
    ("loop in __tostring via print",
     "print(setmetatable({}, {__tostring = function() while true do end end}))",
     "instruction budget exhausted"),
    ("loop in a gsub callback", "('x'):rep(10):gsub('.', function() while true do end end)",
     "instruction budget exhausted"),
    ("loop in a sort comparator",
     "table.sort({3, 2, 1}, function(a, b) while true do end end)",
     "instruction budget exhausted"),
    ("memory bomb", "local t = {} for i = 1, 1e8 do t[i] = ('x'):rep(1048576) .. i end",
     MEMORY),
    ("memory churn", "local t = {} for i = 1, 1e8 do t[i] = ('x'):rep(4096) .. i end",
     "CPU time limit exhausted"),
    ("memory churn after I/O",
     "local s = sd.tcp() assert(s:connect(t.addr, t.port)) s:receive()"
     " for i = 1, 1e9 do local x = ('x'):rep(4096) .. i end", "CPU time limit exhausted"),
    ("memory churn in a coroutine after I/O",
     "coroutine.wrap(function() local s = sd.tcp() assert(s:connect(t.addr, t.port))"
     " s:receive() for i = 1, 1e9 do local x = ('x'):rep(4096) .. i end end)()",
     "CPU time limit exhausted"),
    ("memory bomb caught by pcall",
     "local t = {} while true do pcall(function() t[#t + 1] = ('y'):rep(1048576) .. #t end) end",
     MEMORY),
    ("string doubling", "local s = 'x' while true do s = s .. s end",
     MEMORY),
    ("deep recursion", "local function f(n) return 1 + f(n + 1) end return f(1)", "stack overflow"),
    ("deep pcall nesting", "local function f() local ok, e = pcall(f) error(e, 0) end f()",
     "stack overflow"),
    # work inside one C call, which no instruction hook sees
    ("lazy items before a missing byte",
     "return ('a'):rep(300):find(('.-'):rep(4) .. 'x')", CUT_OFF),
    ("greedy items before a missing byte",
     "return ('a'):rep(300):match(('a*'):rep(4) .. 'b')", CUT_OFF),
    ("backtracking gmatch", "for m in ('a'):rep(300):gmatch(('a-'):rep(4) .. 'b') do end",
     CUT_OFF),
    ("backtracking gsub", "return ('a'):rep(300):gsub(('.?'):rep(30) .. '.-.-b', '')", CUT_OFF),
    ("backtracking back references",
     "return ('a'):rep(300):find('(.-)(.-)%1%2%1%2x')", CUT_OFF),
    ("a loop of dear C calls", "local s = ('a'):rep(1000)"
     " for i = 1, 1e6 do s:find('.-.-b') end", CUT_OFF),
    ("a loop of plain finds with a repetitive needle",
     "local s, p = ('a'):rep(2^20), ('a'):rep(2^10) .. 'b'"
     " for i = 1, 1e6 do s:find(p, 1, true) end", CUT_OFF),
    ("sort of many numbers without a comparator",
     "local t = {} for i = 1, 2e6 do t[i] = -i end table.sort(t)", CUT_OFF),
    ("recursion through metamethods",
     "local t = setmetatable({}, {}) getmetatable(t).__index = function(s, k) return s[k] end"
     " return t.x", "stack overflow"),
]


def _script(tmp_path: Path, name: str, body: str) -> str:
    safe = "".join(c if c.isalnum() else "_" for c in name)
    return write_script(tmp_path, f"function check(t)\n{body}\nend\n", f"{safe}.lua")


def _assert(result, expected: str) -> None:  # type: ignore[no-untyped-def]
    if expected == "up":
        assert result.ok, result.reason
    else:
        assert not result.ok
        assert any(e in result.reason for e in expected.split("|")), result.reason


@pytest.mark.parametrize(("name", "body", "expected"), ESCAPES, ids=[c[0] for c in ESCAPES])
async def test_escape_is_contained(tmp_path: Path, name: str, body: str, expected: str) -> None:
    async with dialogue_server([("send", b"hello\r\n")]) as server:
        result, _ = await lua_check(_script(tmp_path, name, body), server.port)
    _assert(result, expected)


@pytest.mark.parametrize(("name", "body", "expected"), BOMBS, ids=[c[0] for c in BOMBS])
async def test_bomb_fails_its_check_only(tmp_path: Path, name: str, body: str,
                                         expected: str) -> None:
    """A bomb fails with a clear reason while a slow, well-behaved check of the same script
    (the same runtime) waits in I/O; that one is up, and the runtime keeps working after."""
    script = write_script(tmp_path, f"""
        function check(t)
          if t.args.bomb then
            {body}
          end
          local s = sd.tcp()
          assert(s:connect(t.addr, t.port))
          local line, err = s:receive()
          return line == "hello", err
        end""")
    async with dialogue_server([("sleep", 0.3), ("send", b"hello\r\n")]) as server:
        good = asyncio.ensure_future(lua_check(script, server.port))
        await asyncio.sleep(0.05)  # the good check is waiting in receive()
        (bad, _), (ok, _) = await asyncio.gather(
            lua_check(script, server.port, params="bomb=1"), good)
        again, _ = await lua_check(script, server.port)
    _assert(bad, expected)
    assert bad.reason.startswith("lua: ")
    assert ok.ok, ok.reason
    assert again.ok, again.reason


async def test_a_check_cannot_change_the_libraries_of_the_next(tmp_path: Path) -> None:
    """The script's own globals live on (as OpenResty's module state), its ``t`` does not,
    and the library tables stay as they are."""
    script = write_script(tmp_path, """
        function check(t)
          if t.args.first then
            local ok1 = pcall(rawset, string, "upper", function() return "pwned" end)
            local ok2 = pcall(table.insert, string, "left over")
            local ok3 = pcall(table.sort, sd)
            kept = true
            t.mine = true
            return not (ok1 or ok2 or ok3), "a shared library table could be changed"
          end
          return ("a"):upper() == "A" and string.upper("a") == "A" and kept == true
                 and t.mine == nil and string[1] == nil, "state leaked"
        end""")
    async with dialogue_server([]) as server:
        first, _ = await lua_check(script, server.port, params="first=1")
        second, _ = await lua_check(script, server.port)
    assert first.ok and second.ok, second.reason


async def test_huge_send_to_a_real_that_does_not_read_times_out(tmp_path: Path) -> None:
    script = write_script(tmp_path, """
        function check(t)
          local s = sd.tcp()
          s:settimeouts(1000, 300, 1000)
          assert(s:connect(t.addr, t.port))
          local n, err = s:send(("z"):rep(8 * 1024 * 1024))
          return n ~= nil, err
        end""")
    async with dialogue_server([("sleep", 5)]) as server:
        result, _ = await lua_check(script, server.port, timeout=4)
    assert not result.ok and result.reason == "timeout"


async def test_huge_receive_is_refused(tmp_path: Path) -> None:
    script = write_script(tmp_path, """
        function check(t)
          local s = sd.tcp()
          assert(s:connect(t.addr, t.port))
          return s:receive(2^31)
        end""")
    async with dialogue_server([("send", b"x")]) as server:
        result, _ = await lua_check(script, server.port)
    assert not result.ok and "size too large" in result.reason


async def test_script_errors_are_counted_and_logged_once(tmp_path: Path,
                                                         caplog: pytest.LogCaptureFixture) -> None:
    script = write_script(tmp_path, "function check(t) error('boom') end")
    count = 0

    def counter() -> None:
        nonlocal count
        count += 1

    SCRIPTS.on_error = counter
    try:
        async with dialogue_server([]) as server:
            for _ in range(3):
                result, _ = await lua_check(script, server.port)
                assert result.reason == "lua: test.lua:1: boom"
    finally:
        SCRIPTS.on_error = None
    assert count == 3
    assert sum("boom" in r.getMessage() for r in caplog.records
               if r.levelname == "WARNING") == 1
