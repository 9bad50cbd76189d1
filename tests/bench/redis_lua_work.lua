-- The Lua side of redis_inline.lua and redis_module.lua alone: their PING on a socket faked in
-- Lua (it answers +PONG at once), n times in one check, timed with os.clock (this process's
-- CPU). What bench_lua_modules.py runs with params "kind=inline|module n=N".
local redis = require "resty.sdredis"

local fake = {}
function fake.connect() return 1 end
function fake.send(_, data) return #data end
function fake.receive() return "+PONG" end
function fake.close() return 1 end
local mt = { __index = redis }

local function inline()
  local sock = fake
  local ok, err = sock:connect("127.0.0.1", 6379)
  if not ok then return false, "connect: " .. err end
  sock:send("*1\r\n$4\r\nPING\r\n")
  local line, rerr = sock:receive()
  if not line then return false, "PING: " .. rerr end
  if line ~= "+PONG" then return false, "PING answered " .. line end
  sock:close()
  return true
end

local function module()
  local red = setmetatable({ sock = fake }, mt)  -- redis:new() but for ngx.socket.tcp()
  local ok, err = red:connect("127.0.0.1", 6379)
  if not ok then return false, "connect: " .. err end
  local pong, perr = red:ping()
  if not pong then return false, "PING: " .. perr end
  if pong ~= "PONG" then return false, "PING answered " .. tostring(pong) end
  red:close()
  return true
end

function check(t)
  local run, n = t.args.kind == "module" and module or inline, tonumber(t.args.n)
  local t0 = os.clock()
  for _ = 1, n do run() end
  return true, string.format("%.3f", (os.clock() - t0) / n * 1e6)
end
