"""ngx.re on RE2: OpenResty's documented examples for match, find, gmatch, sub and gsub give
OpenResty's results; what RE2 cannot honour is an error, never a silent difference; and hostile
subjects stay linear and bounded."""

from __future__ import annotations

from pathlib import Path

import pytest

from .helpers import run_body, run_expect

pytestmark = pytest.mark.asyncio

SETUP = r"""
  local function cap(m)
    if not m then return tostring(m) end
    local out = {}
    for i = 0, 9 do
      if m[i] == nil then break end
      out[#out + 1] = tostring(m[i])
    end
    return table.concat(out, "|")
  end
  local function all(it)
    local out = {}
    for m in it do out[#out + 1] = cap(m) end
    return table.concat(out, ";")
  end
  local function two(a, b) return tostring(a) .. "," .. tostring(b) end
  local function three(a, b, c) return tostring(a) .. "," .. tostring(b) .. "," .. tostring(c) end
"""

DOCUMENTED = [
    # ngx.re.match
    ('ngx.re.match("hello, 1234", "[0-9]+")[0]', '"1234"'),
    ('cap(ngx.re.match("hello, 1234", "([0-9])[0-9]+"))', '"1234|1"'),
    ('ngx.re.match("hello, 1234", "([0-9])(?<remaining>[0-9]+)").remaining', '"234"'),
    ('cap(ngx.re.match("hello, 1234", "([0-9])(?<remaining>[0-9]+)"))', '"1234|1|234"'),
    ('cap(ngx.re.match("hello, world", "(world)|(hello)|(?<named>howdy)"))',
     '"hello|false|hello|false"'),
    ('ngx.re.match("hello, world", "(world)|(hello)|(?<named>howdy)").named', "false"),
    ('ngx.re.match("hello, world", "HEL LO", "ix")[0]', '"hello"'),
    ('cap(ngx.re.match("hello, \u7f8e\u597d\u751f\u6d3b", "HELLO, (.{2})", "iu"))',
     '"hello, \u7f8e\u597d|\u7f8e\u597d"'),
    ('ngx.re.match("hello", "x")', "nil"),
    # ctx.pos
    ('(function() local ctx = {}; local m = ngx.re.match("1234, hello", "[0-9]+", "", ctx);'
     ' return m[0] .. "/" .. ctx.pos end)()', '"1234/5"'),
    ('(function() local ctx = { pos = 2 }; local m = ngx.re.match("1234, hello", "[0-9]+", "",'
     ' ctx); return m[0] .. "/" .. ctx.pos end)()', '"234/5"'),
    ('(function() local ctx = { pos = 3 }; ngx.re.match("ab", "x", "", ctx); return ctx.pos'
     ' end)()', "3"),
    # a lexer: ctx with the a (anchored) option
    ('(function() local ctx, out = {}, {}; while true do local m = ngx.re.match("ab12cd",'
     ' "[a-z]+|[0-9]+", "a", ctx); if not m then break end; out[#out + 1] = m[0] end;'
     ' return table.concat(out, ",") end)()', '"ab,12,cd"'),
    ('ngx.re.match("xab", "ab", "a")', "nil"),
    # res_table
    ('(function() local res = {}; local m = ngx.re.match("k=v", "(\\\\w)=(\\\\w)", "", nil,'
     ' res); return m == res and res[2] == "v" end)()', "true"),
    # ngx.re.find
    ('two(ngx.re.find("hello, 1234", "([0-9]+)", "jo"))', '"8,11"'),
    ('two(ngx.re.find("hello, 1234", "([0-9])([0-9]+)", "jo", nil, 2))', '"9,11"'),
    ('ngx.re.find("hello", "x")', "nil"),
    ('two(ngx.re.find("hello, world", "(world)|(hello)", "", nil, 1))', '"nil,nil"'),
    # ngx.re.gmatch
    ('all(ngx.re.gmatch("hello, world!", "([a-z]+)", "i"))', '"hello|hello;world|world"'),
    ('all(ngx.re.gmatch("baaac", "a*"))', '";aaa;;"'),
    ('all(ngx.re.gmatch("\u00e9\u00e9", "", "u"))', '";;"'),
    # ngx.re.sub / gsub
    ('two(ngx.re.sub("hello, 1234", "([0-9])[0-9]", "[$0][$1]"))', '"hello, [12][1]34,1"'),
    ('two(ngx.re.sub("hello, 1234", "[0-9]", "${0}00"))', '"hello, 100234,1"'),
    ('two(ngx.re.sub("hello, 1234", "[0-9]", "$$"))', '"hello, $234,1"'),
    ('two(ngx.re.sub("hello, 1234", "( [0-9] ) [0-9]", function(m) return "[" .. m[0] .. "]["'
     ' .. m[1] .. "]" end, "x"))', '"hello, [12][1]34,1"'),
    ('two(ngx.re.gsub("hello, world", "([a-z])[a-z]+", "[$0,$1]", "i"))',
     '"[hello,h], [world,w],2"'),
    ('two(ngx.re.gsub("hello, world", "([a-z])[a-z]+", function(m) return "[" .. m[0] .. ","'
     ' .. m[1] .. "]" end, "i"))', '"[hello,h], [world,w],2"'),
    ('two(ngx.re.gsub("abc", "", "-"))', '"-a-b-c-,4"'),
    ('two(ngx.re.gsub("abc", "x", "-"))', '"abc,0"'),
    ('two(ngx.re.gsub("a.b", "\\\\.", "$2"))', '"ab,1"'),
    ('two(ngx.re.gsub("ab", "(a)", 7))', '"7b,1"'),
    ('three(ngx.re.sub("ab", "a", "$x"))', '"nil,nil,failed to compile the replacement template"'),
    ('three(ngx.re.sub("ab", "a", "${1"))', '"nil,nil,failed to compile the replacement template"'),
]

