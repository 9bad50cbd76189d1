-- bounded.lua: Lua's C library made safe to call with anything. The instruction hook runs
-- between instructions only, so one call into C (a pattern match, a string.rep) could run for
-- minutes unseen. Every library function whose work grows with its arguments is replaced here
-- by one that bounds that work from its real arguments (numbers given as strings, negative,
-- NaN and huge counts included) and charges it (sandbox.charge), so that the CPU slice holds
-- within a few ms whatever the script calls:
--   * patterns (find, match, gmatch, gsub): the C matcher when pattern.cost() bounds its steps
--     to WORK_MAX (about 1 ms), else pattern.lua's matcher, whose steps the hook counts;
--   * plain finds: C on windows of the subject each bounded to WORK_MAX;
--   * results (rep, format, gsub, table.concat) at most STRING_MAX bytes; byte-wise work
--     (upper, lower, reverse, sub) charged;
--   * table.insert/remove shift at most SHIFT_MAX elements; table.sort without a comparator
--     compares in Lua (hooked) past a few elements; table.maxn walks in Lua;
--   * os.date formats of at most DATE_FORMAT_MAX bytes;
--   * math.random and math.randomseed with a state of each check's own (C's rand() is one
--     state for the whole process), seeded from the runtime's generator, which runtime.py
--     seeds from the system.
-- Also what was here before: no string.dump, the string metatable hidden, patterns of at
-- most PATTERN_MAX bytes (the C matcher recurses once per item). Loaded after sandbox.lua and
-- pattern.lua, before env.lua (which hands these tables to scripts); returns the limits, and
-- the C functions as they were (``raw``) for the library files whose own fixed patterns and
-- sizes are bounded where they call them (ngx.lua, libs.lua).
local lib = ...
local sandbox, pattern = lib.sandbox, lib.pattern
local charge, current = sandbox.charge, sandbox.current
local cost = pattern.cost

local WORK_MAX = 2 ^ 18       -- units a C call may do (~3 ns each: a pattern step, a byte)
local STRING_MAX = 16 * 2 ^ 20  -- bytes of a string rep, format, concat or gsub makes
local PATTERN_MAX = 512
local SHIFT_MAX = 2 ^ 20      -- elements table.insert/remove may move (~4 ms)
local SORT_C_MAX = 64         -- elements table.sort compares in C without a comparator
local DATE_FORMAT_MAX = 256
local SMALL = 4096            -- strings shorter than this are not worth charging

local type, tostring, tonumber, error, select, pairs = type, tostring, tonumber, error, select,
  pairs
local floor, huge = math.floor, math.huge
local s_find, s_match, s_gmatch, s_gsub = string.find, string.match, string.gmatch, string.gsub
local s_rep, s_sub, s_format = string.rep, string.sub, string.format
local s_upper, s_lower, s_reverse = string.upper, string.lower, string.reverse
local t_concat, t_insert, t_remove, t_sort = table.concat, table.insert, table.remove,
  table.sort
local os_date = os.date

string.dump = nil
-- Every string shares one metatable whose __index is this string library: hide it.
getmetatable("").__metatable = false

local function bad(n, name, msg)
  error("bad argument #" .. n .. " to '" .. name .. "' (" .. msg .. ")", 3)
end

-- What luaL_checklstring accepts: a string or a number (as tostring writes it).
local function str_arg(v, n, name)
  local t = type(v)
  if t == "string" then return v end
  if t == "number" then return tostring(v) end
  bad(n, name, "string expected, got " .. (v == nil and "no value" or t))
end

-- What luaL_optinteger gives: the number (or numeric string) truncated towards zero; NaN and
-- out-of-range values become the most negative integer, as the C cast does on x86-64.
local function int_arg(v, n, name, default)
  if v == nil then return default end
  local x = tonumber(v)
  if not x then bad(n, name, "number expected, got " .. type(v)) end
  if not (x > -2 ^ 63 and x < 2 ^ 63) then return -2 ^ 63 end
  if x >= 0 then return floor(x) end
  return -floor(-x)
end

-- Patterns --------------------------------------------------------------------------------
-- A byte that makes a pattern more than a plain string (strpbrk stops at a NUL, as here).
local SPECIALS = "[%^%$%*%+%?%.%(%[%%%-]"

local function has_specials(p)
  local z = s_find(p, "\0", 1, true)
  if z then p = s_sub(p, 1, z - 1) end
  if #p > SMALL then charge(#p) end
  return s_find(p, SPECIALS) ~= nil
end

local function check_pattern(p, name)
  if #p > PATTERN_MAX then
    bad(2, name, "pattern longer than " .. PATTERN_MAX .. " bytes")
  end
end

