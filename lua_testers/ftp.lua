-- ftp.lua: an FTP login (USER, PASS), then QUIT; up on "230".
--
-- params (optional):
--   user=NAME       login name (default: anonymous)
--   password=TEXT   password (default: surealived@)
--
-- <tester proto="lua" script="/usr/share/surealived/lua_testers/ftp.lua"
--         params="user=monitor; password=secret"/>

local _M = { _VERSION = "1.0" }

-- One reply, multi-line ones ("230-...", then "230 ...") included: code, last line.
local function reply(sock)
  local line, err = sock:receive()
  if not line then return nil, err end
  local code = line:match("^(%d%d%d)")
  if not code then return nil, "not an FTP reply: " .. line:sub(1, 60) end
  if line:sub(4, 4) == "-" then
    repeat
      line, err = sock:receive()
      if not line then return nil, err end
    until line:sub(1, 4) == code .. " "
  end
  return tonumber(code), line
end

function _M.check(t)
  local sock = sd.tcp()
  local ok, err = sock:connect(t.addr, t.port)
  if not ok then return false, "connect: " .. err end
  local code, line = reply(sock)
  if code ~= 220 then return false, "banner: " .. tostring(line) end
  sock:send("USER " .. (t.args.user or "anonymous") .. "\r\n")
  code, line = reply(sock)
  if code == 331 then
    sock:send("PASS " .. (t.args.password or "surealived@") .. "\r\n")
    code, line = reply(sock)
  end
  if code ~= 230 then return false, "login: " .. tostring(line) end
  sock:send("QUIT\r\n")
  sock:close()
  return true
end

return _M
