-- legacy.lua: the original SureAliveD's Lua API. The script defines prepare() and
-- process_event(); the daemon connects, then process_event(txt) drives the dialogue with the
-- actions "w" (write n bytes), "r" (read n), "rav" (read what is there, up to n), "eok" and
-- "efail". run_legacy(env, t) runs one check of it on a socket of sock.lua.
local lib = ...
local new_tcp, short = lib.sock.sd.tcp, lib.verdict.short
local type, tostring, tonumber, rawget = type, tostring, tonumber, rawget
local floor = math.floor
local s_sub = string.sub

local LEGACY_MAX = 8191

local function run_legacy(env, t)
  local prepare, process_event = rawget(env, "prepare"), rawget(env, "process_event")
  if type(prepare) ~= "function" then
    return "error", "can't find prepare() function in script"
  end
  local sock = new_tcp()
  local ok, err = sock:connect(t.addr, t.port)
  if not ok then return "down", "connect: " .. err end
  local fw = t.vfwmark % 65536
  fw = (fw % 256) * 256 + floor(fw / 256)  -- ntohs(), as the original passed it
  prepare(t.params, t.vname, t.vaddr, t.vport, t.vproto, fw, t.rname, t.addr, t.rport, t.port)
  local txt = ""
  while true do
    local action, n, data = process_event(txt)
    if action == "eok" then return "up", "" end
    if action == "efail" then return "down", "process_event() returned efail" end
    if action ~= "w" and action ~= "r" and action ~= "rav" then
      return "error", "process_event() returned " .. (type(action) == "string" and
             ("\"" .. short(action) .. "\"") or type(action))
             .. " (valid: \"w\", \"r\", \"rav\", \"eok\", \"efail\")"
    end
    n = tonumber(n) or 0
    n = floor(n)
    if n < 0 or n > LEGACY_MAX then
      return "error", "process_event() returned n=" .. n .. " for \"" .. action .. "\" (valid: 0.."
             .. LEGACY_MAX .. ")"
    end
    if action == "w" then
      if type(data) == "number" then data = tostring(data) end
      if type(data) ~= "string" or #data < n then
        return "error", "process_event() returned \"w\" with n=" .. n .. " but "
               .. (type(data) == "string" and (#data .. " bytes of data") or ("a " .. type(data)))
      end
      txt = s_sub(data, 1, n)
      local sent, serr = sock:send(txt)
      if not sent then return "down", "send: " .. serr end
    elseif action == "r" then
      local got, rerr = sock:receive(n)
      if not got then return "down", "read " .. n .. " bytes: " .. rerr end
      txt = got
    else
      if n < 1 then return "error", "process_event() returned \"rav\" with n=0 (valid: 1.."
                           .. LEGACY_MAX .. ")" end
      local got, rerr = sock:receiveany(n)
      if not got then return "down", "read: " .. rerr end
      txt = got
    end
  end
end

return { run_legacy = run_legacy }
