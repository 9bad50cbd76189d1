"""A small surealived project in a temporary folder: surealived.cfg with every path inside it,
one virtual whose real is a listening socket on 127.0.0.1, and a way to start the daemon."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests import daemon_harness
from tests.daemon_harness import BIN

__all__ = ["BIN", "Project", "project"]

XML = """<surealived>
  <virtual name="web" addr="192.0.2.1" port="80" proto="tcp" sched="wrr" rt="dr">
    <tester proto="tcp" testport="{port}" loopdelay="1" timeout="2"/>
    <real name="a" addr="127.0.0.1" port="80" weight="10"/>
  </virtual>
</surealived>
"""


class Project(daemon_harness.Project):
    """The shared project with a pid file, and ``port`` the real's test port."""

    def __init__(self, root: Path, port: int) -> None:
        super().__init__(root)
        self.port = port

    def write(self, level: str = "info", extra: str = "") -> None:
        self.write_cfg(logging=level, pid_file="state/surealived.pid", extra=extra)
        self.xml.write_text(XML.format(port=self.port))


@pytest.fixture
def project(tmp_path: Path) -> Iterator[Project]:
    """The real under test is a socket listening on 127.0.0.1 (connects complete in the
    kernel's backlog, which is all the tcp tester needs)."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1024)
    project = Project(tmp_path, listener.getsockname()[1])
    project.write()
    yield project
    listener.close()
