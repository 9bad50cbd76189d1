"""Testers written the OpenResty way: the shipped resty_*.lua scripts and a memcached script, on
the client modules in lua_testers/resty/ (resty.sdredis, sdmemcached, sdmysql, sddns, found
through the script's folder or through lua_path), through the daemon's Lua tester, against real
redis-server, memcached, MariaDB and dnsmasq on loopback, and against servers that misbehave:
every misbehaviour is a down with a clear reason, never a Lua error."""

from __future__ import annotations

import random
import shutil
import socket
import subprocess
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest

from surealived.config.main import folder_templates
from surealived.lua import ScriptRegistry
from surealived.tester_api import Result
from tests.servers import bad_udp_server, dnsmasq, mariadb, memcached, redis

from .helpers import LUA_TESTERS, Checks, Step, dialogue_server, lua_check, write_script

pytestmark = pytest.mark.asyncio

RESTY = LUA_TESTERS / "resty"
REDIS = str(LUA_TESTERS / "resty_redis.lua")
MYSQL = str(LUA_TESTERS / "resty_mysql.lua")
DNS = str(LUA_TESTERS / "resty_dns.lua")

# a script of the operator's own, elsewhere: it finds the modules through lua_path
MEMCACHED_CHECK = """
local memcached = require "resty.sdmemcached"

function check(t)
  local memc = memcached:new()
  memc:set_timeout(1000)
  local ok, err = memc:connect(t.addr, t.port)
  if not ok then return false, "connect: " .. err end
  local version, verr = memc:version()
  if not version then return false, "version: " .. verr end
  local key = t.args.key
  if t.args.set then
    local stored, serr = memc:set(key, t.args.set, 60)
    if not stored then return false, "set: " .. serr end
  end
  if key then
    local value, flags, gerr = memc:get(key)
    if gerr then return false, "get: " .. gerr end
    if not value then return false, "key " .. key .. " not found" end
    return true, value .. " " .. flags
  end
  local stats, serr = memc:stats()
  if not stats then return false, "stats: " .. serr end
  memc:close()
  return true, version .. " pid " .. tostring(stats.pid)
end
"""


def module_path() -> ScriptRegistry:
    """Scripts whose lua_path is lua_testers/ (so resty.sdmemcached is resty/sdmemcached.lua)."""
    return ScriptRegistry(lua_path=folder_templates(str(LUA_TESTERS)))


def down(result: Result, reason: str) -> None:
    """Down with exactly this reason (a Lua error would read "lua: ...")."""
    assert (result.ok, result.reason) == (False, reason), result


async def played(script: str, steps: Sequence[Step], params: str = "",
                 scripts: ScriptRegistry | None = None, timeout: float = 3.0) -> Result:
    async with dialogue_server(steps) as server:
        result, _ = await lua_check(script, server.port, params=params, scripts=scripts,
                                    timeout=timeout)
    return result


def redis_set(port: int, key: str, value: str) -> None:
    with socket.create_connection(("127.0.0.1", port), 2) as sock:
        sock.sendall(f"SET {key} {value}\r\n".encode())
        assert sock.recv(100) == b"+OK\r\n"


# -- redis ------------------------------------------------------------------------------------

async def test_redis_against_redis_server() -> None:
    with redis() as port:
        redis_set(port, "ready", "yes")
        plain, _ = await lua_check(REDIS, port)
        key, _ = await lua_check(REDIS, port, params="key=ready value=yes")
        other, _ = await lua_check(REDIS, port, params="key=ready value=no")
        missing, _ = await lua_check(REDIS, port, params="key=nokey")
    with redis("s3cret") as port:
        good, _ = await lua_check(REDIS, port, params="password=s3cret")
        bad, _ = await lua_check(REDIS, port, params="password=wrong")
        none, _ = await lua_check(REDIS, port)
    assert plain.ok and key.ok and good.ok, (plain, key, good)
    down(other, "key ready is yes, expected no")
    down(missing, "key nokey not found")
    assert not bad.ok and bad.reason.startswith("AUTH: WRONGPASS"), bad
    assert not none.ok and none.reason.startswith("PING: NOAUTH"), none


