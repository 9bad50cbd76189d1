"""The sync writer as a daemon component: when snapshots and diff lines are written.

- Start (after the dumps are restored): a forced snapshot plus the reload flag, always.
- SIGHUP reload (after ``state.load``): the same, so ipvssync rebuilds from the new table.
- Each state change of a real (test, admin, weight event): its diff lines at once, unless the
  files already say exactly that (no repeated ``delreal`` for a real that is already gone).
- End of each virtual's round: any of its reals whose entry drifted gets its lines; then a
  periodic snapshot if ``snapshot_interval`` seconds (monotonic) have passed and every virtual
  has been tested once. After a failed write the next round end forces a snapshot and the
  reload flag, which resynchronises ipvssync.
- ``no_sync`` (cfg or ``-n``): nothing is written, no file is created.
- Stop: everything queued is written, then the files are closed.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING

from ..engine.state import DaemonState, RealState, RoundReport, StateEvent
from ..ipvssync.files import SyncPaths
from .formats import diff_lines, real_entry, snapshot_body
from .writer import SyncWriter

if TYPE_CHECKING:
    from ..components import DaemonView

EntryKey = tuple[tuple[str, int, str, int], tuple[str, int]]


def entry_key(real: RealState) -> EntryKey:
    return real.virtual.config.key, real.config.key


class SyncComponent:
    """Keeps ``ipvsfull.cfg`` and the diff chain in step with ``daemon.state``."""

    def __init__(self) -> None:
        self.state: DaemonState | None = None
        self.writer: SyncWriter | None = None
        self.log = logging.getLogger("surealived.sync")
        self.interval = 60.0
        self.last_snapshot = 0.0
        self.written: dict[EntryKey, tuple[bool, str]] = {}

    async def start(self, daemon: DaemonView) -> None:
        cfg = daemon.maincfg
        self.log = daemon.logger
        if cfg.no_sync:
            self.log.info("no_sync: no files are written for ipvssync")
            return
        self.state = daemon.state
        self.interval = float(cfg.snapshot_interval)
        self.writer = SyncWriter(SyncPaths.from_maincfg(cfg), self.log)
        self.log.info("Startup - full ipvs config forced")
        body = self._body()
        await asyncio.to_thread(self.writer.start, body, time.time())
        self.state.listeners.append(self.on_event)
        self.state.round_listeners.append(self.on_round)

    async def reloaded(self, daemon: DaemonView) -> None:
        if self.writer is None:
            return
        self.state = daemon.state
        self.log.info("Reload - full ipvs config forced")
        self.snapshot(force=True)
        await asyncio.to_thread(self.writer.drain)

    async def stop(self, daemon: DaemonView) -> None:
        if self.writer is None or self.state is None:
            return
        if self.on_event in self.state.listeners:
            self.state.listeners.remove(self.on_event)
        if self.on_round in self.state.round_listeners:
            self.state.round_listeners.remove(self.on_round)
        await asyncio.to_thread(self.writer.stop)
        self.writer = None

    def _body(self) -> str:
        assert self.state is not None
        self.written = {entry_key(r): real_entry(r) for r in self.state.reals()}
        self.last_snapshot = time.monotonic()
        return snapshot_body(self.state.virtuals)

    def snapshot(self, force: bool = False) -> None:
        if self.writer is not None:
            if force:
                self.writer.failed = False
            self.writer.snapshot(self._body(), time.time(), force)

    def current(self, real: RealState) -> bool:
        """False for a real of a virtual that a reload replaced (a late event)."""
        return self.state is not None and self.state.by_key.get(
            real.virtual.config.key) is real.virtual

    def write_real(self, real: RealState) -> None:
        if not self.current(real):
            return
        key = entry_key(real)
        entry = real_entry(real)
        if self.written.get(key) == entry or self.writer is None:
            return
        self.written[key] = entry
        self.writer.diff(diff_lines(real))

    # Listeners (event loop thread)

    def on_event(self, event: StateEvent) -> None:
        self.write_real(event.real)

    def on_round(self, report: RoundReport) -> None:
        if self.writer is None or self.state is None:
            return
        if self.writer.failed:
            self.log.warning("sync: a write failed; forcing a full snapshot and the reload flag")
            self.snapshot(force=True)
            return
        for real in report.virtual.reals:
            self.write_real(real)
        if (time.monotonic() - self.last_snapshot >= self.interval
                and self.state.all_tested):
            self.snapshot()
