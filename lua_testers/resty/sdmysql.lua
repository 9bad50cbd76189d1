-- resty.sdmysql: a small MySQL/MariaDB client on OpenResty-style cosockets: the v10 handshake,
-- a mysql_native_password login, and text queries (COM_QUERY) with their result sets.
--
--   local mysql = require "resty.sdmysql"
--   local db = mysql:new()
--   db:set_timeout(1000)                                        -- ms
--   local ok, err, errcode, sqlstate = db:connect{ host = host, port = port,
--       user = "checker", password = "secret", database = "app" } -- database optional
--   local rows, err, errcode, sqlstate = db:query("SELECT 1 AS one")
--   -- rows[1].one == 1; a statement without a result set gives { affected_rows = n, ... }
--   db:close()                                                  -- or db:set_keepalive(10000, 10)
--
-- Numbers come back as Lua numbers, NULL as ngx.null, everything else as strings. A server
-- error gives nil, message, code, sqlstate. A reply that breaks the protocol or the limits
-- (packets over max_packet_size, 1 MiB by default, more than 4096 columns or 10000 rows)
-- closes the connection, so a connection in an unknown state is never reused. Only
-- mysql_native_password logins are done (a server asking for another plugin is an error);
-- no TLS.

local byte, char, sub, find, rep = string.byte, string.char, string.sub, string.find, string.rep
local concat = table.concat
local setmetatable, tonumber, tostring, type = setmetatable, tonumber, tostring, type
local ngx = ngx
local bit = require "bit"
local band, bor, bxor, lshift = bit.band, bit.bor, bit.bxor, bit.lshift
local sha1_bin, null = ngx.sha1_bin, ngx.null

local _M = { _VERSION = "0.1" }
local mt = { __index = _M }

local MAX_COLUMNS = 4096   -- MySQL's own limit
local MAX_ROWS = 10000
local CLIENT_LONG_PASSWORD, CLIENT_LONG_FLAG, CLIENT_CONNECT_WITH_DB = 0x1, 0x4, 0x8
local CLIENT_PROTOCOL_41, CLIENT_TRANSACTIONS, CLIENT_SECURE_CONNECTION = 0x200, 0x2000, 0x8000
local CLIENT_PLUGIN_AUTH = 0x80000
local COM_QUERY = 3
local NATIVE = "mysql_native_password"
-- column types whose text is a number
local NUMERIC = { [1] = true, [2] = true, [3] = true, [4] = true, [5] = true, [8] = true,
                  [9] = true, [13] = true }

-- pure parsing: each takes the payload and a position, returns the value and the next position,
-- or nil when the payload ends too soon

local function int(data, pos, n)
  if pos + n - 1 > #data then return nil end
  local value, scale = 0, 1
  for i = pos, pos + n - 1 do
    value = value + byte(data, i) * scale
    scale = scale * 256
  end
  return value, pos + n
end

local function cstring(data, pos)
  local stop = find(data, "\0", pos, true)
  if not stop then return nil end
  return sub(data, pos, stop - 1), stop + 1
end

-- a length-encoded integer; NULL (0xfb) is null
local function lenenc(data, pos)
  local first = byte(data, pos)
  if not first then return nil end
  if first < 0xfb then return first, pos + 1 end
  if first == 0xfb then return null, pos + 1 end
  if first == 0xfc then return int(data, pos + 1, 2) end
  if first == 0xfd then return int(data, pos + 1, 3) end
  if first == 0xfe then return int(data, pos + 1, 8) end
  return nil
end

local function lenenc_string(data, pos)
  local len, at = lenenc(data, pos)
  if len == nil or len == null then return len, at end
  if at + len - 1 > #data then return nil end
  return sub(data, at, at + len - 1), at + len
end

local function le(value, n)
  local bytes = {}
  for i = 1, n do
    bytes[i] = char(value % 256)
    value = (value - value % 256) / 256
  end
  return concat(bytes)
end

-- mysql_native_password: SHA1(password) xor SHA1(scramble .. SHA1(SHA1(password)))
local function native_token(password, scramble)
  if password == "" then return "" end
  local stage1 = sha1_bin(password)
  local mask = sha1_bin(scramble .. sha1_bin(stage1))
  local out = {}
  for i = 1, #stage1 do
    out[i] = char(bxor(byte(stage1, i), byte(mask, i)))
  end
  return concat(out)
end

local function parse_error(payload)
  local code = int(payload, 2, 2) or 0
  local sqlstate, at = nil, 4
  if sub(payload, 4, 4) == "#" then sqlstate, at = sub(payload, 5, 9), 10 end
  return sub(payload, at), code, sqlstate
end