-- A plain search from position ``start``: C's memchr and memcmp over windows of the subject,
-- each window's worst case (every byte a candidate, each compared in full) at most WORK_MAX.
-- A needle longer than PREFIX is looked for by its first PREFIX bytes, each candidate then
-- compared in full (and charged).
local PREFIX = 64
local function plain_find(s, p, start)
  local n, m = #s, #p
  if m == 0 then return start, start - 1 end
  if m > n - start + 1 then return nil end
  local needle = m > PREFIX and s_sub(p, 1, PREFIX) or p
  local k = #needle
  local per_start = 2 + k / 8
  local window = floor(WORK_MAX / per_start)
  local i = start
  while i <= n - m + 1 do
    local at
    if (n - i + 1) <= window then
      charge((n - i + 1) * per_start)
      at = s_find(s, needle, i, true)
      if not at then return nil end
    else
      local piece = s_sub(s, i, i + window + k - 2)
      charge(window * per_start + #piece)
      local off = s_find(piece, needle, 1, true)
      at = off and i + off - 1
      if not at then i = i + window end
    end
    if at then
      if at > n - m + 1 then return nil end
      if k == m then return at, at + m - 1 end
      charge(m)
      if s_sub(s, at, at + m - 1) == p then return at, at + m - 1 end
      i = at + 1
    end
  end
  return nil
end

local function find(s, p, init, plain, name, is_find)
  s = str_arg(s, 1, name)
  p = str_arg(p, 2, name)
  init = int_arg(init, 3, name, 1)
  local n = #s
  if is_find and (plain or not has_specials(p)) then
    return plain_find(s, p, pattern.start_of(init, n))
  end
  check_pattern(p, name)
  local work = cost(p, n - pattern.start_of(init, n) + 1)
  if work <= WORK_MAX then
    charge(work)
    if is_find then return s_find(s, p, init) end
    return s_match(s, p, init)
  end
  return pattern.find(s, p, init, is_find)
end

string.find = function(s, p, init, plain) return find(s, p, init, plain, "find", true) end
string.match = function(s, p, init) return find(s, p, init, false, "match", false) end

string.gmatch = function(s, p)
  s = str_arg(s, 1, "gmatch")
  p = str_arg(p, 2, "gmatch")
  check_pattern(p, "gmatch")
  local work = cost(p, #s, true)
  if work > WORK_MAX then return pattern.gmatch(s, p) end
  local it = s_gmatch(s, p)
  -- each call is bounded by the whole subject's bound, and charged as such
  return function()
    charge(work)
    return it()
  end
end

local REPL = { string = true, number = true, ["function"] = true, table = true }

string.gsub = function(s, p, repl, max_n)
  s = str_arg(s, 1, "gsub")
  p = str_arg(p, 2, "gsub")
  local tr = type(repl)
  if not REPL[tr] then bad(3, "gsub", "string/function/table expected") end
  local n = #s
  max_n = int_arg(max_n, 4, "gsub", n + 1)
  check_pattern(p, "gsub")
  if tr == "string" or tr == "number" then
    repl = tostring(repl)
    local matches = max_n < n + 1 and (max_n > 0 and max_n or 0) or n + 1
    local escapes = 0
    if s_find(repl, "%", 1, true) then escapes = #repl end  -- each %0..%9 copies <= n bytes
    local work = cost(p, n) + n + matches * (#repl + escapes * n)
    if work <= WORK_MAX then
      charge(work)
      return s_gsub(s, p, repl, max_n)
    end
  end
  -- a function or table replacement hands back values of any size: built and charged in Lua
  return pattern.gsub(s, p, repl, max_n, STRING_MAX)
end

-- Strings made or walked in one call -------------------------------------------------------
string.rep = function(s, n)
  s = str_arg(s, 1, "rep")
  n = int_arg(n, 2, "rep")
  if n == nil then bad(2, "rep", "number expected, got no value") end
  if n <= 0 or s == "" then return "" end  -- C loops n times even for ""
  local size = #s * n
  if size > STRING_MAX then bad(2, "rep", "result longer than " .. STRING_MAX .. " bytes") end
  if size > SMALL then charge(size) end
  return s_rep(s, n)
end

string.format = function(fmt, ...)
  fmt = str_arg(fmt, 1, "format")
  -- a conversion writes at most 99 digits of width and of precision, %q at most 4 bytes
  -- for each byte of its string
  local size = #fmt
  local per_byte = s_find(fmt, "%q", 1, true) and 4 or 1
  for i = 1, select("#", ...) do
    local v = select(i, ...)
    size = size + (type(v) == "string" and per_byte * #v + 2 or 0) + 512
  end
  if size > STRING_MAX then
    bad(1, "format", "result longer than " .. STRING_MAX .. " bytes")
  end
  if size > SMALL then charge(size) end
  return s_format(fmt, ...)
end

local function bytewise(f, name)
  return function(s, ...)
    s = str_arg(s, 1, name)
    if #s > SMALL then charge(#s) end
    return f(s, ...)
  end
end
string.upper = bytewise(s_upper, "upper")
string.lower = bytewise(s_lower, "lower")
string.reverse = bytewise(s_reverse, "reverse")
string.sub = bytewise(s_sub, "sub")

-- Tables -----------------------------------------------------------------------------------
table.concat = function(t, sep, i, j)
  if type(t) ~= "table" then bad(1, "concat", "table expected, got " .. type(t)) end
  sep = sep == nil and "" or str_arg(sep, 2, "concat")
  i = int_arg(i, 3, "concat", 1)
  j = int_arg(j, 4, "concat", nil) or #t
  if i > j then return "" end
  local size = (j - i) * #sep
  if size > STRING_MAX then
    bad(1, "concat", "result longer than " .. STRING_MAX .. " bytes")
  end
  for k = i, j do
    local v = t[k]
    local tv = type(v)
    if tv == "string" then
      size = size + #v
    elseif tv == "number" then
      size = size + 24
    else
      break  -- C raises "invalid value (at index k)"
    end
    if size > STRING_MAX then
      bad(1, "concat", "result longer than " .. STRING_MAX .. " bytes")
    end
  end
  if size > SMALL then charge(size) end
  return t_concat(t, sep, i, j)
end

local function shifted(t, pos, name)
  if type(t) ~= "table" then bad(1, name, "table expected, got " .. type(t)) end
  local moves = #t - (tonumber(pos) or #t) + 1
  if moves > SHIFT_MAX then bad(2, name, "moves more than " .. SHIFT_MAX .. " elements") end
  if moves > SMALL then charge(moves * 4) end
end

table.insert = function(t, ...)
  if select("#", ...) >= 2 then shifted(t, (...), "insert") end
  return t_insert(t, ...)
end

table.remove = function(t, pos)
  if pos ~= nil then shifted(t, pos, "remove") end
  return t_remove(t, pos)
end

local function less(a, b) return a < b end
table.sort = function(t, comp)
  if type(t) ~= "table" then bad(1, "sort", "table expected, got " .. type(t)) end
  if comp == nil and #t > SORT_C_MAX then comp = less end  -- compared where the hook sees
  return t_sort(t, comp)
end

table.maxn = function(t)
  if type(t) ~= "table" then bad(1, "maxn", "table expected, got " .. type(t)) end
  local max = 0
  for k in pairs(t) do
    if type(k) == "number" and k > max then max = k end
  end
  return max
end

-- os.date ------------------------------------------------------------------------------------
os.date = function(fmt, ...)
  if type(fmt) == "string" and #fmt > DATE_FORMAT_MAX then
    bad(1, "date", "format longer than " .. DATE_FORMAT_MAX .. " bytes")
  end
  return os_date(fmt, ...)
end

-- math.random: L'Ecuyer's combined generator (products stay below 2^53, exact in doubles),
-- one state per check (``c.rng``), made at its first use from the runtime's own generator.
local M1, A1, Q1, R1 = 2147483563, 40014, 53668, 12211
local M2, A2, Q2, R2 = 2147483399, 40692, 52774, 3791

local function step(st)
  local s1, s2 = st[1], st[2]
  s1 = A1 * (s1 % Q1) - R1 * floor(s1 / Q1)
  if s1 < 0 then s1 = s1 + M1 end
  s2 = A2 * (s2 % Q2) - R2 * floor(s2 / Q2)
  if s2 < 0 then s2 = s2 + M2 end
  st[1], st[2] = s1, s2
  local z = s1 - s2
  if z < 1 then z = z + M1 - 1 end
  return z / M1  -- in (0, 1)
end

local function seeded(x, y)
  local st = { x % (M1 - 1) + 1, y % (M2 - 1) + 1 }
  for _ = 1, 8 do step(st) end
  return st
end

local RUNTIME = seeded(lib.seed[1], lib.seed[2])  -- runtime.py's system seed

local function state()
  local c = current()
  local st = c.rng
  if not st then
    st = seeded(floor(step(RUNTIME) * M1), floor(step(RUNTIME) * M2))
    c.rng = st
  end
  return st
end

local function int_bound(v, n)
  local x = tonumber(v)
  if not x then bad(n, "random", "number expected, got " .. type(v)) end
  if not (x > -2 ^ 31 and x < 2 ^ 31) then bad(n, "random", "interval is too large") end
  return floor(x)
end

math.random = function(...)
  local nargs = select("#", ...)
  local r = step(state())  -- in (0, 1)
  if nargs == 0 then return r end
  local lo, hi = 1, nil
  if nargs == 1 then
    hi = int_bound((...), 1)
  elseif nargs == 2 then
    local a, b = ...
    lo, hi = int_bound(a, 1), int_bound(b, 2)
  else
    error("wrong number of arguments", 2)
  end
  if lo > hi then bad(nargs, "random", "interval is empty") end
  return floor(r * (hi - lo + 1)) + lo
end

math.randomseed = function(x)
  local v = tonumber(x)
  if not v then bad(1, "randomseed", "number expected, got " .. type(x)) end
  if v ~= v or v == huge or v == -huge then v = 0 end
  v = floor(v % 2 ^ 53)
  current().rng = seeded(v % 2147483648, floor(v / 2147483648))
end

return {
  WORK_MAX = WORK_MAX, STRING_MAX = STRING_MAX, PATTERN_MAX = PATTERN_MAX,
  raw = { find = s_find, match = s_match, gsub = s_gsub, rep = s_rep, sub = s_sub,
          format = s_format, concat = t_concat },
}
