"""The ``ngx`` global and the resty.* built-in modules: digests on RFC test vectors, base64,
escaping and query args as OpenResty documents them, the clock, ngx.log, ngx.sleep and
ngx.socket against a loopback server, a client written the lua-resty way against redis-server;
and scripts that try to change, walk or see through them
(no Python object is ever reachable), or to spend the daemon's CPU through them."""

from __future__ import annotations

from pathlib import Path

import pytest

from surealived.engine.transcript import Transcript

from .helpers import dialogue_server, lua_check, run_body, run_expect, write_script
from .test_real_servers import redis

pytestmark = pytest.mark.asyncio

SETUP = """
  local str = require "resty.string"
  local hex = str.to_hex
  local function two(a, b) return tostring(a) .. "," .. tostring(b) end
  local function digest(name, s)
    local h = require("resty." .. name).new()
    h:update(s)
    return hex(h:final())
  end
"""

DIGESTS = [
    # RFC 1321
    ('ngx.md5("")', '"d41d8cd98f00b204e9800998ecf8427e"'),
    ('ngx.md5("abc")', '"900150983cd24fb0d6963f7d28e17f72"'),
    ('ngx.md5("message digest")', '"f96b697d7cb7938d525a2f31aaf161d0"'),
    ('hex(ngx.md5_bin("abc"))', '"900150983cd24fb0d6963f7d28e17f72"'),
    ('ngx.md5(nil)', '"d41d8cd98f00b204e9800998ecf8427e"'),
    ('ngx.md5(12)', 'ngx.md5("12")'),
    # RFC 3174
    ('hex(ngx.sha1_bin("abc"))', '"a9993e364706816aba3e25717850c26c9cd0d89d"'),
    ('hex(ngx.sha1_bin("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq"))',
     '"84983e441c3bd26ebaae4aa1f95129e5e54670f1"'),
    # RFC 2202, test cases 1 and 2
    ('hex(ngx.hmac_sha1(string.rep("\\11", 20), "Hi There"))',
     '"b617318655057264e28bc0b6fb378c8ef146be00"'),
    ('hex(ngx.hmac_sha1("Jefe", "what do ya want for nothing?"))',
     '"effcdf6ae5eb2fa2d27416d5f184df9c259a7c79"'),
    # CRC-32's check value
    ('ngx.crc32_short("123456789")', "3421780262"),
    ('ngx.crc32_long("123456789")', "3421780262"),
    ('ngx.crc32_long("")', "0"),
    # resty.* (FIPS 180 examples), fed in pieces, reset
    ('digest("sha256", "abc")',
     '"ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"'),
    ('digest("sha1", "abc")', '"a9993e364706816aba3e25717850c26c9cd0d89d"'),
    ('digest("md5", "abc")', '"900150983cd24fb0d6963f7d28e17f72"'),
    ('digest("sha224", "abc")', '"23097d223405d8228642a477bda255b32aadbce4bda0b3f7e36c9da7"'),
    ('#digest("sha384", "abc")', "96"),
    ('#digest("sha512", "abc")', "128"),
    ('(function() local h = (require "resty.sha256"):new(); h:update("a"); h:update("bc");'
     ' return hex(h:final()) end)()',
     '"ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"'),
    ('(function() local h = (require "resty.sha256"):new(); h:update("zzz"); h:reset();'
     ' h:update("abc"); return hex(h:final()) end)()',
     '"ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"'),
    ('str.atoi("42")', "42"),
]