-- the greeting (handshake v10): { version, id, scramble, capabilities, plugin } or nil, err
local function parse_greeting(payload)
  local protocol = byte(payload, 1)
  if protocol ~= 10 then
    return nil, "protocol version " .. tostring(protocol) .. ", expected 10"
  end
  local version, pos = cstring(payload, 2)
  if not version then return nil, "bad greeting" end
  local id
  id, pos = int(payload, pos, 4)
  if not id or pos + 8 > #payload then return nil, "bad greeting" end
  local scramble = sub(payload, pos, pos + 7)
  local caps_low = int(payload, pos + 9, 2)
  if not caps_low then return nil, "bad greeting" end
  local caps_high, data_len = int(payload, pos + 14, 2) or 0, byte(payload, pos + 16) or 0
  local caps = caps_low + caps_high * 65536
  local plugin
  if band(caps, CLIENT_SECURE_CONNECTION) ~= 0 then
    -- the rest of the scramble: max(13, data_len - 8) bytes, the last a NUL
    local rest = data_len - 8
    if rest < 13 then rest = 13 end
    local at = pos + 27
    if at + rest - 1 > #payload then return nil, "bad greeting" end
    scramble = scramble .. sub(payload, at, at + rest - 2)
    if band(caps, CLIENT_PLUGIN_AUTH) ~= 0 then
      plugin = cstring(payload, at + rest) or sub(payload, at + rest)
    end
  end
  return { version = version, id = id, scramble = scramble, capabilities = caps,
           plugin = plugin or NATIVE }
end

-- one column definition (protocol 4.1): name, type
local function parse_column(payload)
  local pos = 1
  for _ = 1, 4 do  -- catalog, schema, table, org_table
    local _, at = lenenc_string(payload, pos)
    if not at then return nil end
    pos = at
  end
  local name, at = lenenc_string(payload, pos)
  if type(name) ~= "string" then return nil end
  local _, at2 = lenenc_string(payload, at)  -- org_name
  if not at2 then return nil end
  -- fixed fields: length 0x0c, charset 2, column length 4, then the type
  local kind = byte(payload, at2 + 7)
  if not kind then return nil end
  return { name = name, type = kind }
end

-- OK packet: affected_rows, insert_id, server_status, warning_count
local function parse_ok(payload)
  local affected, pos = lenenc(payload, 2)
  local insert_id
  if affected then insert_id, pos = lenenc(payload, pos) end
  if affected == nil or affected == null or insert_id == nil or insert_id == null then
    return nil
  end
  local status, warnings = int(payload, pos, 2), int(payload, pos + 2, 2)
  return { affected_rows = affected, insert_id = insert_id, server_status = status,
           warning_count = warnings }
end

local function is_eof(payload)
  return byte(payload, 1) == 0xfe and #payload < 9
end

_M.parse_greeting, _M.native_token = parse_greeting, native_token  -- for tests

-- the object

function _M.new(self)
  local sock, err = ngx.socket.tcp()
  if not sock then return nil, err end
  return setmetatable({ sock = sock, max_packet_size = 1024 * 1024 }, mt)
end

function _M.set_timeout(self, ms)
  return self.sock:settimeout(ms)
end

function _M.get_reused_times(self)
  return self.sock:getreusedtimes()
end

function _M.set_keepalive(self, idle_ms, size)
  return self.sock:setkeepalive(idle_ms, size)
end

function _M.close(self)
  return self.sock:close()
end

function _M.server_ver(self)
  return self.server_version
end

-- the connection is in an unknown state: close it, and say why
local function broken(self, err)
  self.sock:close()
  return nil, err
end

local function read_packet(self)
  local header, err = self.sock:receive(4)
  if not header then return broken(self, err) end
  local len, seq = int(header, 1, 3), byte(header, 4)
  if len > self.max_packet_size then
    return broken(self, "packet of " .. len .. " bytes, over max_packet_size")
  end
  if seq ~= self.seq then return broken(self, "packet out of order") end
  self.seq = (seq + 1) % 256
  local payload, perr = self.sock:receive(len)
  if not payload then return broken(self, perr) end
  if len == 0 then return broken(self, "empty packet") end
  return payload
end

