"""ipvssync's instance lock: one syncing ipvssync per set of sync files.

Two ipvssync processes on the same files would both apply diffs, remove the reload flag and
consumed diffs, and fight over the kernel table. So the syncing modes (the loop and ``--once``)
first take ``flock(LOCK_EX | LOCK_NB)`` on ``ipvssync.lock``, in the folder of
``lock_sync_file``, and keep it for the process's life, with their pid written in it. A second
one fails at once with one line naming the lock and the holder's pid, before it writes anything
(log file, pid file, kernel, reload flag, diffs). ``-t`` and ``--plan`` change nothing and take
no lock, so they work beside a running ipvssync.

The file is never removed: removing it at exit would let a starting instance lock an inode that
a third one no longer sees. A file left by a dead process is simply locked again (flock dies
with its holder).
"""

from __future__ import annotations

import errno
import fcntl
import os

from .files import SyncPaths

LOCK_NAME = "ipvssync.lock"


class InstanceLocked(Exception):
    """Another ipvssync holds the lock, or the lock file cannot be used (the message says)."""


def instance_lock_path(paths: SyncPaths) -> str:
    return os.path.join(os.path.dirname(os.path.abspath(paths.lock_sync_file)), LOCK_NAME)


def take_instance_lock(path: str) -> int:
    """Lock ``path`` and write our pid in it; returns the descriptor that holds the lock (keep
    it open). Raises ``InstanceLocked``."""
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    except OSError as exc:
        raise InstanceLocked(f"cannot open the instance lock {path}: {exc.strerror}") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        holder = os.read(fd, 32).decode("ascii", "replace").strip()
        os.close(fd)
        if exc.errno in (errno.EWOULDBLOCK, errno.EACCES):
            who = f"pid {holder}" if holder.isdigit() else "a process that is still starting"
            raise InstanceLocked(f"another ipvssync ({who}) holds the instance lock {path}: "
                                 "one ipvssync per set of sync files; stop that one "
                                 "first") from None
        raise InstanceLocked(f"cannot lock the instance lock {path}: {exc.strerror}") from None
    write_pid(fd)
    return fd


def write_pid(fd: int) -> None:
    """Our pid into the held lock file (again after ``-d`` has forked)."""
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
