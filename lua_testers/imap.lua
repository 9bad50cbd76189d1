-- imap.lua: the "* OK" greeting, optionally LOGIN, then LOGOUT.
--
-- params (optional):
--   user=NAME, password=TEXT   log in with LOGIN; the real is up only when it answers OK
--
-- <tester proto="lua" script="/usr/share/surealived/lua_testers/imap.lua"/>

local _M = { _VERSION = "1.0" }

-- Send a tagged command, skip untagged lines, return the tagged answer's status and text.
local function command(sock, tag, text)
  sock:send(tag .. " " .. text .. "\r\n")
  for _ = 1, 100 do
    local line, err = sock:receive()
    if not line then return nil, err end
    if line:sub(1, #tag + 1) == tag .. " " then
      return line:match("^%S+ (%u+)"), line
    end
  end
  return nil, "no tagged answer"
end

local function quote(s)
  return '"' .. s:gsub('[\\"]', "\\%0") .. '"'
end

function _M.check(t)
  local sock = sd.tcp()
  local ok, err = sock:connect(t.addr, t.port)
  if not ok then return false, "connect: " .. err end
  local line, rerr = sock:receive()
  if not line then return false, "greeting: " .. rerr end
  if not line:find("^%* OK") and not line:find("^%* PREAUTH") then
    return false, "greeting: " .. line:sub(1, 80)
  end
  if t.args.user then
    local status, text = command(sock, "a1", "LOGIN " .. quote(t.args.user) .. " "
                                 .. quote(t.args.password or ""))
    if status ~= "OK" then return false, "LOGIN: " .. tostring(text) end
  end
  command(sock, "a2", "LOGOUT")
  sock:close()
  return true
end

return _M