@pytest.mark.parametrize(("reply", "reason"), [
    (b"$abc\r\n", "PING: bad bulk length abc"),
    (b"$99999999999999\r\n", "PING: bad bulk length 99999999999999"),
    (b"$0x10\r\n", "PING: bad bulk length 0x10"),
    (b"*99999999\r\n", "PING: bad array length 99999999"),
    (b"*1\r\n" * 20, "PING: arrays nested deeper than 8"),
    (b"*1\r\n$4\r\nPONG\r\n", "PING answered a table"),
    (b"$4\r\nPONGxx", "PING: bulk string not ended by CRLF"),
    (b"$10\r\nPON", "PING: closed"),
    (b"+PO", "PING: closed"),
    (b"HTTP/1.1 400 Bad Request\r\n\r\n", "PING: bad reply: HTTP/1.1 400 Bad Request"),
    (b"-LOADING Redis is loading the dataset in memory\r\n",
     "PING: LOADING Redis is loading the dataset in memory"),
])
async def test_redis_against_misbehaving_servers(reply: bytes, reason: str) -> None:
    down(await played(REDIS, [("expect", b"PING\r\n"), ("send", reply), ("close",)]), reason)


async def test_redis_key_of_another_type() -> None:
    steps: list[Step] = [("expect", b"PING\r\n"), ("send", b"+PONG\r\n"),
                         ("expect", b"k\r\n"), ("send", b":12\r\n")]
    down(await played(REDIS, steps, "key=k"), "GET answered a number")


async def test_redis_garbage_greeting_before_the_reply() -> None:
    result = await played(REDIS, [("send", bytes(range(1, 256)) * 4), ("close",)])
    assert not result.ok and result.reason.startswith("PING: bad reply: "), result


async def test_the_readme_example(tmp_path: Path) -> None:
    """lua_testers/README.md's tester on resty.sdredis does what the README says."""
    readme = (LUA_TESTERS / "README.md").read_text()
    section = readme[readme.index("## Using OpenResty libraries"):]
    example = section[section.index("```lua\n") + 7:section.index("```\n\nWhat does not")]
    (tmp_path / "resty").symlink_to(RESTY)
    script = write_script(tmp_path, example)
    with redis() as port:
        missing, _ = await lua_check(script, port)
        redis_set(port, "ready", "yes")
        ready, _ = await lua_check(script, port)
    down(missing, "ready is not yes")
    assert ready.ok, ready


# -- memcached --------------------------------------------------------------------------------

async def test_memcached_through_lua_path(tmp_path: Path) -> None:
    script = write_script(tmp_path, MEMCACHED_CHECK)
    scripts = module_path()
    with memcached() as port:
        stats, _ = await lua_check(script, port, scripts=scripts)
        missing, _ = await lua_check(script, port, params="key=k", scripts=scripts)
        stored, _ = await lua_check(script, port, params="key=k set=v1", scripts=scripts)
        found, _ = await lua_check(script, port, params="key=k", scripts=scripts)
        bad_key, _ = await lua_check(script, port, params="key=a\x01b", scripts=scripts)
    assert stats.ok and stats.reason[:1].isdigit() and " pid " in stats.reason, stats
    down(missing, "key k not found")
    assert (stored.ok, stored.reason, found.ok, found.reason) == (True, "v1 0", True, "v1 0")
    down(bad_key, "get: bad key (1..250 bytes, no blanks or control characters)")


@pytest.mark.parametrize(("reply", "reason"), [
    (b"VALUE k 0 5\r\nab", "get: closed"),
    (b"VALUE k 0 99999999999\r\n", "get: bad get reply VALUE k 0 99999999999"),
    (b"VALUE k 0 2000000\r\n", "get: bad get reply VALUE k 0 2000000"),
    (b"VALUE k x 2\r\nab\r\nEND\r\n", "get: bad get reply VALUE k x 2"),
    (b"VALUE other 0 2\r\nab\r\nEND\r\n", "get: bad get reply VALUE other 0 2"),
    (b"VALUE k 0 2\r\nabXY", "get: value not ended by CRLF"),
    (b"VALUE k 0 2\r\nab\r\nVALUE", "get: closed"),
    (b"SERVER_ERROR out of memory\r\n", "get: SERVER_ERROR out of memory"),
])
async def test_memcached_get_against_misbehaving_servers(tmp_path: Path, reply: bytes,
                                                        reason: str) -> None:
    script = write_script(tmp_path, MEMCACHED_CHECK)
    steps: list[Step] = [("expect", b"version\r\n"), ("send", b"VERSION 1.6.0\r\n"),
                         ("expect", b"get k\r\n"), ("send", reply), ("close",)]
    down(await played(script, steps, "key=k", module_path()), reason)


