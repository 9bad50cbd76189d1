-- resty.sddns: a small DNS client over UDP on OpenResty-style cosockets.
--
--   local dns = require "resty.sddns"
--   local r, err = dns:new{ nameservers = { { host, 53 } }, timeout = 1000, retrans = 2 }
--   local answers, err = r:query("www.example.test", { qtype = r.TYPE_A })
--   -- answers[i]: { name, type, class, ttl, address (A, AAAA) | cname | nsdname | ptrdname
--   --              | exchange and preference (MX) | txt (TXT: a string, or a table of them) }
--   -- a server's error code: answers.errcode, answers.errstr (3: "name error", NXDOMAIN)
--
-- Replies are parsed defensively: a datagram with another ID is skipped (at most 16 of them
-- per try), and a reply cut short, with a compression pointer that does not point back, a name
-- over 255 bytes or a count its datagram cannot hold gives nil, err. A truncated reply (TC)
-- is an error: there is no TCP fallback.

local byte, char, sub, find, format = string.byte, string.char, string.sub, string.find,
                                      string.format
local concat, random, setmetatable, type, tostring = table.concat, math.random, setmetatable,
                                                     type, tostring
local ngx = ngx
local bit = require "bit"
local band, rshift = bit.band, bit.rshift

local _M = { _VERSION = "0.1", TYPE_A = 1, TYPE_NS = 2, TYPE_CNAME = 5, TYPE_SOA = 6,
             TYPE_PTR = 12, TYPE_MX = 15, TYPE_TXT = 16, TYPE_AAAA = 28, CLASS_IN = 1 }
local mt = { __index = _M }

local ERRSTR = { [1] = "format error", [2] = "server failure", [3] = "name error",
                 [4] = "not implemented", [5] = "refused" }
local MAX_SKIPPED = 16  -- datagrams with another ID, per try

-- pure parsing

local function u16(data, pos)
  local hi, lo = byte(data, pos, pos + 1)
  if not lo then return nil end
  return hi * 256 + lo
end

local function u32(data, pos)
  local hi, lo = u16(data, pos), u16(data, pos + 2)
  if not lo then return nil end
  return hi * 65536 + lo
end

