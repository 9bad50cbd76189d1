"""The file side of the hand-off: flock, atomic snapshots, fsynced diff lines, the reload flag.

All writes happen in one worker thread, in the order they were asked for, so the event loop never
waits for the disk or for ipvssync holding the lock. The caller builds the text (from the state,
on its own thread) and hands it over; this module only knows files.

A snapshot, under the lock:
1. create the next diff file, empty (``O_EXCL``: a second snapshot in the same second gets a
   ``.N`` suffix instead of truncating a file ipvssync may be reading);
2. write the new ``ipvsfull.cfg`` to a temporary file and fsync it;
3. append ``DIFF file=<new>`` to the old diff, fsync (the link never dangles: the target exists);
4. rename the temporary file over ``ipvsfull.cfg`` and fsync the folder;
5. for a forced snapshot (start, reload, recovery after a write error) touch the reload flag.
A process killed at any point leaves either the old snapshot or the new one, each naming a diff
file that exists and ends in whole lines.

Diff lines queued together are written with one ``write`` and one fsync under one lock.
"""

from __future__ import annotations

import errno
import fcntl
import logging
import os
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from ..ipvssync.files import SyncPaths
from ..persist.atomic import atomic_write, fsync_dir, touch, write_all
from .formats import diff_link, diff_path, snapshot_header


class SyncError(Exception):
    """A sync file that cannot be created or written (the message names it)."""


@dataclass(frozen=True)
class _Snapshot:
    body: str
    when: float
    force: bool


@dataclass(frozen=True)
class _Diff:
    text: str


@dataclass(frozen=True)
class _Barrier:
    done: threading.Event


_Job = _Snapshot | _Diff | _Barrier | None


class SyncFiles:
    """The files themselves; every method blocks and must run on one thread at a time."""

    def __init__(self, paths: SyncPaths, logger: logging.Logger | None = None) -> None:
        self.paths = paths
        self.log = logger or logging.getLogger("surealived.sync")
        self.lock_fd = -1
        self.diff_fd = -1
        self.diff_file = ""

    def open(self) -> None:
        """Create the folders if missing and open the lock file (kept open for life)."""
        p = self.paths
        for folder in {p.diff_sync_dir, os.path.dirname(p.full_sync_file),
                       os.path.dirname(p.lock_sync_file), os.path.dirname(p.full_reload_file)}:
            if folder:
                try:
                    os.makedirs(folder, mode=0o755, exist_ok=True)
                except OSError as exc:
                    raise SyncError(f"cannot create folder {folder}: {exc.strerror}") from exc
        try:
            self.lock_fd = os.open(p.lock_sync_file, os.O_RDONLY | os.O_CREAT, 0o644)
        except OSError as exc:
            raise SyncError(f"cannot open lock file {p.lock_sync_file}: {exc.strerror}") from exc

    def close(self) -> None:
        for fd in (self.diff_fd, self.lock_fd):
            if fd >= 0:
                os.close(fd)
        self.diff_fd = self.lock_fd = -1

    def _lock(self) -> None:
        fcntl.flock(self.lock_fd, fcntl.LOCK_EX)

    def _unlock(self) -> None:
        fcntl.flock(self.lock_fd, fcntl.LOCK_UN)

    def _new_diff(self, when: float) -> tuple[str, int]:
        epoch = int(when)
        for serial in range(1000):
            path = diff_path(self.paths.diff_sync_dir, epoch, serial)
            try:
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND, 0o644)
            except FileExistsError:
                continue
            except OSError as exc:
                raise SyncError(f"cannot create diff file {path}: {exc.strerror}") from exc
            return path, fd
        raise SyncError(f"cannot create a diff file in {self.paths.diff_sync_dir}: "
                        "1000 names taken")

    def snapshot(self, body: str, when: float, force: bool) -> None:
        """Write a new snapshot and switch to a new diff file (steps in the module doc)."""
        p = self.paths
        self._lock()
        try:
            path, fd = self._new_diff(when)
            try:
                fsync_dir(p.diff_sync_dir)
                text = snapshot_header(path, when) + body
                try:
                    atomic_write(p.full_sync_file, text)
                except OSError as exc:
                    raise SyncError(f"cannot write {p.full_sync_file}: {exc.strerror}") from exc
            except BaseException:
                os.close(fd)
                raise
            if self.diff_fd >= 0:
                # Link the old diff to the new one; ipvssync following the chain switches here.
                try:
                    write_all(self.diff_fd, diff_link(path).encode())
                    os.fsync(self.diff_fd)
                except OSError as exc:
                    self.log.error("sync: cannot close diff file %s: %s", self.diff_file,
                                   exc.strerror)
                os.close(self.diff_fd)
            self.diff_fd, self.diff_file = fd, path
            self.log.info("Full ipvssync config saved [%s]", p.full_sync_file)
            if force:
                try:
                    touch(p.full_reload_file)
                except OSError as exc:
                    raise SyncError(f"cannot create reload flag {p.full_reload_file}: "
                                    f"{exc.strerror}") from exc
                self.log.info("Full reload file touched [%s]", p.full_reload_file)
        finally:
            self._unlock()

    def append(self, text: str) -> None:
        """Append whole diff lines to the current diff file and fsync them."""
        if self.diff_fd < 0:
            raise SyncError("no diff file open (no snapshot written yet)")
        self._lock()
        try:
            try:
                write_all(self.diff_fd, text.encode())
                os.fsync(self.diff_fd)
            except OSError as exc:
                raise SyncError(f"cannot append to {self.diff_file}: {exc.strerror}") from exc
        finally:
            self._unlock()


