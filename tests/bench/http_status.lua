-- The built-in http tester's naive exchange (GET url HTTP/1.0, judge the 12-byte status line),
-- as a cosocket Lua tester: what bench_engine.py --tester lua and bench_lua.py run.
local request = "GET /health HTTP/1.0\r\nHost: bench.example.test\r\nUser-Agent: SureAliveD\r\n\r\n"

function check(t)
  local sock = sd.tcp()
  local ok, err = sock:connect(t.addr, t.port)
  if not ok then return false, "connect: " .. err end
  sock:send(request)
  local line, rerr = sock:receive(12)
  if not line then return false, "status line: " .. rerr end
  local status = line:sub(10, 12)
  if status ~= "200" then return false, "status " .. status end
  return true
end
