"""The files surealived writes for ipvssync: where they are, the lock, and following the diffs.

``SyncPaths`` names the four (from surealived.cfg, or one folder for a local demo). ``SyncLock``
is the original's ``flock(LOCK_EX)`` on ``lock_sync_file``: held while ipvssync reads the
snapshot or new diff lines and while it removes consumed diffs, never while it sleeps nor while
it talks to the kernel (so a slow kernel never stalls surealived's writer). If the lock file is
replaced (deleted and created again), the new one is used from the next locking on.

``DiffTail`` follows the chain of diff files from the one a snapshot names: it returns complete
new lines only (a last line without its newline is left for later), follows ``DIFF file=``
links, and says when the file it reads was truncated or replaced (the only safe answer then is
to start over from the snapshot). ``load_wanted`` is the snapshot plus its whole diff chain
replayed in memory: the table the kernel should hold now.
"""

from __future__ import annotations

import fcntl
import os
from dataclasses import dataclass, field

from ..errors import ConfigError, ConfigErrors
from ..maincfg import MainConfig
from .reader import Change, Link, Snapshot, apply_change, parse_diff_line, parse_snapshot
from .table import Table

DIFF_PREFIX = "diff_sync."
_READ_LIMIT = 16 * 1024 * 1024


@dataclass(frozen=True)
class SyncPaths:
    """The four files of the hand-off, for both sides: surealived's writer and ipvssync."""

    full_sync_file: str
    lock_sync_file: str
    full_reload_file: str
    diff_sync_dir: str

    @classmethod
    def from_maincfg(cls, cfg: MainConfig) -> SyncPaths:
        return cls(cfg.full_sync_file, cfg.lock_sync_file, cfg.full_reload_file,
                   cfg.diff_sync_dir)

    @classmethod
    def from_dir(cls, folder: str) -> SyncPaths:
        """``--dir``: ipvsfull.cfg, ipvsfull.lock, ipvsfull.reload and diffs/ in one folder."""
        folder = os.path.abspath(folder)
        return cls(os.path.join(folder, "ipvsfull.cfg"), os.path.join(folder, "ipvsfull.lock"),
                   os.path.join(folder, "ipvsfull.reload"), os.path.join(folder, "diffs"))


class SyncLock:
    """``flock(LOCK_EX)`` on the lock file surealived creates (ipvssync never creates it)."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._fd: int | None = None
        self._ino: tuple[int, int] | None = None

    def _open(self) -> bool:
        try:
            st = os.stat(self.path)
        except OSError:
            self.close()
            return False
        if self._fd is not None and self._ino == (st.st_dev, st.st_ino):
            return True
        self.close()
        try:
            self._fd = os.open(self.path, os.O_RDONLY | os.O_CLOEXEC)
        except OSError:
            return False
        st = os.fstat(self._fd)
        self._ino = (st.st_dev, st.st_ino)
        return True

    def exists(self) -> bool:
        return os.path.exists(self.path)

    def acquire(self) -> bool:
        """Block until locked; False when the lock file does not exist (or cannot be opened)."""
        if not self._open():
            return False
        assert self._fd is not None
        fcntl.flock(self._fd, fcntl.LOCK_EX)
        return True

    def release(self) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
        self._fd = None
        self._ino = None


def file_signature(path: str) -> tuple[int, int, int, int] | None:
    """Identity and version of a file (inode, size, mtime), or None when absent."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)


def resolve_diff(snapshot_path: str, named: str, diff_dir: str) -> str | None:
    """The diff file a ``DIFF file=`` line means. Relative names are relative to the snapshot's
    folder. When the named path does not exist but a file of the same name is in
    ``diff_dir``, that one is used: the folder was copied or moved (e.g. to try ``--dir``)."""
    path = named if os.path.isabs(named) else os.path.join(
        os.path.dirname(os.path.abspath(snapshot_path)), named)
    if os.path.isfile(path):
        return path
    moved = os.path.join(diff_dir, os.path.basename(named))
    if os.path.isfile(moved):
        return moved
    return None


@dataclass(frozen=True)
class DiffEntry:
    """One complete line of a diff file, parsed (or the reason it could not be)."""

    path: str
    number: int
    text: str
    change: Change | None
    error: str = ""

    @property
    def where(self) -> str:
        return f"{os.path.basename(self.path)}:{self.number}"


