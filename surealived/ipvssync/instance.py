"""ipvssync's instance lock: one syncing ipvssync per set of sync files.

Two ipvssync processes on the same files would both apply diffs, remove the reload flag and
consumed diffs, and fight over the kernel table. So the syncing modes (the loop and ``--once``)
first take ``flock(LOCK_EX | LOCK_NB)`` on ``ipvssync.lock``, in the folder of
``lock_sync_file``, and keep it for the process's life, with their pid written in it. A second
one fails at once with one line naming the lock and the holder's pid, before it writes anything
(log file, pid file, kernel, reload flag, diffs). ``-t`` and ``--plan`` change nothing and take
no lock, so they work beside a running ipvssync.

The lock itself is ``lockfile``'s, as surealived's.
"""

from __future__ import annotations

import os

from ..lockfile import Locked as InstanceLocked
from ..lockfile import take, write_pid
from .files import SyncPaths

__all__ = ["InstanceLocked", "instance_lock_path", "take_instance_lock", "write_pid"]

LOCK_NAME = "ipvssync.lock"


def instance_lock_path(paths: SyncPaths) -> str:
    return os.path.join(os.path.dirname(os.path.abspath(paths.lock_sync_file)), LOCK_NAME)


def take_instance_lock(path: str) -> int:
    """Lock ``path`` with our pid in it; the descriptor that holds it. Raises ``Locked``."""
    return take(path, "ipvssync", "one ipvssync per set of sync files; stop that one first")
