"""The files surealived writes for ipvssync: where they are, the lock, and following the diffs.

``SyncPaths`` names the four (from surealived.cfg, or one folder for a local demo). ``SyncLock``
is the original's ``flock(LOCK_EX)`` on ``lock_sync_file``: held while ipvssync reads the
snapshot or new diff lines and while it removes consumed diffs, never while it sleeps nor while
it talks to the kernel (so a slow kernel never stalls surealived's writer). If the lock file is
replaced (deleted and created again), the new one is used from the next locking on.

``DiffTail`` follows the chain of diff files from the one a snapshot names: it returns complete
new lines only (a last line without its newline is left for later), one at a time as they are
read (a chain of any length in bounded memory), follows ``DIFF file=`` links to files inside the
diffs folder only, and says when the file it reads was truncated or replaced (the only safe
answer then is to start over from the snapshot). ``load_wanted`` is the snapshot plus its whole
diff chain replayed in memory: the table the kernel should hold now.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import BinaryIO

from ..config.main import MainConfig
from ..errors import ConfigError, ConfigErrors
from .reader import Change, Link, Snapshot, apply_change, parse_diff_line, parse_snapshot
from .table import Table

DIFF_PREFIX = "diff_sync."
_CHUNK = 1 << 20  # bytes read at a time from a diff file
MAX_LINE = 1 << 16  # a diff line is about 200 bytes; a longer one is reported, never buffered
MAX_PROBLEMS = 100  # bad diff lines listed one by one at a load; the rest are counted


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


def resolve_diff(referrer: str, named: str, diff_dir: str) -> tuple[str, str]:
    """The diff file a ``DIFF file=`` line of ``referrer`` (the snapshot or a diff) means:
    ``(path, "")``, or ``("", why it is not followed)``, to follow ``DIFF names ``.

    A relative name is relative to the referrer's folder. Only a regular file inside
    ``diff_dir`` is followed, symbolic links resolved first: a name or a link leading out of
    the folder could make ipvssync read (and quote in its warnings) any file it may open, so it
    is refused, and the foreign file is never opened. When the named file is not in the folder
    but the folder holds a ``diff_sync.*`` file of the same name, that one is used: the folder
    was copied or moved (e.g. to try ``--dir``)."""
    folder = os.path.realpath(diff_dir)
    named_path = os.path.join(os.path.dirname(os.path.abspath(referrer)), named)
    path = os.path.realpath(named_path)
    if _inside(folder, path) and os.path.isfile(path):
        return path, ""
    base = os.path.basename(named)
    if base.startswith(DIFF_PREFIX):
        moved = os.path.realpath(os.path.join(folder, base))
        if _inside(folder, moved) and os.path.isfile(moved):
            return moved, ""
    if os.path.lexists(named_path) and not _inside(folder, path):
        via = f" (a symbolic link to {path})" if path != os.path.normpath(named_path) else ""
        return "", (f"{named}{via}, which is outside the diffs folder {diff_dir}: not "
                    "followed (ipvssync reads diff files from that folder only)")
    if os.path.lexists(named_path) or os.path.lexists(path):
        return "", f"{named}, which is not a regular file"
    return "", f"{named}, which does not exist (not in {diff_dir} either)"


def _inside(folder: str, path: str) -> bool:
    return os.path.commonpath([folder, path]) == folder and path != folder


def complete_lines(handle: BinaryIO) -> Iterator[tuple[bytes, int]]:
    """The complete lines from ``handle``'s position, read ``_CHUNK`` bytes at a time, so memory
    stays bounded whatever the file's length: ``(line without its newline, cut to MAX_LINE + 1
    bytes; its length in the file, newline included)``. A last line without its newline is not
    returned (the writer is still writing it)."""
    head = b""  # the first bytes of a line that began in an earlier chunk
    seen = 0  # that line's length so far
    while True:
        chunk = handle.read(_CHUNK)
        if not chunk:
            return
        start = 0
        while True:
            end = chunk.find(b"\n", start)
            if end < 0:
                if len(head) <= MAX_LINE:
                    head += chunk[start:start + MAX_LINE + 1 - len(head)]
                seen += len(chunk) - start
                break
            if seen:
                if len(head) <= MAX_LINE:
                    head += chunk[start:min(end, start + MAX_LINE + 1 - len(head))]
                yield head, seen + end - start + 1
                head, seen = b"", 0
            else:
                yield chunk[start:min(end, start + MAX_LINE + 1)], end - start + 1
            start = end + 1


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
    """Reads new complete lines from the diff chain, from ``path`` at ``offset``. Only files
    inside ``diff_dir`` are followed (``resolve_diff``)."""

    path: str
    diff_dir: str
    offset: int = 0
    number: int = 0
    switched: bool = False  # set when the chain moved to a new file (cleanup may run)
    blocked: str = ""  # the name in a DIFF link that cannot be followed (yet)
    blocked_why: str = ""  # why, naming the file and line of the link
    _ino: tuple[int, int] | None = field(default=None, repr=False)
    _mark: bytes = field(default=b"", repr=False)  # the bytes just before offset, as read
    _seen: tuple[int, int, int, int] | None = field(default=None, repr=False)

    def _read_mark(self) -> bytes:
        start = max(0, self.offset - 128)
        with open(self.path, "rb") as handle:
            handle.seek(start)
            return handle.read(self.offset - start)

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

    def read(self) -> Iterator[DiffEntry]:
        """New complete lines, following ``DIFF file=`` links (which are not returned), read as
        they are consumed: a chain of any length in bounded memory. Consume it to the end."""
        for _ in range(10_000):  # bounded: a chain this long in one read means a loop
            self._seen = file_signature(self.path)
            # O_NOFOLLOW: the path was resolved inside the diffs folder; a link put in its
            # place since is not opened
            fd = os.open(self.path, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
            with os.fdopen(fd, "rb") as handle:
                if self._ino is None:
                    st = os.fstat(fd)
                    self._ino = (st.st_dev, st.st_ino)
                handle.seek(self.offset)
                moved_to = ""
                for raw, size in complete_lines(handle):
                    number = self.number + 1
                    entry, link = self._parse(raw, number)
                    if link:
                        target, why = resolve_diff(self.path, link, self.diff_dir)
                        if not target:
                            # stay before the link: it is tried again at the next read
                            self.blocked = link
                            self.blocked_why = (f"{os.path.basename(self.path)}:{number}: "
                                                f"DIFF names {why}")
                            break
                        self.blocked = self.blocked_why = ""
                        moved_to = target
                        break
                    self.offset += size
                    self.number = number
                    if entry is not None:
                        yield entry
            if not moved_to:
                self._mark = self._read_mark()
                return
            self.path, self.offset, self.number = moved_to, 0, 0
            self._ino = None
            self._mark = b""
            self.switched = True

    def _parse(self, raw: bytes, number: int) -> tuple[DiffEntry | None, str]:
        """One line: ``(entry, "")``, ``(None, "")`` for a blank line, or ``(None, target)``
        for a ``DIFF file=`` link."""
        if len(raw) > MAX_LINE:
            return DiffEntry(self.path, number, raw[:80].decode("utf-8", "replace") + "...",
                             None, f"a line longer than {MAX_LINE} bytes"), ""
        text = raw.decode("utf-8", errors="replace").strip()
        if not text:
            return None, ""
        try:
            parsed = parse_diff_line(text)
        except ValueError as exc:
            return DiffEntry(self.path, number, text, None, str(exc)), ""
        if isinstance(parsed, Link):
            return None, parsed.path
        return DiffEntry(self.path, number, text, parsed), ""


@dataclass
class Wanted:
    """The table built from a snapshot and its diff chain, and where the chain was left."""

    snapshot: Snapshot
    table: Table
    tail: DiffTail
    replayed: int
    problems: list[DiffEntry]  # the first MAX_PROBLEMS lines that were not applied
    more_problems: int = 0  # how many more there were


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
    diff, why = resolve_diff(snapshot.path, snapshot.diff_file, paths.diff_sync_dir)
    if not diff:
        raise ConfigErrors([ConfigError(snapshot.path, snapshot.diff_line, f"DIFF names {why}",
                                        attribute="file",
                                        valid=f"a diff file in {paths.diff_sync_dir}")])
    tail = DiffTail(diff, paths.diff_sync_dir)
    table = snapshot.table
    replayed = 0
    problems: list[DiffEntry] = []
    more = 0
    for entry in tail.read():
        if entry.change is not None:
            replayed += 1
            if apply_change(table, entry.change) != "unknown-virtual":
                continue
            entry = DiffEntry(entry.path, entry.number, entry.text, entry.change,
                              "names a virtual that is not in the snapshot")
        if len(problems) < MAX_PROBLEMS:
            problems.append(entry)
        else:
            more += 1
    tail.switched = True
    return Wanted(snapshot, table, tail, replayed, problems, more)


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
