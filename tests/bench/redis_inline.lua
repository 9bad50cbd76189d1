-- A Redis PING written inline on the socket API: what bench_lua_modules.py compares with the
-- same check through resty.sdredis (redis_module.lua).
function check(t)
  local sock = sd.tcp()
  local ok, err = sock:connect(t.addr, t.port)
  if not ok then return false, "connect: " .. err end
  sock:send("*1\r\n$4\r\nPING\r\n")
  local line, rerr = sock:receive()
  if not line then return false, "PING: " .. rerr end
  if line ~= "+PONG" then return false, "PING answered " .. line end
  sock:close()
  return true
end