@dataclass
class DiffTail:
    """Reads new complete lines from the diff chain, from ``path`` at ``offset``."""

    path: str
    diff_dir: str
    offset: int = 0
    number: int = 0
    switched: bool = False  # set when the chain moved to a new file (cleanup may run)
    blocked: str = ""  # a DIFF link whose file does not exist (yet)
    _ino: tuple[int, int] | None = field(default=None, repr=False)
    _mark: bytes = field(default=b"", repr=False)  # the bytes just before offset, as read
    _seen: tuple[int, int, int, int] | None = field(default=None, repr=False)

    def _read_mark(self) -> bytes:
        start = max(0, self.offset - 128)
        with open(self.path, "rb") as handle:
            handle.seek(start)
            return handle.read(self.offset - start)

    def _open_identity(self) -> None:
        st = os.stat(self.path)
        self._ino = (st.st_dev, st.st_ino)

    def pending(self) -> bool:
        """Cheap check without the lock: is there anything new to read?"""
        return self.blocked != "" or file_signature(self.path) != self._seen

    def problem(self) -> str:
        """Why the file being read can no longer be trusted ('' if it can)."""
        try:
            st = os.stat(self.path)
        except OSError:
            return f"diff file {self.path} disappeared"
        if self._ino is None:
            self._ino = (st.st_dev, st.st_ino)
        if (st.st_dev, st.st_ino) != self._ino:
            return f"diff file {self.path} was replaced by a new file of the same name"
        if st.st_size < self.offset:
            return f"diff file {self.path} was truncated"
        # inode numbers are reused at once: also check that what was read is still there
        if self._mark and self._read_mark() != self._mark:
            return f"diff file {self.path} was rewritten"
        return ""

    def read(self) -> list[DiffEntry]:
        """New complete lines, following ``DIFF file=`` links; the links are not returned."""
        out: list[DiffEntry] = []
        for _ in range(10_000):  # bounded: a chain this long in one read means a loop
            self._seen = file_signature(self.path)
            if self._ino is None:
                self._open_identity()
            with open(self.path, "rb") as handle:
                handle.seek(self.offset)
                data = handle.read(_READ_LIMIT)
            end = data.rfind(b"\n")
            if end < 0:
                return out
            moved_to = ""
            position = self.offset
            for raw in data[:end + 1].split(b"\n")[:-1]:
                number = self.number + 1
                text = raw.decode("utf-8", errors="replace").strip()
                if not text:
                    position += len(raw) + 1
                    self.number = number
                    continue
                try:
                    parsed = parse_diff_line(text)
                except ValueError as exc:
                    out.append(DiffEntry(self.path, number, text, None, str(exc)))
                    position += len(raw) + 1
                    self.number = number
                    continue
                if isinstance(parsed, Link):
                    target = resolve_diff(self.path, parsed.path, self.diff_dir)
                    if target is None:
                        self.blocked = parsed.path
                        self.offset = position  # retry this link on the next read
                        self._mark = self._read_mark()
                        return out
                    self.blocked = ""
                    moved_to = target
                    break
                out.append(DiffEntry(self.path, number, text, parsed))
                position += len(raw) + 1
                self.number = number
            if not moved_to:
                self.offset = position
                self._mark = self._read_mark()
                return out
            self.path, self.offset, self.number = moved_to, 0, 0
            self._ino = None
            self._mark = b""
            self.switched = True
        return out


@dataclass
class Wanted:
    """The table built from a snapshot and its diff chain, and where the chain was left."""

    snapshot: Snapshot
    table: Table
    tail: DiffTail
    replayed: int
    problems: list[DiffEntry]


def read_snapshot(path: str) -> Snapshot:
    try:
        with open(path, "rb") as handle:
            data = handle.read()
    except FileNotFoundError:
        raise ConfigErrors([ConfigError(path, 0, "no such file (surealived writes it at start; "
                                                 "is surealived running?)")]) from None
    except OSError as exc:
        raise ConfigErrors([ConfigError(path, 0, f"cannot read: {exc.strerror}")]) from None
    return parse_snapshot(data.decode("utf-8", errors="replace"), path)


def load_wanted(paths: SyncPaths) -> Wanted:
    """Parse the snapshot and replay its whole diff chain in memory (call under the lock).
    Raises ``ConfigErrors`` when the snapshot is refused."""
    snapshot = read_snapshot(paths.full_sync_file)
    diff = resolve_diff(snapshot.path, snapshot.diff_file, paths.diff_sync_dir)
    if diff is None:
        raise ConfigErrors([ConfigError(
            snapshot.path, snapshot.diff_line,
            f"DIFF names {snapshot.diff_file}, which does not exist (not in "
            f"{paths.diff_sync_dir} either)", attribute="file")])
    tail = DiffTail(diff, os.path.dirname(diff))
    table = snapshot.table
    replayed = 0
    problems = []
    for entry in tail.read():
        if entry.change is None:
            problems.append(entry)
            continue
        outcome = apply_change(table, entry.change)
        if outcome == "unknown-virtual":
            problems.append(DiffEntry(entry.path, entry.number, entry.text, entry.change,
                                      "names a virtual that is not in the snapshot"))
        replayed += 1
    tail.switched = True
    return Wanted(snapshot, table, tail, replayed, problems)


def diff_order(name: str) -> tuple[int, tuple[int, ...], str]:
    """Order of diff file names: numerically by ``<epoch>[.<serial>]``, then as text."""
    suffix = name[len(DIFF_PREFIX):]
    parts = suffix.split(".")
    if suffix and all(p.isdigit() for p in parts):
        return (0, tuple(int(p) for p in parts), "")
    return (1, (), suffix)


def consumed_diffs(folder: str, current: str) -> list[str]:
    """``diff_sync.*`` files in ``folder`` older than ``current`` (by name, as the original;
    unlike the original, nothing but ``diff_sync.*`` is ever touched)."""
    base = os.path.basename(current)
    if not base.startswith(DIFF_PREFIX):
        return []
    mark = diff_order(base)
    try:
        names = os.listdir(folder)
    except OSError:
        return []
    return sorted((os.path.join(folder, n) for n in names
                   if n.startswith(DIFF_PREFIX) and n != base and diff_order(n) < mark),
                  key=lambda p: diff_order(os.path.basename(p)))
