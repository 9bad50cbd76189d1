-- env.lua: the globals a script sees. Scripts never see the runtime's real globals: a script's
-- version (worker.lua), an original's script's check and each module get a fresh environment
-- table whose metatable (protected) falls back on a table of safe base functions (the
-- sandbox's pcall, coroutine and load among them); ``string``, ``table``, ``math``, ``os``,
-- ``coroutine``, ``sd``, ``ngx`` and ``bit`` are read-only proxies (frozen.lua) shared by the
-- checks of a runtime. Returns new_env(), TARGET, the key marking a check's ``t``
-- (worker.lua), and BASE, for the files loaded after this one to add their globals
-- (modules.lua's ``require``).
local lib = ...
local sandbox, sd = lib.sandbox, lib.sock.sd
local readonly, guard = lib.frozen.readonly, lib.frozen.guard
local libs = lib.libs

local setmetatable, getmetatable, raw_getmetatable = setmetatable, getmetatable, debug.getmetatable
local rawget, rawset, rawequal, next, pairs, ipairs = rawget, rawset, rawequal, next, pairs, ipairs
local assert, error, select, type, unpack = assert, error, select, type, unpack
local tonumber, tostring = tonumber, tostring
local VERSION = _VERSION
local string, table, math = string, table, math
local os_time, os_clock, os_date = os.time, os.clock, os.date

local sb_table = {}
for k, v in pairs(table) do sb_table[k] = v end
sb_table.insert = guard(table.insert, "insert")
sb_table.remove = guard(table.remove, "remove")
sb_table.sort = guard(table.sort, "sort")
sb_table.new = libs.table_new
sb_table.clear = libs.table_clear

-- The fields of a check's ``t`` are read through its metatable (see worker.lua's target());
-- pairs(t) lists them with what the check set, as for a plain table.
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
  tostring = tostring, type = type, unpack = unpack, _VERSION = VERSION,
  pcall = sandbox.pcall, xpcall = sandbox.xpcall, print = sandbox.print,
  loadstring = sandbox.loadstring, load = sandbox.load, collectgarbage = sandbox.collectgarbage,
  string = readonly(string, "string"),
  table = readonly(sb_table, "table"),
  math = readonly(math, "math"),
  os = readonly({ time = os_time, clock = os_clock, date = os_date }, "os"),
  coroutine = readonly(sandbox.coroutine, "coroutine"),
  sd = readonly(sd, "sd"),
  ngx = lib.ngx.ngx,
  bit = libs.bit,
}

local ENV_MT = { __index = BASE, __metatable = false }

local function new_env()
  local env = setmetatable({ _G = false, check = false }, ENV_MT)  -- room for both at once
  env.check = nil
  env._G = env
  return env
end

return { new_env = new_env, TARGET = TARGET, BASE = BASE }
