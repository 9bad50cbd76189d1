"""Test statistics files (``log_stats``, ``log_stats_combined``), in the original's format.

At the end of each virtual's round, with ``log_stats`` a new file
``<stats_dir>/sd_virtstats_<vname>:<vport>.<round end epoch>`` is written, and with
``log_stats_combined`` the same block is appended to ``<stats_dir>/sd_fullstats.log``::

    START Virtual: web start time=2024-01-15 10:00:00.000
    2024-01-15 10:00:00.120 virt=web:80 vproto=tcp vaddr=192.0.2.1:80 real=r1:80
      raddr=10.0.0.1:80 conntime=1ms resptime=2ms totaltime=3ms currtest=TRUE online=TRUE
    END   Virtual: web end time=2024-01-15 10:00:05.000
    --------------

(the per-real line is one line, wrapped here). Times are local, with milliseconds; with the
tester's ``logmicro`` the durations are in ``us``.
A check that never connected shows ``conntime=-1ms``, an error a second or more after the start
``-2ms`` (an "arp problem"), an error within a second ``-3ms`` (a reset). IPv6 addresses are
bracketed (``vaddr=[2001:db8::1]:80``). The text is built on the event loop and written by one
worker thread, so checks never wait for the disk.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TYPE_CHECKING

from .config.model import host_port
from .engine.state import CheckTiming, DaemonState, RoundReport

if TYPE_CHECKING:
    from .components import DaemonView

COMBINED = "sd_fullstats.log"
_SENTINEL_MS = {"conn": -1, "arp": -2, "rst": -3}


def stamp(when: float) -> str:
    """``YYYY-MM-DD HH:MM:SS.mmm`` in local time."""
    millis = int(when * 1000) % 1000
    return f"{time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(when))}.{millis:03d}"


def _bool(value: bool) -> str:
    return "TRUE" if value else "FALSE"


def round_block(report: RoundReport) -> str:
    """The lines of one round, pure."""
    v = report.virtual.config
    micro = v.tester.logmicro
    unit = "us" if micro else "ms"

    def dur(us: int) -> int:
        return us if micro else us // 1000

    def conn(t: CheckTiming) -> int:
        if t.problem in _SENTINEL_MS:
            sentinel = _SENTINEL_MS[t.problem]
            return sentinel * 1000 if micro else sentinel
        return dur(t.conn_us)

    out = [f"START Virtual: {v.name} start time={stamp(report.started)}\n"]
    for real, result, t in report.results:
        r = real.config
        out.append(f"{stamp(t.started or report.started)} virt={v.name}:{v.port} "
                   f"vproto={v.proto} vaddr={host_port(v.addr, v.port)} real={r.name}:{r.port} "
                   f"raddr={host_port(r.addr, r.port)} conntime={conn(t)}{unit} "
                   f"resptime={dur(t.resp_us)}{unit} totaltime={dur(t.total_us)}{unit} "
                   f"currtest={_bool(result.ok)} online={_bool(real.online)}\n")
    out.append(f"END   Virtual: {v.name} end time={stamp(report.ended)}\n--------------\n")
    return "".join(out)


def virtual_file(stats_dir: str, report: RoundReport) -> str:
    v = report.virtual.config
    return os.path.join(stats_dir, f"sd_virtstats_{v.name}:{v.port}.{int(report.ended)}")


class StatsLogComponent:
    """Writes the round blocks when ``log_stats`` or ``log_stats_combined`` is on."""

    def __init__(self) -> None:
        self.state: DaemonState | None = None
        self.log = logging.getLogger("surealived.statslog")
        self.dir = ""
        self.per_virtual = False
        self.combined = False
        self.pool: ThreadPoolExecutor | None = None
        self.last: Future[None] | None = None

    async def start(self, daemon: DaemonView) -> None:
        cfg = daemon.maincfg
        self.log = daemon.logger
        self.per_virtual, self.combined = cfg.log_stats, cfg.log_stats_combined
        if not (self.per_virtual or self.combined):
            return
        self.dir = cfg.stats_dir
        try:
            os.makedirs(self.dir, mode=0o700, exist_ok=True)
        except OSError as exc:
            self.log.error("Cannot create stats_dir %s: %s", self.dir, exc.strerror)
        self.pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="stats-log")
        self.state = daemon.state
        self.state.round_listeners.append(self.on_round)

    async def reloaded(self, daemon: DaemonView) -> None:
        self.state = daemon.state

    async def stop(self, daemon: DaemonView) -> None:
        if self.pool is None or self.state is None:
            return
        if self.on_round in self.state.round_listeners:
            self.state.round_listeners.remove(self.on_round)
        await asyncio.to_thread(self.pool.shutdown, True)

    def on_round(self, report: RoundReport) -> None:
        if self.pool is None:
            return
        text = round_block(report)
        path = virtual_file(self.dir, report) if self.per_virtual else None
        self.last = self.pool.submit(self._write, text, path)

    def _write(self, text: str, path: str | None) -> None:
        if path is not None:
            try:
                with open(path, "w", encoding="utf-8") as handle:
                    handle.write(text)
            except OSError as exc:
                self.log.error("Unable to open file '%s' for writing! (%s)", path, exc.strerror)
        if self.combined:
            combined = os.path.join(self.dir, COMBINED)
            try:
                with open(combined, "a", encoding="utf-8") as handle:
                    handle.write(text)
            except OSError as exc:
                self.log.error("Unable to open file '%s' for append! (%s)", combined,
                               exc.strerror)
