-- A Redis PING through the module resty.sdredis (lua_testers/resty/sdredis.lua, found through
-- lua_path): what bench_lua_modules.py compares with the same check inline (redis_inline.lua).
local redis = require "resty.sdredis"

function check(t)
  local red = redis:new()
  local ok, err = red:connect(t.addr, t.port)
  if not ok then return false, "connect: " .. err end
  local pong, perr = red:ping()
  if not pong then return false, "PING: " .. perr end
  if pong ~= "PONG" then return false, "PING answered " .. tostring(pong) end
  red:close()
  return true
end