@pytest.mark.parametrize(("reply", "reason"), [
    (b"ERROR\r\n", "version: ERROR"),
    (b"HTTP/1.1 400 Bad Request\r\n", "version: bad version reply HTTP/1.1 400 Bad Request"),
    (b"", "version: closed"),
])
async def test_memcached_version_against_misbehaving_servers(tmp_path: Path, reply: bytes,
                                                            reason: str) -> None:
    script = write_script(tmp_path, MEMCACHED_CHECK)
    steps: list[Step] = [("expect", b"version\r\n"), ("send", reply), ("close",)]
    down(await played(script, steps, scripts=module_path()), reason)


# -- MySQL / MariaDB --------------------------------------------------------------------------

async def test_mysql_against_mariadb() -> None:
    with mariadb() as db:
        login = f"user={db.user} password={db.password}"
        good, _ = await lua_check(MYSQL, db.port, params=login)
        writable, _ = await lua_check(MYSQL, db.port, params=login + " read_only=0")
        replica, _ = await lua_check(MYSQL, db.port, params=login + " read_only=1")
        wrong, _ = await lua_check(MYSQL, db.port, params=f"user={db.user} password=wrong")
        nobody, _ = await lua_check(MYSQL, db.port, params="user=nobody password=x")
        no_db, _ = await lua_check(MYSQL, db.port, params=login + " database=nodb")
        no_user, _ = await lua_check(MYSQL, db.port)
        cli = subprocess.run(["mariadb", "-h127.0.0.1", f"-P{db.port}", f"-u{db.user}",
                              f"-p{db.password}", "-Nse", "SELECT VERSION()"],
                             capture_output=True, text=True, timeout=30)
    assert good.ok and writable.ok, (good, writable)
    # the version as the server tells it to a client
    assert good.reason == "5.5.5-" + cli.stdout.strip(), (good, cli)
    down(replica, "read_only is 0, expected 1")
    down(wrong, f"login: Access denied for user '{db.user}'@'127.0.0.1' (using password: YES)"
                " (1045)")
    down(nobody, "login: Access denied for user 'nobody'@'127.0.0.1' (using password: YES)"
                 " (1045)")
    down(no_db, f"login: Access denied for user '{db.user}'@'127.0.0.1' to database 'nodb'"
                " (1044)")
    down(no_user, "params: user=NAME is missing")


KEPT_LOGIN = """
local mysql = require "resty.sdmysql"

function check(t)
  local db = mysql:new()
  local ok, err = db:connect{ host = t.addr, port = t.port, user = t.args.user,
                              password = t.args.password }
  if not ok then return false, "login: " .. err end
  local rows, qerr = db:query("SELECT CONNECTION_ID() AS id")
  if not rows then return false, "query: " .. qerr end
  local reused = db:get_reused_times()
  local kept, kerr = db:set_keepalive(10000, 2)
  if not kept then return false, "keepalive: " .. kerr end
  return true, rows[1].id .. " " .. reused
end
"""


async def test_mysql_login_kept_alive_for_the_next_check(tmp_path: Path) -> None:
    """A connection that set_keepalive pooled comes back logged in: the next check of the same
    script and params skips the handshake and queries on the same server thread."""
    (tmp_path / "resty").symlink_to(RESTY)
    script = write_script(tmp_path, KEPT_LOGIN)
    checks = Checks()
    try:
        with mariadb() as db:
            login = f"user={db.user} password={db.password}"
            first = await checks.run(script, db.port, params=login)
            second = await checks.run(script, db.port, params=login)
    finally:
        checks.close()
    assert first.ok and second.ok, (first, second)
    thread, reused = first.reason.split()
    assert (reused, second.reason) == ("0", f"{thread} 1")


def packet(payload: bytes, seq: int) -> bytes:
    return len(payload).to_bytes(3, "little") + bytes([seq]) + payload


# protocol 4.1, secure connection, plugin auth, long password
CAPABILITIES = 0x0008_8201


def greeting(plugin: bytes = b"mysql_native_password", protocol: int = 10,
             caps: int = CAPABILITIES) -> bytes:
    return packet(bytes([protocol]) + b"8.0.99-fake\0" + (7).to_bytes(4, "little")
                  + b"abcdefgh\0" + (caps & 0xFFFF).to_bytes(2, "little") + b"\x21\x02\0"
                  + (caps >> 16).to_bytes(2, "little") + b"\x15" + b"\0" * 10
                  + b"ijklmnopqrst\0" + plugin + b"\0", 0)


