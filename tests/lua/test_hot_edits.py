"""Hot edits: a changed script runs at the next check; a broken edit keeps the last good version,
is logged once and shows in ``ScriptRegistry.errors()`` and in ``surealived -t``."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest
from click.testing import CliRunner

from surealived.cli import main
from surealived.engine.flight import run_check
from surealived.tester_api import Target
from tests.testers.helpers import settings

from .helpers import SCRIPTS, LuaTester, dialogue_server, lua_check, touch_new, write_script


@pytest.mark.asyncio
async def test_edit_broken_edit_and_fix(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    script = write_script(tmp_path, "function check(t) return true, 'v1' end")
    first, _ = await lua_check(script, 9)
    assert first.reason == "v1"

    touch_new(script, "function check(t) return true, 'v2' end")
    second, _ = await lua_check(script, 9)
    assert second.reason == "v2"

    touch_new(script, "function check(t)\n x = = 1 end")
    for _ in range(3):
        third, _ = await lua_check(script, 9)
        assert third.ok and third.reason == "v2"  # the last good version keeps running
    problem = SCRIPTS.errors()[script]
    assert problem.message == f"{script}:2: unexpected symbol near '='" and problem.running_old
    logged = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
    assert logged == [f"Lua script {script}: {problem.message} (the previous version keeps "
                      "running)"]

    touch_new(script, "function check(t) return false, 'v4' end")
    fourth, _ = await lua_check(script, 9)
    assert fourth.reason == "v4"
    assert script not in SCRIPTS.errors()


@pytest.mark.asyncio
async def test_a_script_that_never_compiled_fails_with_the_error(tmp_path: Path) -> None:
    script = write_script(tmp_path, "function check(t)")
    message = f"{script}:1: 'end' expected near '<eof>'"  # as plain Lua 5.1's loadfile says
    assert SCRIPTS.get(script).error == message
    result, _ = await lua_check(script, 9)
    assert result.reason == f"lua: {message}"


@pytest.mark.asyncio
async def test_deleted_script_keeps_running(tmp_path: Path) -> None:
    script = write_script(tmp_path, "function check(t) return true, 'here' end")
    options = settings(LuaTester, script=script)
    tester = LuaTester(options)
    target = Target(addr="127.0.0.1", port=9, rname="r", rport=9, vname="v", vaddr="192.0.2.1",
                    vport=9, vproto="tcp", vfwmark=0, timeout=1)
    assert (await run_check(tester, target, options))[0].reason == "here"
    os.unlink(script)
    result, _ = await run_check(tester, target, options)
    assert result.reason == "here"
    assert "cannot read: no such file or directory" in SCRIPTS.errors()[script].message


def test_check_config_reports_script_errors_with_file_and_line(tmp_path: Path) -> None:
    bad = write_script(tmp_path, "function check(t)\n  return = 1\nend\n", "bad.lua")
    none = write_script(tmp_path, "x = 1\n", "none.lua")
    io = write_script(tmp_path, "local s = sd.tcp() s:connect('127.0.0.1', 80)\n"
                                "function check(t) return true end\n", "io.lua")
    xml = tmp_path / "sd.xml"
    virtuals = "".join(
        f'<virtual name="v{i}" addr="192.0.2.{i + 1}" port="80" proto="tcp" sched="wrr" rt="dr">'
        f'<tester proto="lua" testport="80" script="{path}"/>'
        f'<real name="r1" addr="192.0.2.100" port="80" weight="1"/></virtual>'
        for i, path in enumerate((bad, none, io)))
    xml.write_text(f"<surealived>{virtuals}</surealived>")
    cfg = tmp_path / "surealived.cfg"
    cfg.write_text("")
    result = CliRunner().invoke(main, ["-t", "-c", str(cfg), str(xml)])
    assert result.exit_code == 1
    assert f"{bad}:2: unexpected symbol near '='" in result.output
    assert f"{none}: defines neither check(t) nor prepare() and process_event()" in result.output
    assert f"{io}:1: no I/O while the script loads" in result.output


@pytest.mark.asyncio
async def test_a_broken_edit_shows_in_the_status_json_and_page(tmp_path: Path) -> None:
    from surealived.config.model import Config
    from surealived.engine.state import DaemonState
    from surealived.status.page import render
    from surealived.status.views import status_view

    script = write_script(tmp_path, "function check(t) return true end")
    await lua_check(script, 9)
    touch_new(script, "function check(t) return = end")
    await lua_check(script, 9)
    state = DaemonState(Config(path="x.xml"))
    view = status_view(state, 0.0, SCRIPTS.errors().values())
    problems = {p["path"]: p for p in view["script_errors"]}
    assert problems[script]["running_old"] is True
    assert "unexpected symbol" in problems[script]["message"]
    page = render(state, 0.0, script_errors=SCRIPTS.errors().values())
    assert f"Lua script {script} is broken (the last good version keeps running)" in page


@pytest.mark.asyncio
async def test_an_edit_reaches_checks_that_start_while_others_run(tmp_path: Path) -> None:
    """Overlapping checks share a look at the file for a millisecond at most: a check that
    starts later, while an older one still waits in I/O, runs the new version."""
    script = write_script(tmp_path, """
        function check(t)
          local s = sd.tcp()
          assert(s:connect(t.addr, t.port))
          local line = s:receive()
          return true, 'v1 ' .. tostring(line)
        end""")
    async with dialogue_server([("sleep", 0.5), ("send", b"late\n")]) as server:
        slow = asyncio.ensure_future(lua_check(script, server.port))
        await asyncio.sleep(0.05)  # the slow check waits in receive()
        touch_new(script, "function check(t) return true, 'v2' end")
        await asyncio.sleep(0.01)
        second, _ = await lua_check(script, server.port)
        first, _ = await slow
    assert first.reason == "v1 late"
    assert second.reason == "v2"


def test_a_reload_thread_validates_without_touching_the_running_scripts(tmp_path: Path
                                                                         ) -> None:
    """The daemon reads a reloaded configuration in a worker thread: the Lua tester validates
    the script there on a quiet copy in a runtime of its own, never on the one checks use."""
    import threading

    from surealived.lua import ScriptRegistry
    from surealived.lua.scripts import Script

    path = tmp_path / "s.lua"
    path.write_text("function check(t) return true end\n")
    registry = ScriptRegistry()
    running = registry.look(str(path))
    assert running.error is None and registry.scripts == {str(path): running}
    path.write_text("function check(t) return true\n")  # a broken edit
    seen: list[Script] = []
    worker = threading.Thread(target=lambda: seen.append(registry.look(str(path))))
    worker.start()
    worker.join(30)
    copy = seen[0]
    assert copy is not running and copy.runtime is not running.runtime
    assert copy.error is not None and f"{path}:2: 'end' expected" in copy.error
    assert registry.scripts == {str(path): running}
    assert running.error is None  # not looked at again: its next check on the loop will
