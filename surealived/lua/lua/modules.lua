-- modules.lua: ``require(name)`` for scripts and their modules, as OpenResty's: a module's main
-- chunk runs once and its value is kept for every check that follows. Loaded after env.lua; adds
-- ``require`` to the globals scripts see (env.BASE). No ``package`` table: the cache is not
-- reachable from Lua.
--
-- Where a name is looked for, in order:
--   1. lib.builtin_modules[name]: the daemon's own modules, a value or a loader function
--      (called once per runtime with the name, its value kept). Files loaded before or after
--      this one fill the table; it starts empty.
--   2. the cache of the version the running check (or the load) belongs to, ``c.loaded``
--      (name -> value). A new version's cache is a copy of the one before (fork()), with the
--      modules whose file changed marked in ``c.stale``, and with them the modules that
--      required one of them while they loaded (they hold its old value): those are loaded
--      again, and kept as they were if their file is gone.
--   3. the module path: a REQUIRE request to Python (scripts.py, modules.py), which finds and
--      reads the file and replies with its text and chunk name (``@resty/redis.lua``), or nil,
--      err, missing. The text is compiled (text only) and run once in an environment of its
--      own, without I/O, under the instruction budget and CPU slice of the check (or the load)
--      that requires it, and within the runtime's memory cap.
-- A name is letters, digits, '_' and '-' in parts separated by dots (checked here, and again
-- by Python). A cycle of requires, or modules nested deeper than DEPTH, is an error naming it.
local lib = ...
local sandbox, env = lib.sandbox, lib.env
local new_env = env.new_env
local REQUIRE = lib.codes.REQUIRE
local current, ask, sb_pcall = sandbox.current, sandbox.ask, sandbox.pcall

local type, error, setfenv, next = type, error, setfenv, next
local raw_loadstring = loadstring
local s_find, s_byte, s_sub, s_format = string.find, string.byte, string.sub, string.format
local concat = table.concat

local NAME_MAX = 255
local DEPTH = 32  -- modules loading inside one another
-- instructions a look on disk costs the check (a few system calls in Python): a loop of
-- requires of missing names ends in the budget as a loop of anything else does
local LOOKUP_COST = 5000

local builtin = lib.builtin_modules or {}
lib.builtin_modules = builtin
local builtin_loaded = {}  -- name -> value of a builtin loader, for the runtime's life
-- the key, in a cache, of its table name -> { [a module that required it while loading] = true }
local USERS = {}

-- compile(source, chunkname): a script's or a module's main chunk (text only), or false, err.
local function compile(source, chunkname)
  if s_byte(source, 1) == 27 then
    return false, s_sub(chunkname, 2) .. ": binary chunks are refused"
  end
  if s_byte(source, 1) == 35 then source = "--" .. source end  -- a #! line
  local f, err = raw_loadstring(source, chunkname)
  if f then return f, false end
  return false, err
end

local function check_name(name)
  if type(name) ~= "string" then
    error("bad argument #1 to 'require' (string expected, got " .. type(name) .. ")", 3)
  end
  if #name > NAME_MAX or not s_find(name, "^[%w_%-]+[%w_%-%.]*$") or s_find(name, "..", 1, true)
      or s_byte(name, -1) == 46 then
    error("bad argument #1 to 'require' (a module name such as resty.redis expected: letters, "
          .. "digits, '_' and '-', in parts separated by dots; got " .. s_format("%q",
          s_sub(name, 1, 64)) .. ")", 3)
  end
end

-- load(c, loaded, name, level): the module from its file, into ``loaded``. A missing file is
-- an error at ``level`` (remembered for the rest of the check), unless the module was loaded
-- before: that value stays.
local function load(c, loaded, name, level)
  local missing = c.missing
  if missing and missing[name] then
    error(missing[name], level + 1)
  end
  local loading = c.requiring
  if not loading then
    loading = {}
    c.requiring = loading
  end
  for i = 1, #loading do
    if loading[i] == name then
      error("require cycle: " .. concat(loading, " -> ", i) .. " -> " .. name, level + 1)
    end
  end
  if #loading >= DEPTH then
    error("modules nested deeper than " .. DEPTH .. " (at " .. name .. ")", level + 1)
  end
  c.left = c.left - LOOKUP_COST
  local source, chunkname, not_found = ask(REQUIRE, name)
  local stale = c.stale
  if stale then stale[name] = nil end
  if not source then
    if not_found then
      local old = loaded[name]
      if old ~= nil then return old end
      missing = missing or {}
      c.missing = missing
      missing[name] = chunkname
    end
    error(chunkname, level + 1)
  end
  local f, err = compile(source, chunkname)
  if not f then error(err, 0) end
  setfenv(f, new_env())
  loading[#loading + 1] = name
  local was_loading = c.loading
  c.loading = true
  local ok, value = sb_pcall(f, name)
  c.loading = was_loading
  loading[#loading] = nil
  if not ok then error(value, 0) end
  if value == nil then value = true end
  loaded[name] = value
  return value
end

local function require(name)
  check_name(name)
  local b = builtin[name]
  if b ~= nil then
    local value = builtin_loaded[name]
    if value == nil then
      if type(b) == "function" then value = b(name) else value = b end
      if value == nil then value = true end
      builtin_loaded[name] = value
    end
    return value
  end
  local c = current()
  local loaded = c.loaded
  if not loaded then error("require() outside a check", 2) end
  local value = loaded[name]
  if value == nil or c.stale and c.stale[name] then
    value = load(c, loaded, name, 2)
  end
  local loading = c.requiring
  local user = loading and loading[#loading]
  if user then
    local users = loaded[USERS]
    local by = users[name]
    if not by then
      by = {}
      users[name] = by
    end
    by[user] = true
  end
  return value
end

-- fork(old, changed): the cache of a new version (a copy of ``old``, or empty), the set of
-- the names to load again (``changed``, the names of the modules whose file changed, and the
-- modules that required one of those while loading, and so on) and a list of them.
local function fork(old, changed)
  local loaded, users = {}, {}
  if old then
    for name, value in next, old do loaded[name] = value end
    for name, by in next, old[USERS] do
      local copy = {}
      for user in next, by do copy[user] = true end
      users[name] = copy
    end
  end
  loaded[USERS] = users
  local stale, list = {}, {}
  for i = 1, #changed do list[i] = changed[i] end
  local i = 1
  while list[i] do
    local name = list[i]
    if not stale[name] then
      stale[name] = true
      local by = users[name]
      if by then
        for user in next, by do list[#list + 1] = user end
      end
    end
    i = i + 1
  end
  return loaded, stale, list
end

-- reload(c, name): a module of the version being loaded whose file changed, loaded again unless
-- the main chunk did it already (worker.inspect).
local function reload(c, name)
  if c.stale[name] and c.loaded[name] ~= nil then
    load(c, c.loaded, name, 1)
  end
end

-- is_builtin(name): whether ``require(name)`` finds the name without the module path (-t).
local function is_builtin(name)
  return builtin[name] ~= nil
end

env.BASE.require = require

return { compile = compile, require = require, fork = fork, reload = reload,
         is_builtin = is_builtin }
