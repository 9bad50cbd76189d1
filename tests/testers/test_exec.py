"""exec: argv as the original, clean environment, exit status, output, and no process or
descriptor of a check outliving it (at its exit, at its deadline, or when the daemon dies)."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from builtin_testers.exec import ExecTester
from surealived.engine.transcript import Transcript

from .helpers import SERVICES, check

pytestmark = pytest.mark.asyncio


def script(tmp_path: Path, body: str, name: str = "check.sh") -> str:
    path = tmp_path / name
    path.write_text("#!/bin/sh\n" + body + "\n")
    path.chmod(0o755)
    return str(path)


def gone(pid: int) -> bool:
    """No such process, or only a zombie left for init to reap."""
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().rsplit(")", 1)[1].split()[0] in ("Z", "X")
    except FileNotFoundError:
        return True


async def test_argv_environment_and_exit_zero(tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SUREALIVED_SECRET", "leak")
    out = tmp_path / "out"
    prog = script(tmp_path, f'echo "$@" > {out}; env > {out}.env; echo fine')
    transcript = Transcript()
    result, _ = await check(ExecTester, 8080, transcript=transcript, exec=prog,
                            params="-x  two")
    assert result.ok, result.reason
    assert out.read_text() == "127.0.0.1 8080 -x two\n"
    env = out.with_suffix(".env").read_text()
    assert "PATH=" in env
    assert "SUREALIVED_SECRET" not in env and "HOME=" not in env
    assert b"stdout:\nfine\n" in transcript.render()


async def test_exit_status_and_the_last_line_of_stderr(tmp_path: Path) -> None:
    prog = script(tmp_path, "echo starting >&2; echo disk full >&2; exit 3")
    result, _ = await check(ExecTester, 80, exec=prog)
    assert (result.ok, result.reason) == (False, "exit status 3: disk full")


async def test_killed_by_a_signal(tmp_path: Path) -> None:
    prog = script(tmp_path, "kill -TERM $$")
    result, _ = await check(ExecTester, 80, exec=prog)
    assert result.reason == "killed by signal SIGTERM"


async def test_the_deadline_kills_the_whole_process_group(tmp_path: Path) -> None:
    pids = tmp_path / "pids"
    prog = script(tmp_path, f"sleep 30 & echo $! > {pids}; echo $$ >> {pids}; sleep 30")
    started = time.monotonic()
    result, _ = await check(ExecTester, 80, timeout=0.5, exec=prog)
    assert result.reason == f"timeout after 0.5s running {prog}"
    assert time.monotonic() - started < 10
    children = [int(p) for p in pids.read_text().split()]
    assert len(children) == 2
    for _ in range(100):
        if all(gone(pid) for pid in children):
            break
        time.sleep(0.02)
    assert all(gone(pid) for pid in children)


async def test_a_program_that_exits_but_leaves_a_child_holding_stdout(tmp_path: Path) -> None:
    pids = tmp_path / "pids"
    prog = script(tmp_path, f"sleep 30 & echo $! > {pids}; exit 0")
    result, _ = await check(ExecTester, 80, timeout=5, exec=prog)
    assert result.ok, result.reason
    leftover = int(pids.read_text())
    for _ in range(100):
        if gone(leftover):
            break
        time.sleep(0.02)
    assert gone(leftover)


async def test_no_zombie_is_left(tmp_path: Path) -> None:
    pids = tmp_path / "pids"
    prog = script(tmp_path, f"echo $$ >> {pids}; exit 0")
    for _ in range(5):
        result, _ = await check(ExecTester, 80, exec=prog)
        assert result.ok
    # our own children: a zombie would still have its /proc entry until we reap it
    assert [pid for pid in pids.read_text().split() if Path(f"/proc/{pid}").exists()] == []


async def test_output_written_before_the_deadline_is_in_the_transcript(tmp_path: Path) -> None:
    prog = script(tmp_path, "echo starting up; echo slow disk >&2; sleep 30")
    transcript = Transcript()
    result, _ = await check(ExecTester, 80, timeout=0.5, exec=prog, transcript=transcript)
    assert result.reason == f"timeout after 0.5s running {prog}"
    text = transcript.render().decode()
    assert "note:\nstdout (until the deadline):\nstarting up\n" in text
    assert "note:\nstderr (until the deadline):\nslow disk\n" in text
    assert text.endswith(f"note:\nresult: down timeout after 0.5s running {prog}\n")


def descriptors() -> int:
    return len(os.listdir("/proc/self/fd"))


def wait_gone(pids: list[int]) -> list[int]:
    """The pids still alive after a bounded wait (a SIGKILL is not instant, and a loaded
    machine takes seconds to end a hundred trees)."""
    for _ in range(750):
        if all(gone(pid) for pid in pids):
            return []
        time.sleep(0.02)
    return [pid for pid in pids if not gone(pid)]


async def test_a_grandchild_in_its_own_session_holding_stdout(tmp_path: Path) -> None:
    """Issue 16.5: judged up at the exit, no descriptor kept, no grandchild left."""
    pids = tmp_path / "pids"
    prog = script(tmp_path, f"setsid sleep 30 & echo $! >> {pids}; echo started; exit 0")
    result, _ = await check(ExecTester, 80, timeout=20, exec=prog)  # starts the helper
    assert result.ok, result.reason
    before = descriptors()
    for _ in range(50):
        transcript = Transcript()
        result, _ = await check(ExecTester, 80, timeout=20, exec=prog, transcript=transcript)
        assert (result.ok, result.reason) == (True, "exit status 0")
        assert b"stdout:\nstarted\n" in transcript.render()
    assert descriptors() == before
    grandchildren = [int(pid) for pid in pids.read_text().split()]
    assert len(grandchildren) == 51
    assert wait_gone(grandchildren) == []


async def test_a_hundred_checks_at_once(tmp_path: Path) -> None:
    """More requests than the helper's socket holds at once: all run, none is lost."""
    pids = tmp_path / "pids"
    prog = script(tmp_path, f"setsid sleep 30 & echo $! >> {pids}; sleep 0.2; exit 0")
    assert (await check(ExecTester, 80, timeout=20, exec=prog))[0].ok
    before = descriptors()
    results = await asyncio.gather(*[check(ExecTester, 80, timeout=20, exec=prog)
                                     for _ in range(100)])
    assert [r.reason for r, _ in results] == ["exit status 0"] * 100
    assert descriptors() == before
    assert wait_gone([int(pid) for pid in pids.read_text().split()]) == []


