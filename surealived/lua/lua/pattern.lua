-- pattern.lua: Lua 5.1's pattern matching, twice over. cost(p, n, anchored) bounds the steps the
-- C matcher (lstrlib.c) could take on a pattern and a subject of n bytes, without running it;
-- find/gmatch/gsub here are that matcher written in Lua, so that the instruction budget and the
-- CPU slice see every step. bounded.lua runs the C matcher when the bound is small and this one
-- otherwise (a pattern like ".-.-.-.-x" is exponential in its items and runs for minutes in C).
--
-- The port follows lstrlib.c of Lua 5.1 line for line (same results, same errors); indices are
-- byte positions, 1-based. Pure: no state between calls, no I/O. Loaded by runtime.py after
-- sandbox.lua; returns { cost, find, gmatch, gsub }.
local lib = ...
local charge = lib.sandbox.charge

local s_byte, s_sub, s_find, s_char = string.byte, string.sub, string.find, string.char
local concat = table.concat
local type, tostring, error, unpack = type, tostring, error, unpack

local ESC, LBRACKET, RBRACKET, CARET, LPAREN, RPAREN = 37, 91, 93, 94, 40, 41
local DOLLAR, DOT, STAR, PLUS, MINUS, QUESTION = 36, 46, 42, 43, 45, 63
local MAXCAPTURES = 32
local CAP_UNFINISHED, CAP_POSITION = -1, -2

-- Character classes of the C locale: CLASS[letter][byte] is true when the byte is in %letter.
local CLASS = {}
do
  local function set(letter, test)
    local t = {}
    for c = 0, 255 do t[c] = test(c) or false end
    CLASS[s_byte(letter)] = t
  end
  local function range(c, a, b) return c >= s_byte(a) and c <= s_byte(b) end
  set("a", function(c) return range(c, "a", "z") or range(c, "A", "Z") end)
  set("c", function(c) return c < 32 or c == 127 end)
  set("d", function(c) return range(c, "0", "9") end)
  set("l", function(c) return range(c, "a", "z") end)
  set("p", function(c) return (c >= 33 and c <= 47) or (c >= 58 and c <= 64)
                              or (c >= 91 and c <= 96) or (c >= 123 and c <= 126) end)
  set("s", function(c) return (c >= 9 and c <= 13) or c == 32 end)
  set("u", function(c) return range(c, "A", "Z") end)
  set("w", function(c) return range(c, "a", "z") or range(c, "A", "Z") or range(c, "0", "9") end)
  set("x", function(c) return range(c, "0", "9") or range(c, "a", "f") or range(c, "A", "F") end)
  set("z", function(c) return c == 0 end)
end
local UPPER_OFFSET = 32

local function is_digit(c) return c ~= nil and c >= 48 and c <= 57 end

-- The pattern's byte at i, 0 past its end (C reads the terminating NUL there).
local function pat(p, i) return s_byte(p, i) or 0 end

-- The end of the single-char class starting at i (classEnd): the index after it. A malformed
-- class raises, or gives nil when ``soft``.
local function class_end(p, i, soft)
  local c = pat(p, i)
  i = i + 1
  if c == ESC then
    if pat(p, i) == 0 then
      if soft then return nil end
      error("malformed pattern (ends with '%')", 0)
    end
    return i + 1
  elseif c == LBRACKET then
    if pat(p, i) == CARET then i = i + 1 end
    repeat
      local d = pat(p, i)
      if d == 0 then
        if soft then return nil end
        error("malformed pattern (missing ']')", 0)
      end
      i = i + 1
      if d == ESC and pat(p, i) ~= 0 then i = i + 1 end
    until pat(p, i) == RBRACKET
    return i + 1
  end
  return i
end

local function match_class(c, cl)
  local t = CLASS[cl]
  if t then return t[c] end
  t = CLASS[cl + UPPER_OFFSET]
  if t and cl >= 65 and cl <= 90 then return not t[c] end
  return cl == c
end

-- [set] from the '[' at i to the ']' at ec.
local function bracket(c, p, i, ec)
  local sig = true
  if pat(p, i + 1) == CARET then
    sig = false
    i = i + 1
  end
  i = i + 1
  while i < ec do
    local d = pat(p, i)
    if d == ESC then
      i = i + 1
      if match_class(c, pat(p, i)) then return sig end
    elseif pat(p, i + 1) == MINUS and i + 2 < ec then
      if d <= c and c <= pat(p, i + 2) then return sig end
      i = i + 2
    elseif d == c then
      return sig
    end
    i = i + 1
  end
  return not sig
end

