-- mysql.lua: read the MySQL/MariaDB server greeting (no login); up on protocol version 10.
--
-- A server that refuses the client (too many connections, host blocked) sends an error packet
-- instead: the real is down with the server's message.
--
-- params (optional):
--   version=PREFIX   the real is up only when the server version starts with PREFIX (e.g. 10.11;
--                    MariaDB's "5.5.5-" before its version is not part of it)
--
-- <tester proto="lua" script="/usr/share/surealived/lua_testers/mysql.lua"/>

local _M = { _VERSION = "1.0" }

function _M.check(t)
  local sock = sd.tcp()
  local ok, err = sock:connect(t.addr, t.port)
  if not ok then return false, "connect: " .. err end
  local header, herr = sock:receive(4)
  if not header then return false, "greeting: " .. herr end
  local b1, b2, b3 = header:byte(1, 3)
  local len = b1 + b2 * 256 + b3 * 65536
  if len < 1 or len > 65536 then return false, "bad packet length " .. len end
  local payload, perr = sock:receive(len)
  if not payload then return false, "greeting: " .. perr end
  local protocol = payload:byte(1)
  if protocol == 255 then
    return false, "server error " .. (payload:byte(2) + payload:byte(3) * 256) .. ": "
                  .. payload:sub(4):gsub("^#%w%w%w%w%w", "")
  end
  if protocol ~= 10 then return false, "protocol version " .. protocol .. ", expected 10" end
  -- MariaDB puts "5.5.5-" before its version, for clients that would read 10 as 1.0
  local version = payload:match("^([^%z]*)", 2):gsub("^5%.5%.5%-", "")
  sock:close()
  local want = t.args.version
  if want and version:sub(1, #want) ~= want then
    return false, "version " .. version .. ", expected " .. want
  end
  return true, version
end

return _M
