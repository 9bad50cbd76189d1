"""pattern.lua, the Lua 5.1 matcher written in Lua (for patterns too dear for C): it gives what
C's string.find, match, gmatch and gsub give, errors included, on a corpus of patterns and
subjects; and its cost() bound is at least the steps C takes (counted by a C-speed proxy: the
same matcher's own steps)."""

from __future__ import annotations

import itertools
import re

import lupa.lua51 as lua51
import pytest

from surealived.lua.runtime import chunk_name, lua_source

PATTERNS = [
    "a", "a*", "a-b", "a+", "a?b", "^a", "a$", "^$", ".", ".-", "(.-)b", "(a*(.)%w(%s*))",
    "%a+", "%d+%.?%d*", "[%a_][%w_]*", "[^abc]+", "[a-c]+", "[]]", "[^]]", "[a-]", "[%]]",
    "%bxy", "%b()", "%f[%w]%w+", "%f[%W]", "(a)%1", "((a)%2)", "()a()", "()", "(%d+)-(%d+)",
    "$a", "a$b", "^(.-)%s*$", "%s*(%S+)%s*", "x*$", "[%d%-]+", "%z", "[\0-\31]", "a\0b",
    "%", "[a", "(a", "a)", "%1", "(()", "%b", "%bx", "%f", "%fa", "(%1)", "[%a-z]",
    "%x%x", "%u%l", "%p+", "%c", "[^%s]+", ".*a", ".-a", "(.)(.)(.)", "^%s*(.-)%s*$",
]
SUBJECTS = ["", "a", "aaab", "b", "xaybxyyxy", "(foo(bar))baz", "THE (quick) fox", "a\0b",
            "12-34 5.6", "  trim me  ", "ab]c-", "hello world from Lua", "\t\n\r", "aa"]
REPLS = ["%0", "<%1>", "%%", "x", "%", "%2%1", 7]

HARNESS = """
local p = ...
local pack = function(...) return { n = select("#", ...), ... } end
local function run(f, ...)
  local r = pack(pcall(f, ...))
  local out = {}
  for i = 1, r.n do out[#out + 1] = type(r[i]) .. ":" .. tostring(r[i]) end
  return table.concat(out, "|")
end
local function all(it)
  local out = {}
  for a, b, c in it do out[#out + 1] = tostring(a) .. "," .. tostring(b) .. "," .. tostring(c) end
  return table.concat(out, ";")
end
return {
  find = function(s, pat, init)
    return run(string.find, s, pat, init), run(p.find, s, pat, init, true)
  end,
  match = function(s, pat, init)
    return run(string.match, s, pat, init), run(p.find, s, pat, init, false)
  end,
  gmatch = function(s, pat)
    return run(function() return all(string.gmatch(s, pat)) end),
           run(function() return all(p.gmatch(s, pat)) end)
  end,
  gsub = function(s, pat, r, n)
    return run(string.gsub, s, pat, r, n), run(p.gsub, s, pat, r, n or #s + 1, 2^24)
  end,
  cost = p.cost,
}
"""


@pytest.fixture(scope="module")
def lua():  # type: ignore[no-untyped-def]
    runtime = lua51.LuaRuntime(encoding=None)
    lib = runtime.table_from({b"sandbox": runtime.table_from({
        b"charge": runtime.eval("function() end")})})
    module = runtime.globals().loadstring(lua_source("pattern"), chunk_name("pattern"))(lib)
    return runtime.globals().loadstring(HARNESS.encode())(module)


def _bytes(text: str) -> bytes:
    return text.encode("latin-1")


@pytest.mark.parametrize("pattern", PATTERNS)
def test_find_and_match_agree_with_c(lua, pattern: str) -> None:  # type: ignore[no-untyped-def]
    # a find without specials (before a NUL: C's strpbrk stops there) is a plain search,
    # which bounded.lua does without the matcher
    special = any(ch in "^$*+?.([%-" for ch in pattern.split("\0")[0])
    for subject, init in itertools.product(SUBJECTS, (1, 2, -2, 0, 100)):
        if special:
            c, ours = lua.find(_bytes(subject), _bytes(pattern), init)
            assert ours == c, (subject, pattern, init)
        c, ours = lua.match(_bytes(subject), _bytes(pattern), init)
        assert ours == c, (subject, pattern, init)


@pytest.mark.parametrize("pattern", PATTERNS)
def test_gmatch_and_gsub_agree_with_c(lua, pattern: str) -> None:  # type: ignore[no-untyped-def]
    for subject in SUBJECTS:
        c, ours = lua.gmatch(_bytes(subject), _bytes(pattern))
        # C's iterator errors carry the calling line's position; ours do not
        assert ours == re.sub(rb'\[string "\.\.\."\]:\d+: ', b"", c), (subject, pattern)
        for repl, limit in itertools.product(REPLS, (None, 1)):
            r = _bytes(repl) if isinstance(repl, str) else repl
            c, ours = lua.gsub(_bytes(subject), _bytes(pattern), r, limit)
            assert ours == c, (subject, pattern, repl, limit)


def test_cost_grows_with_the_items_that_backtrack(lua) -> None:  # type: ignore[no-untyped-def]
    assert lua.cost(b"^HTTP/1%.%d (%d+)", 12) < 100_000
    assert lua.cost(b"abc", 1000) < 10_000
    # four lazy items over 300 bytes: C runs for minutes
    assert lua.cost(b".-.-.-.-x", 300) > 1e10
    # a caret is an anchor for find, a plain byte for gmatch
    assert lua.cost(b"^a.-b", 1000) < lua.cost(b"^a.-b", 1000, True)
