-- resty_mysql.lua: a MySQL/MariaDB check written the OpenResty way, on resty.sdmysql (the client
-- module in resty/ next to this file): a real login (mysql_native_password), then
-- "SELECT 1, @@global.read_only"; up when the row comes back.
--
-- params (key=value, separated by ";" or blanks):
--   user=NAME        the login (required; the user needs no privilege)
--   password=SECRET  its password (default: none)
--   database=NAME    the database to log in to (optional)
--   read_only=0|1    the real is up only when @@global.read_only is this (1: a replica)
--
-- <tester proto="lua" testport="3306" script="/usr/share/surealived/lua_testers/resty_mysql.lua"
--         params="user=health; password=secret; read_only=0"/>

local mysql = require "resty.sdmysql"

function check(t)
  local args = t.args
  if type(args.user) ~= "string" then return false, "params: user=NAME is missing" end
  local db = mysql:new()
  local ok, err, code = db:connect{ host = t.addr, port = t.port, user = args.user,
                                    password = args.password or "", database = args.database }
  if not ok then return false, "login: " .. err .. (code and " (" .. code .. ")" or "") end
  local rows, qerr, qcode = db:query("SELECT 1 AS alive, @@global.read_only AS ro")
  if not rows then return false, "query: " .. qerr .. (qcode and " (" .. qcode .. ")" or "") end
  local row = rows[1]
  if not row or row.alive ~= 1 then return false, "SELECT 1 gave no row" end
  if args.read_only and tostring(row.ro) ~= args.read_only then
    return false, "read_only is " .. tostring(row.ro) .. ", expected " .. tostring(args.read_only)
  end
  db:close()
  return true, db:server_ver()
end