OPTIONS = [
    ('ngx.re.match("A\\nB", "^B", "m")[0]', '"B"'),
    ('ngx.re.match("A\\nB", "^B")', "nil"),
    ('ngx.re.match("A\\nB", "A.B", "s")[0]', '"A\\nB"'),
    ('ngx.re.match("A\\nB", "A.B")', "nil"),
    ('ngx.re.match("aaa", "a|aa|aaa", "d")[0]', '"aaa"'),
    ('ngx.re.match("aaa", "a|aa|aaa")[0]', '"a"'),
    ('ngx.re.match("a b", "a\\\\ b # a comment", "x")[0]', '"a b"'),
    ('ngx.re.match("a#", "a[#]", "x")[0]', '"a#"'),
    ('ngx.re.match("\u00e9", "^.$", "u")[0]', '"\u00e9"'),
    ('ngx.re.match("\u00e9", "^.$")', "nil"),  # bytes without u, as PCRE
    ('ngx.re.match("xyz", "Y", "ijoU")[0]', '"y"'),
]

UNSUPPORTED = [
    ('(a)\\\\1', "invalid escape sequence"),
    ("(?=a)b", "invalid perl operator"),
    ("(?<=a)b", "invalid perl operator"),
    ("(?<!a)b", "invalid perl operator"),
    ("a++", "bad repetition operator"),
    ("(?>a)", "invalid perl operator"),
    ("(", "missing )"),
]


async def test_openresty_documented_examples(tmp_path: Path) -> None:
    result = await run_expect(tmp_path, DOCUMENTED, SETUP)
    assert result.ok, result.reason


async def test_options(tmp_path: Path) -> None:
    result = await run_expect(tmp_path, OPTIONS, SETUP)
    assert result.ok, result.reason


@pytest.mark.parametrize(("regex", "error"), UNSUPPORTED)
async def test_what_re2_cannot_compile_is_nil_err(tmp_path: Path, regex: str, error: str
                                                  ) -> None:
    body = f"""
      local m, err = ngx.re.match("aab", "{regex}")
      local f, t, err2 = ngx.re.find("aab", "{regex}")
      local s, n, err3 = ngx.re.gsub("aab", "{regex}", "")
      local it, err4 = ngx.re.gmatch("aab", "{regex}")
      assert(m == nil and f == nil and t == nil and s == nil and n == nil and it == nil)
      assert(err == err2 and err == err3 and err == err4, err2)
      return false, err"""
    result = await run_body(tmp_path, body)
    assert result.reason.startswith('failed to compile regex "')
    assert error in result.reason


