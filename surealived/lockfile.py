"""An exclusive ``flock`` on a file that holds its owner's pid: one process per set of files.

Used by surealived (one per state folder, and its ``-d`` pid file) and ipvssync (one per set of
sync files). A lock left
by a dead process is free again (the kernel drops an ``flock`` with its last descriptor), so the
file is never removed: removing it at exit would let a starting process lock an inode that a
third one no longer sees.
"""

from __future__ import annotations

import errno
import fcntl
import os


class Locked(Exception):
    """Another process holds the lock, or the lock file cannot be used (the message says)."""


def take(path: str, program: str, hint: str, what: str = "instance lock") -> int:
    """Lock ``path`` and write our pid in it; returns the descriptor that holds the lock (keep
    it open). ``Locked`` names the holder's pid, the lock (``what`` it is), and ``hint``."""
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    except OSError as exc:
        raise Locked(f"cannot open the {what} {path}: {exc.strerror}") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        holder = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
        os.close(fd)
        if exc.errno in (errno.EWOULDBLOCK, errno.EACCES):
            who = f"pid {holder}" if holder.isdigit() else "a process that is still starting"
            raise Locked(f"another {program} ({who}) holds the {what} {path}: {hint}") from None
        raise Locked(f"cannot lock the {what} {path}: {exc.strerror}") from None
    write_pid(fd)
    return fd


def write_pid(fd: int) -> None:
    """Our pid into the held lock file (again after ``-d`` has forked)."""
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
