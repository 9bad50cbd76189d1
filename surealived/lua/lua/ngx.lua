-- ngx.lua: the ``ngx`` table scripts see, what of OpenResty's ngx.* API a health check uses:
-- ngx.socket (sock.lua's sockets), ngx.sleep in seconds, the clock, ngx.log with its levels,
-- ngx.null, digests and encodings (native.py: each Python function is kept in an upvalue here
-- and called with checked strings and numbers only), escaping, ngx.re (ngx_re.lua), ngx.config
-- and a few constants. Every value is a function, a table (behind a read-only proxy, frozen.lua),
-- a number, a string, or ngx.null: a userdata of Lua's own, never a Python object.
--
-- The clock: ngx.now() is the wall clock at each call (with milliseconds, as OpenResty's), not
-- a time cached per event-loop turn, so ngx.update_time() has nothing to do. Loaded after
-- ngx_re.lua; returns { ngx = the proxy, null, to_hex }.
local lib = ...
local native, sandbox, raw = lib.native, lib.sandbox, lib.bounded.raw
local sd, tree = lib.sock.sd, lib.frozen.tree
local charge, log, LOG_BYTES = sandbox.charge, sandbox.log, sandbox.LOG_BYTES
local STRING_MAX = lib.bounded.STRING_MAX
local py_digest, py_hmac_sha1, py_crc32 = native.digest, native.hmac_sha1, native.crc32
local py_b64encode, py_b64decode = native.encode_base64, native.decode_base64
local py_unescape, py_now, py_getpid = native.unescape_uri, native.now, native.getpid

local type, tostring, tonumber, error, select, next = type, tostring, tonumber, error, select,
  next
local rawget, raw_getmetatable = rawget, debug.getmetatable
local s_gsub, s_find, s_sub, s_format, concat = raw.gsub, raw.find, raw.sub, raw.format,
  raw.concat
local s_char = string.char
local os_time, os_date = os.time, os.date
local t_sort, t_concat = table.sort, table.concat  -- bounded.lua's

-- ngx.null: a userdata of Lua's own (as OpenResty's light userdata NULL), also cjson.null
local null = newproxy(true)
do
  local mt = getmetatable(null)
  mt.__tostring = function() return "userdata: NULL" end
  mt.__metatable = false
end

local function bad(n, fname, msg)
  error("bad argument #" .. n .. " to '" .. fname .. "' (" .. msg .. ")", 3)
end

-- A string argument as OpenResty's helpers take it: nil or false is "", a string itself, any
-- other value its tostring(); at most max bytes (STRING_MAX by default), charged per byte.
local function str(v, n, fname, max)
  if type(v) ~= "string" then
    if not v then return "" end
    v = tostring(v)
  end
  max = max or STRING_MAX
  if #v > max then bad(n, fname, "string longer than " .. max .. " bytes") end
  charge(#v)
  return v
end

local HEX, URI = {}, {}
for i = 0, 255 do
  local c = s_char(i)
  HEX[c] = s_format("%02x", i)
  URI[c] = s_format("%%%02X", i)
end

local function to_hex(s)
  return (s_gsub(s, ".", HEX))
end

local function digest_hex(name)
  return function(s) return to_hex(py_digest(name, str(s, 1, name))) end
end

local function digest_bin(name, fname)
  return function(s) return py_digest(name, str(s, 1, fname)) end
end

-- escape_uri: type 2 (the default) escapes all but letters, digits and -._~!*'() as %XX;
-- type 0 (a whole URI) only space, #, %, ? and the bytes 0-31 and 127-255
local ESCAPED = { [0] = "[%z\1-\32#%%%?\127-\255]", [2] = "[^0-9A-Za-z%-%._~!%*'%(%)]" }
local ESCAPE_MAX = STRING_MAX / 4  -- an escaped string is at most 3 times as long

local function escape_uri(s, kind)
  s = str(s, 1, "escape_uri", ESCAPE_MAX)
  local class = ESCAPED[kind == nil and 2 or kind]
  if not class then bad(2, "escape_uri", "0 or 2 expected, got " .. tostring(kind)) end
  if not s_find(s, class) then return s end
  return (s_gsub(s, class, URI))
end

local function unescape_uri(s)
  return py_unescape(str(s, 1, "unescape_uri"))
end

local SQL = { ["\0"] = "\\0", ["\b"] = "\\b", ["\n"] = "\\n", ["\r"] = "\\r", ["\t"] = "\\t",
              ["\26"] = "\\Z", ["\\"] = "\\\\", ["'"] = "\\'", ['"'] = '\\"' }

local function quote_sql_str(s)
  s = str(s, 1, "quote_sql_str", ESCAPE_MAX)
  return "'" .. s_gsub(s, "[%z\b\n\r\t\26\\'\"]", SQL) .. "'"
end

local function arg_value(key, v, out)
  local t = type(v)
  if t == "string" or t == "number" then
    out[#out + 1] = key .. "=" .. escape_uri(v)
  elseif v == true then
    out[#out + 1] = key
  elseif v ~= false then
    error("attempt to use " .. t .. " as query arg value", 4)
  end
end

-- encode_args: keys in sorted order (OpenResty's follow the table's traversal, in no order)
local function encode_args(args)
  if type(args) ~= "table" then bad(1, "encode_args", "table expected, got " .. type(args)) end
  local keys = {}
  for k in next, args do
    if type(k) ~= "string" then
      error("attempt to use a non-string key in the \"args\" option table", 2)
    end
    keys[#keys + 1] = k
  end
  t_sort(keys)
  local out = {}
  for i = 1, #keys do
    local k = keys[i]
    local v = args[k]
    local key = escape_uri(k)
    if type(v) == "table" then
      for j = 1, #v do arg_value(key, v[j], out) end
    else
      arg_value(key, v, out)
    end
  end
  return t_concat(out, "&")
end

local function encode_base64(s, no_padding)
  if no_padding ~= nil and type(no_padding) ~= "boolean" then
    bad(2, "encode_base64", "boolean expected, got " .. type(no_padding))
  end
  return py_b64encode(str(s, 1, "encode_base64", STRING_MAX / 4 * 3),
                      no_padding or false)
end

local function decode_base64(s)
  if type(s) ~= "string" then bad(1, "decode_base64", "string expected, got " .. type(s)) end
  return py_b64decode(str(s, 1, "decode_base64"))
end

local function hmac_sha1(key, s)
  return py_hmac_sha1(str(key, 1, "hmac_sha1"), str(s, 2, "hmac_sha1"))
end

local function crc32(s)
  return py_crc32(str(s, 1, "crc32"))
end

-- ngx.log: OpenResty's levels onto sd.log's; nil, booleans and ngx.null written as words, a
-- table only through its __tostring
local LEVEL = { [0] = "error", "error", "error", "error", "error", "warn", "info", "info",
                "debug" }

local function ngx_log(level, ...)
  local name = type(level) == "number" and LEVEL[level]
  if not name then bad(1, "log", "bad log level") end
  local parts, size = {}, 0
  for i = 1, select("#", ...) do
    local v = select(i, ...)
    local t = type(v)
    if t == "number" or t == "boolean" or v == nil then
      v = tostring(v)
    elseif v == null then
      v = "null"
    elseif t == "table" then
      local mt = raw_getmetatable(v)
      if not (type(mt) == "table" and rawget(mt, "__tostring")) then
        bad(i + 1, "log", "expected table to have __tostring metamethod")
      end
      v = tostring(v)
    elseif t ~= "string" then
      bad(i + 1, "log", "string, number, boolean, or nil expected, got " .. t)
    end
    parts[#parts + 1] = s_sub(v, 1, LOG_BYTES - size)
    size = size + #v
    if size >= LOG_BYTES then break end
  end
  log(name, concat(parts))
end

local SLEEP_MAX = (2 ^ 31 - 1) / 1000  -- sd.sleep's limit, in seconds

local function sleep(seconds)
  local s = tonumber(seconds)
  if not (s and s >= 0 and s <= SLEEP_MAX) then
    bad(1, "sleep", "seconds 0.." .. SLEEP_MAX .. " expected, got " .. tostring(seconds))
  end
  sd.sleep(s * 1000)
end

local function connect(...)
  local sock, err = sd.tcp()
  if not sock then return nil, err end
  local ok
  ok, err = sock:connect(...)
  if not ok then return nil, err end
  return sock
end

local NGX = {
  socket = { tcp = sd.tcp, udp = sd.udp, stream = sd.tcp, connect = connect },
  sleep = sleep,
  now = function() return py_now() end,
  time = function() return os_time() end,
  today = function() return os_date("%Y-%m-%d") end,
  localtime = function() return os_date("%Y-%m-%d %H:%M:%S") end,
  utctime = function() return os_date("!%Y-%m-%d %H:%M:%S") end,
  update_time = function() end,
  log = ngx_log,
  null = null,
  encode_base64 = encode_base64, decode_base64 = decode_base64,
  md5 = digest_hex("md5"), md5_bin = digest_bin("md5", "md5_bin"),
  sha1_bin = digest_bin("sha1", "sha1_bin"), hmac_sha1 = hmac_sha1,
  crc32_short = crc32, crc32_long = crc32,
  escape_uri = escape_uri, unescape_uri = unescape_uri, encode_args = encode_args,
  quote_sql_str = quote_sql_str,
  re = lib.ngx_re.re,
  config = {
    ngx_lua_version = 10026, nginx_version = 1025003, subsystem = "stream", debug = false,
    prefix = function() return "" end, nginx_configure = function() return "" end,
  },
  worker = {
    id = function() return 0 end, count = function() return 1 end,
    pid = function() return py_getpid() end, exiting = function() return false end,
  },
  get_phase = function() return "timer" end,
  req = {}, var = {},
  OK = 0, ERROR = -1, AGAIN = -2, DONE = -4, DECLINED = -5,
  STDERR = 0, EMERG = 1, ALERT = 2, CRIT = 3, ERR = 4, WARN = 5, NOTICE = 6, INFO = 7,
  DEBUG = 8,
}

return { ngx = tree(NGX, "ngx"), null = null, to_hex = to_hex }
