"""The original's API (``prepare`` + ``process_event``) runs unchanged; what crashed the original
daemon fails the check with a clear reason instead."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from .helpers import dialogue_server, lua_check, write_script

pytestmark = pytest.mark.asyncio

# The shipped example in the style of the original's surealived/scripts/rtsp.lua: DESCRIBE,
# then "rav" 256 bytes; running it here keeps the example honest.
RTSP_LUA = str(Path(__file__).resolve().parents[2] / "examples" / "scripts" / "rtsp_original.lua")

# In the style of the original's sunsite.lua: an FTP login dialogue with "rav".
FTP_LUA = r"""
function prepare(params)
    username = string.match(params, "username=([^;%s]+)") or "anonymous"
    password = string.match(params, "password=([^;%s]+)") or "sd@"
    step = "banner"
end

function process_event(txt)
    if step == "banner" then step = "read_banner" return "rav", 1024, "" end
    if step == "read_banner" then
        if string.sub(txt, 1, 3) ~= "220" then return "efail", 0, "" end
        step = "user"
        local cmd = "USER " .. username .. "\r\n"
        return "w", string.len(cmd), cmd
    end
    if step == "user" then step = "read_user" return "rav", 1024, "" end
    if step == "read_user" then
        if string.sub(txt, 1, 3) ~= "331" then return "efail", 0, "" end
        step = "pass"
        local cmd = "PASS " .. password .. "\r\n"
        return "w", string.len(cmd), cmd
    end
    if step == "pass" then step = "read_pass" return "rav", 1024, "" end
    if string.sub(txt, 1, 3) == "230" then return "eok", 0, "" end
    return "efail", 0, ""
end
"""

FTP_SERVER = [("send", b"220 Welcome\r\n"), ("expect", b"\r\n"), ("send", b"331 Password?\r\n"),
              ("expect", b"\r\n"), ("send", b"230 Logged in\r\n")]


async def test_rtsp_example() -> None:
    script = RTSP_LUA
    reply = b"RTSP/1.0 200 OK\r\nCSeq: 1\r\n\r\n"
    async with dialogue_server([("expect", b"\r\n\r\n"), ("send", reply)]) as server:
        result, _ = await lua_check(script, server.port)
        again, _ = await lua_check(script, server.port)  # globals are fresh for every test
    assert result.ok and again.ok, (result, again)
    assert server.received[0] == (
        f"DESCRIBE rtsp://127.0.0.1:{server.port}/ RTSP/1.0\r\nCSeq: 1\r\n\r\n".encode())


async def test_rtsp_example_fails_on_another_status() -> None:
    script = RTSP_LUA
    reply = b"RTSP/1.0 404 Not Found\r\n\r\n"
    async with dialogue_server([("expect", b"\r\n\r\n"), ("send", reply)]) as server:
        result, _ = await lua_check(script, server.port)
    assert not result.ok and result.reason == "process_event() returned efail"


@pytest.mark.parametrize(("params", "ok"), [("username=monitor; password=secret", True)])
async def test_ftp_login_dialogue(tmp_path: Path, params: str, ok: bool) -> None:
    script = write_script(tmp_path, FTP_LUA)
    async with dialogue_server(FTP_SERVER) as server:
        result, _ = await lua_check(script, server.port, params=params)
    assert result.ok is ok, result
    assert server.received[0] == b"USER monitor\r\nPASS secret\r\n"


async def test_prepare_gets_the_original_arguments(tmp_path: Path) -> None:
    """Ten arguments in the original's order; vfwmark byte-swapped as ntohs() made it."""
    script = write_script(tmp_path, r"""
        function prepare(...)
            got = table.concat({...}, "|", 1, 10)
        end
        function process_event(txt)
            if txt == got then return "eok" end
            return "w", #got, got
        end""")
    async with dialogue_server([]) as server:
        result, _ = await lua_check(script, server.port, params="a=1", timeout=0.5,
                                    target={"vfwmark": 7, "vproto": "fwmark",
                                            "vaddr": "0.0.0.0", "vport": 0, "rport": 80})
        await asyncio.sleep(0.05)
    assert result.ok, result
    expected = f"a=1|v1|0.0.0.0|0|fwmark|1792|r1|127.0.0.1|80|{server.port}"
    assert server.received[0].decode() == expected


CRASHERS = [
    ("nil action", "return nil", "process_event() returned nil (valid:"),
    ("no return value", "return", "process_event() returned nil"),
    ("boolean action", "return true, 1, 'x'", "process_event() returned boolean"),
    ("table action", "return {}, 1, 'x'", "process_event() returned table"),
    ("number action", "return 5, 1, 'x'", "process_event() returned number"),
    ("unknown action", "return 'weird', 1, 'x'", "process_event() returned \"weird\""),
    ("oversize read", "return 'r', 9000, ''", "n=9000 for \"r\" (valid: 0..8191)"),
    ("oversize rav", "return 'rav', 8192, ''", "n=8192 for \"rav\""),
    ("oversize write", "return 'w', 100000, ('x'):rep(100000)", "n=100000 for \"w\""),
    ("write beyond the data", "return 'w', 10, 'abc'", "with n=10 but 3 bytes of data"),
    ("write of nil data", "return 'w', 3, nil", "with n=3 but a nil"),
    ("negative n", "return 'r', -1, ''", "n=-1"),
    ("runtime error", "error('oops')", "test.lua:3: oops"),
    ("endless loop", "while true do end", "instruction budget exhausted"),
]


@pytest.mark.parametrize(("name", "body", "reason"), CRASHERS, ids=[c[0] for c in CRASHERS])
async def test_what_crashed_the_original_fails_the_check(tmp_path: Path, name: str, body: str,
                                                         reason: str) -> None:
    script = write_script(tmp_path, f"function prepare() end\nfunction process_event(txt)\n"
                                    f"{body}\nend\n")
    async with dialogue_server([("send", b"hi")]) as server:
        result, _ = await lua_check(script, server.port)
    assert not result.ok
    assert result.reason.startswith("lua: ") and reason in result.reason, result.reason


async def test_errors_in_prepare_fail_the_check(tmp_path: Path) -> None:
    script = write_script(tmp_path, "function prepare() error('bad params') end\n"
                                    "function process_event(txt) return 'eok' end\n")
    async with dialogue_server([]) as server:
        result, _ = await lua_check(script, server.port)
    assert result.reason == "lua: test.lua:1: bad params"


async def test_connection_refused_fails_before_lua(tmp_path: Path) -> None:
    script = write_script(tmp_path, "function prepare() end\n"
                                    "function process_event(txt) return 'eok' end\n")
    async with dialogue_server([]) as server:
        port = server.port
    result, _ = await lua_check(script, port)
    assert result.reason == "connect: connection refused"


async def test_eof_during_read_fails(tmp_path: Path) -> None:
    script = write_script(tmp_path, "function prepare() end\n"
                                    "function process_event(txt) return 'r', 10, '' end\n")
    async with dialogue_server([("send", b"abc"), ("close",)]) as server:
        result, _ = await lua_check(script, server.port)
    assert result.reason == "read 10 bytes: closed"


async def test_missing_prepare_is_reported(tmp_path: Path) -> None:
    from .helpers import SCRIPTS

    script = write_script(tmp_path, "function process_event(txt) return 'eok' end\n")
    assert SCRIPTS.get(script).error == (
        f"{script}: defines process_event() but no prepare() function")
