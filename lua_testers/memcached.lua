-- memcached.lua: ask a memcached server its version (text protocol); up on "VERSION ...".
--
-- params (optional):
--   key=NAME   also run "get NAME"; the real is up only when the key exists
--
-- <tester proto="lua" script="/usr/share/surealived/lua_testers/memcached.lua"/>

local _M = { _VERSION = "1.0" }

function _M.check(t)
  local sock = sd.tcp()
  local ok, err = sock:connect(t.addr, t.port)
  if not ok then return false, "connect: " .. err end
  sock:send("version\r\n")
  local line, rerr = sock:receive()
  if not line then return false, "version: " .. rerr end
  if not line:find("^VERSION ") then return false, "version answered " .. line:sub(1, 60) end
  local key = t.args.key
  if key then
    sock:send("get " .. key .. "\r\n")
    local first, gerr = sock:receive()
    if not first then return false, "get: " .. gerr end
    if first == "END" then return false, "key " .. key .. " not found" end
    if not first:find("^VALUE ") then return false, "get answered " .. first:sub(1, 60) end
  end
  sock:close()
  return true, line:sub(9)
end

return _M
