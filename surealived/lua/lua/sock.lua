-- sock.lua: the socket API scripts use, the ``sd`` table (sd.tcp(), sd.udp(), sd.log(),
-- sd.sleep(), sd.now()), in the manner of OpenResty's cosockets. It checks the arguments and
-- turns each call into one request to Python (sandbox.request): a code of codes.py, the socket
-- id and plain values; the reply is the call's result, a value or nil, err[, partial].
local lib = ...
local sandbox, codes = lib.sandbox, lib.codes
local CONNECT, TLS, SEND, CLOSE, BIND, PEER = codes.CONNECT, codes.TLS, codes.SEND, codes.CLOSE,
  codes.BIND, codes.PEER
local KEEPALIVE, REUSED, OPTION = codes.KEEPALIVE, codes.REUSED, codes.OPTION
local RECV_EXACTLY, RECV_LINE, RECV_ALL = codes.RECV_EXACTLY, codes.RECV_LINE, codes.RECV_ALL
local RECV_ANY, RECV_UNTIL, RECV_DGRAM = codes.RECV_ANY, codes.RECV_UNTIL, codes.RECV_DGRAM
local SLEEP, NOW = codes.SLEEP, codes.NOW

local request, log, current = sandbox.request, sandbox.log, sandbox.current
local LOG_BYTES = sandbox.LOG_BYTES
local setmetatable, rawget, min = setmetatable, rawget, math.min
local type, select, error = type, select, error
local tostring, tonumber = tostring, tonumber
local floor = math.floor
local concat = table.concat
local s_sub = string.sub

local function sock_id(self, name)
  local id = type(self) == "table" and rawget(self, "_id")
  if not id then
    error("bad argument #1 to '" .. name .. "' (socket expected; call it as sock:" .. name
          .. "(...))", 3)
  end
  if rawget(self, "_check") ~= current().number then  -- kept from an earlier check
    error("bad argument #1 to '" .. name .. "' (a socket of another check: make sockets in "
          .. "the check that uses them)", 3)
  end
  return id
end

local function short(v)
  local s = tostring(v)
  if #s > 40 then s = s_sub(s, 1, 40) .. "..." end
  return s
end

local function want_port(port, name, argn)
  local p = tonumber(port)
  if not p or p ~= floor(p) or p < 1 or p > 65535 then
    error("bad argument #" .. argn .. " to '" .. name .. "' (port 1..65535 expected, got "
          .. short(port) .. ")", 3)
  end
  return p
end

-- Numbers go to Python only finite and in range (NaN fails every comparison, so the tests
-- are written to let only good values through).
local MS_MAX = 2 ^ 31 - 1    -- milliseconds of a timeout or a sleep (24 days)
local COUNT_MAX = 2 ^ 31 - 1  -- bytes of a read
local UNTIL_MAX = 4096       -- bytes of a receiveuntil() delimiter
local POOL_NAME_MAX = 256    -- bytes of connect()'s pool option
local UNIX = "unix domain sockets are not allowed (only the real under test may be reached)"

local function want_ms(ms, name, argn)
  if ms == nil then return nil end
  local v = tonumber(ms)
  if not (v and v >= 0 and v <= MS_MAX) then
    error("bad argument #" .. argn .. " to '" .. name .. "' (milliseconds 0.." .. MS_MAX
          .. " expected, got " .. short(ms) .. ")", 3)
  end
  return v
end

local function want_count(n, name, argn)
  local v = tonumber(n)
  if not (v and v >= 1 and v <= COUNT_MAX) then
    error("bad argument #" .. argn .. " to '" .. name .. "' (a byte count 1.." .. COUNT_MAX
          .. " expected, got " .. short(n) .. ")", 3)
  end
  return floor(v)
end

