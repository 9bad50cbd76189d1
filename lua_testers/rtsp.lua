-- rtsp.lua: send OPTIONS (or DESCRIBE) and expect "RTSP/1.0 200".
--
-- params (optional):
--   method=OPTIONS|DESCRIBE   request method (default: OPTIONS)
--   path=/stream              request path (default: /)
--
-- <tester proto="lua" script="/usr/share/surealived/lua_testers/rtsp.lua"
--         params="method=DESCRIBE path=/live"/>

local _M = { _VERSION = "1.0" }

function _M.check(t)
  local method = t.args.method or "OPTIONS"
  local host = t.addr:find(":", 1, true) and ("[" .. t.addr .. "]") or t.addr
  local url = "rtsp://" .. host .. ":" .. t.port .. (t.args.path or "/")
  local sock = sd.tcp()
  local ok, err = sock:connect(t.addr, t.port)
  if not ok then return false, "connect: " .. err end
  sock:send({ method, " ", url, " RTSP/1.0\r\nCSeq: 1\r\nUser-Agent: SureAliveD\r\n",
              method == "DESCRIBE" and "Accept: application/sdp\r\n" or "", "\r\n" })
  local line, rerr = sock:receive()
  if not line then return false, "status line: " .. rerr end
  local status = line:match("^RTSP/1%.%d (%d%d%d)")
  if not status then return false, "not an RTSP status line: " .. line:sub(1, 60) end
  sock:close()
  if status ~= "200" then return false, "status " .. status end
  return true
end

return _M
