"""maxfd raises the open-file limit (never lowers it); memlimit stops the daemon cleanly."""

from __future__ import annotations

import asyncio
import logging
import resource
import subprocess
import sys
import textwrap

import pytest

from surealived.limits import EXIT_MEMLIMIT, MemoryLimit, raise_fd_limit, rss_kb


def _in_child(code: str) -> str:
    """Run ``code`` in a fresh interpreter (limits are per process) and return its stdout."""
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True,
                          text=True, timeout=30)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def test_raises_the_soft_limit_and_logs_like_the_original():
    out = _in_child("""
        import logging, resource, sys
        from surealived.limits import raise_fd_limit
        logging.basicConfig(stream=sys.stdout, level=logging.INFO, format="%(message)s")
        resource.setrlimit(resource.RLIMIT_NOFILE, (256, 4096))
        print(raise_fd_limit(2048, logging.getLogger("t")))
        print(resource.getrlimit(resource.RLIMIT_NOFILE))
    """)
    assert out.splitlines() == ["current maxfd: (soft=256, hard=4096)",
                                "changed maxfd to: (soft=2048, hard=4096)",
                                "(2048, 4096)", "(2048, 4096)"]


def test_never_lowers_a_higher_limit():
    out = _in_child("""
        import resource
        from surealived.limits import raise_fd_limit
        resource.setrlimit(resource.RLIMIT_NOFILE, (8192, 8192))
        print(raise_fd_limit(1024), resource.getrlimit(resource.RLIMIT_NOFILE))
    """)
    assert out.strip() == "(8192, 8192) (8192, 8192)"


def test_without_privilege_it_settles_for_the_hard_limit():
    out = _in_child("""
        import logging, os, resource, sys
        from surealived.limits import raise_fd_limit
        logging.basicConfig(stream=sys.stdout, level=logging.INFO, format="%(message)s")
        resource.setrlimit(resource.RLIMIT_NOFILE, (100, 500))
        if os.getuid() == 0:
            os.setgid(65534); os.setuid(65534)  # lose CAP_SYS_RESOURCE
        print(raise_fd_limit(4096, logging.getLogger("t")))
    """)
    lines = out.splitlines()
    assert lines[1].startswith("setrlimit error: [sys=")
    assert lines[-2:] == ["changed maxfd to: (soft=500, hard=500)", "(500, 500)"]


def test_rss_is_read_from_proc():
    assert 1000 < rss_kb() < 10_000_000


class FakeDaemon:
    """Only what MemoryLimit touches: the limit, the exit code and the stop request."""

    def __init__(self, memlimit: int) -> None:
        from surealived.config.main import MainConfig

        self.maincfg = MainConfig(memlimit=memlimit)
        self.exit_code = 0
        self.stopped = asyncio.Event()

    def request_stop(self) -> None:
        self.stopped.set()


@pytest.mark.asyncio
async def test_memlimit_exceeded_stops_with_status_3(caplog):
    daemon = FakeDaemon(memlimit=1000)  # 1 MB: any Python process is over it
    component = MemoryLimit(period=0.05)
    with caplog.at_level(logging.INFO, logger="surealived"):
        await component.start(daemon)  # type: ignore[arg-type]
        await asyncio.wait_for(daemon.stopped.wait(), 10)
        await component.stop(daemon)  # type: ignore[arg-type]
    assert daemon.exit_code == EXIT_MEMLIMIT == 3
    assert "memory limit exceeded: resident" in caplog.text
    assert "> memlimit 1000 kB" in caplog.text


@pytest.mark.asyncio
async def test_memlimit_not_exceeded_keeps_running():
    daemon = FakeDaemon(memlimit=100_000_000)
    component = MemoryLimit(period=0.01)
    await component.start(daemon)  # type: ignore[arg-type]
    await asyncio.sleep(0.2)
    assert not daemon.stopped.is_set()
    await component.stop(daemon)  # type: ignore[arg-type]
    assert daemon.exit_code == 0


@pytest.mark.asyncio
async def test_memlimit_0_means_no_limit():
    daemon = FakeDaemon(memlimit=0)
    component = MemoryLimit(period=0.01)
    await component.start(daemon)  # type: ignore[arg-type]
    assert component._task is None
    await component.stop(daemon)  # type: ignore[arg-type]


def test_limits_do_not_leak_into_this_process():
    assert resource.getrlimit(resource.RLIMIT_NOFILE)[0] >= 64
    assert raise_fd_limit(64) == resource.getrlimit(resource.RLIMIT_NOFILE)
