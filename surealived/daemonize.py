"""``-d``: detach into the background, for hosts without systemd.

``daemonize(pid_file)`` must run before any event loop or thread exists. It forks twice with a
``setsid()`` between (the daemon is no session leader and can never get a terminal back), keeps
the working directory (as the original's ``daemon(1, 0)``), points stdin at ``/dev/null`` and,
in the daemon, writes the pid file while holding an ``flock`` on it, so a second daemon with the
same pid file refuses to start and a stale file left by a crash is simply taken over.

The shell's command does not return at once: the first process waits on a pipe until the daemon
calls ``report_ready()`` (exit status 0) or ``report_failure(message)`` or dies (exit status 1,
the message on stderr). Until then the daemon's stdout and stderr are still the terminal, so
startup errors are seen; ``report_ready()`` points them at ``/dev/null``.

The pipe's write end is the one piece of process-wide state: it belongs to this process like
its pid, and only the daemon that ``daemonize()`` returned in has it.
"""

from __future__ import annotations

import atexit
import contextlib
import fcntl
import os
import sys
import threading

from .lockfile import Locked, take

_ready_fd: int | None = None
_name = "surealived"  # the program named in the first process's error message

EXIT_STARTED = 0
EXIT_FAILED = 1


class PidFileError(Exception):
    """The pid file cannot be written, or another process holds it."""


def daemonize(pid_file: str | None, name: str = "surealived") -> None:
    """Detach; returns only in the daemon. The calling process exits (0 once the daemon is ready,
    1 if it failed, with the failure on stderr prefixed by ``name``)."""
    global _ready_fd, _name
    _name = name
    if threading.active_count() > 1:
        raise RuntimeError("daemonize() must run before any thread is started")
    sys.stdout.flush()
    sys.stderr.flush()
    read_end, write_end = os.pipe()
    if os.fork() > 0:
        os.close(write_end)
        os._exit(_wait_for_daemon(read_end))
    os.close(read_end)
    os.setsid()
    if os.fork() > 0:
        os._exit(0)
    _ready_fd = write_end
    null = os.open(os.devnull, os.O_RDWR)
    os.dup2(null, 0)
    os.close(null)
    if pid_file:
        try:
            hold_pid_file(pid_file)
        except PidFileError as exc:
            report_failure(str(exc))
            os._exit(EXIT_FAILED)


def _wait_for_daemon(read_end: int) -> int:
    """In the first process: the daemon's verdict as an exit status."""
    chunks = []
    while True:
        try:
            chunk = os.read(read_end, 4096)
        except InterruptedError:
            continue
        if not chunk:
            break
        chunks.append(chunk)
    message = b"".join(chunks).decode("utf-8", "replace")
    if message.startswith("ok"):
        return EXIT_STARTED
    if message.startswith("error "):
        sys.stderr.write(f"{_name}: {message[6:].rstrip()}\n")
    else:
        sys.stderr.write(f"{_name}: the daemon exited while starting (see its log)\n")
    sys.stderr.flush()
    return EXIT_FAILED


def _tell_parent(message: str) -> bool:
    global _ready_fd
    if _ready_fd is None:
        return False
    fd, _ready_fd = _ready_fd, None
    try:
        os.write(fd, message.encode())
    except OSError:
        pass
    finally:
        os.close(fd)
    return True


def report_ready() -> None:
    """The daemon is up: let the waiting shell exit 0 and let go of the terminal.
    Does nothing when the process was not daemonized (or already reported)."""
    if _tell_parent("ok\n"):
        sys.stdout.flush()
        sys.stderr.flush()
        null = os.open(os.devnull, os.O_RDWR)
        os.dup2(null, 1)
        os.dup2(null, 2)
        os.close(null)


def report_failure(message: str) -> None:
    """The daemon cannot start: the waiting shell prints ``message`` and exits 1."""
    _tell_parent(f"error {message}\n")


def is_daemonized_pending() -> bool:
    """True in a daemon that has not reported readiness yet."""
    return _ready_fd is not None


def hold_pid_file(path: str) -> int:
    """Write our pid into ``path`` under an exclusive ``flock`` kept for the process's life
    (``lockfile.take``); the file is removed at exit. Returns the descriptor that holds it."""
    try:
        fd = take(path, "surealived", "is another daemon running?", what="pid file")
    except Locked as exc:
        raise PidFileError(str(exc)) from None
    os.fsync(fd)
    pid = os.getpid()

    def remove() -> None:
        if os.getpid() == pid:  # not in a forked child
            with contextlib.suppress(OSError):
                os.unlink(path)
            os.close(fd)

    atexit.register(remove)
    return fd


def read_pid_file(path: str) -> int | None:
    """The pid of the live process holding ``path``, or None (no file, stale file)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except OSError:
            text = os.read(fd, 64).decode("ascii", "replace").strip()
            return int(text) if text.isdigit() else None
        return None  # nobody holds the lock: stale
    finally:
        os.close(fd)
