"""``surealived probe``: one check by hand, with the conversation, and attribute errors."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner

from surealived.probe_cli import probe
from tests.servers import free_port, nginx

from .helpers import LUA_TESTERS, write_script


def run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(probe, list(args))
    return result.exit_code, result.output


def test_lua_probe_prints_verdict_timings_and_conversation(tmp_path: Path) -> None:
    with nginx(tmp_path) as web:
        code, out = run("lua", "--addr", "127.0.0.1", "--port", str(web.port),
                        f"script={LUA_TESTERS / 'http.lua'}",
                        "--attr", "params=path=/health pattern=healthy")
    assert code == 0, out
    assert "sd_write ->\nGET /health HTTP/1.0" in out and "Host: 127.0.0.1" in out
    assert "ok healthy" in out
    assert "verdict: up\ntimings: connect " in out


def test_down_exits_1_with_the_reason(tmp_path: Path) -> None:
    script = write_script(tmp_path, "function check(t) print('hello') return false, 'nope' end")
    code, out = run("lua", "--addr", "127.0.0.1", "--port", str(free_port()), f"script={script}")
    assert code == 1
    assert "lua debug: hello" in out and "verdict: down: nope" in out


def test_weights_are_shown(tmp_path: Path) -> None:
    script = write_script(tmp_path, "function check(t) return '40%' end")
    code, out = run("lua", "-q", "--addr", "127.0.0.1", "--port", "9", f"script={script}")
    assert code == 0 and out.startswith("verdict: up, weight 40%\n")


def test_attribute_errors_name_the_attribute_and_what_is_valid(tmp_path: Path) -> None:
    broken = write_script(tmp_path, "function check(t)\n  return = 1\nend\n")
    code, out = run("lua", "--addr", "127.0.0.1", "--port", "9", "script=missing.lua",
                    "colour=red", "timeout=-1")
    assert code == 2
    assert "attribute 'script': file " in out and "(valid: a path to a readable file)" in out
    assert "unknown attribute 'colour' for tester lua (valid: SSL, bindaddr, params" in out
    assert "attribute 'timeout': '-1' is out of range (valid: seconds" in out
    code, out = run("lua", "--addr", "127.0.0.1", "--port", "9", f"script={broken}")
    assert code == 2 and f"attribute 'script': {broken}:2: unexpected symbol near '='" in out
    code, out = run("http", "--addr", "127.0.0.1", "--port", "9", "url=/")
    assert code == 2 and "attribute 'host' is mandatory for tester http" in out
    code, out = run("nope", "--addr", "127.0.0.1")
    assert code == 2 and "no tester named 'nope' (valid: " in out
    code, out = run("tcp", "--addr", "300.1.1.1", "--port", "9")
    assert code == 2 and "--addr: '300.1.1.1' is not an IP address" in out


def test_control_characters_from_the_real_are_shown_escaped(tmp_path: Path) -> None:
    import contextlib
    import socket
    import threading

    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]

    def answer() -> None:
        conn, _ = listener.accept()
        with conn, contextlib.suppress(OSError):  # the script closes when it has its line
            conn.sendall(b"+OK \x1b]0;owned\x07\x1b[2J\x00 caf\xc3\xa9 \xff\r\n")
            conn.recv(100)

    thread = threading.Thread(target=answer, daemon=True)
    thread.start()
    script = write_script(tmp_path, "function check(t)\n local s = sd.tcp()\n"
                          " assert(s:connect(t.addr, t.port))\n local line = s:receive()\n"
                          " s:close()\n return false, line\nend")
    code, out = run("lua", "--addr", "127.0.0.1", "--port", str(port), f"script={script}")
    thread.join(10)
    listener.close()
    assert code == 1, out
    assert "\x1b" not in out and "\x07" not in out and "\x00" not in out and "\r" not in out
    assert "\\x1b]0;owned\\x07\\x1b[2J\\x00 café \\xff" in out


def test_probe_finds_modules_on_the_lua_path_of_its_config(tmp_path: Path) -> None:
    lib = tmp_path / "lib" / "resty"
    lib.mkdir(parents=True)
    (lib / "greeting.lua").write_text("return { text = 'from lua_path' }\n")
    cfg = tmp_path / "surealived.cfg"
    cfg.write_text("lua_path lib\n")
    script = write_script(tmp_path, "local g = require 'resty.greeting'\n"
                                    "function check(t) return true, g.text end")
    code, out = run("lua", "-q", "-c", str(cfg), "--addr", "127.0.0.1", "--port", "9",
                    f"script={script}")
    assert code == 0 and out.startswith("verdict: up: from lua_path\n"), out
