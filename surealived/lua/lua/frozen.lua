-- frozen.lua: the read-only proxies behind which scripts see the library tables a runtime's
-- checks share (string, table, sd, ngx, bit, cjson...). A proxy is an empty table whose
-- protected metatable reads the real table; every raw writer refuses a proxy (``guard``), so
-- no check can change what another check sees. Loaded after sock.lua; env.lua, ngx.lua and
-- libs.lua use it.
local setmetatable, error, next, type = setmetatable, error, next, type
local raw_getmetatable = debug.getmetatable

local PROTECTED = setmetatable({}, { __mode = "k" })  -- proxy -> its name

local function readonly(t, name)
  local proxy = setmetatable({}, {
    __index = t, __metatable = false,
    __newindex = function() error("attempt to modify the read-only table '" .. name .. "'", 2) end,
  })
  PROTECTED[proxy] = name
  return proxy
end

-- t and every plain table in it (no metatable), each behind a proxy named by its path
local function tree(t, name)
  local copy = {}
  for k, v in next, t do
    if type(v) == "table" and not PROTECTED[v] and raw_getmetatable(v) == nil then
      v = tree(v, name .. "." .. k)
    end
    copy[k] = v
  end
  return readonly(copy, name)
end

-- f(t, ...), refusing a proxy as t
local function guard(f, fname)
  return function(t, ...)
    if PROTECTED[t] then
      error("bad argument #1 to '" .. fname .. "' (the table '" .. PROTECTED[t]
            .. "' is read-only)", 2)
    end
    return f(t, ...)
  end
end

return { readonly = readonly, tree = tree, guard = guard }