ENCODINGS = [
    # RFC 4648's vectors
    ('ngx.encode_base64("")', '""'), ('ngx.encode_base64("f")', '"Zg=="'),
    ('ngx.encode_base64("fo")', '"Zm8="'), ('ngx.encode_base64("foo")', '"Zm9v"'),
    ('ngx.encode_base64("foob")', '"Zm9vYg=="'), ('ngx.encode_base64("fooba")', '"Zm9vYmE="'),
    ('ngx.encode_base64("foobar")', '"Zm9vYmFy"'), ('ngx.encode_base64("f", true)', '"Zg"'),
    ('ngx.decode_base64("Zm9vYmFy")', '"foobar"'), ('ngx.decode_base64("Zm9vYg==")', '"foob"'),
    ('ngx.decode_base64("Zm9vYg")', '"foob"'), ('ngx.decode_base64("")', '""'),
    ('ngx.decode_base64("Zg==garbage")', '"f"'),
    ('ngx.decode_base64("Zm9vY")', "nil"), ('ngx.decode_base64("Zm 9v")', "nil"),
    ('ngx.decode_base64("@@@@")', "nil"),
    # escape_uri (type 2 by default: a URI component; type 0: a whole URI)
    ('ngx.escape_uri("a \u4f60")', '"a%20%E4%BD%A0"'),
    ('ngx.escape_uri("a+b")', '"a%2Bb"'), ('ngx.escape_uri("hey|andy")', '"hey%7Candy"'),
    ("ngx.escape_uri(\"!*'()-._~Az09\")", "\"!*'()-._~Az09\""),
    ('ngx.escape_uri("a/b?c=d&e#f")', '"a%2Fb%3Fc%3Dd%26e%23f"'),
    ('ngx.escape_uri("a b#c?d%e/f&g", 0)', '"a%20b%23c%3Fd%25e/f&g"'),
    ('ngx.escape_uri("\\0\\127\\255", 0)', '"%00%7F%FF"'),
    ('ngx.escape_uri(nil)', '""'),
    ('ngx.unescape_uri("b%20r56+7")', '"b r56 7"'),
    ('ngx.unescape_uri("a%20%e4%bd%a0")', '"a \u4f60"'),
    ('ngx.unescape_uri("100%")', '"100"'), ('ngx.unescape_uri("%zz%4z")', '"zz"'),
    # encode_args (keys sorted here)
    ('ngx.encode_args({foo = 3, ["b r"] = "hello world"})', '"b%20r=hello%20world&foo=3"'),
    ('ngx.encode_args({baz = {32, "hello"}})', '"baz=32&baz=hello"'),
    ('ngx.encode_args({a = true, b = 1})', '"a&b=1"'),
    ('ngx.encode_args({a = false, b = {}})', '""'),
    # quote_sql_str
    ("ngx.quote_sql_str(\"it's \\\"x\\\"\\n\\\\\\0\\26\")",
     "[['it\\'s \\\"x\\\"\\n\\\\\\0\\Z']]"),
]

CONSTANTS = [
    ('ngx.config.subsystem', '"stream"'), ('ngx.config.ngx_lua_version', "10026"),
    ('ngx.config.debug', "false"), ('ngx.config.prefix()', '""'),
    ('ngx.get_phase()', '"timer"'), ('ngx.worker.id()', "0"), ('ngx.worker.count()', "1"),
    ('ngx.OK', "0"), ('ngx.ERROR', "-1"), ('ngx.AGAIN', "-2"), ('ngx.DONE', "-4"),
    ('ngx.DECLINED', "-5"), ('ngx.STDERR', "0"), ('ngx.ERR', "4"), ('ngx.DEBUG', "8"),
    ('tostring(ngx.null)', '"userdata: NULL"'), ('type(ngx.null)', '"userdata"'),
    ('ngx.var.anything', "nil"), ('type(ngx.req)', '"table"'),
    ('type(ngx.now())', '"number"'), ('math.abs(ngx.now() - os.time()) < 2', "true"),
    ('ngx.now() * 1000 % 1 == 0', "true"), ('ngx.time() == math.floor(ngx.time())', "true"),
    ('ngx.today() == os.date("%Y-%m-%d")', "true"),
    ('#ngx.localtime()', "19"), ('ngx.update_time()', "nil"),
    ('ngx.socket.tcp == sd.tcp and ngx.socket.udp == sd.udp', "true"),
    ('type(table.new(4, 4))', '"table"'),
    ('(function() local t = {1, 2, x = 3}; table.clear(t); return next(t) end)()', "nil"),
    ('require("table.new")(0, 0) ~= nil', "true"),
    ('require("table.clear") == table.clear', "true"),
    ('type(select(2, pcall(require, "table.new")))', '"function"'),  # lua-resty-* idiom
]


