-- sandbox.lua: what keeps a script inside its check. The check whose Lua code is running
-- (``current``), its instruction budget and CPU slice (the hook, and ``charge`` for work done
-- inside C functions, which no hook sees), its log lines, the request a check's threads yield
-- to Python, and the pcall, coroutine and load functions scripts get in place of the real ones
-- (they carry the hook and forward requests). bounded.lua makes the C library's calls bounded.
--
-- Loaded first by runtime.py, called with the table of what the files share (``lib``: the
-- request codes of codes.py, and each file loaded before); returns this module.
local lib = ...
local LOG = lib.codes.LOG

local STEP = 500  -- instructions between two runs of the hook (see hook())
local SLICE = 0.2  -- seconds of CPU a check may use between two I/O calls
-- Work charged by C calls (about a pattern step or a byte copied: ~3 ns) between two looks at
-- the CPU clock: a look happens at the latest ~1 ms of such work after the slice ran out.
local WORK_TICK = 2 ^ 18
local LOG_LINES = 100  -- sd.log/print lines a check may log (then one line says how many more)
-- bytes of a line that cross into Python (codes.py's LOG_MAX, + 1: crossing.py marks the cut)
local LOG_BYTES = lib.LOG_MAX + 1
local SOURCE_MAX = 128 * 1024  -- bytes of code loadstring/load compile (the parser is C)

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
local s_sub, s_byte = string.sub, string.byte

-- No Python object is ever handed in, and lupa's ``python`` table goes too.
python = nil

-- Checks, threads and the instruction budget --------------------------------------------------
local IDLE = { left = huge, since = huge, work = 0, logged = 0 }
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

-- charge(work): a C call did (or is about to do) ``work`` units the hook cannot see. Every
-- WORK_TICK units the CPU slice is looked at, as the hook does, so a loop of C calls that each
-- stay under ~1 ms (bounded.lua sees to that) is stopped within a few ms of its slice.
local function charge(work)
  local c = current
  work = c.work + work
  if work < WORK_TICK then
    c.work = work
    return
  end
  c.work = 0
  if c == IDLE then return end
  local since = c.since
  if not since or since == 0 then
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

-- The check's pending lines to Python; at its ``last`` flush, one more saying how many the
-- limit dropped.
local function flush_logs(c, last)
  local logs = c.logs
  local dropped = last and c.dropped
  if dropped then
    c.dropped = false
    logs = logs or {}
    logs[#logs + 1] = "warn"
    logs[#logs + 1] = dropped .. " more log lines of this check dropped (at most " .. LOG_LINES
                      .. " a check)"
  end
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

-- One request to the Python driver, from any thread of the running check (nested threads hand
-- it up, tagged with REQ). The reply is what the call returns: a value, or nil, err[, partial].
local function ask(...)
  local c = current
  if co_running() ~= c.thread then
    return co_yield(REQ, ...)
  end
  if c.logs then flush_logs(c) end
  return resumed(c, co_yield(...))
end

-- A socket's request: none while a script or a module loads (its main chunk runs once for all
-- the checks to come).
local function request(...)
  if current.loading then
    error("no I/O while the script loads: call sockets from check() or process_event()", 3)
  end
  return ask(...)
end

local function log(level, msg)
  local c = current
  if c == IDLE then return end
  local logs = c.logs
  if not logs then
    logs = {}
    c.logs = logs
  end
  local logged = c.logged  -- lines of the whole check (``logs`` is emptied at each request)
  if logged < LOG_LINES then
    c.logged = logged + 1
    local n = #logs
    logs[n + 1] = level
    logs[n + 2] = #msg > LOG_BYTES and s_sub(msg, 1, LOG_BYTES) or msg
  else
    c.dropped = (c.dropped or 0) + 1
  end
end

-- After an error ended a check (it propagates to Python, which formats it): the check's
-- pending log lines, flat (level, message, ...), and the runtime idle again.
local NO_LOGS = {}  -- never changed: drain() allocates nothing when the memory cap was hit

local function drain()
  local c = current
  current = IDLE
  local logs = c.logs or NO_LOGS
  c.logs = nil
  if c.dropped then
    if logs == NO_LOGS then logs = {} end
    logs[#logs + 1] = "warn"
    logs[#logs + 1] = c.dropped .. " more log lines of this check dropped (at most " .. LOG_LINES
                      .. " a check)"
    c.dropped = false
  end
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
    return finish_pcall(co, co_resume(co, ask(select(2, ...))))
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
    return finish_resume(co, co_resume(co, ask(select(2, ...))))
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
  if #s > SOURCE_MAX then return nil, "chunk longer than " .. SOURCE_MAX .. " bytes" end
  if name ~= nil and type(name) ~= "string" then name = nil end
  local f, err = raw_loadstring(s, name)
  if not f then return nil, err end
  setfenv(f, current.env)
  return f
end

local function sb_load(reader, name)
  if type(reader) == "string" then return sb_loadstring(reader, name) end
  local parts, size = {}, 0
  while true do
    local piece = reader()
    if piece == nil or piece == "" then break end
    if type(piece) ~= "string" then return nil, "reader function must return a string" end
    size = size + #piece
    if size > SOURCE_MAX then return nil, "chunk longer than " .. SOURCE_MAX .. " bytes" end
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
  for i = 1, n do parts[i] = s_sub(tostring((select(i, ...))), 1, LOG_BYTES) end
  log("debug", concat(parts, "\t"))
end

return {
  IDLE = IDLE,
  -- the running check's record (IDLE between checks), and the one to charge from now on
  current = function() return current end,
  set_current = function(c) current = c end,
  LOG_BYTES = LOG_BYTES,
  sethook = sethook, charge = charge, new_thread = new_thread, request = request, ask = ask,
  log = log,
  flush_logs = flush_logs, drain = drain,
  -- after the real pcall caught err around library code that cannot yield: raise again what
  -- ended the check (its budget, its memory)
  reraise_if_killed = reraise_if_killed,
  -- what scripts get in place of the real functions (env.lua)
  pcall = sb_pcall, xpcall = sb_xpcall, print = sb_print, loadstring = sb_loadstring,
  load = sb_load, collectgarbage = sb_collectgarbage,
  coroutine = { create = sb_create, resume = sb_resume, yield = sb_yield, status = sb_status,
                running = sb_running, wrap = sb_wrap },
}
