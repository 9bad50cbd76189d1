-- resty.sdredis: a small Redis client (RESP2) on OpenResty-style cosockets.
--
--   local redis = require "resty.sdredis"
--   local red = redis:new()
--   red:set_timeout(1000)                           -- ms
--   local ok, err = red:connect(host, port)
--   local res, err = red:auth("secret")             -- or red:auth(user, password)
--   local res, err = red:get("key")                 -- ngx.null when the key is missing
--   local res, err = red:cmd("CLIENT", "INFO")      -- any command
--   red:close()                                     -- or red:set_keepalive(10000, 10)
--
-- Replies: a status is its text, an integer a number, a bulk a string (ngx.null for a nil bulk),
-- an array a table (ngx.null for a nil array; an error inside it is { false, message }). An
-- error reply gives false, message. Anything else (the connection failed, a reply that is not
-- RESP, a length over the limits below) gives nil, err and closes the connection, so a
-- connection in an unknown state is never reused.

local byte, sub, match = string.byte, string.sub, string.match
local tonumber, tostring, type = tonumber, tostring, type
local setmetatable, select, upper, concat = setmetatable, select, string.upper, table.concat
local ngx = ngx
local null = ngx.null

local _M = { _VERSION = "0.1" }
local mt = { __index = _M }

local MAX_BULK = 16 * 1024 * 1024  -- bytes of one bulk string
local MAX_ARRAY = 65536            -- elements of one array
local MAX_DEPTH = 8                -- arrays inside arrays

function _M.new(self)
  local sock, err = ngx.socket.tcp()
  if not sock then return nil, err end
  return setmetatable({ sock = sock }, mt)
end

function _M.set_timeout(self, ms)
  return self.sock:settimeout(ms)
end

function _M.set_timeouts(self, connect_ms, send_ms, read_ms)
  return self.sock:settimeouts(connect_ms, send_ms, read_ms)
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

-- a RESP integer: optional minus, digits, nothing else (tonumber alone takes "0x1f", " 1", "1e3")
local function integer(text)
  if #text > 20 or not match(text, "^%-?%d+$") then return nil end
  return tonumber(text)
end

local PLUS, MINUS, COLON, DOLLAR, STAR = 43, 45, 58, 36, 42  -- the reply's first byte

local function read_reply(sock, depth)
  local line, err = sock:receive()
  if not line then return nil, err end
  local prefix = byte(line)
  if prefix == PLUS then return sub(line, 2) end
  if prefix == MINUS then return false, sub(line, 2) end
  if prefix == COLON then
    local n = integer(sub(line, 2))
    if not n then return nil, "bad integer reply " .. sub(line, 2, 41) end
    return n
  end
  if prefix == DOLLAR then
    local len = integer(sub(line, 2))
    if len == -1 then return null end
    if not len or len < 0 or len > MAX_BULK then
      return nil, "bad bulk length " .. sub(line, 2, 41)
    end
    local data, derr = sock:receive(len + 2)
    if not data then return nil, derr end
    if sub(data, -2) ~= "\r\n" then return nil, "bulk string not ended by CRLF" end
    return sub(data, 1, len)
  end
  if prefix == STAR then
    local n = integer(sub(line, 2))
    if n == -1 then return null end
    if not n or n < 0 or n > MAX_ARRAY then
      return nil, "bad array length " .. sub(line, 2, 41)
    end
    if depth >= MAX_DEPTH then return nil, "arrays nested deeper than " .. MAX_DEPTH end
    local items = {}
    for i = 1, n do
      local item, ierr = read_reply(sock, depth + 1)
      if item == nil then return nil, ierr end
      if item == false then item = { false, ierr } end
      items[i] = item
    end
    return items
  end
  return nil, "bad reply: " .. sub(line, 1, 40)
end

-- the command as one string (one crossing into the daemon, however many arguments)
local function request(...)
  local n = select("#", ...)
  local req = { "*", n, "\r\n" }
  for i = 1, n do
    local arg = select(i, ...)
    if type(arg) ~= "string" then arg = tostring(arg) end
    req[#req + 1] = "$"
    req[#req + 1] = #arg
    req[#req + 1] = "\r\n"
    req[#req + 1] = arg
    req[#req + 1] = "\r\n"
  end
  return concat(req)
end

local function send_read(self, req)
  local sock = self.sock
  local bytes, err = sock:send(req)
  if not bytes then return nil, err end
  local res, rerr = read_reply(sock, 0)
  if res == nil then sock:close() end
  return res, rerr
end

-- res, err = red:cmd(name, ...): send one command, read its reply
function _M.cmd(self, ...)
  return send_read(self, request(...))
end

local function command(name)
  local bare = request(name)  -- the command without arguments, built once
  return function(self, ...)
    if select("#", ...) == 0 then return send_read(self, bare) end
    return send_read(self, request(name, ...))
  end
end

for _, name in ipairs({
  "auth", "ping", "echo", "select", "info", "role", "get", "set", "del", "exists", "expire",
  "ttl", "incr", "decr", "mget", "hget", "hset", "hgetall", "llen", "lpush", "lrange", "sadd",
  "smembers", "scard", "zadd", "zcard", "type", "dbsize", "time",
}) do
  _M[name] = command(upper(name))
end

return _M
