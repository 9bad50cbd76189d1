"""The daemon as a user runs it: start, state changes logged, SIGHUP reload (a broken
configuration is refused and the old one keeps running), SIGTERM stops with status 0."""

from __future__ import annotations

import os
import selectors
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.daemon_harness import Project

# No log file (the log is read from stderr), nothing synced, dumps in the test's folder.
# init_state="up": reals start up, so a refused real logs its change to OFFLINE.
KEYS = {"maxfd": "1024", "logging": "info", "startup_delay_ms": "100", "listen_port": "0",
        "no_sync": "true", "use_offline_dump": "false", "gather_stats": "false",
        "override_dump": "{d}/override.dump", "notify_dump": "{d}/notify.dump",
        "stats_dump": "{d}/stats.dump", "offline_dump": "{d}/offline.dump"}

XML = """<surealived>
  <virtual name="web" addr="192.0.2.1" port="80" proto="tcp" sched="wrr" rt="dr">
    <tester proto="tcp" testport="{port}" loopdelay="0.2" timeout="1" init_state="up"/>
    <real name="up" addr="127.0.0.1" port="80" weight="10"/>
    {extra}
  </virtual>
</surealived>
"""


class Running:
    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self.proc = proc
        self.selector = selectors.DefaultSelector()
        assert proc.stderr is not None
        self.stderr = proc.stderr.buffer  # read as bytes, without blocking
        os.set_blocking(self.stderr.fileno(), False)
        self.selector.register(self.stderr, selectors.EVENT_READ)
        self.buffer = b""
        self.lines: list[str] = []

    def wait_for(self, text: str, timeout: float = 15.0) -> str:
        deadline = time.monotonic() + timeout
        seen = 0
        while time.monotonic() < deadline:
            for line in self.lines[seen:]:
                if text in line:
                    return line
            seen = len(self.lines)
            if self.selector.select(0.1):
                chunk = self.stderr.read() or b""
                self.buffer += chunk
                *complete, self.buffer = self.buffer.split(b"\n")
                self.lines += [c.decode() for c in complete]
                if not chunk and self.proc.poll() is not None:
                    break
        raise AssertionError(f"no line with {text!r} in:\n" + "\n".join(self.lines))


@pytest.fixture
def listener() -> Iterator[int]:
    with socket.socket() as sock:  # the kernel completes handshakes: tcp checks pass
        sock.bind(("127.0.0.1", 0))
        sock.listen(128)
        yield sock.getsockname()[1]


def start(tmp_path: Path, xml: str) -> Running:
    project = Project(tmp_path, dirs=(), cfg_name="s.cfg", xml_name="t.xml")
    project.write_cfg({k: v.format(d=tmp_path) for k, v in KEYS.items()})
    project.xml.write_text(xml)
    return Running(project.start(stdout=subprocess.DEVNULL, PYTHONUNBUFFERED="1"))


def test_reload_refuses_a_broken_configuration_and_takes_a_good_one(
        tmp_path: Path, listener: int) -> None:
    refused = '<real name="down" addr="127.0.0.2" port="80" weight="10" testport="1"/>'
    daemon = start(tmp_path, XML.format(port=listener, extra=refused))
    try:
        daemon.wait_for("Started: 1 virtuals, 2 reals")
        line = daemon.wait_for("[web:down - 192.0.2.1:80:tcp 127.0.0.2:80] changed its test "
                               "state to OFFLINE")
        assert line.endswith("connect: connection refused")
        (tmp_path / "t.xml").write_text(XML.format(port=listener, extra='<real name="x"/>'))
        daemon.proc.send_signal(signal.SIGHUP)
        daemon.wait_for(f"{tmp_path / 't.xml'}:5: <real name=\"x\"> addr: is mandatory")
        daemon.wait_for("Configuration refused (")
        assert daemon.proc.poll() is None
        (tmp_path / "t.xml").write_text(XML.format(port=listener, extra=""))
        daemon.proc.send_signal(signal.SIGHUP)
        daemon.wait_for("Configuration reloaded: 1 virtuals, 1 reals")
        daemon.proc.send_signal(signal.SIGTERM)
        daemon.wait_for("Stopped (exit status 0)")
        assert daemon.proc.wait(15) == 0
    finally:
        if daemon.proc.poll() is None:
            daemon.proc.kill()
            daemon.proc.wait()


def test_a_broken_configuration_at_start_exits_1_naming_the_line(tmp_path: Path) -> None:
    daemon = start(tmp_path, XML.format(port=80, extra='<real name="x" addr="nowhere"/>'))
    assert daemon.proc.wait(30) == 1
    daemon.wait_for(f"{tmp_path / 't.xml'}:5:")
    daemon.wait_for("Configuration file is broken!")


def test_a_real_is_checked_at_the_originals_period(tmp_path: Path) -> None:
    """timeout 0.5 + loopdelay 0.5: one check a second, however fast the real answers (the
    rounds' old rule, loopdelay after the last answer, checked it twice as often)."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(128)
        server.settimeout(15)
        xml = XML.format(port=server.getsockname()[1], extra="").replace(
            'loopdelay="0.2" timeout="1"', 'loopdelay="0.5" timeout="0.5" half_open="0"')
        daemon = start(tmp_path, xml)
        try:
            first, _ = server.accept()  # queued connections are there even once reset
            first.close()
            begin = time.monotonic()
            checks = 0
            server.settimeout(0.2)
            while time.monotonic() - begin < 5.5:
                try:
                    peer, _ = server.accept()
                except TimeoutError:
                    continue
                peer.close()
                checks += 1
        finally:
            daemon.proc.kill()
            daemon.proc.wait()
    assert 4 <= checks <= 6, checks  # 5 at a period of 1 s; 11 at the old 0.5 s
