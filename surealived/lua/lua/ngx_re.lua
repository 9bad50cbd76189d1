-- ngx_re.lua: ngx.re.match, find, gmatch, sub and gsub as in OpenResty, on RE2 (native.py's
-- re_meta and re_exec) instead of PCRE: RE2 runs in time linear in the subject whatever the
-- regex, so a hostile reply cannot make a match backtrack. What RE2 cannot do is an error, never
-- a silent difference: the options D and J raise, and a regex using backreferences, look-around,
-- possessive or atomic groups fails to compile (nil, err, as a bad regex does in OpenResty).
--
-- Bounds: a subject of at most SUBJECT_MAX bytes, a regex of at most REGEX_MAX; one search costs
-- at most (bytes searched) x (RE2 program size) <= SEARCH_MAX steps, else it returns nil, err
-- instead of running. The bytes searched are charged to the check (sandbox.charge). Compiled
-- regexes are kept per runtime (native.py's LRU; their size and groups in META here).
local lib = ...
local native, sandbox, raw = lib.native, lib.sandbox, lib.bounded.raw
local re_meta, re_exec = native.re_meta, native.re_exec
local charge = sandbox.charge
local STRING_MAX = lib.bounded.STRING_MAX

local type, tostring, tonumber, error, next = type, tostring, tonumber, error, next
local rawequal = rawequal
local floor = math.floor
local s_sub, s_find, s_byte, concat = raw.sub, raw.find, string.byte, raw.concat

local SUBJECT_MAX = 2 ^ 20
local REGEX_MAX = 16 * 1024
local SEARCH_MAX = 2 ^ 24
local CACHE_MAX = 256  -- option strings and regexes whose compiled form is kept here

-- OpenResty's option letters -> the canonical flags of native.py ("" for those with nothing to
-- do here: j is PCRE's JIT, o its compile-once cache, which every regex has here)
local FLAG = { a = "a", d = "d", i = "i", m = "m", s = "s", u = "u", U = "u", x = "x",
               j = "", o = "" }
local REFUSED = { D = "duplicate named groups", J = "JavaScript compatibility" }
local ORDER = { "a", "d", "i", "m", "s", "u", "x" }

local function bad(n, fname, msg)
  error("bad argument #" .. n .. " to '" .. fname .. "' (" .. msg .. ")", 3)
end

local function str_arg(v, n, fname)
  local t = type(v)
  if t == "string" then return v end
  if t == "number" then return tostring(v) end
  bad(n, fname, "string expected, got " .. (v == nil and "no value" or t))
end

local OPTS, nopts = {}, 0  -- options string -> canonical flags

local function flags_of(options, n, fname)
  if options == nil then return "" end
  if type(options) ~= "string" then
    bad(n, fname, "string expected, got " .. type(options))
  end
  local flags = OPTS[options]
  if flags then return flags end
  local seen = {}
  for i = 1, #options do
    local c = s_sub(options, i, i)
    local f = FLAG[c]
    if f == nil then
      if REFUSED[c] then
        error("regex option \"" .. c .. "\" (" .. REFUSED[c] .. ") is not supported: RE2 "
              .. "cannot honour it", 3)
      end
      error("unknown flag \"" .. s_sub(c, 1, 8) .. "\" (flags \"" .. s_sub(options, 1, 64)
            .. "\")", 3)
    end
    seen[f] = true
  end
  local parts = {}
  for i = 1, #ORDER do
    if seen[ORDER[i]] then parts[#parts + 1] = ORDER[i] end
  end
  flags = concat(parts)
  if nopts >= CACHE_MAX then OPTS, nopts = {}, 0 end
  OPTS[options], nopts = flags, nopts + 1
  return flags
end

local META, nmeta = {}, 0  -- flags -> regex -> { size, groups, names } or { err }

local function compiled(regex, flags)
  local by_flags = META[flags]
  local meta = by_flags and by_flags[regex]
  if meta then return meta end
  if #regex > REGEX_MAX then
    meta = { err = "failed to compile regex: longer than " .. REGEX_MAX .. " bytes" }
  else
    charge(#regex * 16)
    local r = { re_meta(regex, flags) }
    if r[1] == false then
      meta = { err = "failed to compile regex \"" .. s_sub(regex, 1, 200) .. "\": " .. r[2] }
    else
      local names = false
      for i = 3, #r, 2 do
        names = names or {}
        names[r[i]] = r[i + 1]
      end
      meta = { size = r[1], groups = r[2], names = names }
    end
  end
  if nmeta >= CACHE_MAX then META, nmeta = {}, 0 end
  by_flags = META[flags]
  if not by_flags then
    by_flags = {}
    META[flags] = by_flags
  end
  by_flags[regex], nmeta = meta, nmeta + 1
  return meta
end

-- The subject native.py holds from the last search: a search of the same string again (the
-- next match of gmatch or gsub) sends ``false`` instead of copying it once more. It is known
-- only once re_exec returned (a call that failed on its way may not have reached Python).
local last = nil

local function searched(subject, ...)
  last = subject
  return ...
end

-- search(...): re_exec's values for the first match at or after byte offset pos (0-based), nil
-- when there is none, or nil, err when the search would cost too much.
local function search(regex, flags, meta, subject, pos, nth)
  local n = #subject
  if n > SUBJECT_MAX then
    return nil, "subject longer than " .. SUBJECT_MAX .. " bytes"
  end
  local work = (n - pos + 1) * meta.size
  if work > SEARCH_MAX then
    return nil, "search too costly: " .. (n - pos) .. " bytes x " .. meta.size
                .. " regex instructions > " .. SEARCH_MAX .. " (search a smaller subject)"
  end
  charge(n - pos + 1)
  if rawequal(subject, last) then return re_exec(regex, flags, false, pos, nth) end
  last = nil
  charge(n)
  return searched(subject, re_exec(regex, flags, subject, pos, nth))
end

-- The captures table of a match whose spans are s (0-based start, end of each group; -1 when a
-- group did not match), in res when given.
local function captures(subject, s, meta, res)
  local m = res or {}
  m[0] = s_sub(subject, s[1] + 1, s[2])
  for g = 1, meta.groups do
    local a = s[2 * g + 1]
    if a >= 0 then
      m[g] = s_sub(subject, a + 1, s[2 * g + 2])
    else
      m[g] = false
    end
  end
  local names = meta.names
  if names then
    for name, g in next, names do m[name] = m[g] end
  end
  return m
end

-- Where a search starts (0-based), from ctx.pos (1-based); nil when past the subject.
local function start_of(ctx, subject, n, fname)
  if ctx == nil then return 0 end
  if type(ctx) ~= "table" then bad(n, fname, "table expected, got " .. type(ctx)) end
  local pos = ctx.pos
  if pos == nil then return 0 end
  pos = tonumber(pos)
  if not pos then bad(n, fname, "ctx.pos must be a number") end
  pos = floor(pos) - 1
  if pos < 0 then return 0 end
  if pos > #subject then return nil end
  return pos
end

-- The bytes to skip after an empty match at offset at: one, or one UTF-8 character with "u".
local function step(subject, at, flags)
  if not s_find(flags, "u", 1, true) then return 1 end
  local i = at + 2
  while true do
    local b = s_byte(subject, i)
    if not b or b < 0x80 or b >= 0xC0 then break end
    i = i + 1
  end
  return i - at - 1
end

local function prepare(subject, regex, options, fname, argn)
  subject = str_arg(subject, 1, fname)
  regex = str_arg(regex, 2, fname)
  local flags = flags_of(options, argn, fname)
  return subject, regex, flags, compiled(regex, flags)
end

local function match(subject, regex, options, ctx, res)
  local flags, meta
  subject, regex, flags, meta = prepare(subject, regex, options, "match", 3)
  if meta.err then return nil, meta.err end
  if res ~= nil and type(res) ~= "table" then
    bad(5, "match", "table expected, got " .. type(res))
  end
  local pos = start_of(ctx, subject, 4, "match")
  if not pos then return nil end
  local s = { search(regex, flags, meta, subject, pos, -1) }
  if s[1] == nil then return nil, s[2] end
  if ctx then ctx.pos = s[2] + 1 end
  return captures(subject, s, meta, res)
end

local function find(subject, regex, options, ctx, nth)
  local flags, meta
  subject, regex, flags, meta = prepare(subject, regex, options, "find", 3)
  if meta.err then return nil, nil, meta.err end
  local group = 0
  if nth ~= nil then
    group = tonumber(nth)
    if not (group and group >= 0 and group == floor(group)) then
      bad(5, "find", "a group number expected, got " .. tostring(nth))
    end
  end
  local pos = start_of(ctx, subject, 4, "find")
  if not pos then return nil end
  local finish, from, to = search(regex, flags, meta, subject, pos, group)
  if finish == nil then
    if from then return nil, nil, from end
    return nil
  end
  if ctx then ctx.pos = finish + 1 end
  if from < 0 then return nil end
  return from + 1, to
end

local function gmatch(subject, regex, options)
  local flags, meta
  subject, regex, flags, meta = prepare(subject, regex, options, "gmatch", 3)
  if meta.err then return nil, meta.err end
  local pos, n = 0, #subject
  return function()
    if pos > n then return nil end
    local s = { search(regex, flags, meta, subject, pos, -1) }
    if s[1] == nil then
      pos = n + 1
      return nil, s[2]
    end
    if s[2] == s[1] then
      pos = s[2] + step(subject, s[2], flags)
    else
      pos = s[2]
    end
    return captures(subject, s, meta)
  end
end

-- A replacement template: its pieces, strings and group numbers ($0, $12, ${1}; $$ is "$").
local function template_of(text)
  charge(#text)
  local parts, i = {}, 1
  while true do
    local d = s_find(text, "$", i, true)
    if not d then
      if i <= #text then parts[#parts + 1] = s_sub(text, i) end
      return parts
    end
    if d > i then parts[#parts + 1] = s_sub(text, i, d - 1) end
    local c = s_byte(text, d + 1)
    local a, b, digits
    if c == 36 then  -- $$
      parts[#parts + 1] = "$"
      b = d + 1
    elseif c == 123 then  -- ${n}
      a, b, digits = s_find(text, "^{([0-9]+)}", d + 1)
      if not a then return nil end
      parts[#parts + 1] = tonumber(digits)
    else
      a, b = s_find(text, "^[0-9]+", d + 1)
      if not a then return nil end
      parts[#parts + 1] = tonumber(s_sub(text, a, b))
    end
    i = b + 1
  end
end

local function expand(parts, subject, s, meta, out, size)
  for i = 1, #parts do
    local p = parts[i]
    if type(p) == "number" then
      local a = p <= meta.groups and s[2 * p + 1] or -1
      p = a >= 0 and s_sub(subject, a + 1, s[2 * p + 2]) or ""
    end
    out[#out + 1] = p
    size = size + #p
  end
  return size
end

local function substitute(fname, all, subject, regex, replace, options)
  local flags, meta
  subject, regex, flags, meta = prepare(subject, regex, options, fname, 4)
  local tr, parts = type(replace), nil
  if tr == "string" or tr == "number" then
    parts = template_of(tostring(replace))
    if not parts then return nil, nil, "failed to compile the replacement template" end
  elseif tr ~= "function" then
    bad(3, fname, "string or function expected, got " .. tr)
  end
  if meta.err then return nil, nil, meta.err end
  local out, size, count = {}, 0, 0
  local pos, copied, n = 0, 0, #subject
  while pos <= n do
    local s = { search(regex, flags, meta, subject, pos, -1) }
    if s[1] == nil then
      if s[2] then return nil, nil, s[2] end
      break
    end
    local from, to = s[1], s[2]
    if from > copied then
      out[#out + 1] = s_sub(subject, copied + 1, from)
      size = size + from - copied
    end
    if parts then
      size = expand(parts, subject, s, meta, out, size)
    else
      local r = replace(captures(subject, s, meta))
      local t = type(r)
      if t == "number" then
        r = tostring(r)
      elseif t ~= "string" then
        error("bad argument #3 to '" .. fname .. "' (the function returned a " .. t
              .. " value, string expected)", 2)
      end
      out[#out + 1] = r
      size = size + #r
    end
    if size > STRING_MAX then
      error("bad argument #1 to '" .. fname .. "' (result longer than " .. STRING_MAX
            .. " bytes)", 2)
    end
    count = count + 1
    copied = to
    if not all then break end
    pos = to == from and to + step(subject, to, flags) or to
  end
  if copied == 0 and count == 0 then return subject, 0 end
  out[#out + 1] = s_sub(subject, copied + 1)
  return concat(out), count
end

local function sub(subject, regex, replace, options)
  return substitute("sub", false, subject, regex, replace, options)
end

local function gsub(subject, regex, replace, options)
  return substitute("gsub", true, subject, regex, replace, options)
end

return {
  re = { match = match, find = find, gmatch = gmatch, sub = sub, gsub = gsub },
  SUBJECT_MAX = SUBJECT_MAX, REGEX_MAX = REGEX_MAX, SEARCH_MAX = SEARCH_MAX,
}
