"""One surealived per state folder: an exclusive ``flock`` on ``surealived.lock`` in each folder
the daemon writes its state to (the folder of ``full_sync_file`` and of the dumps).

The lock is taken after the configuration has been read and before anything is written (sync
files, dumps, pid file), whether or not ``pid_file`` is set: a second daemon on the same files
(one started by hand beside the unit, say) would otherwise replace the snapshot and the diff the
running one still appends to. The file holds the holder's pid, so the refusal names it. A lock
left by a dead process is free again (the kernel drops an ``flock`` with its last descriptor).
"""

from __future__ import annotations

import os
from collections.abc import Iterable

from .config.main import MainConfig
from .lockfile import Locked as InstanceLocked
from .lockfile import take, write_pid

__all__ = ["InstanceLock", "InstanceLocked", "lock_paths"]

LOCK_NAME = "surealived.lock"


def lock_paths(cfg: MainConfig) -> list[str]:
    """The lock file of every distinct state folder ``cfg`` writes to, in a stable order."""
    files = [cfg.override_dump, cfg.offline_dump, cfg.stats_dump, cfg.notify_dump]
    if not cfg.no_sync:
        files.append(cfg.full_sync_file)
    folders = dict.fromkeys(os.path.dirname(os.path.abspath(f)) for f in files if f)
    return [os.path.join(folder, LOCK_NAME) for folder in folders]


class InstanceLock:
    """Holds the locks until ``release`` (or the process's end)."""

    def __init__(self) -> None:
        self.fds: dict[str, int] = {}

    def acquire(self, paths: Iterable[str]) -> None:
        """Lock every path or none; ``InstanceLocked`` or ``OSError`` when one cannot be."""
        try:
            for path in paths:
                self.fds[path] = _lock(path)
        except BaseException:
            self.release()
            raise
        self.record_pid()

    def record_pid(self) -> None:
        """Write this process's pid into every lock (again after ``-d`` forked)."""
        for fd in self.fds.values():
            write_pid(fd)

    def release(self) -> None:
        for fd in self.fds.values():
            os.close(fd)
        self.fds.clear()


def _lock(path: str) -> int:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    return take(path, "surealived", "not starting (stop it first, or give this one its own "
                "state folder)")
