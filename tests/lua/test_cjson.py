"""cjson and cjson.safe (built-in modules): cjson's encoding rules (arrays and objects, null,
sparse arrays, empty tables, escapes, numbers) and its decoder's strictness, errors raised by
cjson and returned as nil, err by cjson.safe, with their depth limits."""

from __future__ import annotations

from pathlib import Path

import pytest

from .helpers import run_body, run_expect

pytestmark = pytest.mark.asyncio

SETUP = """
  local cjson = require "cjson"
  local safe = require "cjson.safe"
  local function err(f, ...)
    local ok, e = pcall(f, ...)
    return not ok and e or "no error"
  end
  local function two(a, b) return tostring(a) .. "," .. tostring(b) end
"""

ENCODE = [
    ('cjson.encode({1, 2, 3})', '"[1,2,3]"'),
    ('cjson.encode({a = "x"})', '\'{"a":"x"}\''),
    ('cjson.encode({})', '"{}"'),
    ('cjson.encode(cjson.empty_array)', '"[]"'),
    ('cjson.encode(setmetatable({}, cjson.empty_array_mt))', '"[]"'),
    ('cjson.encode(setmetatable({1}, cjson.empty_array_mt))', '"[1]"'),
    ('cjson.encode(setmetatable({1, 2}, cjson.array_mt))', '"[1,2]"'),
    ('cjson.encode({1, nil, 3})', '"[1,null,3]"'),
    ('cjson.encode({[1] = 1, [2] = 2, [4] = 4})', '"[1,2,null,4]"'),
    ('cjson.encode({cjson.null, ngx.null, true, false})', '"[null,null,true,false]"'),
    ('cjson.encode("a/b\\"c\\\\d\\n\\t\\1\\127\u00e9")',
     r'''[["a\/b\"c\\d\n\t\u0001\u007f]] .. "\195\169" .. [["]]'''),
    ('cjson.encode(0.1)', '"0.1"'),
    ('cjson.encode(1/3)', '"0.33333333333333"'),
    ('cjson.encode(1e300)', '"1e+300"'),
    ('cjson.encode(-0.0)', '"-0"'),
    ('cjson.encode(12345678901234)', '"12345678901234"'),
    ('cjson.encode({[1.5] = "x"})', '\'{"1.5":"x"}\''),
    ('cjson.encode({{{}}})', '"[[{}]]"'),
    ('err(cjson.encode, 0/0)', '"Cannot serialise number: must not be NaN or Infinity"'),
    ('err(cjson.encode, math.huge)', '"Cannot serialise number: must not be NaN or Infinity"'),
    ('err(cjson.encode, {[1000] = 1})', '"Cannot serialise table: excessively sparse array"'),
    ('err(cjson.encode, print)', '"Cannot serialise function: type not supported"'),
    ('err(cjson.encode, {[true] = 1})',
     '"Cannot serialise table: table key must be a number or string"'),
    ('two(safe.encode(print))', '"nil,Cannot serialise function: type not supported"'),
    ('(function() local t = {}; t[1] = t; return err(cjson.encode, t) end)()',
     '"Cannot serialise, excessive nesting (1001)"'),
]

DECODE = [
    ('cjson.decode("[1,2,3]")[3]', "3"),
    ('cjson.decode(\'{"a":{"b":[true,false,null]}}\').a.b[3] == cjson.null', "true"),
    ('cjson.decode("null") == ngx.null', "true"),
    ('cjson.decode(\' "x" \')', '"x"'),
    ('cjson.decode("-1.5e2")', "-150"),
    ('cjson.decode("0")', "0"),
    ('cjson.decode(123)', "123"),
    ('cjson.decode(\'"\\\\u00e9\\\\ud83d\\\\ude00\\\\n\\\\/"\')', '"\u00e9\U0001f600\\n/"'),
    ('cjson.decode("NaN") ~= cjson.decode("NaN")', "true"),
    ('cjson.decode("-Infinity")', "-math.huge"),
    ('#cjson.decode("[]")', "0"),
    ('next(cjson.decode("{}"))', "nil"),
    ('getmetatable(cjson.decode("[]"))', "nil"),
    ('err(cjson.decode, "")', '"Expected value but found T_END at character 1"'),
    ('err(cjson.decode, "[1,]")', '"Expected value but found invalid token at character 4"'),
    ('err(cjson.decode, "{1:2}")',
     '"Expected object key string but found invalid token at character 2"'),
    ('err(cjson.decode, "[1 2]")',
     '"Expected comma or array end but found invalid token at character 4"'),
    ('err(cjson.decode, "[1] x")', '"Expected the end but found invalid token at character 5"'),
    ('err(cjson.decode, "01")', '"Expected value but found invalid number at character 1"'),
    ('err(cjson.decode, "1.")', '"Expected value but found invalid number at character 1"'),
    ('err(cjson.decode, \'"a\\nb"\')',
     '"Expected string end but found invalid control character at character 3"'),
    ('err(cjson.decode, \'"\\\\ud800"\')',
     '"Expected value but found invalid unicode escape code at character 2"'),
    ('err(cjson.decode, \'"abc\')', '"Expected string end but found T_END at character 5"'),
    ('err(cjson.decode, "tru")', '"Expected value but found invalid token at character 1"'),
    ('err(cjson.decode, string.rep("[", 1001))',
     '"Found too many nested data structures (1001) at character 1001"'),
    ('#cjson.decode(string.rep("[", 1000) .. string.rep("]", 1000))', "1"),
    ('err(cjson.decode, nil)', '"bad argument #1 to \'decode\' (string expected, got nil)"'),
    ('two(safe.decode("{"))', '"nil,Expected object key string but found T_END at character 2"'),
    ('safe.decode("[7]")[1]', "7"),
]