class SyncWriter:
    """``SyncFiles`` behind a queue and one worker thread. ``failed`` turns true when a write
    fails; the owner then asks for a forced snapshot, which resynchronises ipvssync."""

    def __init__(self, paths: SyncPaths, logger: logging.Logger | None = None,
                 on_error: Callable[[SyncError], None] | None = None) -> None:
        self.files = SyncFiles(paths, logger)
        self.log = self.files.log
        self.failed = False
        self.on_error = on_error
        self._queue: queue.SimpleQueue[_Job] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None

    def start(self, body: str, when: float | None = None) -> None:
        """Open the files and write the forced snapshot (raising ``SyncError`` if that fails),
        then start the worker. Blocks: call it through ``asyncio.to_thread``."""
        self.files.open()
        self.files.snapshot(body, time.time() if when is None else when, force=True)
        self._thread = threading.Thread(target=self._run, name="sync-writer", daemon=True)
        self._thread.start()

    def snapshot(self, body: str, when: float | None = None, force: bool = False) -> None:
        self._queue.put(_Snapshot(body, time.time() if when is None else when, force))

    def diff(self, text: str) -> None:
        if text:
            self._queue.put(_Diff(text))

    def drain(self, timeout: float | None = None) -> bool:
        """Block until everything queued so far is written (or failed)."""
        if self._thread is None or not self._thread.is_alive():
            return True
        done = threading.Event()
        self._queue.put(_Barrier(done))
        return done.wait(timeout)

    def stop(self) -> None:
        """Write what is queued, then stop the thread and close the files."""
        if self._thread is not None and self._thread.is_alive():
            self._queue.put(None)
            self._thread.join()
        self.files.close()

    def _run(self) -> None:
        while True:
            jobs = [self._queue.get()]
            while True:  # take everything already queued: one lock and one fsync for a burst
                try:
                    jobs.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            pending: list[str] = []
            stop = False
            for job in jobs:
                if isinstance(job, _Diff):
                    pending.append(job.text)
                    continue
                self._flush(pending)
                if isinstance(job, _Snapshot):
                    self._guard(self.files.snapshot, job.body, job.when, job.force)
                elif isinstance(job, _Barrier):
                    job.done.set()
                else:
                    stop = True
                    break
            self._flush(pending)
            if stop:
                return

    def _flush(self, pending: list[str]) -> None:
        if pending:
            text = "".join(pending)
            pending.clear()
            self._guard(self.files.append, text)

    def _guard(self, action: Callable[..., None], *args: object) -> None:
        try:
            action(*args)
        except SyncError as exc:
            self._fail(exc)
        except OSError as exc:  # flock itself failing: a broken lock file
            self._fail(SyncError(f"sync: {errno.errorcode.get(exc.errno or 0, '')} {exc}"))

    def _fail(self, exc: SyncError) -> None:
        self.failed = True
        self.log.error("sync: %s; a full snapshot and the reload flag will follow", exc)
        if self.on_error is not None:
            self.on_error(exc)
