-- smtp.lua: banner, EHLO (and STARTTLS when asked), QUIT; up when the server says 250.
--
-- params (optional):
--   helo=NAME    the name sent with EHLO (default: surealived.localhost)
--   starttls=1   upgrade with STARTTLS and EHLO again inside TLS
--   sni=NAME     server name for the TLS handshake
--   verify=1     verify the server certificate (against ssl_ca, or the system's CAs)
--
-- <tester proto="lua" script="/usr/share/surealived/lua_testers/smtp.lua" params="starttls=1"/>

local _M = { _VERSION = "1.0" }

local function reply(sock)
  local code, line, err
  repeat
    line, err = sock:receive()
    if not line then return nil, err end
    code = line:match("^(%d%d%d)")
    if not code then return nil, "not an SMTP reply: " .. line:sub(1, 60) end
  until line:sub(4, 4) ~= "-"
  return tonumber(code), line
end

local function ehlo(sock, name)
  sock:send("EHLO " .. name .. "\r\n")
  local code, line = reply(sock)
  if code ~= 250 then return nil, "EHLO: " .. tostring(line) end
  return true
end

function _M.check(t)
  local args = t.args
  local name = args.helo or "surealived.localhost"
  local sock = sd.tcp()
  local ok, err = sock:connect(t.addr, t.port)
  if not ok then return false, "connect: " .. err end
  local code, line = reply(sock)
  if code ~= 220 then return false, "banner: " .. tostring(line) end
  ok, err = ehlo(sock, name)
  if not ok then return false, err end
  if args.starttls == "1" then
    sock:send("STARTTLS\r\n")
    code, line = reply(sock)
    if code ~= 220 then return false, "STARTTLS: " .. tostring(line) end
    ok, err = sock:sslhandshake(nil, args.sni, args.verify == "1")
    if not ok then return false, "TLS: " .. err end
    ok, err = ehlo(sock, name)
    if not ok then return false, err end
  end
  sock:send("QUIT\r\n")
  sock:close()
  return true
end

return _M