async def test_digests_on_rfc_vectors(tmp_path: Path) -> None:
    result = await run_expect(tmp_path, DIGESTS, SETUP)
    assert result.ok, result.reason


async def test_encodings_escapes_and_args(tmp_path: Path) -> None:
    result = await run_expect(tmp_path, ENCODINGS, SETUP)
    assert result.ok, result.reason


async def test_constants_config_and_clock(tmp_path: Path) -> None:
    result = await run_expect(tmp_path, CONSTANTS, SETUP)
    assert result.ok, result.reason


async def test_ngx_log_levels_and_values(tmp_path: Path) -> None:
    transcript = Transcript()
    body = """
      ngx.log(ngx.ERR, "x=", nil, " ", true, " ", ngx.null, " ", 1.5)
      ngx.log(ngx.WARN, "w")
      ngx.log(ngx.NOTICE, "n")
      ngx.log(ngx.DEBUG, setmetatable({}, {__tostring = function() return "T" end}))
      local ok, err = pcall(ngx.log, 42, "x")
      local ok2, err2 = pcall(ngx.log, ngx.ERR, {})
      return false, err .. " / " .. err2"""
    result = await run_body(tmp_path, body, transcript=transcript)
    assert result.reason == ("bad argument #1 to 'log' (bad log level) / bad argument #2 to 'log'"
                             " (expected table to have __tostring metamethod)")
    notes = [n for n in transcript.render().decode().split("\n") if n.startswith("lua ")]
    assert notes == ["lua error: x=nil true null 1.5", "lua warn: w", "lua info: n",
                     "lua debug: T"]


async def test_sockets_sleep_in_seconds_and_connect(tmp_path: Path) -> None:
    body = """
      local sock, err = ngx.socket.connect(t.addr, t.port)
      if not sock then return false, err end
      local t0 = ngx.now()
      ngx.sleep(0.05)
      local slept = ngx.now() - t0
      assert(sock:send("PING\\r\\n"))
      local line = assert(sock:receive())
      sock:close()
      local none, err2 = ngx.socket.connect(t.addr, 1)
      return slept >= 0.04 and slept < 5, line .. " " .. tostring(none) .. " " .. err2"""
    async with dialogue_server([("expect", b"\r\n"), ("send", b"+PONG\r\n")]) as server:
        result = await run_body(tmp_path, body, port=server.port)
    assert result.ok, result.reason
    assert result.reason == "+PONG nil connection refused"


async def test_sleep_checks_its_seconds(tmp_path: Path) -> None:
    result = await run_body(tmp_path, "ngx.sleep(-1)")
    assert "bad argument #1 to 'sleep' (seconds 0..2147483.647 expected, got -1)" in result.reason