LOGIN = ("expect", b"mysql_native_password\0")  # the end of our login packet
QUERY = ("expect", b"AS ro")                     # the end of the tester's query
OK_LOGIN = ("send", packet(b"\0\0\0\x02\0\0\0", 2))


def column(name: bytes, kind: int) -> bytes:
    def lenenc(text: bytes) -> bytes:
        return bytes([len(text)]) + text
    return (lenenc(b"def") + lenenc(b"") + lenenc(b"") + lenenc(b"") + lenenc(name)
            + lenenc(b"") + b"\x0c\x3f\0\x01\0\0\0" + bytes([kind]) + b"\x81\0\0\0\0")


EOF_PACKET = b"\xfe\0\0\x02\0"
COLUMNS = packet(b"\x02", 1) + packet(column(b"alive", 8), 2) + packet(column(b"ro", 8), 3) \
    + packet(EOF_PACKET, 4)


@pytest.mark.parametrize(("steps", "reason"), [
    ([("send", b"HTTP/1.1 400 Bad Request\r\n\r\n")],
     "login: packet of 5526600 bytes, over max_packet_size"),
    ([("send", greeting(protocol=9))], "login: protocol version 9, expected 10"),
    ([("send", packet(b"\x0a5.7\0\1\2", 0))], "login: bad greeting"),
    ([("send", greeting()[:30])], "login: closed"),
    ([("send", b"\0\0\0\0")], "login: empty packet"),
    ([("send", greeting()[:4] + b"\x0a" + b"x" * 200)], "login: bad greeting"),
    ([("send", greeting(caps=0x1))], "login: server too old (no protocol 4.1 authentication)"),
    ([("send", packet(b"\xff\x10\x04#08004Too many connections", 0))],
     "login: Too many connections (1040)"),
    ([("send", packet(b"\xff\x10\x04Too many connections", 0))],
     "login: Too many connections (1040)"),
    ([("send", greeting()), LOGIN, ("send", packet(b"\0\0\0\x02\0\0\0", 5))],
     "login: packet out of order"),
    ([("send", greeting()), LOGIN,
      ("send", packet(b"\xfecaching_sha2_password\0" + b"s" * 20 + b"\0", 2))],
     "login: authentication plugin caching_sha2_password is not supported"),
    ([("send", greeting()), LOGIN, ("send", packet(b"\xfemysql_native_password\0ab", 2))],
     "login: bad auth switch request"),
    ([("send", greeting()), LOGIN, ("send", packet(b"\x01\x02", 2))],
     "login: bad reply to the login"),
    ([("send", greeting()), LOGIN, OK_LOGIN, QUERY, ("send", packet(b"\xfc\x88\x13", 1))],
     "query: bad column count"),
    ([("send", greeting()), LOGIN, OK_LOGIN, QUERY,
      ("send", packet(b"\x02", 1) + packet(b"\x03de", 2))], "query: bad column definition"),
    ([("send", greeting()), LOGIN, OK_LOGIN, QUERY,
      ("send", COLUMNS + packet(b"\x011\xfe\xff\xff\xff\xff\xff\xff\xff\x7f", 5))],
     "query: bad row"),
    ([("send", greeting()), LOGIN, OK_LOGIN, QUERY, ("send", COLUMNS + packet(b"\x011", 5))],
     "query: bad row"),
    ([("send", greeting()), LOGIN, OK_LOGIN, QUERY, ("send", COLUMNS[:-3])], "query: closed"),
    ([("send", greeting()), LOGIN, OK_LOGIN, QUERY, ("send", COLUMNS + packet(EOF_PACKET, 5))],
     "SELECT 1 gave no row"),
    ([("send", greeting()), LOGIN, OK_LOGIN, QUERY,
      ("send", packet(b"\xff\x7a\x04#42000You have an error", 1))],
     "query: You have an error (1146)"),
])
async def test_mysql_against_misbehaving_servers(steps: list[Step], reason: str) -> None:
    down(await played(MYSQL, [*steps, ("close",)], "user=u password=p"), reason)