local function single(c, p, i, ep)
  local d = pat(p, i)
  if d == DOT then return true end
  if d == ESC then return match_class(c, pat(p, i + 1)) end
  if d == LBRACKET then return bracket(c, p, i, ep - 1) end
  return d == c
end

-- The matcher: ms = { s = subject, n = #s, level = captures open or closed, init = {},
-- len = {} }; match(ms, si, pi) is the index after the match of p[pi..] at s[si..], or nil.
local match

local function max_expand(ms, si, p, pi, ep)
  local s, n, i = ms.s, ms.n, 0
  while si + i <= n and single(s_byte(s, si + i), p, pi, ep) do i = i + 1 end
  while i >= 0 do
    local res = match(ms, si + i, ep + 1)
    if res then return res end
    i = i - 1
  end
  return nil
end

local function min_expand(ms, si, p, pi, ep)
  local s, n = ms.s, ms.n
  while true do
    local res = match(ms, si, ep + 1)
    if res then return res end
    if si <= n and single(s_byte(s, si), p, pi, ep) then
      si = si + 1
    else
      return nil
    end
  end
end

local function start_capture(ms, si, pi, what)
  local level = ms.level
  if level >= MAXCAPTURES then error("too many captures", 0) end
  level = level + 1
  ms.init[level], ms.len[level] = si, what
  ms.level = level
  local res = match(ms, si, pi)
  if not res then ms.level = ms.level - 1 end
  return res
end

local function end_capture(ms, si, pi)
  local l = ms.level
  while l >= 1 and ms.len[l] ~= CAP_UNFINISHED do l = l - 1 end
  if l < 1 then error("invalid pattern capture", 0) end
  ms.len[l] = si - ms.init[l]
  local res = match(ms, si, pi)
  if not res then ms.len[l] = CAP_UNFINISHED end
  return res
end

local function match_capture(ms, si, d)
  local l = d - 48  -- '1' is capture 1
  if l < 1 or l > ms.level or ms.len[l] == CAP_UNFINISHED then
    error("invalid capture index", 0)
  end
  local len = ms.len[l]
  if len >= 0 and ms.n - si + 1 >= len then  -- a position capture matches nothing (C: size_t)
    local init = ms.init[l]
    charge(len)
    if s_sub(ms.s, init, init + len - 1) == s_sub(ms.s, si, si + len - 1) then
      return si + len
    end
  end
  return nil
end

local function balance(ms, si, p, pi)
  local b, e = pat(p, pi), pat(p, pi + 1)
  if b == 0 or e == 0 then error("unbalanced pattern", 0) end
  local s, n = ms.s, ms.n
  if (s_byte(s, si) or 0) ~= b then return nil end
  local cont = 1
  si = si + 1
  while si <= n do
    local c = s_byte(s, si)
    if c == e then
      cont = cont - 1
      if cont == 0 then return si + 1 end
    elseif c == b then
      cont = cont + 1
    end
    si = si + 1
  end
  return nil
end

match = function(ms, si, pi)
  local s, p, n = ms.s, ms.p, ms.n
  while true do
    local c = pat(p, pi)
    if c == LPAREN then
      if pat(p, pi + 1) == RPAREN then return start_capture(ms, si, pi + 2, CAP_POSITION) end
      return start_capture(ms, si, pi + 1, CAP_UNFINISHED)
    elseif c == RPAREN then
      return end_capture(ms, si, pi + 1)
    elseif c == 0 then
      return si
    end
    local default = true
    if c == ESC then
      local d = pat(p, pi + 1)
      if d == 98 then  -- %b
        si = balance(ms, si, p, pi + 2)
        if not si then return nil end
        pi = pi + 4
        default = false
      elseif d == 102 then  -- %f
        pi = pi + 2
        if pat(p, pi) ~= LBRACKET then error("missing '[' after '%f' in pattern", 0) end
        local ep = class_end(p, pi)
        local previous = si == 1 and 0 or s_byte(s, si - 1)
        if bracket(previous, p, pi, ep - 1) or not bracket(s_byte(s, si) or 0, p, pi, ep - 1)
        then
          return nil
        end
        pi = ep
        default = false
      elseif is_digit(d) then
        si = match_capture(ms, si, d)
        if not si then return nil end
        pi = pi + 2
        default = false
      end
    elseif c == DOLLAR and pat(p, pi + 1) == 0 then
      return si == n + 1 and si or nil
    end
    if default then
      local ep = class_end(p, pi)
      local m = si <= n and single(s_byte(s, si), p, pi, ep)
      local q = pat(p, ep)
      if q == QUESTION then
        if m then
          local res = match(ms, si + 1, ep + 1)
          if res then return res end
        end
        pi = ep + 1
      elseif q == STAR then
        return max_expand(ms, si, p, pi, ep)
      elseif q == PLUS then
        if not m then return nil end
        return max_expand(ms, si + 1, p, pi, ep)
      elseif q == MINUS then
        return min_expand(ms, si, p, pi, ep)
      else
        if not m then return nil end
        si = si + 1
        pi = ep
      end
    end
  end
