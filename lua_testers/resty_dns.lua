-- resty_dns.lua: a DNS check written the OpenResty way, on resty.sddns (the client module in
-- resty/ next to this file): one query over UDP to the real, up when it has an answer.
--
-- params (key=value, separated by ";" or blanks):
--   name=NAME        the name to ask for (required)
--   type=A           A, AAAA, CNAME, MX, NS, PTR or TXT (default A)
--   address=ADDR     A or AAAA: the real is up only when one answer is ADDR
--
-- <tester proto="lua" testport="53" script="/usr/share/surealived/lua_testers/resty_dns.lua"
--         params="name=www.example.com address=192.0.2.10"/>

local dns = require "resty.sddns"

function check(t)
  local args = t.args
  if type(args.name) ~= "string" then return false, "params: name=NAME is missing" end
  local qtype = dns["TYPE_" .. string.upper(tostring(args.type or "A"))]
  if not qtype then return false, "params: type " .. tostring(args.type) .. " is not known" end
  local r, err = dns:new{ nameservers = { { t.addr, t.port } }, timeout = 1000, retrans = 2 }
  if not r then return false, err end
  local answers, qerr = r:query(args.name, { qtype = qtype })
  if not answers then return false, qerr end
  if answers.errcode then
    return false, args.name .. ": " .. answers.errstr .. " (rcode " .. answers.errcode .. ")"
  end
  local found
  for _, ans in ipairs(answers) do
    if ans.type == qtype then
      if not args.address or ans.address == args.address then return true, ans.address end
      found = ans.address
    end
  end
  if found then return false, args.name .. " is " .. found .. ", expected " .. args.address end
  return false, args.name .. ": no answer of type " .. string.upper(tostring(args.type or "A"))
end
