"""ipvssync's own figures, written as a Prometheus textfile for the node exporter's textfile
collector (``ipvssync_metrics_file`` in surealived.cfg; off when empty).

``SyncFigures`` is what the ``Syncer`` counts as it goes; ``render(figures)`` is pure (figures in,
exposition text out); ``MetricsFile`` writes it atomically (temp file then rename, as the
collector wants: it must never read half a file) when something changed, and at least every
``refresh`` seconds so the "last sync" stays fresh in a scrape.
"""

from __future__ import annotations

import contextlib
import os
import time
from dataclasses import dataclass, field

from .. import __version__


@dataclass
class SyncFigures:
    """Counters since start, and the times of the last passes (epoch seconds, 0: never)."""

    started: float = field(default_factory=time.time)
    last_sync: float = 0.0  # the last pass (full or of some services) that left them matching
    last_full_sync: float = 0.0  # the last full comparison that left the kernel matching
    last_load: float = 0.0  # the last snapshot adopted
    in_sync: bool = False  # whether the last pass left the kernel matching
    syncs: dict[str, int] = field(default_factory=lambda: {"full": 0, "services": 0})
    applied: dict[str, int] = field(default_factory=dict)  # by operation kind
    failed: dict[str, int] = field(default_factory=dict)  # by operation kind
    drift_repaired: int = 0  # operations applied because the kernel drifted
    snapshots_refused: int = 0
    kernel_errors: int = 0  # the kernel could not be read or written at all
    services: int = 0  # in the wanted table
    reals: int = 0
    version: int = 0  # bumped on every change, so the file is rewritten only when needed

    def changed(self) -> None:
        self.version += 1


def _family(out: list[str], name: str, kind: str, help_text: str) -> None:
    out.append(f"# HELP {name} {help_text}")
    out.append(f"# TYPE {name} {kind}")


def render(f: SyncFigures) -> str:
    out: list[str] = []
    _family(out, "ipvssync_build_info", "gauge", "Version of ipvssync.")
    out.append(f'ipvssync_build_info{{version="{__version__}"}} 1')
    _family(out, "ipvssync_start_time_seconds", "gauge", "When ipvssync started.")
    out.append(f"ipvssync_start_time_seconds {f.started!r}")
    for name, value, help_text in (
            ("ipvssync_last_sync_timestamp_seconds", f.last_sync,
             "When a sync last left the services it touched matching the wanted table (0: "
             "never)."),
            ("ipvssync_last_full_sync_timestamp_seconds", f.last_full_sync,
             "When a full comparison last found (or left) the kernel matching (0: never)."),
            ("ipvssync_last_load_timestamp_seconds", f.last_load,
             "When the last snapshot was adopted (0: never).")):
        _family(out, name, "gauge", help_text)
        out.append(f"{name} {float(value)!r}")
    _family(out, "ipvssync_in_sync", "gauge", "1 when the last pass left the kernel matching.")
    out.append(f"ipvssync_in_sync {1 if f.in_sync else 0}")
    _family(out, "ipvssync_wanted_services", "gauge", "Services in the wanted table.")
    out.append(f"ipvssync_wanted_services {f.services}")
    _family(out, "ipvssync_wanted_reals", "gauge", "Reals in the wanted table.")
    out.append(f"ipvssync_wanted_reals {f.reals}")
    _family(out, "ipvssync_syncs_total", "counter", "Sync passes, full or of some services.")
    out.extend(f'ipvssync_syncs_total{{kind="{k}"}} {n}' for k, n in sorted(f.syncs.items()))
    _family(out, "ipvssync_operations_total", "counter",
            "Kernel operations by kind and result.")
    for kind in sorted({*f.applied, *f.failed}):
        out.append(f'ipvssync_operations_total{{op="{kind}",result="applied"}} '
                   f"{f.applied.get(kind, 0)}")
        out.append(f'ipvssync_operations_total{{op="{kind}",result="failed"}} '
                   f"{f.failed.get(kind, 0)}")
    _family(out, "ipvssync_drift_repaired_total", "counter",
            "Operations applied because the kernel's table drifted from the wanted one.")
    out.append(f"ipvssync_drift_repaired_total {f.drift_repaired}")
    _family(out, "ipvssync_errors_total", "counter",
            "Errors by kind: operation (one kernel operation refused), snapshot (a snapshot "
            "refused), kernel (the kernel could not be read or written).")
    out.append(f'ipvssync_errors_total{{kind="operation"}} {sum(f.failed.values())}')
    out.append(f'ipvssync_errors_total{{kind="snapshot"}} {f.snapshots_refused}')
    out.append(f'ipvssync_errors_total{{kind="kernel"}} {f.kernel_errors}')
    return "\n".join(out) + "\n"


class MetricsFile:
    """Writes ``render(figures)`` to ``path`` when the figures changed or ``refresh`` passed."""

    def __init__(self, path: str, refresh: float = 60.0) -> None:
        self.path = path
        self.refresh = refresh
        self._written_version = -1
        self._written_at = 0.0

    def maybe_write(self, figures: SyncFigures, now: float | None = None) -> bool:
        now = time.monotonic() if now is None else now
        if figures.version == self._written_version and now - self._written_at < self.refresh:
            return False
        # marked first: a failing write is retried at the next change or refresh, not at once
        self._written_version = figures.version
        self._written_at = now
        temp = f"{self.path}.{os.getpid()}.tmp"  # the collector reads *.prom files only
        try:
            with open(temp, "w", encoding="utf-8") as handle:
                handle.write(render(figures))
            os.replace(temp, self.path)
        except OSError:
            with contextlib.suppress(OSError):
                os.unlink(temp)
            raise
        return True
