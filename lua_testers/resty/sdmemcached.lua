-- resty.sdmemcached: a small memcached client (text protocol) on OpenResty-style cosockets.
--
--   local memcached = require "resty.sdmemcached"
--   local memc = memcached:new()
--   memc:set_timeout(1000)                         -- ms
--   local ok, err = memc:connect(host, port)
--   local version, err = memc:version()
--   local value, flags, err = memc:get("key")      -- nil, nil, nil when the key is missing
--   local ok, err = memc:set("key", "value", 60)   -- exptime (s) and flags optional
--   local stats, err = memc:stats()                -- { pid = "123", ... }
--   memc:close()                                   -- or memc:set_keepalive(10000, 10)
--
-- A server's error line (ERROR, CLIENT_ERROR ..., SERVER_ERROR ...) is returned as err. A reply
-- that breaks the protocol or the limits (values over 1 MiB, more than 1000 stats) closes the
-- connection, so a connection in an unknown state is never reused. Keys are refused unless they
-- are 1..250 bytes without blanks or control characters, as memcached wants them.

local sub, match, find = string.sub, string.match, string.find
local tonumber, tostring = tonumber, tostring
local setmetatable, type = setmetatable, type
local ngx = ngx

local _M = { _VERSION = "0.1" }
local mt = { __index = _M }

local MAX_VALUE = 1024 * 1024  -- memcached's default item size
local MAX_STATS = 1000

function _M.new(self)
  local sock, err = ngx.socket.tcp()
  if not sock then return nil, err end
  return setmetatable({ sock = sock }, mt)
end

function _M.set_timeout(self, ms)
  return self.sock:settimeout(ms)
end

function _M.connect(self, host, port, opts)
  return self.sock:connect(host, port, opts)
end

function _M.get_reused_times(self)
  return self.sock:getreusedtimes()
end

function _M.set_keepalive(self, idle_ms, size)
  return self.sock:setkeepalive(idle_ms, size)
end

function _M.close(self)
  return self.sock:close()
end

local function bad_key(key)
  if type(key) ~= "string" or #key < 1 or #key > 250 or find(key, "[%s%c]") then
    return "bad key (1..250 bytes, no blanks or control characters)"
  end
end

-- an unsigned decimal of at most `digits` digits, or nil
local function unsigned(text, digits)
  if not text or #text > digits or not match(text, "^%d+$") then return nil end
  return tonumber(text)
end

-- the connection is in an unknown state: close it, and say why
local function broken(self, err)
  self.sock:close()
  return err
end

-- a line from the server; a server error line comes back as nil, line
local function reply(self)
  local line, err = self.sock:receive()
  if not line then return nil, broken(self, err) end
  if line == "ERROR" or find(line, "^CLIENT_ERROR") or find(line, "^SERVER_ERROR") then
    return nil, line
  end
  return line
end

function _M.version(self)
  local bytes, err = self.sock:send("version\r\n")
  if not bytes then return nil, err end
  local line, rerr = reply(self)
  if not line then return nil, rerr end
  local version = match(line, "^VERSION (.+)$")
  if not version then return nil, broken(self, "bad version reply " .. sub(line, 1, 60)) end
  return version
end

function _M.get(self, key)
  local kerr = bad_key(key)
  if kerr then return nil, nil, kerr end
  local bytes, err = self.sock:send({ "get ", key, "\r\n" })
  if not bytes then return nil, nil, err end
  local line, rerr = reply(self)
  if not line then return nil, nil, rerr end
  if line == "END" then return nil, nil, nil end
  local rkey, rflags, rlen = match(line, "^VALUE (%S+) (%S+) (%S+)$")
  local flags, len = unsigned(rflags, 10), unsigned(rlen, 8)
  if rkey ~= key or not flags or flags > 4294967295 or not len or len > MAX_VALUE then
    return nil, nil, broken(self, "bad get reply " .. sub(line, 1, 60))
  end
  local data, derr = self.sock:receive(len + 2)
  if not data then return nil, nil, broken(self, derr) end
  if sub(data, -2) ~= "\r\n" then return nil, nil, broken(self, "value not ended by CRLF") end
  local last, lerr = self.sock:receive()
  if not last then return nil, nil, broken(self, lerr) end
  if last ~= "END" then return nil, nil, broken(self, "bad get reply " .. sub(last, 1, 60)) end
  return sub(data, 1, len), flags
end

function _M.set(self, key, value, exptime, flags)
  local kerr = bad_key(key)
  if kerr then return nil, kerr end
  value = tostring(value)
  local bytes, err = self.sock:send({ "set ", key, " ", flags or 0, " ", exptime or 0, " ",
                                      #value, "\r\n", value, "\r\n" })
  if not bytes then return nil, err end
  local line, rerr = reply(self)
  if not line then return nil, rerr end
  if line ~= "STORED" then return nil, sub(line, 1, 60) end
  return 1
end

function _M.stats(self, args)
  local bytes, err = self.sock:send(args and { "stats ", args, "\r\n" } or "stats\r\n")
  if not bytes then return nil, err end
  local stats, n = {}, 0
  while true do
    local line, rerr = reply(self)
    if not line then return nil, rerr end
    if line == "END" then return stats end
    local name, value = match(line, "^STAT (%S+) (.*)$")
    if not name then return nil, broken(self, "bad stats reply " .. sub(line, 1, 60)) end
    n = n + 1
    if n > MAX_STATS then return nil, broken(self, "more than " .. MAX_STATS .. " stats") end
    stats[name] = value
  end
end

return _M
