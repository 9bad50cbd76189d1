"""The Lua half of the sandbox: run once in every runtime, it returns the functions Python calls.

Strategy: scripts never see the runtime's real globals. Each check gets a fresh environment table
whose metatable (protected) falls back on a table of safe base functions; ``string``, ``table``,
``math``, ``os``, ``coroutine`` and ``sd`` are per-check read-only proxies. Every thread a check
runs in (the check itself, ``pcall`` bodies, user coroutines) carries the instruction hook, which
charges the running check and, once its budget is spent, raises an error that every ``pcall``
and ``coroutine.resume`` of the sandbox re-raises. ``pcall`` runs its body in a coroutine so that
socket calls work inside it (Lua 5.1 cannot yield across a C ``pcall``).

Checks run on check threads (``worker``), each serving one check after another: the driver
keeps idle ones and resumes one with the next check's arguments; a check's record ``c`` is
the thread's, reset for every check. I/O is a ``coroutine.yield`` of a request (a numeric code,
a socket id and plain arguments) from the check's own thread to the Python driver, which awaits
the I/O and resumes the thread with the result: a string, number or boolean, or ``nil, err
[, partial]``, returned as they are by the socket call. Nested threads forward requests up,
tagged with a private table. No Python object is ever handed in.
"""

PRELUDE = r"""
local STEP = 500  -- instructions between two runs of the hook (see hook())
local PATTERN_MAX = 512
local REP_MAX = 64 * 1024 * 1024
local MAX_SOCKETS = 16
local SLICE = 0.2  -- seconds of CPU a check may use between two I/O calls

local debug_sethook, raw_getmetatable = debug.sethook, debug.getmetatable
local co_create, co_resume, co_yield = coroutine.create, coroutine.resume, coroutine.yield
local co_status, co_running = coroutine.status, coroutine.running
local raw_loadstring, setfenv = loadstring, setfenv
local getmetatable, setmetatable, rawget = getmetatable, setmetatable, rawget
local type, select, error, pairs = type, select, error, pairs
local tostring, tonumber = tostring, tonumber
local unpack, collectgarbage = unpack, collectgarbage
local floor, huge = math.floor, math.huge
local os_clock = os.clock
local concat = table.concat
local s_find, s_match, s_gmatch, s_gsub = string.find, string.match, string.gmatch, string.gsub
local s_rep, s_sub, s_byte, s_lower = string.rep, string.sub, string.byte, string.lower

-- Strings: every string shares one metatable whose __index is the real string library, so the
-- library itself is made safe (no dump, bounded patterns and rep) and the metatable hidden.
string.dump = nil
getmetatable("").__metatable = false

local function check_pattern(p, plain, name)
  if type(p) == "string" and #p > PATTERN_MAX and not plain then
    error("bad argument #2 to '" .. name .. "' (pattern longer than " .. PATTERN_MAX
          .. " bytes)", 3)
  end
end
string.find = function(s, p, init, plain)
  check_pattern(p, plain, "find")
  return s_find(s, p, init, plain)
end
string.match = function(s, p, init)
  check_pattern(p, false, "match")
  return s_match(s, p, init)
end
string.gmatch = function(s, p)
  check_pattern(p, false, "gmatch")
  return s_gmatch(s, p)
end
string.gsub = function(s, p, r, n)
  check_pattern(p, false, "gsub")
  return s_gsub(s, p, r, n)
end
string.rep = function(s, n)
  local len = type(s) == "string" and #s or 1
  if type(n) == "number" and n * (len > 0 and len or 1) > REP_MAX then
    error("bad argument #2 to 'rep' (result longer than " .. REP_MAX .. " bytes)", 2)
  end
  return s_rep(s, n)
end

-- Checks, threads and the instruction budget --------------------------------------------------
local IDLE = { left = huge, since = huge }
local current = IDLE              -- the check whose Lua code is running
local kind = setmetatable({}, { __mode = "k" })     -- thread -> "user" | "pcall"
local parent = setmetatable({}, { __mode = "k" })   -- pcall thread -> thread that made it
local in_user = setmetatable({}, { __mode = "k" })  -- pcall thread inside a user coroutine
local REQ = {}

-- Request codes (the first value of every yield to Python; driver.py has the same table).
local DONE, CONNECT, TLS, SEND, CLOSE, BIND, PEER = 0, 1, 2, 3, 4, 5, 6
local RECV_EXACTLY, RECV_LINE, RECV_ALL, RECV_ANY, RECV_UNTIL, RECV_DGRAM = 7, 8, 9, 10, 11, 12
local SLEEP, NOW, LOG = 13, 14, 15

-- The CPU slice: memory churn burns CPU in the allocator and collector, which no instruction
-- count sees, so the hook also bounds the CPU a check uses between two I/O calls. Reading the
-- CPU clock is a system call, dearer than a usual check's own Lua, so it is read from the
-- second run of the hook after a resume on (``since`` false, then 0, then the clock): the slice
-- starts at most 2 * STEP instructions of the thread after the resume and its end is seen at
-- most STEP instructions late. A thread's count runs on across resumes and checks (no
-- ``debug.sethook`` per resume): every instruction is charged, so a script looping on requests
-- answered at once (``sd.now()``, closing a closed socket) spends its budget as a plain loop
-- does, and a check may be charged the last STEP instructions its thread ran for the one before.
local function hook()
  local c = current
  local left = c.left - STEP
  c.left = left
  if left < 0 then
    c.killed = c.killed or ("instruction budget exhausted (" .. c.budget .. " instructions)")
    error(c.killed, 0)
  end
  local since = c.since
  if not since then
    c.since = 0  -- the thread ran on since the resume: the slice starts at the next run
  elseif since == 0 then
    c.since = os_clock()
  elseif os_clock() - since > SLICE then
    c.killed = c.killed or ("CPU time limit exhausted (" .. SLICE .. " s without I/O)")
    error(c.killed, 0)
  end
end

local function sethook()
  debug_sethook(hook, "", STEP)
end

local function reraise_if_killed(err)
  local c = current
  if err == "not enough memory" and c ~= IDLE then
    c.killed = c.killed or "memory limit of the Lua runtime reached"
  end
  if c.killed then error(c.killed, 0) end
end

local function new_thread(f, k)
  local me = co_running()
  local co = co_create(function(...)
    sethook()
    return f(...)
  end)
  kind[co] = k
  if k == "pcall" then
    parent[co] = me
    in_user[co] = kind[me] == "user" or in_user[me] or nil
  end
  return co
end

local function flush_logs(c)
  local logs = c.logs
  if logs then
    c.logs = nil
    for i = 1, #logs, 2 do
      co_yield(LOG, logs[i], logs[i + 1])
      current = c
      c.since = false
    end
  end
end

local function resumed(c, ...)
  current = c
  c.since = false
  return ...
end

-- One request to the Python driver, from any thread of the running check. The reply is what
-- the socket call returns: a value, or nil, err[, partial].
local function request(...)
  local me = co_running()
  local c = current
  if c.loading then
    error("no I/O while the script loads: call sockets from check() or process_event()", 3)
  end
  if me ~= c.thread then
    return co_yield(REQ, ...)
  end
  if c.logs then flush_logs(c) end
  return resumed(c, co_yield(...))
end

local function log(level, msg)
  local c = current
  if c == IDLE then return end
  local logs = c.logs
  if not logs then
    logs = {}
    c.logs = logs
  end
  if #logs < 2000 then
    logs[#logs + 1] = level
    logs[#logs + 1] = s_sub(msg, 1, 4096)
  end
end

-- pcall, xpcall and coroutines that can carry I/O ---------------------------------------------
local function finish_pcall(co, ok, ...)
  if co_status(co) == "dead" then
    if ok then return true, ... end
    local err = ...
    reraise_if_killed(err)
    return false, err
  end
  if (...) == REQ then
    return finish_pcall(co, co_resume(co, request(select(2, ...))))
  end
  -- a user yield inside pcall inside a user coroutine: hand it to whoever resumed us
  return finish_pcall(co, co_resume(co, co_yield(...)))
end

local function sb_pcall(f, ...)
  local co = new_thread(function(...) return f(...) end, "pcall")
  return finish_pcall(co, co_resume(co, ...))
end

local function sb_xpcall(f, handler)
  local function pass(ok, ...)
    if ok then return true, ... end
    local hok, value = sb_pcall(handler, ...)
    return false, value
  end
  return pass(sb_pcall(f))
end

local function finish_resume(co, ok, ...)
  if ok and co_status(co) == "suspended" and (...) == REQ then
    return finish_resume(co, co_resume(co, request(select(2, ...))))
  end
  if not ok then reraise_if_killed((...)) end
  return ok, ...
end

local function sb_create(f)
  if type(f) ~= "function" then
    error("bad argument #1 to 'create' (function expected, got " .. type(f) .. ")", 2)
  end
  return new_thread(f, "user")
end

local function sb_resume(co, ...)
  if kind[co] ~= "user" then
    error("bad argument #1 to 'resume' (coroutine expected)", 2)
  end
  return finish_resume(co, co_resume(co, ...))
end

local function sb_yield(...)
  local me = co_running()
  if kind[me] == "user" or in_user[me] then
    return co_yield(...)
  end
  error("attempt to yield from outside a coroutine", 2)
end

local function sb_running()
  local me = co_running()
  while kind[me] == "pcall" do me = parent[me] end
  if kind[me] == "user" then return me end
  return nil
end

local function sb_status(co)
  if kind[co] ~= "user" then
    error("bad argument #1 to 'status' (coroutine expected)", 2)
  end
  return co_status(co)
end

local function wrap_pass(ok, ...)
  if not ok then error((...), 0) end
  return ...
end

local function sb_wrap(f)
  local co = sb_create(f)
  return function(...) return wrap_pass(sb_resume(co, ...)) end
end

-- Loading code at run time: text only, into the check's environment ----------------------------
local function sb_loadstring(s, name)
  if type(s) ~= "string" then
    error("bad argument #1 to 'loadstring' (string expected, got " .. type(s) .. ")", 2)
  end
  if s_byte(s, 1) == 27 then return nil, "attempt to load a binary chunk" end
  local f, err = raw_loadstring(s, name)
  if not f then return nil, err end
  setfenv(f, current.env)
  return f
end

local function sb_load(reader, name)
  if type(reader) == "string" then return sb_loadstring(reader, name) end
  local parts = {}
  while true do
    local piece = reader()
    if piece == nil or piece == "" then break end
    if type(piece) ~= "string" then return nil, "reader function must return a string" end
    parts[#parts + 1] = piece
  end
  return sb_loadstring(concat(parts), name or "=(load)")
end

local function sb_collectgarbage(opt, arg)
  opt = opt or "collect"
  if opt == "count" then return collectgarbage("count") end
  if opt == "collect" or opt == "step" then return 0 end
  error("bad argument #1 to 'collectgarbage' (only \"count\" and \"collect\" are allowed)", 2)
end

local function sb_print(...)
  local n = select("#", ...)
  local parts = {}
  for i = 1, n do parts[i] = tostring((select(i, ...))) end
  log("debug", concat(parts, "\t"))
end

-- Sockets -------------------------------------------------------------------------------------
local function sock_id(self, name)
  local id = type(self) == "table" and rawget(self, "_id")
  if not id then
    error("bad argument #1 to '" .. name .. "' (socket expected; call it as sock:" .. name
          .. "(...))", 3)
  end
  return id
end

local function want_port(port, name, argn)
  local p = tonumber(port)
  if not p or p ~= floor(p) or p < 1 or p > 65535 then
    error("bad argument #" .. argn .. " to '" .. name .. "' (port 1..65535 expected, got "
          .. tostring(port) .. ")", 3)
  end
  return p
end

local function want_ms(ms, name, argn)
  if ms == nil then return nil end
  local v = tonumber(ms)
  if not v or v < 0 then
    error("bad argument #" .. argn .. " to '" .. name .. "' (milliseconds >= 0 expected, got "
          .. tostring(ms) .. ")", 3)
  end
  return v
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

local function new_socket(mt)
  local c = current
  if c.nsock >= MAX_SOCKETS then
    return nil, "too many sockets (at most " .. MAX_SOCKETS .. " per check)"
  end
  c.nsock = c.nsock + 1
  return setmetatable({ _id = c.nsock, _ct = false, _st = false, _rt = false }, mt)
end

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
  return request(BIND, id, addr)
end

function tcp.connect(self, host, port)
  local id = sock_id(self, "connect")
  if type(host) ~= "string" then
    error("bad argument #1 to 'connect' (string expected, got " .. type(host) .. ")", 2)
  end
  -- false: the real's own address, as the check got it (nothing to check in Python)
  host = host ~= current.addr and host
  return request(CONNECT, id, host, want_port(port, "connect", 2), self._ct)
end

function tcp.sslhandshake(self, reused, sni, verify)
  local id = sock_id(self, "sslhandshake")
  if sni ~= nil and type(sni) ~= "string" then
    error("bad argument #2 to 'sslhandshake' (string expected, got " .. type(sni) .. ")", 2)
  end
  return request(TLS, id, sni, verify and true or false, self._rt)
end

function tcp.send(self, data)
  local id = sock_id(self, "send")
  if type(data) ~= "string" then data = payload(data) end
  return request(SEND, id, data, self._st)
end

function tcp.receive(self, pattern)
  local id = sock_id(self, "receive")
  if type(pattern) == "number" and pattern >= 0 and pattern == floor(pattern) then
    return request(RECV_EXACTLY, id, pattern, self._rt)
  end
  if pattern == nil or pattern == "*l" then
    return request(RECV_LINE, id, 0, self._rt)
  elseif pattern == "*a" then
    return request(RECV_ALL, id, 0, self._rt)
  end
  local n = tonumber(pattern)
  if not n or n < 0 or n ~= floor(n) then
    error("bad argument #1 to 'receive' (\"*l\", \"*a\" or a byte count expected, got "
          .. tostring(pattern) .. ")", 2)
  end
  return request(RECV_EXACTLY, id, n, self._rt)
end

function tcp.receiveany(self, max)
  local id = sock_id(self, "receiveany")
  local n = tonumber(max)
  if not n or n < 1 then
    error("bad argument #1 to 'receiveany' (a byte count > 0 expected, got " .. tostring(max)
          .. ")", 2)
  end
  return request(RECV_ANY, id, floor(n), self._rt)
end

function tcp.receiveuntil(self, pattern, opts)
  local id = sock_id(self, "receiveuntil")
  if type(pattern) ~= "string" or pattern == "" then
    error("bad argument #1 to 'receiveuntil' (non-empty string expected)", 2)
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

tcp.setkeepalive = tcp.close

udp.settimeout = tcp.settimeout
udp.bind = tcp.bind
udp.close = tcp.close

function udp.setpeername(self, host, port)
  local id = sock_id(self, "setpeername")
  if type(host) ~= "string" then
    error("bad argument #1 to 'setpeername' (string expected, got " .. type(host) .. ")", 2)
  end
  host = host ~= current.addr and host
  return request(PEER, id, host, want_port(port, "setpeername", 2))
end
udp.connect = udp.setpeername

function udp.send(self, data)
  local id = sock_id(self, "send")
  if type(data) ~= "string" then data = payload(data) end
  return request(SEND, id, data, self._st)
end

function udp.receive(self, size)
  local id = sock_id(self, "receive")
  local n = tonumber(size or 8192)
  if not n or n < 1 then
    error("bad argument #1 to 'receive' (a byte count > 0 expected)", 2)
  end
  return request(RECV_DGRAM, id, floor(n), self._rt)
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
    for i = 1, select("#", ...) do parts[i] = tostring((select(i, ...))) end
    log(level, concat(parts))
  end,
  sleep = function(ms)
    local v = tonumber(ms)
    if not v or v < 0 then error("bad argument #1 to 'sleep' (milliseconds expected)", 2) end
    return request(SLEEP, 0, v)
  end,
  now = function() return request(NOW, 0) end,
}

-- Environments --------------------------------------------------------------------------------
-- The library tables a script sees are empty proxies, shared by the checks of a runtime: their
-- metatables are protected and every raw writer refuses them, so no check can change them.
local PROTECTED = setmetatable({}, { __mode = "k" })

local function readonly(t, name)
  local proxy = setmetatable({}, {
    __index = t, __metatable = false,
    __newindex = function() error("attempt to modify the read-only table '" .. name .. "'", 2) end,
  })
  PROTECTED[proxy] = name
  return proxy
end

local function guard(f, fname)
  return function(t, ...)
    if PROTECTED[t] then
      error("bad argument #1 to '" .. fname .. "' (the table '" .. PROTECTED[t]
            .. "' is read-only)", 2)
    end
    return f(t, ...)
  end
end

local sb_table = {}
for k, v in pairs(table) do sb_table[k] = v end
sb_table.insert = guard(table.insert, "insert")
sb_table.remove = guard(table.remove, "remove")
sb_table.sort = guard(table.sort, "sort")

-- The fields of a check's ``t`` are read through its metatable (see target()); pairs(t) lists
-- them with what the check set, as for a plain table.
local TARGET = {}  -- the key that marks a target's metatable

local function sb_pairs(t)
  local mt = raw_getmetatable(t)
  if not (mt and rawget(mt, TARGET)) then return pairs(t) end
  local fields = rawget(mt, "__index")
  local all = {}
  for k, v in next, fields do all[k] = v end
  for k, v in next, t do all[k] = v end
  return next, all, nil
end

local BASE = {
  assert = assert, error = error, ipairs = ipairs, next = next, pairs = sb_pairs,
  rawequal = rawequal, rawget = rawget, rawset = guard(rawset, "rawset"), select = select,
  setmetatable = setmetatable, getmetatable = getmetatable, tonumber = tonumber,
  tostring = tostring, type = type, unpack = unpack, _VERSION = _VERSION,
  pcall = sb_pcall, xpcall = sb_xpcall, print = sb_print, loadstring = sb_loadstring,
  load = sb_load, collectgarbage = sb_collectgarbage,
  string = readonly(string, "string"),
  table = readonly(sb_table, "table"),
  math = readonly(math, "math"),
  os = readonly({ time = os.time, clock = os.clock, date = os.date }, "os"),
  coroutine = readonly({ create = sb_create, resume = sb_resume, yield = sb_yield,
                         status = sb_status, running = sb_running, wrap = sb_wrap }, "coroutine"),
  sd = readonly(sd, "sd"),
}
local ENV_MT = { __index = BASE, __metatable = false }

local function new_env()
  local env = setmetatable({ _G = false, check = false }, ENV_MT)  -- room for both at once
  env.check = nil
  env._G = env
  return env
end

local function parse_args(params)
  local args = {}
  if params == "" then return args end
  for pair in s_gmatch(params, "[^;%s]+") do
    local k, v = s_match(pair, "^([^=]+)=(.*)$")
    if k then args[k] = v else args[pair] = true end
  end
  return args
end

local function short(v)
  local s = tostring(v)
  if #s > 40 then s = s_sub(s, 1, 40) .. "..." end
  return s
end

local function verdict(a, b)
  local reason = type(b) == "string" and b or ""
  if a == true then return "up", reason end
  if a == false then return "down", reason ~= "" and reason or "check() returned false" end
  if a == nil then return "down", reason ~= "" and reason or "check() returned nil" end
  if type(a) == "number" then
    if a ~= floor(a) or a < 0 or a > 65535 then
      return "error", "check() returned weight " .. short(a) .. " (valid: an integer 0..65535)"
    end
    return "weight", reason, a
  end
  if type(a) == "string" then
    local p = s_match(a, "^(%d+)%%$")
    if p and tonumber(p) <= 100 then return "percent", reason, tonumber(p) end
    return "error", "check() returned \"" .. short(a) .. "\" (valid: true, false[, reason], "
           .. "a weight 0..65535 or \"NN%\" with NN 0..100)"
  end
  return "error", "check() returned a " .. type(a) .. " (valid: true, false[, reason], "
         .. "a weight 0..65535 or \"NN%\")"
end

-- The original's API: the daemon connects, then process_event() drives the dialogue.
local LEGACY_MAX = 8191

local function run_legacy(env, t)
  local prepare, process_event = rawget(env, "prepare"), rawget(env, "process_event")
  if type(prepare) ~= "function" then
    return "error", "can't find prepare() function in script"
  end
  local sock = new_socket(tcp_mt)
  local ok, err = sock:connect(t.addr, t.port)
  if not ok then return "down", "connect: " .. err end
  local fw = t.vfwmark % 65536
  fw = (fw % 256) * 256 + floor(fw / 256)  -- ntohs(), as the original passed it
  prepare(t.params, t.vname, t.vaddr, t.vport, t.vproto, fw, t.rname, t.addr, t.rport, t.port)
  local txt = ""
  while true do
    local action, n, data = process_event(txt)
    if action == "eok" then return "up", "" end
    if action == "efail" then return "down", "process_event() returned efail" end
    if action ~= "w" and action ~= "r" and action ~= "rav" then
      return "error", "process_event() returned " .. (type(action) == "string" and
             ("\"" .. short(action) .. "\"") or type(action))
             .. " (valid: \"w\", \"r\", \"rav\", \"eok\", \"efail\")"
    end
    n = tonumber(n) or 0
    n = floor(n)
    if n < 0 or n > LEGACY_MAX then
      return "error", "process_event() returned n=" .. n .. " for \"" .. action .. "\" (valid: 0.."
             .. LEGACY_MAX .. ")"
    end
    if action == "w" then
      if type(data) == "number" then data = tostring(data) end
      if type(data) ~= "string" or #data < n then
        return "error", "process_event() returned \"w\" with n=" .. n .. " but "
               .. (type(data) == "string" and (#data .. " bytes of data") or ("a " .. type(data)))
      end
      txt = s_sub(data, 1, n)
      local sent, serr = sock:send(txt)
      if not sent then return "down", "send: " .. serr end
    elseif action == "r" then
      local got, rerr = sock:receive(n)
      if not got then return "down", "read " .. n .. " bytes: " .. rerr end
      txt = got
    else
      if n < 1 then return "error", "process_event() returned \"rav\" with n=0 (valid: 1.."
                           .. LEGACY_MAX .. ")" end
      local got, rerr = sock:receiveany(n)
      if not got then return "down", "read: " .. rerr end
      txt = got
    end
  end
end

-- The script's main chunk runs in the check's environment: it cannot yield (no I/O while it
-- loads), so no other check can set another environment on it before it returns, and every
-- function it makes keeps the environment it was made in.
local function body(main, env, t)
  setfenv(main, env)
  local c = current
  c.loading = true
  local module = main()
  c.loading = false
  setfenv(main, IDLE)
  local check = type(module) == "table" and rawget(module, "check") or rawget(env, "check")
  if type(check) == "function" then
    return verdict(check(t))
  end
  if type(rawget(env, "process_event")) == "function" then
    return run_legacy(env, t)
  end
  return "error", "the script defines neither check(t) nor prepare() and process_event()"
end

local function finish_check(c, status, reason, weight)
  if c.logs then flush_logs(c) end
  current = IDLE
  return status, reason, weight
end

-- After an error ended a check (it propagates to Python, which formats it): the check's
-- pending log lines, flat (level, message, ...), and the runtime idle again.
local function drain()
  local logs = current.logs or {}
  current.logs = nil
  current = IDLE
  return logs
end

-- target(addr, port, vname, vaddr, vport, vproto, vfwmark, rname, rport, params, timeout_ms,
-- ssl): the metatable every check of one target gives its ``t``, made by the driver once per
-- target. A check's ``t`` is a table of its own (its ``args``, and whatever the script sets)
-- whose metatable reads the target's fields from a table no script can reach: one small table
-- per check instead of thirteen fields copied, which the collector would sweep again.
local function target(addr, port, vname, vaddr, vport, vproto, vfwmark, rname, rport, params,
                      timeout, ssl)
  local fields = {
    addr = addr, port = port, vname = vname, vaddr = vaddr, vport = vport, vproto = vproto,
    vfwmark = vfwmark, rname = rname, rport = rport, params = params, timeout = timeout,
    ssl = ssl,
  }
  return { __index = fields, __metatable = false, [TARGET] = true }
end

-- run_check(c, factory, budget, mt): one check in the calling thread, whose record is c, of
-- the target whose metatable (target()) is mt.
local function run_check(c, factory, budget, mt)
  local fields = mt.__index
  local addr, params = fields.addr, fields.params
  c.left, c.budget, c.nsock, c.since, c.addr = budget, budget, 0, false, addr
  c.logs, c.loading, c.killed = false, false, false
  current = c
  local env = new_env()
  c.env = env
  local t = setmetatable({ args = parse_args(params) }, mt)
  return finish_check(c, body(factory, env, t))
end

-- worker(run_check's arguments): the function every check thread runs. A thread serves one
-- check after another: it yields DONE, status, reason, weight after each and takes the next
-- check's arguments from the resume. A check that raised leaves its thread dead (not reused).
-- The check record ``c`` is the thread's, reset for every check (nothing of a check can hold
-- it: scripts never see it, and a thread whose check did not end is never reused).
local function worker(...)
  sethook()
  local c = { left = 0, budget = 0, nsock = 0, since = false, thread = co_running(),
              env = false, logs = false, loading = false, killed = false, addr = false }
  local function serve(...)
    return serve(co_yield(DONE, run_check(c, ...)))
  end
  return serve(...)
end

-- compile(source, chunkname): the script's main chunk (run once per check), or nil, err.
local function compile(source, chunkname)
  if s_byte(source, 1) == 27 then
    return false, s_sub(chunkname, 2) .. ": binary chunks are refused"
  end
  if s_byte(source, 1) == 35 then source = "--" .. source end  -- a #! line
  local f, err = raw_loadstring(source, chunkname)
  if f then return f, false end
  return false, err
end

-- inspect(factory, budget): run the main chunk once, without I/O; returns the API it offers.
local function inspect(factory, budget)
  local me = co_running()
  local c = { left = budget, budget = budget, nsock = 0, loading = true, since = false }
  c.thread = me
  current = c
  sethook()
  local env = new_env()
  c.env = env
  local co = new_thread(function()
    setfenv(factory, env)
    local module = factory()
    setfenv(factory, IDLE)
    if type(module) == "table" and type(rawget(module, "check")) == "function" then
      return "check"
    end
    if type(rawget(env, "check")) == "function" then return "check" end
    if type(rawget(env, "process_event")) == "function" then
      if type(rawget(env, "prepare")) ~= "function" then
        return "error", "defines process_event() but no prepare() function"
      end
      return "legacy"
    end
    return "error", "defines neither check(t) nor prepare() and process_event()"
  end, "pcall")
  local ok, api, err = co_resume(co)
  current = IDLE
  c.logs = nil
  if not ok then
    if type(api) ~= "string" then api = "error object is a " .. type(api) .. " value" end
    return "error", api
  end
  return api, err
end

python = nil
return worker, compile, inspect, drain, target
"""
