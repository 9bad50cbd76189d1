-- resty_redis.lua: a Redis check written the OpenResty way, on resty.sdredis (the client module
-- in resty/ next to this file): optional AUTH, PING, optional GET of a key.
--
-- params (key=value, separated by ";" or blanks, all optional):
--   password=SECRET  sent with AUTH before PING
--   user=NAME        ACL user for AUTH (Redis 6+); needs password
--   key=NAME         the real is up only when GET NAME finds a value
--   value=TEXT       ... and that value is TEXT
--
-- <tester proto="lua" script="/usr/share/surealived/lua_testers/resty_redis.lua"
--         params="key=ready"/>

local redis = require "resty.sdredis"

function check(t)
  local args = t.args
  local red = redis:new()
  local ok, err = red:connect(t.addr, t.port)
  if not ok then return false, "connect: " .. err end
  if args.password then
    local res, aerr
    if args.user then
      res, aerr = red:auth(args.user, args.password)
    else
      res, aerr = red:auth(args.password)
    end
    if not res then return false, "AUTH: " .. aerr end
  end
  local pong, perr = red:ping()
  if not pong then return false, "PING: " .. perr end
  if pong ~= "PONG" then
    return false, "PING answered " .. (type(pong) == "string" and pong or "a " .. type(pong))
  end
  if args.key then
    local value, gerr = red:get(args.key)
    if not value then return false, "GET: " .. gerr end
    if value == ngx.null then return false, "key " .. args.key .. " not found" end
    if type(value) ~= "string" then return false, "GET answered a " .. type(value) end
    if args.value and value ~= args.value then
      return false, "key " .. args.key .. " is " .. value:sub(1, 60) .. ", expected " .. args.value
    end
  end
  red:close()
  return true
end