end

local function capture(ms, i, si, ei)
  if i > ms.level then
    if i == 1 then return s_sub(ms.s, si, ei - 1) end
    error("invalid capture index", 0)
  end
  local l = ms.len[i]
  if l == CAP_UNFINISHED then error("unfinished capture", 0) end
  if l == CAP_POSITION then return ms.init[i] end
  local init = ms.init[i]
  return s_sub(ms.s, init, init + l - 1)
end

-- The captures of a match from si to ei - 1 (the whole match when there are none and
-- ``whole``), as a table and their count.
local function captures(ms, si, ei, whole)
  local count = ms.level
  if count == 0 and whole then count = 1 end
  local out = {}
  for i = 1, count do out[i] = capture(ms, i, si, ei) end
  return out, count
end

-- The pattern up to its first NUL (C stops reading there) and whether it is anchored.
local function prepare(p)
  local z = s_find(p, "\0", 1, true)
  if z then p = s_sub(p, 1, z - 1) end
  if s_byte(p, 1) == CARET then return p, 2, true end
  return p, 1, false
end

-- A literal byte every match must start with, to jump between candidate starts (nil if none).
local SPECIAL = {}
for c in ("^$*+?.([%-"):gmatch(".") do SPECIAL[s_byte(c)] = true end
local function first_byte(p, pi)
  local c = pat(p, pi)
  local ep = pi + 1
  if c == ESC then
    local d = pat(p, pi + 1)
    if d == 0 or CLASS[d] or CLASS[d + UPPER_OFFSET] or d == 98 or d == 102 or is_digit(d) then
      return nil
    end
    c, ep = d, pi + 2
  elseif c == 0 or SPECIAL[c] or c == RPAREN then
    return nil
  end
  local q = pat(p, ep)
  if q == STAR or q == MINUS or q == QUESTION then return nil end
  return s_char(c)
end

