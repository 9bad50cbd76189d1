-- redis.lua: PING a Redis server (AUTH first when a password is given); up on +PONG.
--
-- params (key=value, separated by ";" or blanks, all optional):
--   password=SECRET   sent with AUTH before PING
--   user=NAME         ACL user for AUTH (Redis 6+); needs password
--   role=master|slave the real is up only when INFO replication reports this role
--
-- <tester proto="lua" script="/usr/share/surealived/lua_testers/redis.lua" params="role=master"/>

local _M = { _VERSION = "1.0" }

local function command(sock, ...)
  local args = { ... }
  local req = { "*", #args, "\r\n" }
  for i = 1, #args do
    req[#req + 1] = "$" .. #args[i] .. "\r\n" .. args[i] .. "\r\n"
  end
  local ok, err = sock:send(req)
  if not ok then return nil, "send: " .. err end
  local line, rerr = sock:receive()
  if not line then return nil, "reply: " .. rerr end
  local prefix = line:sub(1, 1)
  if prefix == "-" then return nil, line:sub(2) end
  if prefix == "$" then
    local len = tonumber(line:sub(2))
    if not len or len < 0 then return nil, "no value" end
    local data, derr = sock:receive(len + 2)
    if not data then return nil, "reply: " .. derr end
    return data:sub(1, len)
  end
  return line:sub(2)
end

function _M.check(t)
  local sock = sd.tcp()
  local ok, err = sock:connect(t.addr, t.port)
  if not ok then return false, "connect: " .. err end
  local args = t.args
  if args.password then
    local res, aerr
    if args.user then
      res, aerr = command(sock, "AUTH", args.user, args.password)
    else
      res, aerr = command(sock, "AUTH", args.password)
    end
    if not res then return false, "AUTH: " .. aerr end
  end
  local pong, perr = command(sock, "PING")
  if not pong then return false, "PING: " .. perr end
  if pong ~= "PONG" then return false, "PING answered " .. pong end
  if args.role then
    local info, ierr = command(sock, "INFO", "replication")
    if not info then return false, "INFO: " .. ierr end
    local role = info:match("role:(%w+)")
    if role ~= args.role then
      return false, "role is " .. tostring(role) .. ", expected " .. args.role
    end
  end
  sock:close()
  return true
end

return _M