-- a name at pos: the name, and where the record goes on (after the first pointer, if any).
-- Every pointer must point before the last place a pointer sent us (at first: the name's
-- start), so the jumps only go back and the walk ends.
local function parse_name(data, pos)
  local labels, size, resume, limit = {}, 0, nil, pos
  while true do
    local len = byte(data, pos)
    if not len then return nil, "name past the end" end
    if len == 0 then
      return concat(labels, "."), resume or pos + 1
    end
    local kind = band(len, 0xc0)
    if kind == 0xc0 then
      local target = u16(data, pos)
      if not target then return nil, "name past the end" end
      target = band(target, 0x3fff) + 1
      if target >= limit then return nil, "compression pointer that does not point back" end
      resume = resume or pos + 2
      pos, limit = target, target
    elseif kind ~= 0 then
      return nil, "bad label type"
    else
      if pos + len > #data then return nil, "name past the end" end
      size = size + len + 1
      if size > 255 then return nil, "name longer than 255 bytes" end
      labels[#labels + 1] = sub(data, pos + 1, pos + len)
      pos = pos + len + 1
    end
  end
end

local function ipv6(rdata)
  local groups = {}
  for i = 1, 16, 2 do
    groups[#groups + 1] = format("%x", byte(rdata, i) * 256 + byte(rdata, i + 1))
  end
  return concat(groups, ":")
end

local function txt_strings(rdata)
  local strings, pos = {}, 1
  while pos <= #rdata do
    local len = byte(rdata, pos)
    if pos + len > #rdata then return nil end
    strings[#strings + 1] = sub(rdata, pos + 1, pos + len)
    pos = pos + len + 1
  end
  if #strings == 1 then return strings[1] end
  return strings
end

-- one resource record's data into the answer table ans; nil, err when it does not parse
local function parse_rdata(ans, data, pos, rdlen)
  local rdata, kind = sub(data, pos, pos + rdlen - 1), ans.type
  if kind == _M.TYPE_A then
    if rdlen ~= 4 then return nil, "bad A record" end
    ans.address = format("%d.%d.%d.%d", byte(rdata, 1, 4))
  elseif kind == _M.TYPE_AAAA then
    if rdlen ~= 16 then return nil, "bad AAAA record" end
    ans.address = ipv6(rdata)
  elseif kind == _M.TYPE_CNAME or kind == _M.TYPE_NS or kind == _M.TYPE_PTR then
    local name, err = parse_name(data, pos)
    if not name then return nil, err end
    local field = kind == _M.TYPE_CNAME and "cname" or kind == _M.TYPE_NS and "nsdname"
                  or "ptrdname"
    ans[field] = name
  elseif kind == _M.TYPE_MX then
    if rdlen < 3 then return nil, "bad MX record" end
    local exchange, err = parse_name(data, pos + 2)
    if not exchange then return nil, err end
    ans.preference, ans.exchange = u16(data, pos), exchange
  elseif kind == _M.TYPE_TXT then
    local txt = txt_strings(rdata)
    if not txt then return nil, "bad TXT record" end
    ans.txt = txt
  else
    ans.rdata = rdata
  end
  return true
end

-- a reply to the query of this id: answers (with errcode/errstr on an error code), or nil, err;
-- "other id" when the reply is for another query
local function parse_reply(data, id)
  if #data < 12 then return nil, "reply shorter than a header" end
  if u16(data, 1) ~= id then return nil, "other id" end
  local flags = u16(data, 3)
  if band(flags, 0x8000) == 0 then return nil, "not a reply" end
  if band(flags, 0x0200) ~= 0 then return nil, "truncated reply (no TCP fallback)" end
  local qdcount, ancount = u16(data, 5), u16(data, 7)
  local answers = {}
  local rcode = band(flags, 0x0f)
  if rcode ~= 0 then
    answers.errcode, answers.errstr = rcode, ERRSTR[rcode] or ("error code " .. rcode)
    return answers
  end
  local pos = 13
  for _ = 1, qdcount do
    local name, at = parse_name(data, pos)
    if not name then return nil, at end
    pos = at + 4
  end
  for i = 1, ancount do
    local name, at = parse_name(data, pos)
    if not name then return nil, at end
    local kind, class, ttl, rdlen = u16(data, at), u16(data, at + 2), u32(data, at + 4),
                                    u16(data, at + 8)
    if not rdlen or at + 10 + rdlen - 1 > #data then return nil, "record past the end" end
    local ans = { name = name, type = kind, class = class, ttl = ttl }
    local ok, err = parse_rdata(ans, data, at + 10, rdlen)
    if not ok then return nil, err end
    answers[i] = ans
    pos = at + 10 + rdlen
  end
  return answers
end

-- the query for name (no trailing dot needed), or nil, err
local function build_query(id, name, qtype)
  local parts = { char(rshift(id, 8), band(id, 0xff)), "\1\0\0\1\0\0\0\0\0\0" }
  if sub(name, -1) == "." then name = sub(name, 1, -2) end
  if #name < 1 or #name > 253 then return nil, "bad name (1..253 bytes)" end
  local pos = 1
  while pos <= #name + 1 do
    local stop = find(name, ".", pos, true) or #name + 1
    local label = sub(name, pos, stop - 1)
    if #label < 1 or #label > 63 then return nil, "bad name (labels of 1..63 bytes)" end
    parts[#parts + 1] = char(#label) .. label
    pos = stop + 1
  end
  parts[#parts + 1] = "\0" .. char(rshift(qtype, 8), band(qtype, 0xff)) .. "\0\1"
  return concat(parts)
end

_M.parse_reply, _M.build_query = parse_reply, build_query  -- for tests

-- the object

function _M.new(self, opts)
  if type(opts) ~= "table" or type(opts.nameservers) ~= "table" or not opts.nameservers[1] then
    return nil, "nameservers (a table of { host, port }) expected"
  end
  return setmetatable({ nameservers = opts.nameservers, timeout = opts.timeout or 2000,
                        retrans = opts.retrans or 5 }, mt)
end

function _M.set_timeout(self, ms)
  self.timeout = ms
end

local function ask(self, server, query, id)
  local udp = ngx.socket.udp()
  udp:settimeout(self.timeout)
  local host, port = server, 53
  if type(server) == "table" then host, port = server[1], server[2] or 53 end
  local ok, err = udp:setpeername(host, port)
  if not ok then return nil, err end
  ok, err = udp:send(query)
  if not ok then udp:close() return nil, err end
  for _ = 1, MAX_SKIPPED + 1 do
    local data, rerr = udp:receive()
    if not data then udp:close() return nil, rerr end
    local answers, perr = parse_reply(data, id)
    if perr ~= "other id" then
      udp:close()
      return answers, perr
    end
  end
  udp:close()
  return nil, "only replies with another id"
end

function _M.query(self, name, opts)
  if type(name) ~= "string" then return nil, "name (a string) expected" end
  local qtype = opts and opts.qtype or _M.TYPE_A
  local id = random(0, 65535)
  local query, qerr = build_query(id, name, qtype)
  if not query then return nil, qerr end
  local err
  local servers = self.nameservers
  for try = 1, self.retrans do
    local answers
    answers, err = ask(self, servers[(try - 1) % #servers + 1], query, id)
    if answers then return answers end
    if err ~= "timeout" then break end
  end
  return nil, "query " .. name .. ": " .. tostring(err)
end

return _M