local function send_packet(self, payload)
  local packet = { le(#payload, 3), char(self.seq), payload }
  self.seq = (self.seq + 1) % 256
  return self.sock:send(packet)
end

-- after the login packet: OK, an error, or an auth switch to a plugin we may speak
local function login_result(self, password)
  for _ = 1, 2 do
    local payload, err = read_packet(self)
    if not payload then return nil, err end
    local first = byte(payload, 1)
    if first == 0x00 then return 1 end
    if first == 0xff then
      local msg, code, sqlstate = parse_error(payload)
      self.sock:close()
      return nil, msg, code, sqlstate
    end
    if first ~= 0xfe then return broken(self, "bad reply to the login") end
    local plugin, at = cstring(payload, 2)
    if plugin ~= NATIVE then
      return broken(self, "authentication plugin " .. tostring(plugin) .. " is not supported")
    end
    local scramble = sub(payload, at, at + 19)
    if #scramble ~= 20 then return broken(self, "bad auth switch request") end
    local bytes, serr = send_packet(self, native_token(password, scramble))
    if not bytes then return nil, serr end
  end
  return broken(self, "authentication switched twice")
end

function _M.connect(self, opts)
  if type(opts) ~= "table" then return nil, "connect options (a table) expected" end
  local user, password, database = opts.user or "", opts.password or "", opts.database
  if type(user) ~= "string" or type(password) ~= "string" then
    return nil, "user and password must be strings"
  end
  if tonumber(opts.max_packet_size) then self.max_packet_size = tonumber(opts.max_packet_size) end
  local pool = opts.pool or (user .. ":" .. (database or "") .. ":" .. tostring(opts.host)
                             .. ":" .. tostring(opts.port))
  local ok, err = self.sock:connect(opts.host, opts.port, { pool = pool })
  if not ok then return nil, err end
  if (self.sock:getreusedtimes() or 0) > 0 then return 1 end  -- logged in when it was pooled
  self.seq = 0
  local payload, rerr = read_packet(self)
  if not payload then return nil, rerr end
  if byte(payload, 1) == 0xff then
    local msg, code, sqlstate = parse_error(payload)
    self.sock:close()
    return nil, msg, code, sqlstate
  end
  local greeting, gerr = parse_greeting(payload)
  if not greeting then return broken(self, gerr) end
  local needed = bor(CLIENT_PROTOCOL_41, CLIENT_SECURE_CONNECTION)
  if band(greeting.capabilities, needed) ~= needed then
    return broken(self, "server too old (no protocol 4.1 authentication)")
  end
  self.server_version = greeting.version
  local caps = bor(CLIENT_LONG_PASSWORD, CLIENT_LONG_FLAG, CLIENT_PROTOCOL_41,
                   CLIENT_TRANSACTIONS, CLIENT_SECURE_CONNECTION, CLIENT_PLUGIN_AUTH)
  if database then caps = bor(caps, CLIENT_CONNECT_WITH_DB) end
  caps = band(caps, greeting.capabilities)  -- ask only for what the server offers
  local token = native_token(password, sub(greeting.scramble, 1, 20))
  local bytes, serr = send_packet(self, concat({
    le(caps, 4), le(self.max_packet_size, 4), char(33), rep("\0", 23),
    user, "\0", char(#token), token, database and (database .. "\0") or "", NATIVE, "\0",
  }))
  if not bytes then return nil, serr end
  return login_result(self, password)
end

local function read_result_set(self, count)
  if count == null or count < 1 or count > MAX_COLUMNS then
    return broken(self, "bad column count")
  end
  local columns = {}
  for i = 1, count do
    local payload, err = read_packet(self)
    if not payload then return nil, err end
    local column = parse_column(payload)
    if not column then return broken(self, "bad column definition") end
    columns[i] = column
  end
  local eof, err = read_packet(self)
  if not eof then return nil, err end
  if not is_eof(eof) then return broken(self, "no EOF after the columns") end
  local rows = {}
  while true do
    local payload, rerr = read_packet(self)
    if not payload then return nil, rerr end
    if is_eof(payload) then return rows end
    if byte(payload, 1) == 0xff then return nil, parse_error(payload) end
    if #rows >= MAX_ROWS then return broken(self, "more than " .. MAX_ROWS .. " rows") end
    local row, pos = {}, 1
    for i = 1, count do
      local value
      value, pos = lenenc_string(payload, pos)
      if value == nil then return broken(self, "bad row") end
      if value ~= null and NUMERIC[columns[i].type] then value = tonumber(value) or value end
      row[columns[i].name] = value
    end
    rows[#rows + 1] = row
  end
end

function _M.query(self, sql)
  if type(sql) ~= "string" then return nil, "query (a string) expected" end
  self.seq = 0
  local bytes, err = send_packet(self, char(COM_QUERY) .. sql)
  if not bytes then return nil, err end
  local payload, rerr = read_packet(self)
  if not payload then return nil, rerr end
  local first = byte(payload, 1)
  if first == 0xff then return nil, parse_error(payload) end
  if first == 0x00 then
    local ok = parse_ok(payload)
    if not ok then return broken(self, "bad OK packet") end
    return ok
  end
  local count = lenenc(payload, 1)
  if count == nil then return broken(self, "bad column count") end
  return read_result_set(self, count)
end

return _M