async def test_mysql_against_a_good_fake_server() -> None:
    """What the fake servers above break: this one is well formed (native login, one row)."""
    row = packet(b"\x011\x010", 5)
    steps: list[Step] = [("send", greeting()), LOGIN, OK_LOGIN, QUERY,
                         ("send", COLUMNS + row + packet(EOF_PACKET, 6))]
    result = await played(MYSQL, steps, "user=u password=p read_only=0")
    assert (result.ok, result.reason) == (True, "8.0.99-fake"), result


# -- DNS --------------------------------------------------------------------------------------

async def test_dns_against_dnsmasq() -> None:
    with dnsmasq() as dns:
        a, _ = await lua_check(DNS, dns.port, params="name=www.example.test")
        same, _ = await lua_check(DNS, dns.port,
                                  params="name=www.example.test address=192.0.2.10")
        other, _ = await lua_check(DNS, dns.port,
                                   params="name=www.example.test address=192.0.2.99")
        txt, _ = await lua_check(DNS, dns.port, params="name=txt.example.test type=TXT")
        nxdomain, _ = await lua_check(DNS, dns.port, params="name=nope.example.test")
        no_aaaa, _ = await lua_check(DNS, dns.port, params="name=www.example.test type=AAAA")
        bad_type, _ = await lua_check(DNS, dns.port, params="name=www.example.test type=XX")
        bad_name, _ = await lua_check(DNS, dns.port, params="name=a..example.test")
    assert (a.ok, a.reason, same.ok, txt.ok) == (True, "192.0.2.10", True, True), (a, same, txt)
    down(other, "www.example.test is 192.0.2.10, expected 192.0.2.99")
    down(nxdomain, "nope.example.test: name error (rcode 3)")
    down(no_aaaa, "www.example.test: no answer of type AAAA")
    down(bad_type, "params: type XX is not known")
    down(bad_name, "bad name (labels of 1..63 bytes)")


def answer(query: bytes, records: bytes, count: int = 1, flags: int = 0x8180) -> bytes:
    """A reply to query (its ID and question) with ``count`` answers made of ``records``."""
    return (query[:2] + flags.to_bytes(2, "big") + b"\0\x01" + count.to_bytes(2, "big")
            + b"\0\0\0\0" + query[12:] + records)


A_RECORD_TAIL = b"\0\x01\0\x01\0\0\0\x3c\0\x04\xc0\0\x02\x0a"
QUESTION_END = 12 + len(b"\x03www\x07example\x04test\0") + 4  # where the answers start


@pytest.mark.parametrize(("make", "reason"), [
    # the answer's name points at itself, then at a later byte
    (lambda q: answer(q, bytes([0xC0, QUESTION_END]) + A_RECORD_TAIL),
     "compression pointer that does not point back"),
    (lambda q: answer(q, bytes([0xC0, QUESTION_END + 4]) + A_RECORD_TAIL),
     "compression pointer that does not point back"),
    # a label, then a pointer back to it: a name without end
    (lambda q: answer(q, b"\x01a\xc0" + bytes([QUESTION_END]) + A_RECORD_TAIL),
     "compression pointer that does not point back"),
    (lambda q: answer(q, b"\x3fabc"), "name past the end"),
    (lambda q: answer(q, b"\x80abc"), "bad label type"),
    (lambda q: answer(q, b"\x3f" + b"a" * 63), "name past the end"),
    (lambda q: answer(q, (b"\x3f" + b"a" * 63) * 5 + b"\0" + A_RECORD_TAIL),
     "name longer than 255 bytes"),
    (lambda q: answer(q, b"\xc0\x0c" + A_RECORD_TAIL, count=65535), "name past the end"),
    (lambda q: answer(q, b"\xc0\x0c\0\x01\0\x01\0\0\0\x3c\0\x05\xc0\0\x02\x0a\0"),
     "bad A record"),
    (lambda q: answer(q, b"\xc0\x0c\0\x01\0\x01\0\0\0\x3c\xff\xff\xc0\0\x02\x0a"),
     "record past the end"),
    (lambda q: answer(q, b"\xc0\x0c" + A_RECORD_TAIL, flags=0x8380),
     "truncated reply (no TCP fallback)"),
    (lambda q: answer(q, b"\xc0\x0c" + A_RECORD_TAIL, flags=0x0180), "not a reply"),
    (lambda q: q[:2] + b"\x81", "reply shorter than a header"),
])
async def test_dns_against_misbehaving_servers(make: Callable[[bytes], bytes],
                                               reason: str) -> None:
    async with bad_udp_server("scripted", reply=make) as port:
        result, _ = await lua_check(DNS, port, params="name=www.example.test")
    down(result, "query www.example.test: " + reason)


