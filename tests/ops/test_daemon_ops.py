"""The running daemon as an operator meets it: systemd notifications (readiness after the first
round, status, watchdog, reload, stop), memlimit, -d with a pid file, log rotation by the
shipped logrotate rule and by SIGUSR1, --version and shell completion."""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from surealived import __version__
from tests.daemon_harness import wait_until

from .conftest import BIN, Project

CONTRIB = Path(__file__).resolve().parents[2] / "contrib"


def _wait(predicate: Callable[[], object], what: str) -> None:
    wait_until(predicate, what, seconds=20.0)


class Notifications:
    """Datagrams received on a NOTIFY_SOCKET, each as a dict of its fields."""

    def __init__(self, path: str) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(path)
        self.sock.setblocking(False)
        self.messages: list[dict[str, str]] = []

    def drain(self) -> None:
        try:
            while True:
                data = self.sock.recv(65536).decode()
                self.messages.append(dict(line.split("=", 1) for line in data.split("\n")))
        except BlockingIOError:
            pass

    def wait_for(self, key: str, value: str | None = None, after: int = 0) -> int:
        """Index of the first message from ``after`` on that has ``key`` (= ``value``)."""
        found: list[int] = []

        def seen() -> bool:
            self.drain()
            for i, m in enumerate(self.messages[after:], start=after):
                if key in m and (value is None or m[key] == value):
                    found.append(i)
                    return True
            return False

        _wait(seen, f"{key}={value or '*'} from the daemon")
        return found[0]


def test_systemd_readiness_status_watchdog_reload_and_stop(project: Project, tmp_path):
    notes = Notifications(str(tmp_path / "notify"))
    proc = project.start(NOTIFY_SOCKET=str(tmp_path / "notify"), WATCHDOG_USEC="2000000")
    try:
        ready = notes.wait_for("READY", "1")
        # ready only once the first round is over: the status already says who is up
        assert notes.messages[ready]["STATUS"] == "1 virtuals, 1/1 reals up"
        assert notes.messages[ready]["MAINPID"] == str(proc.pid)
        assert not any("READY" in m for m in notes.messages[:ready])
        notes.wait_for("WATCHDOG", "1")

        proc.send_signal(signal.SIGHUP)
        reloading = notes.wait_for("RELOADING", "1", after=ready + 1)
        assert int(notes.messages[reloading]["MONOTONIC_USEC"]) > 0
        notes.wait_for("READY", "1", after=reloading + 1)

        # a broken XML: the reload is refused, yet the unit must leave "reloading"
        project.xml.write_text("<surealived><virtual")
        proc.send_signal(signal.SIGHUP)
        second = notes.wait_for("RELOADING", "1", after=reloading + 1)
        notes.wait_for("READY", "1", after=second + 1)

        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
        notes.wait_for("STOPPING", "1")
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(10)
        notes.sock.close()
    assert "Configuration refused" in proc.stderr.read()


def test_memlimit_stops_cleanly_with_status_3(project: Project):
    project.write(extra="memlimit 1000")  # 1 MB resident: exceeded at the first look
    proc = project.run(timeout=60)
    assert proc.returncode == 3, proc.stderr
    assert re.search(r"error : memory limit exceeded: resident \d+ kB > memlimit 1000 kB",
                     proc.stderr)
    assert "Stopped (exit status 3)" in proc.stderr


def _logrotate_conf(project: Project) -> str:
    """The shipped rule, pointed at the project's log and pid file instead of /var and
    systemd (the test runs as whoever runs it, so the su/create owners are left out)."""
    text = (CONTRIB / "logrotate" / "surealived").read_text()
    text = text.replace("/var/log/surealived/surealived.log", str(project.log))
    text = re.sub(r"^\s*/var/log/surealived/\S+\n", "", text, flags=re.M)
    text = re.sub(r"^\s*su .*\n", "", text, flags=re.M)
    text = text.replace("create 0640 surealived adm", "create 0640")
    text = text.replace("/run/surealived/surealived.pid", str(project.pid_file))
    return text