# Every value of the API a script can reach: none is a Python object (a lupa object would be a
# userdata whose tostring is Python's repr); the only userdata are Lua's own null/empty_array.
API_WALK = """
  local seen, bad = {}, {}
  local allowed = { [ngx.null] = true, [cjson.empty_array] = true }
  local function look(path, v)
    local tv = type(v)
    if tv == "userdata" and not allowed[v] then bad[#bad + 1] = path .. "=" .. tostring(v) end
    if tv == "thread" then bad[#bad + 1] = path end
  end
  local function walk(path, proxy, names)
    for name in string.gmatch(names, "%S+") do
      local v = proxy[name]
      if v == nil then bad[#bad + 1] = path .. "." .. name .. " missing" end
      look(path .. "." .. name, v)
      if type(v) == "table" then
        if getmetatable(v) ~= false then bad[#bad + 1] = path .. "." .. name .. " metatable" end
        if next(v) ~= nil then bad[#bad + 1] = path .. "." .. name .. " not a proxy" end
      end
    end
  end
  walk("ngx", ngx, "socket sleep now time today localtime utctime update_time log null"
       .. " encode_base64 decode_base64 md5 md5_bin sha1_bin hmac_sha1 crc32_short crc32_long"
       .. " escape_uri unescape_uri encode_args quote_sql_str re config worker get_phase req var"
       .. " OK ERROR AGAIN DONE DECLINED STDERR EMERG ALERT CRIT ERR WARN NOTICE INFO DEBUG")
  walk("ngx.socket", ngx.socket, "tcp udp stream connect")
  walk("ngx.re", ngx.re, "match find gmatch sub gsub")
  walk("ngx.config", ngx.config, "ngx_lua_version nginx_version subsystem debug prefix"
       .. " nginx_configure")
  walk("ngx.worker", ngx.worker, "id count pid exiting")
  walk("bit", bit, "tobit tohex bnot band bor bxor lshift rshift arshift rol ror bswap")
  walk("cjson", cjson, "encode decode new null empty_array array_mt empty_array_mt"
       .. " encode_sparse_array encode_max_depth decode_max_depth encode_number_precision"
       .. " encode_empty_table_as_object decode_array_with_array_mt encode_escape_forward_slash")
  walk("cjson.safe", require "cjson.safe", "encode decode new null")
  for _, name in ipairs({"md5", "sha1", "sha224", "sha256", "sha384", "sha512"}) do
    local m = require("resty." .. name)
    walk("resty." .. name, m, "new")
    local h = m.new()
    look(name .. " object", h)
    if next(h) ~= nil then bad[#bad + 1] = name .. " object has fields" end
    if getmetatable(h) ~= false then bad[#bad + 1] = name .. " object metatable" end
    look("final", h:final())
  end
  walk("resty.string", require "resty.string", "to_hex atoi")
  -- what the functions return
  look("now", ngx.now()); look("pid", ngx.worker.pid()); look("md5", ngx.md5_bin("x"))
  look("crc", ngx.crc32_long("x")); look("band", bit.band(1, 2))
  look("b64", ngx.decode_base64("!")); look("re", ngx.re.match("a", "a"))
  local f, t2 = ngx.re.find("a", "a"); look("find", f)
  look("gmatch", ngx.re.gmatch("a", "a")); look("gmatch()", ngx.re.gmatch("a", "a")())
  return #bad == 0, table.concat(bad, ", ")
"""


async def test_no_python_object_is_reachable(tmp_path: Path) -> None:
    result = await run_body(tmp_path, 'local cjson = require "cjson"\n' + API_WALK)
    assert result.ok, result.reason


@pytest.mark.parametrize(("body", "message"), [
    ("ngx.now = function() return 0 end", "attempt to modify the read-only table 'ngx'"),
    ("ngx.re.match = nil", "attempt to modify the read-only table 'ngx.re'"),
    ("ngx.config.subsystem = 'http'", "attempt to modify the read-only table 'ngx.config'"),
    ("ngx.var.x = 1", "attempt to modify the read-only table 'ngx.var'"),
    ("rawset(ngx, 'now', print)", "bad argument #1 to 'rawset' (the table 'ngx' is read-only)"),
    ("rawset(ngx.socket, 'tcp', print)", "the table 'ngx.socket' is read-only"),
    ("table.clear(ngx)", "bad argument #1 to 'clear' (the table 'ngx' is read-only)"),
    ("table.clear(string)", "the table 'string' is read-only"),
    ("table.clear(table)", "the table 'table' is read-only"),
    ("table.insert(ngx.re, 1)", "the table 'ngx.re' is read-only"),
    ("setmetatable(ngx, {})", "cannot change a protected metatable"),
    ("return getmetatable(ngx) == false and getmetatable(ngx.null) == false"
     " and getmetatable(ngx.re) == false and next(ngx) == nil and string.dump == nil", "up"),
    ("local n = 0; for k in pairs(ngx) do n = n + 1 end; return n == 0", "up"),
    ("local h = (require 'resty.md5').new(); return h.update({}, 'x')",
     "bad argument #1 to 'update' (a resty.md5 object expected)"),
    ("return require('nope')", "module 'nope' not found"),
    ("return ngx.escape_uri(string.rep('a', 2^22 + 1))",
     "bad argument #1 to 'escape_uri' (string longer than 4194304 bytes)"),
    ("return ngx.decode_base64(nil)", "bad argument #1 to 'decode_base64' (string expected"),
    ("return ngx.escape_uri('a', 1)", "bad argument #2 to 'escape_uri' (0 or 2 expected, got 1)"),
    ("return ngx.encode_args({[1] = 'x'})", "attempt to use a non-string key"),
])
async def test_hostile_uses_fail_their_check_only(tmp_path: Path, body: str, message: str
                                                  ) -> None:
    result = await run_body(tmp_path, body)
    if message == "up":
        assert result.ok, result.reason
    else:
        assert not result.ok
        assert message in result.reason


