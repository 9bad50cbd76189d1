-- pop3.lua: the "+OK" greeting, optionally USER/PASS, then QUIT.
--
-- params (optional):
--   user=NAME, password=TEXT   log in; the real is up only when both are accepted
--
-- <tester proto="lua" script="/usr/share/surealived/lua_testers/pop3.lua"/>

local _M = { _VERSION = "1.0" }

local function command(sock, text)
  sock:send(text .. "\r\n")
  local line, err = sock:receive()
  if not line then return nil, err end
  if line:sub(1, 3) ~= "+OK" then return nil, line:sub(1, 80) end
  return line
end

function _M.check(t)
  local sock = sd.tcp()
  local ok, err = sock:connect(t.addr, t.port)
  if not ok then return false, "connect: " .. err end
  local line, rerr = sock:receive()
  if not line then return false, "greeting: " .. rerr end
  if line:sub(1, 3) ~= "+OK" then return false, "greeting: " .. line:sub(1, 80) end
  if t.args.user then
    ok, err = command(sock, "USER " .. t.args.user)
    if not ok then return false, "USER: " .. err end
    ok, err = command(sock, "PASS " .. (t.args.password or ""))
    if not ok then return false, "PASS: " .. err end
  end
  command(sock, "QUIT")
  sock:close()
  return true
end

return _M
