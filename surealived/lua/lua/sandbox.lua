-- sandbox.lua: what keeps a script inside its check. The string library made safe, the check
-- whose Lua code is running (``current``) and its instruction budget and CPU slice (the hook),
-- the request a check's threads yield to Python, and the pcall, coroutine and load functions
-- scripts get in place of the real ones (they carry the hook and forward requests).
--
-- Loaded first by runtime.py, called with the table of what the files share (``lib``: the
-- request codes of codes.py, and each file loaded before); returns this module.
local lib = ...
local LOG = lib.codes.LOG

local STEP = 500  -- instructions between two runs of the hook (see hook())
local PATTERN_MAX = 512
local REP_MAX = 64 * 1024 * 1024
local SLICE = 0.2  -- seconds of CPU a check may use between two I/O calls

local debug_sethook = debug.sethook
local co_create, co_resume, co_yield = coroutine.create, coroutine.resume, coroutine.yield
local co_status, co_running = coroutine.status, coroutine.running
local raw_loadstring, setfenv = loadstring, setfenv
local getmetatable, setmetatable = getmetatable, setmetatable
local type, select, error = type, select, error
local tostring = tostring
local collectgarbage = collectgarbage
local huge = math.huge
local os_clock = os.clock
local concat = table.concat
local s_find, s_match, s_gmatch, s_gsub = string.find, string.match, string.gmatch, string.gsub
local s_rep, s_sub, s_byte = string.rep, string.sub, string.byte

-- No Python object is ever handed in, and lupa's ``python`` table goes too.
python = nil

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

-- After an error ended a check (it propagates to Python, which formats it): the check's
-- pending log lines, flat (level, message, ...), and the runtime idle again.
local function drain()
  local logs = current.logs or {}
  current.logs = nil
  current = IDLE
  return logs
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

return {
  IDLE = IDLE,
  -- the running check's record (IDLE between checks), and the one to charge from now on
  current = function() return current end,
  set_current = function(c) current = c end,
  sethook = sethook, new_thread = new_thread, request = request, log = log,
  flush_logs = flush_logs, drain = drain,
  -- what scripts get in place of the real functions (env.lua)
  pcall = sb_pcall, xpcall = sb_xpcall, print = sb_print, loadstring = sb_loadstring,
  load = sb_load, collectgarbage = sb_collectgarbage,
  coroutine = { create = sb_create, resume = sb_resume, yield = sb_yield, status = sb_status,
                running = sb_running, wrap = sb_wrap },
}