async def test_a_double_forked_grandchild_without_our_pipes_is_ended(tmp_path: Path) -> None:
    """Reparented away from the program, in a new session, stdout and stderr closed: still
    the check's, and ended with it."""
    pids = tmp_path / "pids"
    prog = script(tmp_path, f"(setsid sh -c 'sleep 30 & echo $! > {pids}; wait' "
                            f"</dev/null >/dev/null 2>&1 &); "
                            f"while [ ! -s {pids} ]; do sleep 0.01; done; exit 4")
    result, _ = await check(ExecTester, 80, timeout=20, exec=prog)
    assert result.reason == "exit status 4"
    assert wait_gone([int(pids.read_text())]) == []


async def test_a_program_that_never_ends_is_ended_with_its_tree(tmp_path: Path) -> None:
    pids = tmp_path / "pids"
    prog = script(tmp_path, f"setsid sleep 30 & echo $! >> {pids}; echo $$ >> {pids}; "
                            f"echo waiting; sleep 30")
    result, _ = await check(ExecTester, 80, timeout=0.3, exec=prog)
    before = descriptors()
    for _ in range(10):
        transcript = Transcript()
        result, _ = await check(ExecTester, 80, timeout=0.3, exec=prog, transcript=transcript)
        assert result.reason == f"timeout after 0.3s running {prog}"
        assert b"stdout (until the deadline):\nwaiting\n" in transcript.render()
    assert descriptors() == before
    started = [int(pid) for pid in pids.read_text().split()]
    assert len(started) == 22
    assert wait_gone(started) == []


async def test_a_program_that_cannot_start(tmp_path: Path) -> None:
    prog = script(tmp_path, "")
    Path(prog).write_text("#!/nonexistent/interpreter\n")
    result, _ = await check(ExecTester, 80, exec=prog)
    assert result.reason == f"running {prog}: no such file or directory"


async def test_a_helper_that_was_killed_is_started_again(tmp_path: Path) -> None:
    prog = script(tmp_path, "exit 0")
    result, _ = await check(ExecTester, 80, exec=prog)
    helper = SERVICES.process_trees.proc
    assert result.ok and helper is not None
    helper.kill()
    helper.wait()
    result, _ = await check(ExecTester, 80, exec=prog)
    assert result.ok, result.reason
    assert SERVICES.process_trees.proc is not None and SERVICES.process_trees.proc.pid != helper.pid


DAEMON = """
import asyncio, sys
from builtin_testers.exec import ExecTester
from tests.testers.helpers import check
asyncio.run(check(ExecTester, 80, timeout=60, exec=sys.argv[1]))
"""


async def test_nothing_a_check_started_outlives_the_daemon(tmp_path: Path) -> None:
    """A daemon killed mid-check (SIGKILL: no clean-up of its own) takes the tree along."""
    pids = tmp_path / "pids"
    prog = script(tmp_path, f"setsid sleep 60 & echo $! >> {pids}; echo $$ >> {pids}; sleep 60")
    root = Path(__file__).resolve().parents[2]
    daemon = subprocess.Popen([sys.executable, "-c", DAEMON, prog], cwd=root)
    try:
        for _ in range(500):
            if pids.exists() and len(pids.read_text().split()) == 2:
                break
            time.sleep(0.02)
        started = [int(pid) for pid in pids.read_text().split()]
        assert len(started) == 2 and not any(gone(pid) for pid in started)
    finally:
        daemon.kill()
        daemon.wait()
    assert wait_gone(started) == []
