-- verdict.lua: what a check's answer means. verdict(a, b) turns what check(t) returned into
-- status, reason[, weight] for Python; short(v) is a script's value cut for an error message.
-- A reason is cut to REASON_MAX + 1 bytes here, so no more crosses into Python (bridge.py cuts
-- it to REASON_MAX and marks the cut). Pure: no state, no I/O.
local lib = ...
local REASON_MAX = lib.REASON_MAX
local type, tostring, tonumber = type, tostring, tonumber
local floor = math.floor
local s_sub, s_match = string.sub, string.match

local function short(v)
  local s = tostring(v)
  if #s > 40 then s = s_sub(s, 1, 40) .. "..." end
  return s
end

local function verdict(a, b)
  local reason = type(b) == "string" and b or ""
  if #reason > REASON_MAX then reason = s_sub(reason, 1, REASON_MAX + 1) end
  if a == true then return "up", reason end
  if a == false then return "down", reason ~= "" and reason or "check() returned false" end
  if a == nil then return "down", reason ~= "" and reason or "check() returned nil" end
  if type(a) == "number" then
    if a ~= floor(a) or a < 0 or a > 65535 then
      return "error", "check() returned weight " .. short(a) .. " (valid: an integer 0..65535)"
    end
    return "weight", reason, a
  end
  if type(a) == "string" then
    local p = s_match(a, "^(%d+)%%$")
    if p and tonumber(p) <= 100 then return "percent", reason, tonumber(p) end
    return "error", "check() returned \"" .. short(a) .. "\" (valid: true, false[, reason], "
           .. "a weight 0..65535 or \"NN%\" with NN 0..100)"
  end
  return "error", "check() returned a " .. type(a) .. " (valid: true, false[, reason], "
         .. "a weight 0..65535 or \"NN%\")"
end

return { verdict = verdict, short = short }
