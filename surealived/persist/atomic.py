"""Crash-safe file writes: a reader sees the old file or the new one, never a part.

The data goes to a temporary file in the same folder, is fsynced, renamed over the target, and the
folder is fsynced so the rename itself survives a power cut. A leftover temporary file from a
killed process is simply overwritten next time.
"""

from __future__ import annotations

import os


def fsync_dir(path: str) -> None:
    """fsync a folder so entries created or renamed in it are durable."""
    fd = os.open(path or ".", os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


def atomic_write(path: str, data: str | bytes, mode: int = 0o644) -> None:
    """Replace ``path`` with ``data`` atomically and durably."""
    raw = data.encode() if isinstance(data, str) else data
    folder = os.path.dirname(path) or "."
    tmp = os.path.join(folder, f".{os.path.basename(path)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        write_all(fd, raw)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    fsync_dir(folder)


def touch(path: str, mode: int = 0o644) -> None:
    """Create ``path`` if missing (content irrelevant) and make its entry durable."""
    os.close(os.open(path, os.O_WRONLY | os.O_CREAT, mode))
    fsync_dir(os.path.dirname(path) or ".")
