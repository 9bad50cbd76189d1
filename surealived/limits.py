"""Process limits from surealived.cfg: ``maxfd`` (open files) and ``memlimit`` (memory).

``raise_fd_limit(maxfd)`` raises ``RLIMIT_NOFILE`` as the original did (soft to ``maxfd``, hard
too when it is lower), logging the same two lines; unlike the original it never lowers a limit
(systemd's ``LimitNOFILE=`` may already be higher) and falls back to the hard limit when the
hard limit cannot be raised.

``MemoryLimit`` replaces the original's watchdog process: every few seconds it reads the
daemon's resident size and, past ``memlimit`` kB, logs why and stops the daemon cleanly (dumps
saved) with exit status ``EXIT_MEMLIMIT``, so systemd (``Restart=on-failure``) starts a fresh
one. The original compared ``VmSize``; address space means little for a Python process with
threads (each reserves arenas it never touches), so resident memory is what is limited.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import resource
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .components import DaemonView

log = logging.getLogger("surealived")

EXIT_MEMLIMIT = 3
CHECK_PERIOD = 5.0


def raise_fd_limit(maxfd: int, logger: logging.Logger = log) -> tuple[int, int]:
    """Make at least ``maxfd`` descriptors available; return the (soft, hard) limit in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    logger.info("current maxfd: (soft=%d, hard=%d)", soft, hard)
    if soft >= maxfd:
        return soft, hard
    wanted = (maxfd, max(hard, maxfd))
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, wanted)
    except (ValueError, OSError) as exc:
        logger.warning("setrlimit error: [sys=%s] cannot raise maxfd to %d (hard limit %d; "
                       "raising it needs CAP_SYS_RESOURCE or LimitNOFILE= in the unit)",
                       getattr(exc, "strerror", None) or exc, maxfd, hard)
        if soft < hard:
            wanted = (hard, hard)
            resource.setrlimit(resource.RLIMIT_NOFILE, wanted)
        else:
            return soft, hard
    logger.info("changed maxfd to: (soft=%d, hard=%d)", *wanted)
    return wanted


def rss_kb(status_path: str = "/proc/self/status") -> int:
    """Resident set size in kB (``VmRSS`` of ``/proc/<pid>/status``)."""
    with open(status_path, encoding="ascii") as handle:
        for line in handle:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise ValueError(f"{status_path}: no VmRSS line")


class MemoryLimit:
    """Stops the daemon (exit status 3) when its resident memory exceeds ``memlimit`` kB."""

    def __init__(self, limit_kb: int | None = None, period: float = CHECK_PERIOD) -> None:
        self.limit_kb = limit_kb
        self.period = period
        self._task: asyncio.Task[None] | None = None
        self._watching = 0

    async def start(self, daemon: DaemonView) -> None:
        self._restart(daemon)

    async def reloaded(self, daemon: DaemonView) -> None:
        self._restart(daemon)

    def _restart(self, daemon: DaemonView) -> None:
        limit = self.limit_kb if self.limit_kb is not None else daemon.maincfg.memlimit
        if self._task is not None and limit == self._watching:
            return
        self._cancel()
        if limit > 0:
            log.info("memory limit set to: %d kB (resident)", limit)
            self._task = asyncio.create_task(self._watch(daemon, limit), name="memlimit")
            self._watching = limit

    async def _watch(self, daemon: DaemonView, limit: int) -> None:
        while True:
            used = rss_kb()
            if used > limit:
                log.error("memory limit exceeded: resident %d kB > memlimit %d kB - stopping "
                          "(exit status %d, for the supervisor to restart)", used, limit,
                          EXIT_MEMLIMIT)
                daemon.exit_code = EXIT_MEMLIMIT
                daemon.request_stop()
                return
            await asyncio.sleep(self.period)

    def _cancel(self) -> None:
        if self._task is not None:
            self._task.cancel()
            self._task = None
        self._watching = 0

    async def stop(self, daemon: DaemonView) -> None:
        task, self._task = self._task, None
        if task is not None and not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


# Descriptors kept for everything that is neither a check nor a client: the log, the listeners,
# the dump and sync files, the event loop's own, a Lua runtime's, a notify script's pipes.
BASE_FDS = 32


def status_client_budget(soft_limit: int, max_inflight: int, control_clients: int,
                         wanted: int) -> int:
    """How many status connections fit beside ``max_inflight`` checks, the control clients and
    ``BASE_FDS`` within ``soft_limit``: at most ``wanted``, at least 1. So no listener, however
    many clients it has, can take the descriptors the checks were promised."""
    spare = soft_limit - max_inflight - control_clients - BASE_FDS
    return max(1, min(wanted, spare))