async def test_dns_a_server_that_never_answers_right() -> None:
    async with bad_udp_server("wrong_id") as port:
        wrong, _ = await lua_check(DNS, port, params="name=www.example.test", timeout=5)
    async with bad_udp_server("silent") as port:
        silent, _ = await lua_check(DNS, port, params="name=www.example.test", timeout=5)
    down(wrong, "query www.example.test: timeout")
    down(silent, "query www.example.test: timeout")


async def test_dns_good_reply_with_compressed_names() -> None:
    records = (b"\xc0\x0c\0\x05\0\x01\0\0\0\x3c\0\x05\x02cn\xc0\x10"  # CNAME cn.example.test
               + b"\xc0" + bytes([QUESTION_END + 12]) + A_RECORD_TAIL)  # its A
    async with bad_udp_server("scripted", reply=lambda q: answer(q, records, 2)) as port:
        result, _ = await lua_check(DNS, port, params="name=www.example.test")
    assert (result.ok, result.reason) == (True, "192.0.2.10"), result


# -- mutated replies --------------------------------------------------------------------------

def mutate(rng: random.Random, data: bytes) -> bytes:
    """data with a few bytes changed, cut, or inserted (lengths, pointers, CR, LF...)."""
    out = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        op = rng.random()
        if op < 0.4 and out:
            out[rng.randrange(len(out))] = rng.randrange(256)
        elif op < 0.6:
            del out[rng.randrange(len(out) + 1):]
        else:
            at = rng.randrange(len(out) + 1)
            out[at:at] = bytes([rng.choice((0, 0x3F, 0xC0, 0xFB, 0xFC, 0xFE, 0xFF, 10, 13))])
    return bytes(out)


GOOD_REPLIES = [b"+PONG\r\n", b"$4\r\nPONG\r\n", b"*2\r\n$1\r\na\r\n:1\r\n",
                b"*1\r\n*1\r\n-ERR x\r\n"]
GOOD_DNS = (b"\xc0\x0c\0\x05\0\x01\0\0\0\x3c\0\x05\x02cn\xc0\x10"
            + b"\xc0" + bytes([QUESTION_END + 12]) + A_RECORD_TAIL)
MUTANTS = 40  # per protocol, from a fixed seed


async def test_mutated_replies_are_a_verdict_never_a_lua_error() -> None:
    rng = random.Random(19)
    hello = greeting()
    rest = packet(b"\0\0\0\x02\0\0\0", 2) + COLUMNS + packet(b"\x011\x010", 5) \
        + packet(EOF_PACKET, 6)
    reasons = []
    for _ in range(MUTANTS):
        wrong = mutate(rng, hello + rest)
        at = len(hello)
        steps: list[Step] = [("send", wrong[:at]), LOGIN, ("send", wrong[at:at + 11]), QUERY,
                             ("send", wrong[at + 11:]), ("close",)]
        # a length that the bytes sent do not fill waits for the rest: until the deadline
        reasons.append((await played(MYSQL, steps, "user=u password=p", timeout=0.3)).reason)
        reply = mutate(rng, rng.choice(GOOD_REPLIES))
        steps = [("expect", b"PING\r\n"), ("send", reply), ("close",)]
        reasons.append((await played(REDIS, steps, timeout=0.3)).reason)

        def dns_reply(query: bytes) -> bytes:
            whole = answer(query, GOOD_DNS, 2)
            return whole[:2] + mutate(rng, whole[2:])  # the ID kept: a reply, not a timeout
        async with bad_udp_server("scripted", reply=dns_reply) as port:
            result, _ = await lua_check(DNS, port, params="name=www.example.test", timeout=0.3)
        reasons.append(result.reason)
    assert [r for r in reasons if r.startswith("lua")] == []


# -- the module files -------------------------------------------------------------------------

async def test_the_modules_are_plain_lua_51_and_set_no_globals() -> None:
    luac = shutil.which("luac5.1")
    if luac is None:
        pytest.skip("luac5.1 is not installed (contrib/ci-deps.sh installs lua5.1)")
    for path in sorted(RESTY.glob("*.lua")):
        out = subprocess.run([luac, "-l", "-p", str(path)], capture_output=True, text=True,
                             timeout=30)
        assert out.returncode == 0, out.stderr
        assert "SETGLOBAL" not in out.stdout, path
