-- worker.lua: the check-thread protocol, what Python calls (returned to runtime.py):
--   worker(factory, budget, mt)  the function every check thread runs;
--   compile(source, chunkname)   a script's main chunk;
--   inspect(factory, budget)     which API a script offers (check(t) or the original's);
--   drain()                      the logs of a check an error ended;
--   target(addr, port, ...)      the metatable of a target's ``t``.
--
-- Checks run on check threads, each serving one check after another: the driver keeps idle
-- ones and resumes one with the next check's arguments; a check's record ``c`` is the thread's,
-- reset for every check. I/O is a ``coroutine.yield`` of a request (a code of codes.py, a
-- socket id and plain arguments) from the check's own thread to the Python driver, which does
-- the I/O and resumes the thread with the result. Nested threads forward requests up, tagged
-- with a private table (sandbox.lua).
local lib = ...
local sandbox, new_env, TARGET = lib.sandbox, lib.env.new_env, lib.env.TARGET
local verdict, run_legacy = lib.verdict.verdict, lib.legacy.run_legacy
local DONE = lib.codes.DONE

local IDLE, set_current = sandbox.IDLE, sandbox.set_current
local sethook, new_thread, flush_logs = sandbox.sethook, sandbox.new_thread, sandbox.flush_logs
local co_resume, co_yield, co_running = coroutine.resume, coroutine.yield, coroutine.running
local raw_loadstring, setfenv = loadstring, setfenv
local setmetatable, rawget, type = setmetatable, rawget, type
local s_gmatch, s_match, s_byte, s_sub = string.gmatch, string.match, string.byte, string.sub

local function parse_args(params)
  local args = {}
  if params == "" then return args end
  for pair in s_gmatch(params, "[^;%s]+") do
    local k, v = s_match(pair, "^([^=]+)=(.*)$")
    if k then args[k] = v else args[pair] = true end
  end
  return args
end

-- body(c, main, env, t): one check, whose record is c, of the script whose main chunk is main.
-- The main chunk runs in the check's environment: it cannot yield (no I/O while it loads), so
-- no other check can set another environment on it before it returns, and every function it
-- makes keeps the environment it was made in.
local function body(c, main, env, t)
  setfenv(main, env)
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
  if c.logs or c.dropped then flush_logs(c, true) end
  set_current(IDLE)
  return status, reason, weight
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
  c.logs, c.loading, c.killed, c.work, c.logged, c.dropped = false, false, false, 0, 0, false
  c.rng = false
  set_current(c)
  local env = new_env()
  c.env = env
  local t = setmetatable({ args = parse_args(params) }, mt)
  return finish_check(c, body(c, factory, env, t))
end

-- worker(run_check's arguments): the function every check thread runs. A thread serves one
-- check after another: it yields DONE, status, reason, weight after each and takes the next
-- check's arguments from the resume. A check that raised leaves its thread dead (not reused).
-- The check record ``c`` is the thread's, reset for every check (nothing of a check can hold
-- it: scripts never see it, and a thread whose check did not end is never reused).
local function worker(...)
  sethook()
  local c = { left = 0, budget = 0, nsock = 0, since = false, thread = co_running(),
              env = false, logs = false, loading = false, killed = false, addr = false,
              work = 0, logged = 0, dropped = false, rng = false }
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
  local c = { left = budget, budget = budget, nsock = 0, loading = true, since = false,
              work = 0, logged = 0, dropped = false, rng = false }
  c.thread = me
  set_current(c)
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
  set_current(IDLE)
  c.logs = nil
  if not ok then
    if type(api) ~= "string" then api = "error object is a " .. type(api) .. " value" end
    return "error", api
  end
  return api, err
end

return { worker = worker, compile = compile, inspect = inspect, drain = sandbox.drain,
         target = target }
