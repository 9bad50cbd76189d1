"""``-d``: the shell's command returns 0 only once the daemon is ready, 1 with the reason
otherwise; the pid file names the daemon, is locked against a second one, and goes at exit."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from surealived.daemonize import read_pid_file

SCRIPT = textwrap.dedent("""
    import os, signal, sys, time
    from surealived.daemonize import daemonize, report_ready, report_failure
    mode, pid_file, out = sys.argv[1], sys.argv[2] or None, sys.argv[3]
    print("before", flush=True)
    daemonize(pid_file)
    with open(out, "w") as f:
        f.write(f"{os.getpid()} {os.getsid(0)} {os.getcwd()}\\n")
    if mode == "fail":
        report_failure("cannot bind 127.0.0.1:1337: address in use")
        sys.exit(1)
    if mode == "crash":
        os._exit(7)
    stop = []
    signal.signal(signal.SIGTERM, lambda *a: stop.append(1))
    report_ready()
    print("after ready goes nowhere", flush=True)
    deadline = time.monotonic() + 60
    while not stop and time.monotonic() < deadline:
        time.sleep(0.05)
    sys.exit(0)
""")


def _run(tmp_path, mode: str, pid_file: str = "") -> tuple[subprocess.CompletedProcess, str]:
    script = tmp_path / "d.py"
    script.write_text(SCRIPT)
    out = str(tmp_path / f"out-{mode}")
    proc = subprocess.run([sys.executable, str(script), mode, pid_file, out],
                          capture_output=True, text=True, timeout=30, cwd=tmp_path)
    return proc, out


def _wait_gone(pid: int) -> bool:
    for _ in range(200):
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.05)
    return False


def test_detaches_writes_the_pid_file_and_cleans_up(tmp_path):
    pid_file = str(tmp_path / "surealived.pid")
    proc, out = _run(tmp_path, "ready", pid_file)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "before\n"  # nothing after readiness reaches the terminal
    pid, sid, cwd = Path(out).read_text().split()
    daemon = int(pid)
    try:
        assert Path(pid_file).read_text() == f"{daemon}\n"
        assert read_pid_file(pid_file) == daemon
        assert int(sid) != os.getsid(0) and int(sid) != daemon  # new session, not its leader
        assert cwd == str(tmp_path)  # the working directory is kept, as the original's

        second, _ = _run(tmp_path, "ready", pid_file)
        assert second.returncode == 1
        assert f"(pid {daemon}) holds the pid file {pid_file}" in second.stderr
    finally:
        os.kill(daemon, signal.SIGTERM)
    assert _wait_gone(daemon)
    assert not os.path.exists(pid_file)


def test_a_stale_pid_file_is_taken_over(tmp_path):
    pid_file = tmp_path / "stale.pid"
    pid_file.write_text("999999\n")
    assert read_pid_file(str(pid_file)) is None
    proc, out = _run(tmp_path, "ready", str(pid_file))
    assert proc.returncode == 0, proc.stderr
    daemon = int(Path(out).read_text().split()[0])
    try:
        assert pid_file.read_text() == f"{daemon}\n"
    finally:
        os.kill(daemon, signal.SIGTERM)
    assert _wait_gone(daemon)


def test_a_startup_failure_is_exit_status_1_with_the_reason(tmp_path):
    proc, _ = _run(tmp_path, "fail")
    assert proc.returncode == 1
    assert "surealived: cannot bind 127.0.0.1:1337: address in use" in proc.stderr


def test_a_daemon_dying_before_ready_is_exit_status_1(tmp_path):
    proc, _ = _run(tmp_path, "crash")
    assert proc.returncode == 1
    assert "exited while starting" in proc.stderr


def test_an_unwritable_pid_file_is_reported(tmp_path):
    proc, _ = _run(tmp_path, "ready", str(tmp_path / "no" / "such" / "dir.pid"))
    assert proc.returncode == 1
    assert "pid file" in proc.stderr and "cannot open" in proc.stderr


def test_refuses_once_a_thread_runs():
    import threading

    from surealived.daemonize import daemonize

    release = threading.Event()
    thread = threading.Thread(target=release.wait)
    thread.start()
    try:
        with pytest.raises(RuntimeError, match="before any thread"):
            daemonize(None)
    finally:
        release.set()
        thread.join()