-- One search from position si (1-based, n + 1 at most): start, end + 1 and the state, or nil.
local function search(s, p, si, anchored, pi)
  local ms = { s = s, n = #s, p = p, level = 0, init = {}, len = {} }
  local n = ms.n
  local first = not anchored and first_byte(p, pi)
  while si <= n + 1 do
    if first then
      local at = s_find(s, first, si, true)
      charge((at or n) - si + 1)
      if not at then return nil end
      si = at
    end
    ms.level = 0
    local e = match(ms, si, pi)
    if e then return si, e, ms end
    if anchored then return nil end
    si = si + 1
  end
  return nil
end

-- The first position a search tries for ``init`` (already truncated to an integer, as C
-- does): negative counts from the end, then clamped to 1..n + 1.
local function start_of(init, n)
  if init < 0 then init = init + n + 1 end
  if init < 1 then return 1 end
  if init > n + 1 then return n + 1 end
  return init
end

-- string.find (plain false) or string.match: p has specials, s and p are strings, init a
-- number already truncated as C does.
local function find(s, p, init, is_find)
  local si = start_of(init, #s)
  local pp, pi, anchored = prepare(p)
  local start, e, ms = search(s, pp, si, anchored, pi)
  if not start then return nil end
  if is_find then
    local caps, count = captures(ms, start, e, false)
    return start, e - 1, unpack(caps, 1, count)
  end
  local caps, count = captures(ms, start, e, true)
  return unpack(caps, 1, count)
end

-- string.gmatch: no anchor ('^' matches itself, as in 5.1).
local function gmatch(s, p)
  local z = s_find(p, "\0", 1, true)
  if z then p = s_sub(p, 1, z - 1) end
  local ms = { s = s, n = #s, p = p, level = 0, init = {}, len = {} }
  local si = 1
  local n = #s
  local first = first_byte(p, 1)
  return function()
    while si <= n + 1 do
      if first then
        local at = s_find(s, first, si, true)
        charge((at or n) - si + 1)
        if not at then
          si = n + 2
          return nil
        end
        si = at
      end
      ms.level = 0
      local e = match(ms, si, 1)
      if e then
        local start = si
        si = e == si and e + 1 or e
        local caps, count = captures(ms, start, e, true)
        return unpack(caps, 1, count)
      end
      si = si + 1
    end
    return nil
  end
end

-- string.gsub; repl is a string, number, function or table (checked by the caller), max_n a
-- number, ``limit`` the longest result allowed.
local function gsub(s, p, repl, max_n, limit)
  local pp, pi, anchored = prepare(p)
  local n = #s
  local ms = { s = s, n = n, p = pp, level = 0, init = {}, len = {} }
  local out, size, count, si = {}, 0, 0, 1
  local tr = type(repl)
  if tr == "number" then repl = tostring(repl) end
  local function add(piece)
    size = size + #piece
    if size > limit then error("gsub result longer than " .. limit .. " bytes", 0) end
    charge(#piece)
    out[#out + 1] = piece
  end
  local function value(start, e)
    if tr == "string" or tr == "number" then
      local i, l = 1, #repl
      while i <= l do
        local c = s_byte(repl, i)
        if c ~= ESC then
          local j = s_find(repl, "%", i, true) or l + 1
          add(s_sub(repl, i, j - 1))
          i = j
        else
          i = i + 1
          local d = s_byte(repl, i) or 0
          if not is_digit(d) then
            add(s_char(d))
          elseif d == 48 then
            add(s_sub(s, start, e - 1))
          else
            add(tostring(capture(ms, d - 48, start, e)))
          end
          i = i + 1
        end
      end
      return
    end
    local v
    if tr == "function" then
      local caps, k = captures(ms, start, e, true)
      v = repl(unpack(caps, 1, k))
    else
      v = repl[capture(ms, 1, start, e)]
    end
    if not v then
      add(s_sub(s, start, e - 1))
    elseif type(v) == "string" or type(v) == "number" then
      add(tostring(v))
    else
      error("invalid replacement value (a " .. type(v) .. ")", 0)
    end
  end
  while count < max_n do
    ms.level = 0
    local e = match(ms, si, pi)
    if e then
      count = count + 1
      value(si, e)
    end
    if e and e > si then
      si = e
    elseif si <= n then
      -- no match here: copy up to the next candidate start at once
      local first = not anchored and first_byte(pp, pi)
      local to = si
      if first then
        to = (s_find(s, first, si + 1, true) or n + 1) - 1
        charge(to - si + 1)
      end
      add(s_sub(s, si, to))
      si = to + 1
    else
      break
    end
    if anchored then break end
  end
  add(s_sub(s, si, n))
  return concat(out), count
end

-- cost(p, n, caret): an upper bound on the steps of C's matcher for pattern p on a
-- subject of n bytes from the start position, over every start it tries (one when anchored,
-- else n + 1). Item i is visited at most once per combination of the choices before it (n + 1
-- for '*', '+', '-'; 2 for '?'), and a visit costs at most its class's length, times n + 1 for
-- what scans ('*' and '+' expand first, %b, back references): so the bound is
-- starts * product(choices) * sum(visit costs). A malformed pattern ends the walk (C raises
-- there, having done no more than the items before). ``caret``: a leading '^' is a plain
-- item (string.gmatch), not an anchor.
local function cost(p, n, caret)
  local p2, pi, anchored = prepare(p)
  p = p2
  if caret and anchored then pi, anchored = 1, false end
  local starts = anchored and 1 or n + 1
  local choices, visits = 1, 1
  local len = #p
  while pi <= len do
    local c = s_byte(p, pi)
    if c == LPAREN or c == RPAREN then
      pi = pi + 1
    elseif c == ESC and s_byte(p, pi + 1) == 98 then
      visits = visits + n + 1
      pi = pi + 4
    elseif c == ESC and s_byte(p, pi + 1) == 102 then
      local ep = class_end(p, pi + 2, true)
      if not ep then break end
      visits = visits + 2 * (ep - pi)
      pi = ep
    elseif c == ESC and is_digit(s_byte(p, pi + 1)) then
      visits = visits + n + 1
      pi = pi + 2
    else
      local ep = class_end(p, pi, true)
      if not ep then break end
      local width = ep - pi
      local q = s_byte(p, ep)
      if q == STAR or q == PLUS then
        choices = choices * (n + 1)
        visits = visits + width * (n + 1)
        pi = ep + 1
      elseif q == MINUS then
        choices = choices * (n + 1)
        visits = visits + width
        pi = ep + 1
      elseif q == QUESTION then
        choices = choices * 2
        visits = visits + width
        pi = ep + 1
      else
        visits = visits + width
        pi = ep
      end
    end
  end
  return starts * choices * visits
end

return { cost = cost, find = find, gmatch = gmatch, gsub = gsub, start_of = start_of }
