-- http.lua: one HTTP/1.0 GET; up when the status matches and the body contains a pattern.
--
-- params (all optional):
--   path=/health      request target (default: /)
--   host=NAME         Host header (default: the real's address)
--   status=200        expected status code (default: 200)
--   pattern=TEXT      a Lua pattern the body must contain (e.g. pattern=ok%s+healthy)
--   plain=1           treat pattern as plain text, not a Lua pattern
--   naive=1           judge on the status line only (read 12 bytes, like the http tester)
--
-- Blanks separate params, so write a pattern's spaces as %s.
-- <tester proto="lua" script="/usr/share/surealived/lua_testers/http.lua"
--         params="path=/health pattern=healthy"/>

local _M = { _VERSION = "1.0" }

function _M.check(t)
  local args = t.args
  local sock = sd.tcp()
  local ok, err = sock:connect(t.addr, t.port)
  if not ok then return false, "connect: " .. err end
  sock:send({ "GET ", args.path or "/", " HTTP/1.0\r\nHost: ", args.host or t.addr,
              "\r\nUser-Agent: SureAliveD\r\n\r\n" })
  local want = args.status or "200"
  if args.naive then
    local line, rerr = sock:receive(12)
    if not line then return false, "status line: " .. rerr end
    local status = line:match("^HTTP/1%.%d (%d%d%d)")
    if status ~= want then return false, "status " .. tostring(status) .. ", expected " .. want end
    return true
  end
  local reply, rerr = sock:receive("*a")
  if not reply then return false, "reply: " .. rerr end
  local status = reply:match("^HTTP/1%.%d (%d%d%d)")
  if not status then return false, "not an HTTP reply: " .. reply:sub(1, 40) end
  if status ~= want then return false, "status " .. status .. ", expected " .. want end
  local pattern = args.pattern
  if pattern then
    local body = reply:match("\r?\n\r?\n(.*)$") or ""
    if not body:find(pattern, 1, args.plain == "1") then
      return false, "status " .. status .. ", but the body does not contain " .. pattern
    end
  end
  return true
end

return _M