@pytest.mark.parametrize(("options", "message"), [
    ("D", 'regex option "D" (duplicate named groups) is not supported: RE2 cannot honour it'),
    ("iJ", 'regex option "J" (JavaScript compatibility) is not supported: RE2 cannot honour it'),
    ("jz", 'unknown flag "z" (flags "jz")'),
])
async def test_options_re2_cannot_honour_raise(tmp_path: Path, options: str, message: str
                                               ) -> None:
    result = await run_body(tmp_path, f'return ngx.re.match("a", "a", "{options}")')
    assert not result.ok
    assert message in result.reason


async def test_bad_arguments_raise(tmp_path: Path) -> None:
    result = await run_body(tmp_path, 'return ngx.re.match(nil, "a")')
    assert "bad argument #1 to 'match' (string expected, got no value)" in result.reason
    result = await run_body(tmp_path, 'return ngx.re.gsub("a", "a", {})')
    assert "bad argument #3 to 'gsub' (string or function expected, got table)" in result.reason
    result = await run_body(tmp_path, 'return ngx.re.gsub("a", "a", function() return {} end)')
    assert "the function returned a table value" in result.reason


async def test_catastrophic_backtracking_patterns_stay_linear(tmp_path: Path) -> None:
    """(a+)+$ and friends on 100 kB of a's: a backtracking engine takes forever on the ones
    that fail; RE2 answers, correctly."""
    body = """
      local s = string.rep("a", 100000)
      local m = assert(ngx.re.match(s, "(a+)+$"))
      assert(#m[0] == 100000 and #m[1] > 0)
      assert(ngx.re.match(s .. "b", "^(a+)+$") == nil)
      assert(ngx.re.find(s .. "!", "(a|aa)+$") == nil)
      assert(ngx.re.match(s, "^(\\\\w+\\\\s?)*$")[0] == s)
      local out, n = ngx.re.gsub(s, "(a*)*b", "x")
      assert(n == 0 and out == s)
      return true"""
    result = await run_body(tmp_path, body)
    assert result.ok, result.reason


async def test_subject_and_search_costs_are_capped(tmp_path: Path) -> None:
    body = """
      local big = string.rep("a", 2^20 + 1)
      local m, err = ngx.re.match(big, "a")
      assert(m == nil and err == "subject longer than 1048576 bytes", err)
      local costly = "(ab|cd|ef|gh|ij|kl|mn|op|qr|st|uv|wx)+z"  -- 32 RE2 instructions
      local f, t, err2 = ngx.re.find(string.rep("a", 2^20), costly)
      return false, err2"""
    result = await run_body(tmp_path, body)
    assert result.reason.startswith("search too costly: ")


async def test_long_regexes_are_refused(tmp_path: Path) -> None:
    result = await run_body(tmp_path, 'return ngx.re.match("a", string.rep("a", 16385))')
    assert result.reason == "failed to compile regex: longer than 16384 bytes"


async def test_a_loop_of_searches_ends_with_its_budget(tmp_path: Path) -> None:
    body = """
      local s = string.rep("ab", 2^18)
      while true do ngx.re.gsub(s, "b", "c") end"""
    result = await run_body(tmp_path, body)
    assert not result.ok
    assert ("CPU time limit exhausted" in result.reason
            or "instruction budget exhausted" in result.reason)


async def test_the_regex_cache_is_bounded(tmp_path: Path) -> None:
    body = """
      for i = 1, 600 do assert(ngx.re.find("x" .. i, "x" .. i, "jo") == 1) end
      for i = 1, 600 do assert(ngx.re.find("y" .. i, "x" .. i) == nil) end
      return true"""
    result = await run_body(tmp_path, body)
    assert result.ok, result.reason


async def test_searches_of_other_subjects_inside_a_gsub(tmp_path: Path) -> None:
    """The subject kept between the matches of one gsub is the right one even when the
    replace function searches other strings in between."""
    body = """
      local out, n = ngx.re.gsub("a1b2c3", "[0-9]", function(m)
        local inner = ngx.re.match("x" .. m[0] .. "y", "x([0-9])y")
        return "<" .. inner[1] .. ">"
      end)
      return out == "a<1>b<2>c<3>" and n == 3, out"""
    result = await run_body(tmp_path, body)
    assert result.ok, result.reason
