"""A small surealived project in a temporary folder: surealived.cfg with every path inside it,
one virtual whose real is a listening socket on 127.0.0.1, and a way to start the daemon."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

BIN = Path(sys.executable).parent
CFG = """\
log log/surealived.log
logging {level}
listen_port 0
stats_dir log/stats
debug_comm_path log/comm
lock_sync_file state/ipvsfull.lock
full_sync_file state/ipvsfull.cfg
full_reload_file state/ipvsfull.reload
diff_sync_dir state/diffs
offline_dump state/offline.dump
override_dump state/override.dump
stats_dump state/stats.dump
notify_dump state/notify.dump
pid_file state/surealived.pid
modules_path testers
startup_delay_ms 100
{extra}
"""
XML = """<surealived>
  <virtual name="web" addr="192.0.2.1" port="80" proto="tcp" sched="wrr" rt="dr">
    <tester proto="tcp" testport="{port}" loopdelay="1" timeout="2"/>
    <real name="a" addr="127.0.0.1" port="80" weight="10"/>
  </virtual>
</surealived>
"""


@dataclass
class Project:
    root: Path
    port: int

    @property
    def cfg(self) -> Path:
        return self.root / "surealived.cfg"

    @property
    def xml(self) -> Path:
        return self.root / "surealived.xml"

    @property
    def log(self) -> Path:
        return self.root / "log" / "surealived.log"

    @property
    def pid_file(self) -> Path:
        return self.root / "state" / "surealived.pid"

    def write(self, level: str = "info", extra: str = "") -> None:
        self.cfg.write_text(CFG.format(level=level, extra=extra))
        self.xml.write_text(XML.format(port=self.port))

    def env(self, **extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items()
               if k not in ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID", "JOURNAL_STREAM")}
        env.update(extra)
        return env

    def start(self, *args: str, **env: str) -> subprocess.Popen[str]:
        return subprocess.Popen([str(BIN / "surealived"), "-c", str(self.cfg), *args,
                                 str(self.xml)], cwd=self.root, env=self.env(**env),
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def run(self, *args: str, timeout: float = 60,
            **env: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(BIN / "surealived"), "-c", str(self.cfg), *args,
                               str(self.xml)], cwd=self.root, env=self.env(**env),
                              capture_output=True, text=True, timeout=timeout)


@pytest.fixture
def project(tmp_path: Path) -> Iterator[Project]:
    """The real under test is a socket listening on 127.0.0.1 (connects complete in the
    kernel's backlog, which is all the tcp tester needs)."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1024)
    for sub in ("log", "state", "testers"):
        (tmp_path / sub).mkdir()
    project = Project(tmp_path, listener.getsockname()[1])
    project.write()
    yield project
    listener.close()
