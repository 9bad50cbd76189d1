"""ipvssync's loop: keep the kernel's IPVS table equal to the wanted table, continuously.

Start-up: wait for a snapshot that parses (a refused one is logged, naming file and line, and
retried when the file changes), replay its diff chain *in memory*, then one full sync (read the
kernel, plan, apply, read back). Then, every ``poll`` seconds:

* reload flag (or SIGHUP): parse the snapshot again, replay its diffs in memory, full sync. The
  table only changes when the new snapshot is accepted, and the diff replay happens before the
  kernel sync, so a reload never flaps a dest (the original's bug 7.7). A refused reload keeps the
  table last applied, keeps the flag, and is retried when the snapshot changes;
* new diff lines: applied to the wanted table, then only the services they touched are synced;
* every ``interval`` seconds: a full comparison of the kernel with the wanted table, repairing
  drift (``ipvsadm -D``, ``-C``, a changed weight) and retrying operations that failed.

``backend`` is anything with ``read_table(keys=None) -> Table`` and ``apply(ops) -> [(errno,
text)]`` (``kernel.Kernel`` in production).
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Protocol

from ..errors import ConfigErrors
from .files import (
    MAX_PROBLEMS,
    DiffEntry,
    DiffTail,
    SyncLock,
    SyncPaths,
    Wanted,
    consumed_diffs,
    file_signature,
    load_wanted,
)
from .kernel import reason
from .metrics import SyncFigures
from .planner import DEL_SERVICE, Op, plan, summary
from .reader import apply_change
from .table import ServiceKey, Table

BLOCKED = "the lines after it wait until it can be followed (or for a new snapshot)"


class Backend(Protocol):
    def read_table(self, keys: Iterable[ServiceKey] | None = None) -> Table: ...

    def apply(self, ops: list[Op]) -> list[tuple[int, str]]: ...


@dataclass(frozen=True)
class Settings:
    paths: SyncPaths
    manage_unmanaged: bool = False  # -u
    keep_diffs: bool = False  # -k
    poll: float = 0.1  # seconds between looks at the diff (ipvssync_poll_ms)
    interval: float = 10.0  # seconds between full comparisons (ipvssync_interval)


class Syncer:
    """The state of one ipvssync process; ``step()`` is one pass of the loop."""

    def __init__(self, settings: Settings, backend: Backend, log: logging.Logger) -> None:
        self.settings = settings
        self.backend = backend
        self.log = log
        self.lock = SyncLock(settings.paths.lock_sync_file)
        self.wanted: Table | None = None
        self.tail: DiffTail | None = None
        self.reload_requested = True  # the first load is a reload from nothing
        self.hup = False
        self._failed_signature: tuple[object, ...] | None = None
        self._failed_text = ""
        self._next_retry = 0.0
        self._next_full = 0.0
        self._failing: dict[tuple[object, ...], int] = {}
        self._retry_keys: set[ServiceKey] = set()
        self._said_no_lock = False
        self.figures = SyncFigures()  # for ipvssync_metrics_file

    # -- loading -------------------------------------------------------------------------

    def _locked_load(self) -> Wanted | ConfigErrors | None:
        """Parse snapshot + diffs under the lock; None when the lock file is missing."""
        if not self.lock.acquire():
            return None
        try:
            try:
                wanted = load_wanted(self.settings.paths)
            except ConfigErrors as exc:
                return exc
            self._cleanup(wanted.tail)
            return wanted
        finally:
            self.lock.release()

    def load(self, why: str, now: float) -> bool:
        """Adopt the current snapshot (+ diffs). On failure the old table stays."""
        paths = self.settings.paths
        signature = (file_signature(paths.full_sync_file), file_signature(paths.lock_sync_file))
        if signature == self._failed_signature and now < self._next_retry:
            return False
        result = self._locked_load()
        if not isinstance(result, Wanted):
            if result is None:
                text = (f"lock file {paths.lock_sync_file} does not exist: waiting for "
                        "surealived to create it")
                lines = [text]
            else:
                lines = [f"snapshot refused: {e}" for e in result.errors]
                text = "\n".join(lines)
            level = logging.ERROR if text != self._failed_text else logging.DEBUG
            if result is not None and level == logging.ERROR:  # a new refusal, not a retry
                self.figures.snapshots_refused += 1
                self.figures.changed()
            for line in lines:
                self.log.log(level, "%s", line)
            if self.wanted is not None:
                self.log.log(level, "keeping the table last applied (%d services, %d reals); "
                             "the reload is retried when %s changes",
                             len(self.wanted.services), self.wanted.count_dests(),
                             os.path.basename(paths.full_sync_file))
            self._failed_text = text
            self._failed_signature = signature
            self._next_retry = now + self.settings.interval
            return False
        self._failed_text = ""
        self._failed_signature = None
        snap = result.snapshot
        for warning in snap.warnings:
            self.log.warning("%s", warning)
        for entry in result.problems:
            self.log.warning("%s: %s: %s", entry.where, entry.error or "cannot apply",
                             entry.text)
        if result.more_problems:
            self.log.warning("%d more diff lines not applied", result.more_problems)
        if result.tail.blocked:
            self.log.error("%s; %s", result.tail.blocked_why, BLOCKED)
        self.log.info("%s: loaded %s: %d virtuals, %d reals; replayed %d diff lines from %s",
                      why, snap.path, len(result.table.services), result.table.count_dests(),
                      result.replayed, os.path.basename(result.tail.path))
        self.wanted = result.table
        self.tail = result.tail
        f = self.figures
        f.last_load = time.time()
        f.services, f.reals = len(result.table.services), result.table.count_dests()
        f.changed()
        return True

    def _cleanup(self, tail: DiffTail) -> None:
        """Remove consumed diff files (under the lock; not with -k)."""
        if not tail.switched:
            return
        tail.switched = False
        if self.settings.keep_diffs:
            return
        removed = []
        for path in consumed_diffs(os.path.dirname(tail.path), tail.path):
            try:
                os.unlink(path)
                removed.append(os.path.basename(path))
            except OSError as exc:
                self.log.warning("cannot remove consumed diff %s: %s", path, exc.strerror)
        if removed:
            self.log.info("removed %d consumed diff file%s (%s%s) older than %s", len(removed),
                          "s" if len(removed) > 1 else "", removed[0],
                          f" .. {removed[-1]}" if len(removed) > 1 else "",
                          os.path.basename(tail.path))

    # -- applying ------------------------------------------------------------------------

    def _op_id(self, op: Op) -> tuple[object, ...]:
        return (op.kind, op.service.key, op.dest.key if op.dest else None)

    def _apply(self, ops: list[Op], context: str) -> set[ServiceKey]:
        """Apply and log ops; returns the keys of services whose ops failed."""
        failed: set[ServiceKey] = set()
        if not ops:
            return failed
        results = self.backend.apply(ops)
        f = self.figures
        f.changed()
        for op, (code, text) in zip(ops, results, strict=True):
            ident = self._op_id(op)
            counts = f.applied if code == 0 else f.failed
            counts[op.kind] = counts.get(op.kind, 0) + 1
            if code == 0 and context == "repair":
                f.drift_repaired += 1
            if code == 0:
                if self._failing.pop(ident, None) is not None:
                    self.log.info("%s: %s (applied now, it failed before)", context,
                                  op.describe())
                else:
                    self.log.info("%s: %s", context, op.describe())
                continue
            failed.add(op.service.key)
            level = logging.DEBUG if self._failing.get(ident) == code else logging.WARNING
            self._failing[ident] = code
            self.log.log(level, "%s: FAILED %s: %s; retried at the next pass", context,
                         op.describe(), reason(code, op.kind, text))
        return failed

    def _confirm(self, keys: set[ServiceKey], deleted: set[ServiceKey], context: str) -> bool:
        """Read back the services just changed; True when the kernel now matches."""
        assert self.wanted is not None
        if not keys and not deleted:
            return True
        kernel = self.backend.read_table(keys | deleted)
        left = plan(self.wanted.subset(keys), kernel, manage_unmanaged=bool(deleted))
        if left:
            self._retry_keys |= {op.service.key for op in left}
            self.log.warning("%s: read back: the kernel still differs (%s), first: %s",
                             context, summary(left), left[0].describe())
            return False
        return True

    def full_sync(self, context: str) -> bool:
        """Compare the whole kernel table with the wanted one and fix every difference."""
        assert self.wanted is not None
        kernel = self.backend.read_table()
        ops = plan(self.wanted, kernel, self.settings.manage_unmanaged)
        self._retry_keys.clear()
        self.figures.syncs["full"] += 1
        if not ops:
            self._synced(True, full=True)
            level = logging.DEBUG if context == "repair" else logging.INFO
            self.log.log(level, "%s: the kernel matches the wanted table (%d services, %d "
                         "reals)", context, len(self.wanted.services), self.wanted.count_dests())
            return True
        if context == "repair":
            self.log.warning("repair: the kernel drifted from the wanted table: %s",
                             summary(ops))
        else:
            self.log.info("%s: %s", context, summary(ops))
        failed = self._apply(ops, context)
        touched = {op.service.key for op in ops if op.kind != DEL_SERVICE}
        deleted = {op.service.key for op in ops if op.kind == DEL_SERVICE}
        ok = self._confirm(touched, deleted, context) and not failed
        self._synced(ok, full=True)
        return ok

    def sync_services(self, keys: set[ServiceKey], context: str) -> bool:
        """Sync only ``keys`` (after diff lines); -u does not apply to a partial sync."""
        assert self.wanted is not None
        kernel = self.backend.read_table(keys)
        ops = plan(self.wanted.subset(keys), kernel)
        failed = self._apply(ops, context)
        ok = self._confirm({op.service.key for op in ops}, set(), context) if ops else True
        self._retry_keys |= failed
        self.figures.syncs["services"] += 1
        self._synced(ok and not failed, full=False)
        return ok and not failed

    def _synced(self, ok: bool, full: bool) -> None:
        f = self.figures
        f.in_sync = ok
        if ok:
            f.last_sync = time.time()
            if full:
                f.last_full_sync = f.last_sync
        f.changed()

    # -- the loop ------------------------------------------------------------------------

    def _reload_due(self) -> bool:
        return (self.reload_requested or self.hup
                or os.path.exists(self.settings.paths.full_reload_file))

    def _read_diffs(self) -> tuple[set[ServiceKey], list[str]]:
        """New diff lines, applied to the wanted table as they are read (a burst of any size
        in bounded memory); returns the services they touched and the last few changes."""
        assert self.tail is not None and self.wanted is not None
        if not self.tail.pending():
            return set(), []
        if not self.lock.acquire():
            return set(), []
        touched: set[ServiceKey] = set()
        notes: list[str] = []
        changes = ignored = 0
        try:
            trouble = self.tail.problem()
            if trouble:
                self.log.warning("%s: starting over from the snapshot", trouble)
                self.reload_requested = True
                return set(), []
            was_blocked = self.tail.blocked
            for entry in self.tail.read():
                outcome = self._apply_entry(entry, ignored < MAX_PROBLEMS)
                if not outcome:
                    ignored += 1
                elif entry.change is not None and outcome in ("added", "changed", "removed"):
                    touched.add(entry.change.key)
                    changes += 1
                    notes = [*notes[-2:], f"{entry.where} {entry.change.cmd}"]
            if self.tail.blocked and self.tail.blocked != was_blocked:
                self.log.error("%s; %s", self.tail.blocked_why, BLOCKED)
            self._cleanup(self.tail)
        finally:
            self.lock.release()
        if ignored > MAX_PROBLEMS:
            self.log.warning("%d more diff lines ignored", ignored - MAX_PROBLEMS)
        if changes > len(notes):
            notes[-1] += f" (+{changes - len(notes)} more)"
        return touched, notes

    def _apply_entry(self, entry: DiffEntry, say: bool) -> str:
        """Apply one diff line to the wanted table: ``apply_change``'s outcome, or '' (and a
        warning if ``say``) when the line is ignored."""
        assert self.wanted is not None
        if entry.change is None:
            if say:
                self.log.warning("%s: ignored: %s: %s", entry.where, entry.error, entry.text)
            return ""
        outcome = apply_change(self.wanted, entry.change)
        self.log.debug("%s: %s -> %s", entry.where, entry.change.label, outcome)
        if outcome == "unknown-virtual":
            if say:
                self.log.warning("%s: ignored: names a virtual that is not in the wanted "
                                 "table: %s", entry.where, entry.text)
            return ""
        return outcome

    def step(self, now: float | None = None) -> None:
        """One pass: reload if asked, apply new diff lines, full comparison when due."""
        now = time.monotonic() if now is None else now
        if self._reload_due():
            hup, self.hup = self.hup, False
            first = self.wanted is None
            why = "start-up" if first else ("SIGHUP" if hup else "reload")
            if self.load(why, now):
                self.reload_requested = False
                self._remove_flag()
                self.full_sync(why)
                self._next_full = now + self.settings.interval
                return
            self.reload_requested = True
        if self.wanted is None:
            return
        touched, notes = self._read_diffs()
        if touched:
            self.sync_services(touched, "diff " + ", ".join(notes))
        if now >= self._next_full:
            self._next_full = now + self.settings.interval
            self.full_sync("repair")

    def _remove_flag(self) -> None:
        flag = self.settings.paths.full_reload_file
        if not os.path.exists(flag):
            return
        if self.lock.acquire():
            try:
                os.unlink(flag)
            except OSError as exc:
                if os.path.exists(flag):
                    self.log.warning("cannot remove the reload flag %s: %s", flag,
                                     exc.strerror)
            finally:
                self.lock.release()

    def once(self) -> bool:
        """``--once``: load, one full sync, remove the flag; True when the kernel matches."""
        now = time.monotonic()
        if not self.load("once", now):
            return False
        self._remove_flag()
        return self.full_sync("once")