local function flatten(data, out, depth)
  for i = 1, #data do
    local v = data[i]
    local tv = type(v)
    if tv == "string" or tv == "number" then
      out[#out + 1] = v
    elseif tv == "table" and depth < 16 then
      flatten(v, out, depth + 1)
    else
      error("bad argument #1 to 'send' (bad data type " .. tv .. " found)", 4)
    end
  end
end

local function payload(data)
  local td = type(data)
  if td == "string" then return data end
  if td == "number" then return tostring(data) end
  if td == "table" then
    local out = {}
    flatten(data, out, 1)
    return concat(out)
  end
  error("bad argument #1 to 'send' (string or table expected, got " .. td .. ")", 3)
end

local tcp = {}
local tcp_mt = { __index = tcp, __metatable = false }
local udp = {}
local udp_mt = { __index = udp, __metatable = false }

-- the open sockets are counted in Python (connect refuses the 17th open one); an object
-- costs nothing there until it connects
local function new_socket(mt)
  local c = current()
  c.nsock = c.nsock + 1
  return setmetatable({ _id = c.nsock, _check = c.number, _ct = false, _st = false,
                        _rt = false, _bind = false }, mt)
end

local function want_size(n, name, argn)
  if n == nil then return false end
  local v = tonumber(n)
  if not (v and v >= 1) then
    error("bad argument #" .. argn .. " to '" .. name .. "' (a pool size of at least 1 "
          .. "expected, got " .. short(n) .. ")", 3)
  end
  return floor(min(v, COUNT_MAX))
end

-- sslhandshake()'s session objects: opaque, known by this table only
local SESSIONS = setmetatable({}, { __mode = "k" })
local session_mt = { __metatable = false, __tostring = function() return "ssl session" end,
                     __newindex = function() error("an ssl session is read-only", 2) end }

function tcp.settimeout(self, ms)
  sock_id(self, "settimeout")
  ms = want_ms(ms, "settimeout", 1) or false
  self._ct, self._st, self._rt = ms, ms, ms
end

function tcp.settimeouts(self, c, s, r)
  sock_id(self, "settimeouts")
  self._ct = want_ms(c, "settimeouts", 1) or false
  self._st = want_ms(s, "settimeouts", 2) or false
  self._rt = want_ms(r, "settimeouts", 3) or false
end

function tcp.bind(self, addr)
  local id = sock_id(self, "bind")
  if type(addr) ~= "string" then
    error("bad argument #1 to 'bind' (string expected, got " .. type(addr) .. ")", 2)
  end
  local ok, err = request(BIND, id, addr)
  if not ok then return nil, err end
  self._bind = addr
  return 1
end

local function pool_options(opts)
  if opts == nil then return false, false end
  if type(opts) ~= "table" then
    error("bad argument #3 to 'connect' (table expected, got " .. type(opts) .. ")", 3)
  end
  local pool, size = opts.pool, opts.pool_size
  if pool ~= nil and (type(pool) ~= "string" or #pool > POOL_NAME_MAX) then
    error("bad \"pool\" option (a string of at most " .. POOL_NAME_MAX .. " bytes expected, "
          .. "got " .. short(pool) .. ")", 3)
  end
  if size ~= nil then
    local v = tonumber(size)
    if not (v and v >= 1) then
      error("bad \"pool_size\" option value: " .. short(size), 3)
    end
    size = floor(min(v, COUNT_MAX))
  end
  return pool or false, size or false
end

function tcp.connect(self, host, port, opts)
  local id = sock_id(self, "connect")
  if type(host) ~= "string" then
    error("bad argument #1 to 'connect' (string expected, got " .. type(host) .. ")", 2)
  end
  if s_sub(host, 1, 5) == "unix:" then return nil, UNIX end
  local pool, size = pool_options(opts)
  -- false: the real's own address, as the check got it (nothing to check in Python)
  host = host ~= current().addr and host
  return request(CONNECT, id, host, want_port(port, "connect", 2), self._ct, self._bind, pool,
                 size)
end

function tcp.sslhandshake(self, reused, sni, verify)
  local id = sock_id(self, "sslhandshake")
  if sni ~= nil and (type(sni) ~= "string" or #sni > 255) then
    error("bad argument #2 to 'sslhandshake' (a name of at most 255 bytes expected, got "
          .. short(sni) .. ")", 2)
  end
  local offered = false
  if type(reused) == "table" and SESSIONS[reused] then
    offered = true
  elseif reused ~= nil and type(reused) ~= "boolean" then
    error("bad argument #1 to 'sslhandshake' (an ssl session, nil or a boolean expected, got "
          .. short(reused) .. ")", 2)
  end
  local ok, err = request(TLS, id, sni, verify and true or false, self._rt, offered)
  if not ok then return nil, err end
  if reused == false then return true end
  local session = setmetatable({}, session_mt)
  SESSIONS[session] = true
  return session
end

function tcp.send(self, data)
  local id = sock_id(self, "send")
  if type(data) ~= "string" then data = payload(data) end
  return request(SEND, id, data, self._st)
end

function tcp.receive(self, pattern)
  local id = sock_id(self, "receive")
  -- a finite count (Python refuses more than it reads with "size too large")
  if type(pattern) == "number" and pattern >= 0 and pattern <= 2 ^ 53
     and pattern == floor(pattern) then
    return request(RECV_EXACTLY, id, pattern, self._rt)
  end
  if pattern == nil or pattern == "*l" then
    return request(RECV_LINE, id, 0, self._rt)
  elseif pattern == "*a" then
    return request(RECV_ALL, id, 0, self._rt)
  end
  local n = tonumber(pattern)
  if not (n and n >= 0 and n <= 2 ^ 53 and n == floor(n)) then
    error("bad argument #1 to 'receive' (\"*l\", \"*a\" or a byte count expected, got "
          .. short(pattern) .. ")", 2)
  end
  return request(RECV_EXACTLY, id, n, self._rt)
end

function tcp.receiveany(self, max)
  local id = sock_id(self, "receiveany")
  return request(RECV_ANY, id, want_count(max, "receiveany", 1), self._rt)
end

function tcp.receiveuntil(self, pattern, opts)
  local id = sock_id(self, "receiveuntil")
  if type(pattern) ~= "string" or pattern == "" or #pattern > UNTIL_MAX then
    error("bad argument #1 to 'receiveuntil' (a string of 1.." .. UNTIL_MAX
          .. " bytes expected)", 2)
  end
  local inclusive = type(opts) == "table" and opts.inclusive and true or false
  local pending
  return function(size)
    if pending == nil then
      local data, err, partial = request(RECV_UNTIL, id, pattern, self._rt)
      if not data then return nil, err, partial end
      if inclusive then data = data .. pattern end
      if not size then return data end
      pending = data
    end
    if pending == "" then
      pending = nil
      return nil
    end
    local piece = s_sub(pending, 1, size)
    pending = s_sub(pending, size + 1)
    return piece
  end
end

function tcp.close(self)
  local id = sock_id(self, "close")
  return request(CLOSE, id)
end

function tcp.setkeepalive(self, timeout, size)
  local id = sock_id(self, "setkeepalive")
  return request(KEEPALIVE, id, want_ms(timeout, "setkeepalive", 1) or false,
                 want_size(size, "setkeepalive", 2))
end

function tcp.getreusedtimes(self)
  return request(REUSED, sock_id(self, "getreusedtimes"))
end

local function option_value(value)
  if value == true then return 1 end
  if value == false then return 0 end
  -- Python checks the range; only finite numbers cross
  if type(value) == "number" and value == value and value > -2 ^ 53 and value < 2 ^ 53 then
    return value
  end
  return nil
end

function tcp.setoption(self, option, value)
  local id = sock_id(self, "setoption")
  if type(option) ~= "string" then return nil, "unsupported option " .. short(option) end
  local v = option_value(value)
  if v == nil then return nil, "bad option value for " .. s_sub(option, 1, 40) end
  return request(OPTION, id, option, v)
end

function tcp.getoption(self, option)
  local id = sock_id(self, "getoption")
  if type(option) ~= "string" then return nil, "unsupported option " .. short(option) end
  return request(OPTION, id, option, false)
end

udp.settimeout = tcp.settimeout
udp.bind = tcp.bind
udp.send = tcp.send
udp.close = tcp.close

function udp.setpeername(self, host, port)
  local id = sock_id(self, "setpeername")
  if type(host) ~= "string" then
    error("bad argument #1 to 'setpeername' (string expected, got " .. type(host) .. ")", 2)
  end
  if s_sub(host, 1, 5) == "unix:" then return nil, UNIX end
  host = host ~= current().addr and host
  return request(PEER, id, host, want_port(port, "setpeername", 2), self._bind)
end
udp.connect = udp.setpeername

function udp.receive(self, size)
  local id = sock_id(self, "receive")
  return request(RECV_DGRAM, id, want_count(size or 8192, "receive", 1), self._rt)
end

local LEVELS = { error = true, warn = true, info = true, debug = true }

local sd = {
  tcp = function() return new_socket(tcp_mt) end,
  udp = function() return new_socket(udp_mt) end,
  log = function(level, ...)
    if not LEVELS[level] then
      error("bad argument #1 to 'log' (\"error\", \"warn\", \"info\" or \"debug\" expected)", 2)
    end
    local parts = {}
    for i = 1, select("#", ...) do
      parts[i] = s_sub(tostring((select(i, ...))), 1, LOG_BYTES)
    end
    log(level, concat(parts))
  end,
  sleep = function(ms)
    return request(SLEEP, 0, want_ms(ms, "sleep", 1) or 0)
  end,
  now = function() return request(NOW, 0) end,
}

return { sd = sd }
