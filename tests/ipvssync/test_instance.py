"""ipvssync's instance lock on this machine (no IPVS here; two ipvssync daemons on one folder are
in tests/kernel/inside/test_ipvssync_kernel.py): the holder is a process that took the lock
with ipvssync's own code, the second one is the real command."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from surealived.ipvssync.instance import InstanceLocked, take_instance_lock
from tests.ipvssync.sync_folder import Files

IPVSSYNC = [sys.executable, "-m", "surealived.ipvssync"]
HOLD = ("import sys, time; from surealived.ipvssync.instance import take_instance_lock; "
        "take_instance_lock(sys.argv[1]); print('held', flush=True); time.sleep(60)")


@pytest.fixture
def holder(tmp_path: Path) -> Iterator[tuple[Files, subprocess.Popen[str]]]:
    files = Files(tmp_path / "sync")
    files.snapshot("", 100)
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(files.root / "ipvssync.lock")],
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdout.readline() == "held\n"
    yield files, proc
    proc.kill()
    proc.wait()


def tree(root: Path) -> dict[str, tuple[int, int]]:
    return {str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns)
            for p in root.rglob("*")}


@pytest.mark.parametrize("mode", [["--once"], ["-d"], []])
def test_a_second_ipvssync_fails_at_once_in_one_line_and_writes_nothing(tmp_path, holder,
                                                                         mode):
    files, proc = holder
    cfg = tmp_path / "surealived.cfg"
    cfg.write_text(f"ipvssync_log {tmp_path / 'second.log'}\n"
                   f"ipvssync_pid_file {tmp_path / 'second.pid'}\n")
    before = tree(files.root)
    second = subprocess.run([*IPVSSYNC, "-c", str(cfg), "--dir", str(files.root), *mode],
                            capture_output=True, text=True, timeout=30)
    assert second.returncode == 1
    assert second.stderr.splitlines() == [
        f"ipvssync: another ipvssync (pid {proc.pid}) holds the instance lock "
        f"{files.root}/ipvssync.lock: one ipvssync per set of sync files; stop that one first"]
    assert second.stdout == ""
    assert tree(files.root) == before  # the reload flag and the diffs are left alone
    assert not (tmp_path / "second.log").exists() and not (tmp_path / "second.pid").exists()


def test_check_and_plan_run_beside_a_running_ipvssync(holder):
    files, _ = holder
    check = subprocess.run([*IPVSSYNC, "--dir", str(files.root), "-t"], capture_output=True,
                           text=True, timeout=30)
    assert check.returncode == 0, check.stderr
    plan = subprocess.run([*IPVSSYNC, "--dir", str(files.root), "--plan"],
                          capture_output=True, text=True, timeout=30)
    assert plan.returncode == 0, plan.stderr


def test_a_lock_left_by_a_dead_ipvssync_is_taken_over(tmp_path):
    path = str(tmp_path / "ipvssync.lock")
    pid = os.fork()
    if pid == 0:
        try:
            take_instance_lock(path)
        finally:
            os._exit(0)
    os.waitpid(pid, 0)
    assert Path(path).read_text() == f"{pid}\n"  # left behind by the dead holder
    fd = take_instance_lock(path)
    try:
        assert Path(path).read_text() == f"{os.getpid()}\n"
    finally:
        os.close(fd)


def test_a_missing_folder_is_one_clear_line(tmp_path):
    with pytest.raises(InstanceLocked) as info:
        take_instance_lock(str(tmp_path / "nowhere" / "ipvssync.lock"))
    assert str(info.value) == (f"cannot open the instance lock {tmp_path}/nowhere/ipvssync.lock: "
                               "No such file or directory")
