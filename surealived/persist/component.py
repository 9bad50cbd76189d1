"""Restores the dumps at start and saves them when they change, as the original did.

- override.dump: restored first (rstate and weight override of each listed real), rewritten at
  once after every administrative change (``rset``), and at start and stop. The ``reason=`` of
  each override lives beside it in ``override.dump.reasons`` (``VKEY - RKEY - reason=TEXT``), so
  that override.dump itself stays readable by the original.
- offline.dump (unless ``use_offline_dump false`` or ``-k``): reals listed start offline with
  their failure run at retries2fail, so they need retries2ok successes to come back; the others
  start up, as they were when the dump was written (a restart does not drain a healthy service;
  without a dump every real waits for its first passing check). Rewritten at
  the end of a round in which a real's test state changed, and at start and stop.
- stats.dump (with ``gather_stats``): counters and running sums restored; rewritten every
  ``stats_dump_savesec`` seconds and at stop.
(notify.dump belongs to the notifier, ``surealived/notify.py``.)

Every write is atomic (``atomic.py``) and happens on one worker thread, in order, so the event
loop never waits for the disk. A line that matches no real is dropped with a warning; a bad line
costs that line only, with a warning naming the file and line.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
import time
from collections.abc import Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TYPE_CHECKING

from ..engine.state import DaemonState, RealState, RoundReport, StateEvent, VirtualState
from ..engine.verdict import Counters
from ..engine.weights import WeightSpec
from .atomic import atomic_write
from .dumps import (
    OverrideEntry,
    Problems,
    RealStatsEntry,
    RKey,
    VirtualStatsEntry,
    VKey,
    format_offline,
    format_override,
    format_reasons,
    format_stats,
    parse_offline,
    parse_override,
    parse_reasons,
    parse_stats,
    reasons_path,
)

if TYPE_CHECKING:
    from ..components import DaemonView


def vkey_of(v: VirtualState) -> VKey:
    c = v.config
    return VKey(c.addr, c.port, c.proto, c.fwmark)


def rkey_of(r: RealState) -> RKey:
    return RKey(r.config.addr, r.config.port)


def find_real(state: DaemonState, vkey: VKey, rkey: RKey) -> RealState | None:
    """The original's match: the virtual by fwmark, else address, port and protocol; the real
    by address and IPVS port."""
    v = state.find_virtual(vkey.proto, vkey.addr, vkey.port, vkey.fwmark)
    return None if v is None else v.by_key.get((rkey.addr, rkey.port))


# State -> entries

def override_entries(state: DaemonState) -> list[OverrideEntry]:
    """One entry per real with an override or an rstate other than ONLINE. With no weight
    override the configured weight is written, as the original stored it."""
    out = []
    for r in state.reals():
        if r.override is None and r.rstate == "ONLINE":
            continue
        spec = r.override or WeightSpec(r.config.weight)
        out.append(OverrideEntry(vkey_of(r.virtual), rkey_of(r), spec.value, spec.percent,
                                 r.rstate, r.override_reason))
    return out


def offline_entries(state: DaemonState) -> list[tuple[VKey, RKey]]:
    return [(vkey_of(r.virtual), rkey_of(r)) for r in state.reals() if not r.online]


def stats_entries(state: DaemonState) -> list[VirtualStatsEntry]:
    out = []
    for v in state.virtuals:
        reals = []
        avgs = []
        for r in v.reals:
            s = r.stats
            avg = s.sample_averages()
            avgs.append(avg)
            reals.append(RealStatsEntry(rkey_of(r), s.total, avg,
                                        (s.sum_conn_us, s.sum_resp_us, s.sum_total_us),
                                        (s.conn_problem, s.arp_problem, s.rst_problem)))
        n = len(avgs) or 1
        vavg = (sum(a[0] for a in avgs) // n, sum(a[1] for a in avgs) // n,
                sum(a[2] for a in avgs) // n)
        problems = (sum(r.problems[0] for r in reals), sum(r.problems[1] for r in reals),
                    sum(r.problems[2] for r in reals))
        out.append(VirtualStatsEntry(vkey_of(v), v.config.tester.stats_samples, v.rounds, vavg,
                                     problems, tuple(reals)))
    return out


# Entries -> state (at start and after a reload)

def apply_overrides(state: DaemonState, entries: Iterable[OverrideEntry],
                    log: logging.Logger, only_fresh: bool = False) -> int:
    """Set rstate and weight overrides; returns how many reals matched. An absolute weight equal
    to the configured one is "no weight override" (the original stored rstate-only entries so)."""
    matched = 0
    for e in entries:
        real = find_real(state, e.virtual, e.real)
        if real is None:
            log.warning("\tUnable to find real: %s - %s (removing from override dump)",
                        e.virtual, e.real)
            continue
        matched += 1
        if only_fresh and (real.override is not None or real.rstate != "ONLINE"):
            continue
        spec = WeightSpec(e.weight, e.percent)
        same = not e.percent and e.weight == real.config.weight
        state.set_admin(real, rstate=e.rstate, override=None if same else spec,
                        reason=e.reason or None)
        log.info("\tSet real: %s override rstate=%s weight=%s", real.label, e.rstate,
                 "-" if same else spec)
    return matched


def apply_offline(state: DaemonState, entries: Iterable[tuple[VKey, RKey]],
                  log: logging.Logger, only_fresh: bool = False) -> int:
    """Listed reals offline. At start (not ``only_fresh``) every other real is up: the dump
    lists every real that was failing when it was written."""
    matched = 0
    if not only_fresh:
        for each in state.reals():
            each.counters = Counters()
    for vkey, rkey in entries:
        real = find_real(state, vkey, rkey)
        if real is None:
            log.warning("\tUnable to find real: %s - %s (removing from offline.dump)", vkey, rkey)
            continue
        matched += 1
        if only_fresh and real.tested:
            continue
        # Start-up restore, before any check ran: no event, the forced snapshot follows.
        real.counters = Counters(online=False, ok_run=0,
                                 fail_run=real.virtual.config.tester.retries2fail)
        log.info("\tSet real: %s to OFFLINE", real.label)
    return matched


def apply_stats(state: DaemonState, entries: Iterable[VirtualStatsEntry],
                log: logging.Logger) -> None:
    for v in entries:
        for e in v.reals:
            real = find_real(state, v.virtual, e.real)
            if real is None:
                log.warning("\tUnable to find real for stats: %s - %s", v.virtual, e.real)
                continue
            s = real.stats
            s.total = e.total
            s.sum_conn_us, s.sum_resp_us, s.sum_total_us = e.sum_us
            s.conn_problem, s.arp_problem, s.rst_problem = e.problems


def read_text(path: str, log: logging.Logger, what: str) -> str | None:
    try:
        with open(path, encoding="utf-8", errors="replace") as handle:
            return handle.read()
    except FileNotFoundError:
        log.info("No %s yet [%s]", what, path)
    except OSError as exc:
        log.warning("Cannot read %s [%s]: %s", what, path, exc.strerror)
    return None


def report_problems(path: str, problems: Problems, log: logging.Logger) -> None:
    for line, message in problems:
        log.warning("%s:%d: %s (line ignored)", path, line, message)


class BackgroundSaver:
    """Atomic file writes on one worker thread, in submission order; errors are logged."""

    def __init__(self, log: logging.Logger) -> None:
        self.log = log
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="dump-writer")
        self._last: Future[None] | None = None

    def save(self, path: str, text: str) -> None:
        self._last = self._pool.submit(self._write, path, text)

    def _write(self, path: str, text: str) -> None:
        try:
            folder = os.path.dirname(path)
            if folder and not os.path.isdir(folder):
                os.makedirs(folder, mode=0o755, exist_ok=True)
            atomic_write(path, text)
        except OSError as exc:
            self.log.warning("Cannot write %s: %s", path, exc.strerror)

    async def drain(self) -> None:
        if self._last is not None:
            await asyncio.wrap_future(self._last)

    def close(self) -> None:
        self._pool.shutdown(wait=True)


class PersistComponent:
    """The daemon's dumps (see the module docstring)."""

    def __init__(self) -> None:
        self.state: DaemonState | None = None
        self.log = logging.getLogger("surealived.persist")
        self.saver: BackgroundSaver | None = None
        self.override_path = ""
        self.offline_path: str | None = None
        self.stats_path: str | None = None
        self.stats_every = 60.0
        self.offline_dirty = False
        self.next_stats = 0.0

    async def start(self, daemon: DaemonView) -> None:
        cfg = daemon.maincfg
        self.log = daemon.logger
        self.state = state = daemon.state
        self.saver = BackgroundSaver(self.log)
        self.override_path = cfg.override_dump
        self.offline_path = cfg.offline_dump if cfg.use_offline_dump else None
        self.stats_path = cfg.stats_dump if cfg.gather_stats else None
        self.stats_every = float(cfg.stats_dump_savesec)

        entries = self.read_overrides()
        if entries is not None:
            apply_overrides(state, entries, self.log)
            self.save_overrides()
        if self.offline_path is not None:
            text = read_text(self.offline_path, self.log, "offline dump")
            if text is not None:
                offline, problems = parse_offline(text)
                report_problems(self.offline_path, problems, self.log)
                apply_offline(state, offline, self.log)
                self.save_offline()
        if self.stats_path is not None:
            text = read_text(self.stats_path, self.log, "stats dump")
            if text is not None:
                stats, problems = parse_stats(text)
                report_problems(self.stats_path, problems, self.log)
                apply_stats(state, stats, self.log)
        self.next_stats = time.monotonic() + self.stats_every
        state.listeners.append(self.on_event)
        state.round_listeners.append(self.on_round)

    async def reloaded(self, daemon: DaemonView) -> None:
        """After ``state.load``: reals that are new to the state (their definition changed) get
        their override and offline state from the dumps, as a restart would give them."""
        state = self.state = daemon.state
        if self.saver is None:
            return
        await self.saver.drain()
        entries = self.read_overrides()
        if entries is not None:
            apply_overrides(state, entries, self.log, only_fresh=True)
        if self.offline_path is not None:
            text = read_text(self.offline_path, self.log, "offline dump")
            if text is not None:
                apply_offline(state, parse_offline(text)[0], self.log, only_fresh=True)
        self.save_overrides()
        self.save_offline()

    async def stop(self, daemon: DaemonView) -> None:
        if self.state is None or self.saver is None:
            return
        if self.on_event in self.state.listeners:
            self.state.listeners.remove(self.on_event)
        if self.on_round in self.state.round_listeners:
            self.state.round_listeners.remove(self.on_round)
        self.save_overrides()
        self.save_offline()
        self.save_stats()
        await self.saver.drain()
        await asyncio.to_thread(self.saver.close)

    # Listeners (event loop thread)

    def on_event(self, event: StateEvent) -> None:
        if event.kind == "admin":
            self.save_overrides()
        elif event.kind == "test":
            self.offline_dirty = True

    def on_round(self, report: RoundReport) -> None:
        if self.offline_dirty:
            self.save_offline()
        if self.stats_path is not None and time.monotonic() >= self.next_stats:
            self.save_stats()

    def read_overrides(self) -> list[OverrideEntry] | None:
        """override.dump with the reasons of its sidecar file merged in."""
        text = read_text(self.override_path, self.log, "override dump")
        if text is None:
            return None
        entries, problems = parse_override(text)
        report_problems(self.override_path, problems, self.log)
        path = reasons_path(self.override_path)
        if not os.path.exists(path):
            return entries
        reasons, problems = parse_reasons(read_text(path, self.log, "override reasons") or "")
        report_problems(path, problems, self.log)
        return [dataclasses.replace(e, reason=reasons.get((e.virtual, e.real), ""))
                for e in entries]

    def save_overrides(self) -> None:
        if self.state is not None and self.saver is not None:
            entries = override_entries(self.state)
            self.saver.save(self.override_path, format_override(entries))
            self.saver.save(reasons_path(self.override_path), format_reasons(entries))

    def save_offline(self) -> None:
        self.offline_dirty = False
        if self.state is not None and self.saver is not None and self.offline_path is not None:
            self.saver.save(self.offline_path, format_offline(offline_entries(self.state)))

    def save_stats(self) -> None:
        self.next_stats = time.monotonic() + self.stats_every
        if self.state is not None and self.saver is not None and self.stats_path is not None:
            self.saver.save(self.stats_path, format_stats(stats_entries(self.state)))