async def test_a_loop_of_hashes_ends_with_its_budget(tmp_path: Path) -> None:
    result = await run_body(tmp_path, """
      local s = string.rep("a", 2^20)
      while true do ngx.sha1_bin(s) end""")
    assert not result.ok
    assert "exhausted" in result.reason
    result = await run_body(tmp_path, """
      local h = (require "resty.sha256").new()
      local s = string.rep("a", 2^20)
      for i = 1, 100 do h:update(s) end""")
    assert "bad argument #1 to 'update' (more than 16777216 bytes hashed)" in result.reason


async def test_ngx_is_the_same_for_every_check_and_unchanged(tmp_path: Path) -> None:
    body = "pcall(function() ngx.x = 1 end); return ngx.x == nil and ngx.md5('') ~= nil"
    for _ in range(3):
        result = await run_body(tmp_path, body)
        assert result.ok, result.reason


OPENRESTY_STYLE = r"""
local ok, new_tab = pcall(require, "table.new")
if not ok or type(new_tab) ~= "function" then new_tab = function() return {} end end
local cjson = require "cjson.safe"
local tcp, null, re_match = ngx.socket.tcp, ngx.null, ngx.re.match
local sub, byte = string.sub, string.byte

local function read_reply(sock)
  local line, err = sock:receive()
  if not line then return nil, err end
  local prefix = byte(line)
  if prefix == 43 then return sub(line, 2) end                 -- +
  if prefix == 45 then return false, sub(line, 2) end          -- -
  if prefix == 58 then return tonumber(sub(line, 2)) end       -- :
  if prefix == 36 then                                         -- $
    local size = tonumber(sub(line, 2))
    if size < 0 then return null end
    local data, err2 = sock:receive(size + 2)
    if not data then return nil, err2 end
    return sub(data, 1, -3)
  end
  return nil, "unknown prefix: " .. prefix
end

local function command(sock, ...)
  local args = new_tab(select("#", ...) * 3 + 1, 0)
  args[1] = "*" .. select("#", ...) .. "\r\n"
  for i = 1, select("#", ...) do
    local a = tostring((select(i, ...)))
    args[#args + 1] = "$" .. #a .. "\r\n" .. a .. "\r\n"
  end
  local bytes, err = sock:send(args)
  if not bytes then return nil, err end
  return read_reply(sock)
end

function check(t)
  local sock = tcp()
  sock:settimeouts(1000, 1000, 1000)
  local ok, err = sock:connect(t.addr, t.port)
  if not ok then return false, "connect: " .. err end
  local doc = { status = "up", digest = ngx.md5("x"), n = bit.lshift(1, 10) }
  assert(command(sock, "SET", "health", cjson.encode(doc)) == "OK")
  local back = cjson.decode(assert(command(sock, "GET", "health")))
  local missing = command(sock, "GET", "no-such-key")
  local info = assert(command(sock, "INFO", "server"))
  local m = re_match(info, [[^redis_version:(\d+)\.(\d+)]], "jom")
  sock:setkeepalive(10000, 4)
  return back.status == "up" and back.n == 1024 and missing == null and m ~= nil,
         "redis " .. m[1] .. "." .. m[2] .. " " .. back.digest
end
"""


async def test_an_openresty_style_client_against_redis(tmp_path: Path) -> None:
    script = write_script(tmp_path, OPENRESTY_STYLE)
    with redis() as port:
        result, _ = await lua_check(script, port)
    assert result.ok, result.reason
    assert result.reason.startswith("redis ")
    assert result.reason.endswith(" 9dd4e461268c8034f5c8564e155c67a6")
