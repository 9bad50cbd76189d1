"""exec: argv as the original, clean environment, exit status, output, and the deadline kill."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from builtin_testers.exec import ExecTester
from surealived.engine.transcript import Transcript

from .helpers import check

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