def test_daemon_mode_pid_file_and_log_rotation(project: Project, tmp_path):
    if shutil.which("logrotate") is None:
        pytest.skip("logrotate is not installed (contrib/ci-deps.sh installs it)")
    done = project.run("-d", timeout=60)
    assert done.returncode == 0, done.stderr
    pid = int(project.pid_file.read_text())
    try:
        assert os.getsid(pid) != os.getsid(0)  # detached into its own session
        _wait(lambda: "Started:" in project.log.read_text(), "the start line in the log")

        # 1. the shipped logrotate rule: rename, create, postrotate SIGUSR1 (pid file)
        conf = tmp_path / "logrotate.conf"
        conf.write_text(_logrotate_conf(project))
        rotated = subprocess.run(["logrotate", "-f", "-s", str(tmp_path / "lr.state"),
                                  str(conf)], capture_output=True, text=True, timeout=30)
        assert rotated.returncode == 0, rotated.stderr
        old = project.log.with_name("surealived.log.1")
        assert "Started:" in old.read_text()
        os.kill(pid, signal.SIGHUP)  # reload: logs a line
        _wait(lambda: "Reloading configuration" in project.log.read_text(),
              "the reload line in the new log")
        assert "Reloading configuration" not in old.read_text()

        # 2. SIGUSR1 alone: a renamed log is reopened at once (nothing else is logged at info)
        project.log.rename(project.log.with_name("moved.log"))
        os.kill(pid, signal.SIGUSR1)
        _wait(project.log.exists, "the log file reopened by SIGUSR1")
        os.kill(pid, signal.SIGHUP)
        _wait(lambda: "Reloading configuration" in project.log.read_text(),
              "the reload line in the reopened log")
    finally:
        os.kill(pid, signal.SIGTERM)
    _wait(lambda: not project.pid_file.exists(), "the pid file to go at exit")
    assert "Stopped (exit status 0)" in project.log.read_text()


def test_daemon_mode_refuses_a_second_daemon(project: Project):
    first = project.run("-d", timeout=60)
    assert first.returncode == 0, first.stderr
    pid = int(project.pid_file.read_text())
    try:
        second = project.run("-d", timeout=60)
        assert second.returncode == 1
        assert f"another surealived (pid {pid}) holds" in second.stderr
    finally:
        os.kill(pid, signal.SIGTERM)
    _wait(lambda: not project.pid_file.exists(), "the pid file to go at exit")


def test_daemon_mode_with_a_broken_config_exits_1_in_the_foreground(project: Project):
    project.xml.write_text("<surealived><virtual name='x'/></surealived>")
    done = project.run("-d", timeout=60)
    assert done.returncode == 1
    assert "surealived.xml" in done.stderr
    assert not project.pid_file.exists()


@pytest.mark.parametrize("program", ["surealived", "ipvssync"])
def test_version(program):
    for option in ("--version", "-V"):
        out = subprocess.run([str(BIN / program), option], capture_output=True, text=True,
                             timeout=30)
        assert out.returncode == 0
        assert out.stdout.strip() == f"{program}, version {__version__}"


@pytest.mark.parametrize("program", ["surealived", "ipvssync"])
@pytest.mark.parametrize("shell,marker", [("bash", "complete -o nosort -F"),
                                          ("zsh", "#compdef {program}"),
                                          ("fish", "complete --no-files --command {program}")])
def test_completion_script(program, shell, marker):
    env = {**os.environ, f"_{program.upper()}_COMPLETE": f"{shell}_source"}
    out = subprocess.run([str(BIN / program)], env=env, capture_output=True, text=True,
                         timeout=30)
    assert out.returncode == 0, out.stderr
    assert marker.format(program=program) in out.stdout


def test_completion_completes_options():
    env = {**os.environ, "_SUREALIVED_COMPLETE": "bash_complete", "COMP_WORDS": "surealived --ver",
           "COMP_CWORD": "1"}
    out = subprocess.run([str(BIN / "surealived")], env=env, capture_output=True, text=True,
                         timeout=30)
    assert "plain,--verbose" in out.stdout.split("\n")
    assert "plain,--version" in out.stdout.split("\n")