CONFIG = [
    ('(function() local c = cjson.new(); c.encode_sparse_array(true);'
     ' return c.encode({[1000] = 1}) end)()', '\'{"1000":1}\''),
    ('(function() local c = cjson.new(); c.encode_empty_table_as_object(false);'
     ' return c.encode({}) end)()', '"[]"'),
    ('(function() local c = cjson.new(); c.decode_array_with_array_mt(true);'
     ' return c.encode(c.decode("[]")) end)()', '"[]"'),
    ('(function() local c = cjson.new(); c.encode_number_precision(3);'
     ' return c.encode(1/3) end)()', '"0.333"'),
    ('(function() local c = cjson.new(); c.encode_escape_forward_slash(false);'
     ' return c.encode("a/b") end)()', '\'"a/b"\''),
    ('(function() local c = cjson.new(); c.decode_max_depth(2);'
     ' return err(c.decode, "[[[1]]]") end)()',
     '"Found too many nested data structures (3) at character 3"'),
    ('cjson.encode({})', '"{}"'),  # the module's own settings untouched by its new() copies
    ('cjson.null == ngx.null', "true"),
    ('tostring(cjson.null)', '"userdata: NULL"'),
]


async def test_encode(tmp_path: Path) -> None:
    result = await run_expect(tmp_path, ENCODE, SETUP)
    assert result.ok, result.reason


async def test_decode(tmp_path: Path) -> None:
    result = await run_expect(tmp_path, DECODE, SETUP)
    assert result.ok, result.reason


async def test_settings_and_instances(tmp_path: Path) -> None:
    result = await run_expect(tmp_path, CONFIG, SETUP)
    assert result.ok, result.reason


async def test_round_trip_of_a_nested_document(tmp_path: Path) -> None:
    body = SETUP + """
      local doc = { status = "ok", checks = { { name = "db", up = true, ms = 1.25 },
                    { name = "cache", up = false, err = "timeout\\n" } }, tags = cjson.empty_array }
      local back = cjson.decode(cjson.encode(doc))
      assert(back.status == "ok" and back.checks[1].ms == 1.25 and back.checks[2].up == false)
      assert(back.checks[2].err == "timeout\\n" and next(back.tags) == nil)
      return true"""
    result = await run_body(tmp_path, body)
    assert result.ok, result.reason


async def test_errors_name_the_callers_line(tmp_path: Path) -> None:
    result = await run_body(tmp_path,
                            'local cjson = require "cjson"\nlocal v = cjson.decode("{")\nreturn v')
    assert result.reason.startswith("lua: ")
    assert "test.lua:3: Expected object key string" in result.reason


async def test_modules_are_read_only(tmp_path: Path) -> None:
    result = await run_body(tmp_path, 'local cjson = require "cjson"\ncjson.encode = print')
    assert "attempt to modify the read-only table 'cjson'" in result.reason
    result = await run_body(tmp_path, 'local cjson = require "cjson"\n'
                                      'rawset(cjson.array_mt, "__index", print)')
    assert "the table 'cjson.array_mt' is read-only" in result.reason


async def test_a_huge_document_ends_with_the_budget(tmp_path: Path) -> None:
    body = """
      local cjson = require "cjson"
      local s = "[" .. string.rep("1,", 2^22) .. "1]"
      return #cjson.decode(s) > 0"""
    result = await run_body(tmp_path, body)
    assert not result.ok
    assert "exhausted" in result.reason
