-- worker.lua: the check-thread protocol, what Python calls (returned to runtime.py):
--   worker(version, budget, mt)  the function every check thread runs;
--   compile(source, chunkname)   a script's main chunk;
--   inspect(main, budget, loaded, stale)  a script's version: its main chunk run once;
--   drain()                      the logs of a check an error ended;
--   target(addr, port, ...)      the metatable of a target's ``t``;
--   is_builtin(name)             whether a module name is the daemon's own (modules.lua).
--
-- A version is what one load of a script made (inspect): for ``check(t)``, the check function
-- and the environment the main chunk ran in, which every check of the version shares (its
-- globals and its modules' state live on from one check to the next, as OpenResty's module
-- state does); for the original's API, the main chunk, run again for every check in a fresh
-- environment (those scripts rely on fresh globals). Either way ``loaded``, the modules the
-- version required (modules.lua), is kept across its checks. ``t`` and the sockets are each
-- check's own.
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
local compile, fork, reload = lib.modules.compile, lib.modules.fork, lib.modules.reload
local DONE = lib.codes.DONE

local IDLE, set_current = sandbox.IDLE, sandbox.set_current
local sethook, flush_logs, sb_pcall = sandbox.sethook, sandbox.flush_logs, sandbox.pcall
local co_yield, co_running = coroutine.yield, coroutine.running
local setfenv = setfenv
local setmetatable, rawget, type = setmetatable, rawget, type
local s_gmatch, s_match = string.gmatch, string.match

local function parse_args(params)
  local args = {}
  if params == "" then return args end
  for pair in s_gmatch(params, "[^;%s]+") do
    local k, v = s_match(pair, "^([^=]+)=(.*)$")
    if k then args[k] = v else args[pair] = true end
  end
  return args
end

-- body(c, version, t): one check, whose record is c, of a version. An original's script runs
-- its main chunk in the check's own environment: it yields only to Python's synchronous
-- REQUIRE (no I/O while it loads), so no other check can set another environment on it before
-- it returns, and every function it makes keeps the environment it was made in.
local function body(c, version, t)
  local check = version.check
  if check then
    c.env = version.env
    return verdict(check(t))
  end
  local main, env = version.main, new_env()
  c.env = env
  setfenv(main, env)
  c.loading = true
  main()
  c.loading = false
  setfenv(main, IDLE)
  return run_legacy(env, t)
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

-- run_check(c, version, budget, mt): one check in the calling thread, whose record is c, of
-- the target whose metatable (target()) is mt.
local checks = 0  -- checks started in this runtime: each check's number (``c.number``)

local function run_check(c, version, budget, mt)
  checks = checks + 1
  c.number = checks  -- its sockets carry it: one kept in a module cannot serve another check
  local fields = mt.__index
  local addr, params = fields.addr, fields.params
  c.left, c.budget, c.nsock, c.since, c.addr = budget, budget, 0, false, addr
  c.logs, c.loading, c.killed, c.work, c.logged, c.dropped = false, false, false, 0, 0, false
  c.rng, c.loaded, c.requiring, c.missing, c.stale = false, version.loaded, false, false,
    false
  set_current(c)
  local t = setmetatable({ args = parse_args(params) }, mt)
  return finish_check(c, body(c, version, t))
end

-- worker(run_check's arguments): the function every check thread runs. A thread serves one
-- check after another: it yields DONE, status, reason, weight after each and takes the next
-- check's arguments from the resume. A check that raised leaves its thread dead (not reused).
-- The check record ``c`` is the thread's, reset for every check (nothing of a check can hold
-- it: scripts never see it, and a thread whose check did not end is never reused).
local function worker(...)
  sethook()
  local c = { left = 0, budget = 0, nsock = 0, since = false, thread = co_running(), number = 0,
              env = false, logs = false, loading = false, killed = false, addr = false,
              work = 0, logged = 0, dropped = false, rng = false, loaded = false,
              requiring = false, missing = false, stale = false }
  local function serve(...)
    return serve(co_yield(DONE, run_check(c, ...)))
  end
  return serve(...)
end

-- load_version(c, main, env, stale): the main chunk run in ``env`` (no I/O), then the modules
-- of the list ``stale`` loaded again if it did not require them itself; the API and the version.
local function load_version(c, main, env, stale)
  setfenv(main, env)
  c.loading = true
  local module = main()
  for i = 1, #stale do reload(c, stale[i]) end
  c.loading = false
  local check = type(module) == "table" and rawget(module, "check")
  if type(check) ~= "function" then check = rawget(env, "check") end
  if type(check) == "function" then
    return "check", { check = check, env = env, loaded = c.loaded }
  end
  if type(rawget(env, "process_event")) == "function" then
    if type(rawget(env, "prepare")) ~= "function" then
      return "error", "defines process_event() but no prepare() function"
    end
    setfenv(main, IDLE)
    return "legacy", { main = main, loaded = c.loaded }
  end
  return "error", "defines neither check(t) nor prepare() and process_event()"
end

-- inspect(main, budget, loaded, changed): a new version of the script whose main chunk is
-- main (``"check"`` or ``"legacy"`` and the version), or ``"error"``, why. Its module cache
-- starts as a copy of ``loaded``, the previous version's (or none); the modules named in
-- ``changed`` are loaded again, and those that hold their old values (modules.fork). Run as a
-- coroutine by Python, which serves its REQUIRE requests; a broken budget or memory cap raises
-- (Python then calls drain()).
local function inspect(main, budget, old, changed)
  local loaded, marked, stale = fork(old, changed)
  local c = { left = budget, budget = budget, nsock = 0, loading = true, since = false, number = 0,
              work = 0, logged = 0, dropped = false, rng = false, thread = co_running(),
              loaded = loaded, stale = marked, requiring = false, missing = false }
  set_current(c)
  sethook()
  local env = new_env()
  c.env = env
  local ok, api, detail = sb_pcall(load_version, c, main, env, stale)
  set_current(IDLE)
  c.logs = nil
  if not ok then
    if type(api) ~= "string" then api = "error object is a " .. type(api) .. " value" end
    return "error", api
  end
  return api, detail
end

return { worker = worker, compile = compile, inspect = inspect, drain = sandbox.drain,
         target = target, is_builtin = lib.modules.is_builtin }
