"""Figures the reliability suite measures: one row per part (cases tried, failures, fds and RSS
of the daemon before and after), printed as a table at the end of the run.

Rows are kept for the session (``ROWS``) and, when ``RELIABILITY_FIGURES`` names a file, also
appended to it as JSON lines so a by-hand run leaves a record.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass, field


def scale() -> int:
    """``RELIABILITY_SCALE`` (default 1): multiplies case counts for soak and by-hand runs."""
    try:
        return max(1, int(os.environ.get("RELIABILITY_SCALE", "1")))
    except ValueError:
        return 1


def timeout(seconds: int) -> int:
    """A per-test timeout (pytest-timeout) that grows with ``RELIABILITY_SCALE``."""
    return seconds * scale()


@dataclass
class Row:
    part: str
    cases: int = 0
    failures: int = 0
    fds_before: int | None = None
    fds_after: int | None = None
    rss_before_kb: int | None = None
    rss_after_kb: int | None = None
    note: str = ""
    seconds: float = 0.0
    started: float = field(default_factory=time.monotonic, repr=False)

    def done(self) -> Row:
        self.seconds = round(time.monotonic() - self.started, 1)
        ROWS.append(self)
        path = os.environ.get("RELIABILITY_FIGURES")
        if path:
            with open(path, "a", encoding="utf-8") as out:
                data = asdict(self)
                data.pop("started")
                out.write(json.dumps(data) + "\n")
        return self


ROWS: list[Row] = []


def _cell(value: int | None) -> str:
    return "-" if value is None else str(value)


def table(rows: list[Row]) -> list[str]:
    """The summary table as text lines (also the README's format)."""
    head = ("part", "cases", "failures", "fds before", "fds after", "RSS kB before",
            "RSS kB after", "s", "note")
    body = [(r.part, str(r.cases), str(r.failures), _cell(r.fds_before), _cell(r.fds_after),
             _cell(r.rss_before_kb), _cell(r.rss_after_kb), f"{r.seconds:g}", r.note)
            for r in rows]
    widths = [max(len(row[i]) for row in (head, *body)) for i in range(len(head))]
    lines = ["| " + " | ".join(c.ljust(w) for c, w in zip(head, widths, strict=True)) + " |",
             "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
    lines += ["| " + " | ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) + " |"
              for row in body]
    return lines
