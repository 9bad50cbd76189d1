-- libs.lua: the libraries OpenResty users expect to find, as built-in modules (require() reads
-- ``lib.builtin_modules``: name -> module, each table behind a read-only proxy, or a loader
-- function that returns the module):
--   bit            LuaBitOp: 32-bit signed results in Lua's doubles, all in Lua (exact
--                  arithmetic on doubles; faster than calls into Python);
--   cjson          encode/decode in Lua, cjson's rules (arrays, null, sparse arrays, errors);
--   cjson.safe     the same, returning nil, err instead of raising;
--   resty.md5, resty.sha1, resty.sha224, resty.sha256, resty.sha384, resty.sha512
--                  new(), :update(s), :final() (binary), :reset(): the data is kept in Lua
--                  and hashed by native.py at final(), so no Python object is ever kept;
--   resty.string   to_hex, atoi;
--   table.new, table.clear (also in the scripts' ``table``).
-- Loaded after ngx.lua; returns { bit, table_new, table_clear } for env.lua.
local lib = ...
local native, sandbox, raw = lib.native, lib.sandbox, lib.bounded.raw
local frozen, ngxlib = lib.frozen, lib.ngx
local null, to_hex = ngxlib.null, ngxlib.to_hex
local charge, reraise_if_killed = sandbox.charge, sandbox.reraise_if_killed
local STRING_MAX = lib.bounded.STRING_MAX
local py_digest = native.digest

local type, tostring, tonumber, error, select, next = type, tostring, tonumber, error,
  select, next
local pcall = pcall  -- the real one: around encode and decode only, which never yield
local setmetatable, rawget, raw_getmetatable = setmetatable, rawget, debug.getmetatable
local floor, huge = math.floor, math.huge
local s_find, s_match, s_gsub, s_sub, s_format, concat = raw.find, raw.match, raw.gsub,
  raw.sub, raw.format, raw.concat
local s_byte, s_char = string.byte, string.char

local function bad(n, fname, msg)
  error("bad argument #" .. n .. " to '" .. fname .. "' (" .. msg .. ")", 3)
end

-- bit -------------------------------------------------------------------------------------------
local M32, M31 = 2 ^ 32, 2 ^ 31
local ROUND = 2 ^ 52 + 2 ^ 51  -- adding and subtracting it rounds half to even, as LuaBitOp

local function number(x, n, fname)
  local v = tonumber(x)
  if not v then bad(n, fname, "number expected, got " .. (x == nil and "no value" or type(x))) end
  return v
end

-- x as an unsigned 32-bit value (LuaBitOp's conversion; NaN and infinities are 0)
local function u32(x, n, fname)
  if type(x) ~= "number" then x = number(x, n, fname) end
  if x > -2 ^ 51 and x < 2 ^ 51 then return ((x + ROUND) - ROUND) % M32 end  -- exact
  if x ~= x or x == huge or x == -huge then return 0 end
  return x % M32
end

local function signed(u)
  if u >= M31 then return u - M32 end
  return u
end

-- band, bor, bxor: 4 bits at a time through a table of the 256 pairs of nibbles (in Lua this
-- is faster than a call into Python)
local function nibble_table(f)
  local t = {}
  for x = 0, 15 do
    for y = 0, 15 do
      local r, v, a, b = 0, 1, x, y
      for _ = 1, 4 do
        if f(a % 2, b % 2) then r = r + v end
        a, b, v = floor(a / 2), floor(b / 2), v * 2
      end
      t[x * 16 + y] = r
    end
  end
  return t
end

local function bitwise(f, fname)
  local T = nibble_table(f)
  local function two(a, b)  -- of two unsigned values
    local r, m = 0, 1
    for _ = 1, 8 do
      local x, y = a % 16, b % 16
      r = r + T[x * 16 + y] * m
      a, b, m = (a - x) / 16, (b - y) / 16, m * 16
    end
    return r
  end
  return function(...)
    local n = select("#", ...)
    local a, b = ...
    local r = u32(a, 1, fname)
    if n == 1 then return signed(r) end
    r = two(r, u32(b, 2, fname))
    for i = 3, n do r = two(r, u32((select(i, ...)), i, fname)) end
    return signed(r)
  end
end

local function shift_of(n, fname)
  return u32(n, 2, fname) % 32
end

local bit = {
  tobit = function(x) return signed(u32(x, 1, "tobit")) end,
  bnot = function(x) return signed(M32 - 1 - u32(x, 1, "bnot")) end,
  band = bitwise(function(x, y) return x == 1 and y == 1 end, "band"),
  bor = bitwise(function(x, y) return x == 1 or y == 1 end, "bor"),
  bxor = bitwise(function(x, y) return x ~= y end, "bxor"),
  lshift = function(x, n)
    return signed(u32(x, 1, "lshift") * 2 ^ shift_of(n, "lshift") % M32)
  end,
  rshift = function(x, n)
    return signed(floor(u32(x, 1, "rshift") / 2 ^ shift_of(n, "rshift")))
  end,
  arshift = function(x, n)
    return signed(floor(signed(u32(x, 1, "arshift")) / 2 ^ shift_of(n, "arshift")) % M32)
  end,
  rol = function(x, n)
    local u, s = u32(x, 1, "rol"), shift_of(n, "rol")
    return signed(u * 2 ^ s % M32 + floor(u / 2 ^ (32 - s)))
  end,
  ror = function(x, n)
    local u, s = u32(x, 1, "ror"), 32 - shift_of(n, "ror")
    return signed(u * 2 ^ s % M32 + floor(u / 2 ^ (32 - s)))
  end,
  bswap = function(x)
    local u = u32(x, 1, "bswap")
    local b0, b1, b2 = u % 256, floor(u / 256) % 256, floor(u / 65536) % 256
    return signed(((b0 * 256 + b1) * 256 + b2) * 256 + floor(u / 16777216))
  end,
  tohex = function(x, n)
    local u = u32(x, 1, "tohex")
    local digits = n == nil and 8 or signed(u32(n, 2, "tohex"))
    local conv = "x"
    if digits < 0 then digits, conv = -digits, "X" end
    if digits > 8 then digits = 8 end
    if digits == 0 then return "" end
    return s_format("%0" .. digits .. conv, u % 16 ^ digits)
  end,
}

-- cjson -----------------------------------------------------------------------------------------
local empty_array = newproxy(false)  -- encodes as []
local array_mt = frozen.readonly({}, "cjson.array_mt")  -- a table with it encodes as an array
local empty_array_mt = frozen.readonly({}, "cjson.empty_array_mt")  -- an empty one as []

local ESCAPE = { ['"'] = '\\"', ["\\"] = "\\\\", ["/"] = "\\/", ["\b"] = "\\b",
                 ["\f"] = "\\f", ["\n"] = "\\n", ["\r"] = "\\r", ["\t"] = "\\t",
                 ["\127"] = "\\u007f" }
for i = 0, 31 do
  local c = s_char(i)
  ESCAPE[c] = ESCAPE[c] or s_format("\\u%04x", i)
end
local SPECIAL = "[%z\1-\31\"\\/\127]"
local SPECIAL_KEEP_SLASH = "[%z\1-\31\"\\\127]"
local UNESCAPE = { ['"'] = '"', ["\\"] = "\\", ["/"] = "/", b = "\b", f = "\f", n = "\n",
                   r = "\r", t = "\t" }

local function utf8(cp)
  if cp < 0x80 then return s_char(cp) end
  if cp < 0x800 then return s_char(0xC0 + floor(cp / 64), 0x80 + cp % 64) end
  if cp < 0x10000 then
    return s_char(0xE0 + floor(cp / 4096), 0x80 + floor(cp / 64) % 64, 0x80 + cp % 64)
  end
  return s_char(0xF0 + floor(cp / 262144), 0x80 + floor(cp / 4096) % 64,
                0x80 + floor(cp / 64) % 64, 0x80 + cp % 64)
end

-- One cjson instance: its settings and its functions (cjson.new() makes another).
local function new_cjson(safe)
  local cfg = { sparse_convert = false, sparse_ratio = 2, sparse_safe = 10,
                encode_depth = 1000, decode_depth = 1000, precision = "%.14g",
                empty_as_object = true, array_with_mt = false, special = SPECIAL }
  local M = {}

  -- encode
  local buf, nbuf, size

  local function put(s)
    nbuf = nbuf + 1
    buf[nbuf] = s
    size = size + #s
    if size > STRING_MAX then
      error("Cannot serialise: result longer than " .. STRING_MAX .. " bytes", 0)
    end
  end

  local function quote(s)
    charge(#s)
    if s_find(s, cfg.special) then s = s_gsub(s, cfg.special, ESCAPE) end
    put('"')
    put(s)
    put('"')
  end

  local function num(v)
    if v ~= v or v == huge or v == -huge then
      error("Cannot serialise number: must not be NaN or Infinity", 0)
    end
    return s_format(cfg.precision, v)
  end

  local value

  -- the length of t as an array, or -1 for an object (cjson's rule)
  local function array_length(t)
    local max, items = 0, 0
    for k in next, t do
      if type(k) == "number" and k > 0 and k == floor(k) and k ~= huge then
        if k > max then max = k end
        items = items + 1
      else
        return -1
      end
    end
    if cfg.sparse_ratio > 0 and max > items * cfg.sparse_ratio and max > cfg.sparse_safe then
      if not cfg.sparse_convert then
        error("Cannot serialise table: excessively sparse array", 0)
      end
      return -1
    end
    return max
  end

  local function array(t, n, depth)
    put("[")
    for i = 1, n do
      if i > 1 then put(",") end
      value(rawget(t, i), depth)
    end
    put("]")
  end

  local function object(t, depth)
    put("{")
    local first = true
    for k, v in next, t do
      local tk = type(k)
      if tk == "number" then
        k = num(k)
      elseif tk ~= "string" then
        error("Cannot serialise table: table key must be a number or string", 0)
      end
      if not first then put(",") end
      first = false
      quote(k)
      put(":")
      value(v, depth)
    end
    put("}")
  end

  value = function(v, depth)
    local t = type(v)
    if t == "string" then
      quote(v)
    elseif t == "number" then
      put(num(v))
    elseif t == "boolean" then
      put(v and "true" or "false")
    elseif v == nil or v == null then
      put("null")
    elseif v == empty_array then
      put("[]")
    elseif t == "table" then
      depth = depth + 1
      if depth > cfg.encode_depth then
        error("Cannot serialise, excessive nesting (" .. depth .. ")", 0)
      end
      local mt = raw_getmetatable(v)
      if mt == array_mt then return array(v, #v, depth) end
      if mt == empty_array_mt and next(v) == nil then return put("[]") end
      local n = array_length(v)
      if n > 0 or (n == 0 and not cfg.empty_as_object) then return array(v, n, depth) end
      object(v, depth)
    else
      error("Cannot serialise " .. t .. ": type not supported", 0)
    end
  end

  local function encode(v)
    buf, nbuf, size = {}, 0, 0
    value(v, 0)
    local out = concat(buf)
    buf = nil
    return out
  end

  -- decode: byte by byte in Lua, the C library only for runs it scans once (charged up front)
  local s, pos

  -- "Expected <what> but found <token> at character <at>", the token named when not given
  local function fail(what, at, token)
    token = token or (at > #s and "T_END" or "invalid token")
    error("Expected " .. what .. " but found " .. token .. " at character " .. at, 0)
  end

  local function skip()
    local _, e = s_find(s, "^[ \t\n\r]*", pos)
    pos = e + 1
  end

  local decode_value

  local function string_at()
    local parts, n = nil, 0
    local j = pos + 1
    while true do
      local k = s_find(s, "[\"\\%z\1-\31]", j)
      if not k then fail("string end", #s + 1) end
      local c = s_byte(s, k)
      if c == 34 then
        pos = k + 1
        if not parts then return s_sub(s, j, k - 1) end
        parts[n + 1] = s_sub(s, j, k - 1)
        return concat(parts)
      elseif c ~= 92 then
        fail("string end", k, "invalid control character")
      end
      parts = parts or {}
      n = n + 1
      parts[n] = s_sub(s, j, k - 1)
      local e = s_sub(s, k + 1, k + 1)
      local r = UNESCAPE[e]
      j = k + 2
      if not r then
        if e ~= "u" then fail("value", k, "invalid escape code") end
        local hex = s_match(s, "^[0-9a-fA-F][0-9a-fA-F][0-9a-fA-F][0-9a-fA-F]", j)
        if not hex then fail("value", k, "invalid unicode escape code") end
        local cp = tonumber(hex, 16)
        j = j + 4
        if cp >= 0xD800 and cp <= 0xDFFF then
          local low = cp <= 0xDBFF
            and s_match(s, "^\\u([dD][c-fC-F][0-9a-fA-F][0-9a-fA-F])", j)
          if not low then fail("value", k, "invalid unicode escape code") end
          cp = 0x10000 + (cp - 0xD800) * 0x400 + (tonumber(low, 16) - 0xDC00)
          j = j + 6
        end
        r = utf8(cp)
      end
      n = n + 1
      parts[n] = r
    end
  end

  local function number_at()
    local a, b = s_find(s, "^-?[0-9]+", pos)
    if not a then
      local sign = s_find(s, "^-", pos) and -1 or 1
      local at = sign < 0 and pos + 1 or pos
      local _, e = s_find(s, "^[iI][nN][fF]", at)
      if e then
        local _, e2 = s_find(s, "^[iI][nN][iI][tT][yY]", e + 1)
        pos = (e2 or e) + 1
        return sign * huge
      end
      _, e = s_find(s, "^[nN][aA][nN]", at)
      if e then
        pos = e + 1
        return 0 / 0
      end
      fail("value", pos)
    end
    local digits = s_byte(s, a) == 45 and a + 1 or a
    if s_byte(s, digits) == 48 and b > digits then
      fail("value", pos, "invalid number")
    end
    local _, e = s_find(s, "^%.[0-9]+", b + 1)
    if e then b = e elseif s_byte(s, b + 1) == 46 then
      fail("value", pos, "invalid number")
    end
    _, e = s_find(s, "^[eE][-+]?[0-9]+", b + 1)
    if e then b = e elseif s_find(s, "^[eE]", b + 1) then
      fail("value", pos, "invalid number")
    end
    local v = tonumber(s_sub(s, pos, b))
    pos = b + 1
    return v
  end

  local LITERALS = { t = { "true", true }, f = { "false", false }, n = { "null", null } }

  decode_value = function(depth)
    skip()
    local c = s_byte(s, pos)
    if c == 123 or c == 91 then  -- { or [
      depth = depth + 1
      if depth > cfg.decode_depth then
        error("Found too many nested data structures (" .. depth .. ") at character " .. pos, 0)
      end
      local t, close = {}, c == 123 and 125 or 93
      pos = pos + 1
      skip()
      if s_byte(s, pos) == close then
        pos = pos + 1
        if c == 91 and cfg.array_with_mt then setmetatable(t, array_mt) end
        return t
      end
      local n = 0
      while true do
        if c == 123 then
          skip()
          if s_byte(s, pos) ~= 34 then
            fail("object key string", pos)
          end
          local key = string_at()
          skip()
          if s_byte(s, pos) ~= 58 then fail("colon", pos) end
          pos = pos + 1
          t[key] = decode_value(depth)
        else
          n = n + 1
          t[n] = decode_value(depth)
        end
        skip()
        local d = s_byte(s, pos)
        pos = pos + 1
        if d == close then break end
        if d ~= 44 then
          fail(c == 123 and "comma or object end" or "comma or array end", pos - 1)
        end
      end
      if c == 91 and cfg.array_with_mt then setmetatable(t, array_mt) end
      return t
    elseif c == 34 then
      return string_at()
    elseif c == nil then
      fail("value", pos)
    end
    local literal = LITERALS[s_char(c)]
    if literal and s_sub(s, pos, pos + #literal[1] - 1) == literal[1] then
      pos = pos + #literal[1]
      return literal[2]
    end
    return number_at()
  end

  local function decode(text)
    local t = type(text)
    if t == "number" then
      text = tostring(text)
    elseif t ~= "string" then
      error("bad argument #1 to 'decode' (string expected, got " .. t .. ")", 0)
    end
    charge(#text * 2)
    s, pos = text, 1
    local v = decode_value(0)
    skip()
    if pos <= #s then fail("the end", pos) end
    s = nil
    return v
  end

  -- raising, with the caller's position (as the C library's errors); or nil, err (cjson.safe)
  local function entry(f)
    return function(v)
      local ok, r = pcall(f, v)
      if ok then return r end
      reraise_if_killed(r)
      buf, s = nil, nil  -- what a failed call left
      if safe then return nil, r end
      error(r, 2)
    end
  end

  M.encode = entry(encode)
  M.decode = entry(decode)

  local function setting(name, check)
    return function(v)
      if v ~= nil then cfg[name] = check(v) end
      return cfg[name]
    end
  end
  local function boolean(v) return v and true or false end
  local function depth(v)
    local n = tonumber(v)
    if not (n and n >= 1 and n == floor(n)) then
      error("bad argument #1 (a positive integer expected)", 3)
    end
    return n
  end

  M.encode_max_depth = setting("encode_depth", depth)
  M.decode_max_depth = setting("decode_depth", depth)
  M.encode_empty_table_as_object = setting("empty_as_object", boolean)
  M.decode_array_with_array_mt = setting("array_with_mt", boolean)
  M.encode_number_precision = function(v)
    if v ~= nil then
      local n = tonumber(v)
      if not (n and n >= 1 and n <= 16 and n == floor(n)) then
        error("bad argument #1 to 'encode_number_precision' (expected integer between 1 and 16)",
              2)
      end
      cfg.precision = "%." .. n .. "g"
    end
    return tonumber(s_match(cfg.precision, "[0-9]+"))
  end
  M.encode_escape_forward_slash = function(v)
    if v ~= nil then cfg.special = v and SPECIAL or SPECIAL_KEEP_SLASH end
    return cfg.special == SPECIAL
  end
  M.encode_sparse_array = function(convert, ratio, safe_n)
    if convert ~= nil then cfg.sparse_convert = boolean(convert) end
    if ratio ~= nil then cfg.sparse_ratio = number(ratio, 2, "encode_sparse_array") end
    if safe_n ~= nil then cfg.sparse_safe = number(safe_n, 3, "encode_sparse_array") end
    return cfg.sparse_convert, cfg.sparse_ratio, cfg.sparse_safe
  end
  M.new = function() return new_cjson(safe) end
  M.null, M.empty_array = null, empty_array
  M.array_mt, M.empty_array_mt = array_mt, empty_array_mt
  M._NAME, M._VERSION = safe and "cjson.safe" or "cjson", "2.1.0.14"
  return M
end

-- resty.md5, resty.sha1... ---------------------------------------------------------------------
local STATE = setmetatable({}, { __mode = "k" })  -- hasher -> what was given to update()

local function hasher(name)
  local methods = {}
  local mt = { __index = methods, __metatable = false }
  local module_name = "resty." .. name

  local function state(self, fname)
    local st = STATE[self]
    if not st then bad(1, fname, "a " .. module_name .. " object expected") end
    return st
  end

  function methods.update(self, s)
    local st = state(self, "update")
    if type(s) ~= "string" then
      bad(1, "update", "string expected, got " .. (s == nil and "no value" or type(s)))
    end
    if st.size + #s > STRING_MAX then
      bad(1, "update", "more than " .. STRING_MAX .. " bytes hashed")
    end
    st.n = st.n + 1
    st[st.n] = s
    st.size = st.size + #s
    return true
  end

  function methods.final(self)
    local st = state(self, "final")
    local data = concat(st, "", 1, st.n)
    charge(#data)
    return py_digest(name, data)
  end

  function methods.reset(self)
    local st = state(self, "reset")
    for i = 1, st.n do st[i] = nil end
    st.n, st.size = 0, 0
    return true
  end

  return {
    _VERSION = "0.15",
    new = function()
      local obj = setmetatable({}, mt)
      STATE[obj] = { n = 0, size = 0 }
      return obj
    end,
  }
end

-- table.new, table.clear ------------------------------------------------------------------------
local function table_new(narr, nrec)
  return {}
end

local function table_clear(t)
  if type(t) ~= "table" then bad(1, "clear", "table expected, got " .. type(t)) end
  local k = next(t)
  while k ~= nil do
    t[k] = nil
    k = next(t)
  end
end
table_clear = frozen.guard(table_clear, "clear")

local bit_module = frozen.tree(bit, "bit")
local modules = {
  bit = bit_module,
  cjson = frozen.tree(new_cjson(false), "cjson"),
  ["cjson.safe"] = frozen.tree(new_cjson(true), "cjson.safe"),
  ["resty.string"] = frozen.tree({ _VERSION = "0.15", to_hex = function(s)
      if type(s) ~= "string" then bad(1, "to_hex", "string expected, got " .. type(s)) end
      if #s > STRING_MAX / 2 then bad(1, "to_hex", "string longer than " .. STRING_MAX / 2) end
      charge(#s)
      return to_hex(s)
    end, atoi = function(s) return tonumber(s) end }, "resty.string"),
  -- a function value is a loader (called once with the name; its value is the module)
  ["table.new"] = function() return table_new end,
  ["table.clear"] = function() return table_clear end,
}
for _, name in next, { "md5", "sha1", "sha224", "sha256", "sha384", "sha512" } do
  modules["resty." .. name] = frozen.tree(hasher(name), "resty." .. name)
end
lib.builtin_modules = modules
lib.native = nil  -- every file that calls it has it now

return { bit = bit_module, table_new = table_new, table_clear = table_clear }
