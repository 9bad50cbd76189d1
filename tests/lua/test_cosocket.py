"""The cosocket API: return conventions, timeouts, receive patterns, TLS, verdicts."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path

import pytest

from surealived.engine.flight import run_check
from surealived.engine.transcript import Transcript
from tests.servers import free_port, nginx
from tests.testers.helpers import settings

from .helpers import LuaTester, dialogue_server, lua_check, lua_target, write_script

pytestmark = pytest.mark.asyncio


def check_body(tmp_path: Path, body: str) -> str:
    return write_script(tmp_path, "function check(t)\nlocal s = sd.tcp()\n"
                                  "assert(s:connect(t.addr, t.port))\n" + body + "\nend\n")


async def test_read_timeout_consumes_the_partial_and_keeps_the_socket(tmp_path: Path) -> None:
    script = check_body(tmp_path, """
        s:settimeout(100)
        local data, err, partial = s:receive()
        if data or err ~= "timeout" then return false, "expected a timeout" end
        s:settimeout(2000)
        local line = s:receive()
        return partial == "la" and line == "te", tostring(partial) .. "|" .. tostring(line)""")
    async with dialogue_server([("send", b"la"), ("sleep", 0.4), ("send", b"te\r\n")]) as srv:
        result, _ = await lua_check(script, srv.port)
    assert result.ok, result


async def test_receive_patterns(tmp_path: Path) -> None:
    script = check_body(tmp_path, """
        local a = s:receive(3)
        local b = s:receive("*l")
        local reader = s:receiveuntil("--")
        local c = reader()
        local inc = s:receiveuntil("!", { inclusive = true })()
        local d = s:receiveany(100)
        local rest = s:receive("*a")
        local got = table.concat({a, b, c, inc, d, rest}, "|")
        return got == "abc|line|until|bang!|any|all the rest", got""")
    steps = [("send", b"abcline\r\nuntil--bang!"), ("sleep", 0.1), ("send", b"any"),
             ("sleep", 0.1), ("send", b"all the rest"), ("close",)]
    async with dialogue_server(steps) as srv:
        result, _ = await lua_check(script, srv.port)
    assert result.ok, result


async def test_receiveuntil_with_a_size_streams_pieces(tmp_path: Path) -> None:
    script = check_body(tmp_path, """
        local reader = s:receiveuntil("\\r\\n\\r\\n")
        local pieces = {}
        while true do
          local piece, err = reader(4)
          if not piece then if err then return false, err end break end
          pieces[#pieces + 1] = piece
        end
        return table.concat(pieces, ",") == "HTTP,/1.0, 200", table.concat(pieces, ",")""")
    async with dialogue_server([("send", b"HTTP/1.0 200\r\n\r\nbody")]) as srv:
        result, _ = await lua_check(script, srv.port)
    assert result.ok, result


async def test_closed_gives_the_partial_data(tmp_path: Path) -> None:
    script = check_body(tmp_path, """
        local data, err, partial = s:receive(10)
        local again, err2 = s:receive(1)
        return data == nil and err == "closed" and partial == "abc" and err2 == "closed",
               tostring(err) .. " " .. tostring(partial) .. " " .. tostring(err2)""")
    async with dialogue_server([("send", b"abc"), ("close",)]) as srv:
        result, _ = await lua_check(script, srv.port)
    assert result.ok, result


async def test_errors_are_short_and_lowercase(tmp_path: Path) -> None:
    script = write_script(tmp_path, """
        function check(t)
          local s = sd.tcp()
          local ok, err = s:connect(t.addr, t.port)
          local n, serr = s:send("x")
          local c, cerr = s:close()
          return false, table.concat({tostring(ok), err, serr, cerr}, "|")
        end""")
    port = free_port()
    result, _ = await lua_check(script, port)
    assert result.reason == "nil|connection refused|closed|closed"


async def test_programmer_mistakes_raise(tmp_path: Path) -> None:
    script = write_script(tmp_path, """
        function check(t)
          local s = sd.tcp()
          return s.connect(nil, t.port)
        end""")
    result, _ = await lua_check(script, 9)
    assert "bad argument #1 to 'connect' (socket expected" in result.reason


@pytest.mark.parametrize(("ret", "ok", "weight", "percent", "reason"), [
    ("true", True, None, False, ""),
    ("true, 'fine'", True, None, False, "fine"),
    ("false, 'nope'", False, None, False, "nope"),
    ("false", False, None, False, "check() returned false"),
    ("nil", False, None, False, "check() returned nil"),
    ("25", True, 25, False, ""),
    ("'50%'", True, 50, True, ""),
    ("'0%'", True, 0, True, ""),
    ("-1", False, None, False, "lua: check() returned weight -1 (valid: an integer 0..65535)"),
    ("1.5", False, None, False, "lua: check() returned weight 1.5"),
    ("'150%'", False, None, False, "lua: check() returned \"150%\""),
    ("{}", False, None, False, "lua: check() returned a table"),
])
async def test_verdicts(tmp_path: Path, ret: str, ok: bool, weight: int | None, percent: bool,
                        reason: str) -> None:
    script = write_script(tmp_path, f"function check(t) return {ret} end")
    result, _ = await lua_check(script, 9)
    assert (result.ok, result.weight, result.percent) == (ok, weight, percent)
    assert result.reason.startswith(reason), result.reason


async def test_target_fields_and_args(tmp_path: Path) -> None:
    script = write_script(tmp_path, """
        function check(t)
          local keys = {"addr", "port", "vname", "vaddr", "vport", "vproto", "vfwmark", "rname",
                        "rport", "params", "timeout", "ssl"}
          local out = {}
          for _, k in ipairs(keys) do out[#out + 1] = tostring(t[k]) end
          out[#out + 1] = t.args.user .. "/" .. t.args.password .. "/" .. tostring(t.args.flag)
          return false, table.concat(out, " ")
        end""")
    result, _ = await lua_check(script, 1234, params="user=u; password=p flag", timeout=2.5,
                                target={"vfwmark": 7})
    assert result.reason == ("127.0.0.1 1234 v1 192.0.2.1 80 tcp 7 r1 80 "
                             "user=u; password=p flag 2500 false u/p/true")

async def test_t_is_the_checks_own_table(tmp_path: Path) -> None:
    """``t`` reads, lists and changes as a plain table; what one check changes in it (fields,
    ``args``) is gone for the next check of the same target."""
    script = write_script(tmp_path, """
        function check(t)
          local seen = {}
          for k, v in pairs(t) do
            seen[#seen + 1] = k .. "=" .. (type(v) == "table" and "{}" or tostring(v))
          end
          table.sort(seen)
          local before = table.concat(seen, ",")
          t.addr, t.port, t.extra, t.args.user = "192.0.2.99", 1, "mine", "changed"
          local after = t.addr .. " " .. t.port .. " " .. t.extra .. " " .. t.args.user
          return false, before .. " | " .. after
        end""")
    options = settings(LuaTester, script=script, params="user=u")
    tester = LuaTester(options)
    target = lua_target(1234)
    for _ in range(2):  # the same target: the same fields behind t
        result, _ = await run_check(tester, target, options)
        before, after = result.reason.split(" | ")
        assert before.split(",") == [
            "addr=127.0.0.1", "args={}", "params=user=u", "port=1234", "rname=r1", "rport=80",
            "ssl=false", "timeout=3000", "vaddr=192.0.2.1", "vfwmark=0", "vname=v1", "vport=80",
            "vproto=tcp"]
        assert after == "192.0.2.99 1 mine changed"



async def test_pcall_and_coroutines_can_do_io(tmp_path: Path) -> None:
    script = check_body(tmp_path, """
        local ok, line = pcall(function() return s:receive() end)
        local co = coroutine.wrap(function()
          coroutine.yield(s:receive())
          return "done"
        end)
        local second = co()
        return ok and line == "one" and second == "two" and co() == "done" """)
    async with dialogue_server([("send", b"one\ntwo\n")]) as srv:
        result, _ = await lua_check(script, srv.port)
    assert result.ok, result


async def test_sleep_now_log_and_the_transcript(tmp_path: Path) -> None:
    script = check_body(tmp_path, """
        local t0 = sd.now()
        sd.sleep(50)
        print("slept", sd.now() - t0 >= 0.04)
        sd.log("info", "hello ", 42)
        s:send("ping\\r\\n")
        return s:receive() == "pong" """)
    transcript = Transcript()
    async with dialogue_server([("expect", b"\r\n"), ("send", b"pong\r\n")]) as srv:
        result, _ = await lua_check(script, srv.port, transcript=transcript)
    assert result.ok, result
    text = transcript.render().decode()
    assert "lua debug: slept\ttrue" in text and "lua info: hello 42" in text
    assert text.index("ping") < text.index("pong")


async def test_the_whole_check_is_bounded_by_the_timeout(tmp_path: Path) -> None:
    script = check_body(tmp_path, "return s:receive()")
    async with dialogue_server([("sleep", 3)]) as srv:
        result, _ = await lua_check(script, srv.port, timeout=0.3)
    assert not result.ok and result.reason.startswith("timeout after 0.3s")


async def test_other_ports_of_the_real(tmp_path: Path) -> None:
    script = write_script(tmp_path, """
        function check(t)
          local s = sd.tcp()
          local port = tonumber(t.args.other)
          assert(s:connect(t.addr, port))
          return s:receive() == "other"
        end""")
    async with dialogue_server([("send", b"other\n")]) as srv:
        result, timing = await lua_check(script, 9, params=f"other={srv.port}")
    assert result.ok, result
    assert timing.bytes_received == 6


async def test_tls_with_ssl_attribute_and_sslhandshake(tmp_path: Path) -> None:
    script = write_script(tmp_path, """
        function check(t)
          local s = sd.tcp()
          local port = tonumber(t.args.port) or t.port
          assert(s:connect(t.addr, port))
          local ok, err = s:sslhandshake(nil, t.args.sni, t.args.verify == "1")
          if not ok then return false, err end
          s:send("GET / HTTP/1.0\\r\\nHost: x\\r\\n\\r\\n")
          local line = s:receive()
          return line and line:find(" 200 ") ~= nil, line
        end""")
    with nginx(tmp_path / "nginx") as web:
        # SSL="1": the daemon's connect is already TLS, sslhandshake() has nothing to do
        on, _ = await lua_check(script, web.tls_port, target={"ssl": True})
        # plain connect, then TLS from the script, verified against the test CA
        verified, _ = await lua_check(
            script, 9, params=f"port={web.tls_port} sni=real1.example.test verify=1",
            target={"ssl_ca": str(web.ca_file)})
        wrong, _ = await lua_check(
            script, 9, params=f"port={web.tls_port} sni=other.example.test verify=1",
            target={"ssl_ca": str(web.ca_file)})
    assert on.ok, on
    assert verified.ok, verified
    assert (wrong.ok, wrong.reason) == (False, "certificate host mismatch")


async def test_udp(tmp_path: Path) -> None:
    class Echo(asyncio.DatagramProtocol):
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            self.transport = transport

        def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
            self.transport.sendto(data.upper(), addr)  # type: ignore[attr-defined]

    loop = asyncio.get_running_loop()
    transport, _ = await loop.create_datagram_endpoint(Echo, local_addr=("127.0.0.1", 0))
    port = transport.get_extra_info("sockname")[1]
    script = write_script(tmp_path, """
        function check(t)
          local u = sd.udp()
          u:settimeout(1000)
          assert(u:setpeername(t.addr, t.port))
          u:send("hello")
          local data, err = u:receive()
          return data == "HELLO", data or err
        end""")
    try:
        result, _ = await lua_check(script, port)
    finally:
        transport.close()
    assert result.ok, result


# -- OpenResty's conventions where they differed ---------------------------------------------
async def test_unix_sockets_are_an_error_not_a_raise(tmp_path: Path) -> None:
    script = write_script(tmp_path, """
        function check(t)
          local ok, err = sd.tcp():connect("unix:/run/x.sock")
          local ok2, err2 = sd.tcp():connect("unix:/run/x.sock", { pool = "p" })
          local ok3, err3 = sd.udp():setpeername("unix:/run/x.sock")
          return false, table.concat({tostring(ok), err, tostring(ok2), tostring(ok3), err3}, "|")
        end""")
    result, _ = await lua_check(script, 9)
    unix = "unix domain sockets are not allowed (only the real under test may be reached)"
    assert result.reason == f"nil|{unix}|nil|nil|{unix}"


@pytest.mark.parametrize(("call", "partial"), [
    ("s:receive(10)", "abc"),
    ("s:receive('*l')", "abc"),
    ("s:receive('*a')", "abc"),
    ("s:receiveuntil('--')()", "abc"),
    ("s:receiveuntil('--')(2)", "abc"),
    ("s:receiveany(10)", "nil"),  # any data ends it: a timeout has none
])
async def test_read_timeouts_give_the_partial(tmp_path: Path, call: str, partial: str) -> None:
    """As OpenResty's: ``nil, "timeout", partial`` with what arrived (consumed), and the socket
    still reads what comes next."""
    script = check_body(tmp_path, f"""
        s:settimeout(150)
        local data, err, part = {call}
        s:settimeout(3000)
        local rest = s:receive("*l")
        return false, tostring(data) .. "|" .. tostring(err) .. "|" .. tostring(part) .. "|"
                      .. tostring(rest)""")
    steps = [("send", b"abc") if "any" not in call else ("sleep", 0), ("sleep", 0.5),
             ("send", b"def\n")]
    async with dialogue_server(steps) as srv:
        result, _ = await lua_check(script, srv.port)
    assert result.reason == f"nil|timeout|{partial}|def"


async def test_read_timeout_with_nothing_gives_an_empty_partial(tmp_path: Path) -> None:
    script = check_body(tmp_path, """
        s:settimeout(50)
        local data, err, part = s:receive(4)
        return false, tostring(data) .. "|" .. err .. "|[" .. tostring(part) .. "]" """)
    async with dialogue_server([("sleep", 1)]) as srv:
        result, _ = await lua_check(script, srv.port)
    assert result.reason == "nil|timeout|[]"


async def test_open_sockets_are_counted_not_created_ones(tmp_path: Path) -> None:
    script = write_script(tmp_path, """
        function check(t)
          local open = {}
          for i = 1, 16 do
            open[i] = sd.tcp()
            assert(open[i]:connect(t.addr, t.port))
          end
          local extra = sd.tcp()
          local ok, err = extra:connect(t.addr, t.port)
          if ok then return false, "a 17th open socket" end
          open[3]:close()
          assert(extra:connect(t.addr, t.port))
          -- reconnecting one of them does not count twice
          assert(extra:connect(t.addr, t.port))
          for i = 1, 200 do local unused = sd.tcp() end
          return true, err
        end""")
    async with dialogue_server([("sleep", 1)]) as srv:
        result, _ = await lua_check(script, srv.port)
    assert result.ok and result.reason == "too many sockets (at most 16 open per check)", result


async def test_setoption_and_getoption(tmp_path: Path) -> None:
    script = write_script(tmp_path, """
        function check(t)
          local s = sd.tcp()
          local out = {}
          local function add(a, b)
            out[#out + 1] = tostring(a)
            if b ~= nil then out[#out + 1] = tostring(b) end
          end
          add(s:setoption("keepalive", true))  -- not connected yet
          assert(s:connect(t.addr, t.port))
          add(s:setoption("keepalive", true), s:getoption("keepalive"))
          add(s:setoption("tcp-nodelay", true), s:getoption("tcp-nodelay"))
          add(s:setoption("reuseaddr", 1), s:getoption("reuseaddr"))
          add(s:setoption("keepalive", false), s:getoption("keepalive"))
          add(s:setoption("sndbuf", 65536), s:getoption("sndbuf") >= 65536)
          add(s:setoption("rcvbuf", 32768), s:getoption("rcvbuf") >= 32768)
          add(s:setoption("linger", 1))
          add(s:setoption("sndbuf", -5))
          add(s:setoption("tcp-nodelay", "yes"))
          add(s:setoption("keepalive", 0 / 0))
          add(s:setoption(nil, 1))
          add(s:send("still usable\\n"))
          return false, table.concat(out, "|")
        end""")
    async with dialogue_server([("expect", b"\n")]) as srv:
        result, _ = await lua_check(script, srv.port)
    assert result.reason.split("|") == [
        "nil", "closed",
        "true", "true", "true", "true", "true", "true", "true", "false", "true", "true", "true",
        "true",
        "nil", "unsupported option 'linger' (valid: keepalive, reuseaddr, tcp-nodelay, sndbuf, "
        "rcvbuf)",
        "nil", "bad option value for sndbuf (valid: a byte count 1..1073741824)",
        "nil", "bad option value for tcp-nodelay", "nil", "bad option value for keepalive",
        "nil", "unsupported option nil",
        "13"]


async def test_udp_send_returns_1(tmp_path: Path) -> None:
    script = write_script(tmp_path, """
        function check(t)
          local u = sd.udp()
          assert(u:setpeername(t.addr, t.port))
          return false, tostring(u:send("hello")) .. " " .. tostring(u:send({"a", {"b"}}))
        end""")
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as peer:
        peer.bind(("127.0.0.1", 0))
        result, _ = await lua_check(script, peer.getsockname()[1])
    assert result.reason == "1 1"


async def test_getreusedtimes_of_a_fresh_connection(tmp_path: Path) -> None:
    script = write_script(tmp_path, """
        function check(t)
          local s = sd.tcp()
          local before, berr = s:getreusedtimes()
          assert(s:connect(t.addr, t.port))
          local n = s:getreusedtimes()
          s:close()
          local after, aerr = s:getreusedtimes()
          return false, table.concat({tostring(before), berr, n, tostring(after), aerr}, "|")
        end""")
    async with dialogue_server([("sleep", 1)]) as srv:
        result, _ = await lua_check(script, srv.port)
    assert result.reason == "nil|closed|0|nil|closed"


async def test_odd_numbers_from_a_script_are_errors_of_its_own(tmp_path: Path) -> None:
    # the runner is compiled and checks its argument types: a script's floats, NaN and huge
    # numbers must reach it as valid values or come back as nil, err, never as an internal error
    script = write_script(tmp_path, """
        function check(t)
          local out = {}
          local function add(a, b) out[#out + 1] = tostring(a) .. "/" .. tostring(b) end
          for _, port in ipairs({t.port + 0.0, t.port + 0.5, 0 / 0, 1e300, -1}) do
            local s = sd.tcp()
            add(pcall(s.connect, s, t.addr, port))
            s:close()
          end
          local s = sd.tcp()
          for _, ms in ipairs({0 / 0, 1e300, 250.7}) do
            local ok = pcall(s.settimeout, s, ms)
            out[#out + 1] = tostring(ok)
          end
          assert(s:connect(t.addr, t.port))
          add(s:send("x\\n"))
          out[#out + 1] = tostring((pcall(s.receive, s, 2.9)))
          add(s:receive(2.0))
          sd.sleep(0.5)
          return false, table.concat(out, "|")
        end""")
    async with dialogue_server([("expect", b"\n"), ("send", b"ok")]) as srv:
        result, _ = await lua_check(script, srv.port)
    assert result.reason != "internal error", result
    parts = result.reason.split("|")
    assert parts[0] == "true/1", parts  # an integral float is the port itself
    assert not any(part.startswith("true/1") for part in parts[1:5]), parts
    assert parts[5:] == ["false", "false", "true", "2/nil", "false", "ok/nil"], parts
