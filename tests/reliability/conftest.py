"""The reliability suite: a table of figures (cases tried, failures, fds and RSS before and
after) is printed at the end of any run that collected these tests. ``RELIABILITY_SCALE=N``
multiplies the case counts; ``RELIABILITY_FIGURES=FILE`` also appends each row as JSON."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import pytest

from .figures import ROWS, table
from .harness import Daemon, MakeDaemon


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not ROWS:
        return
    terminalreporter.section("reliability figures")
    for line in table(ROWS):
        terminalreporter.write_line(line)


@pytest.fixture
def make_daemon(tmp_path: Path) -> Iterator[MakeDaemon]:
    """``make_daemon(xml, extra=...)``: a project in tmp_path; every daemon started is stopped
    (SIGTERM, then SIGKILL) at the end of the test."""
    made: list[Daemon] = []

    def factory(xml: str, **kwargs: str) -> Daemon:
        daemon = Daemon(tmp_path / f"d{len(made)}", xml, **kwargs)
        made.append(daemon)
        return daemon

    yield factory
    for daemon in made:
        if daemon.alive():
            with contextlib.suppress(AssertionError):
                daemon.stop()
