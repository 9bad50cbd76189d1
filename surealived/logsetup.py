"""Logging as the original wrote it: ``[YYYY-MM-DD HH:MM:SS.uuuuuu] LEVEL : message``.

Levels are the original's: error, warn, info, debug, dbdet. The destination is the log file
(reopened after rotation: ``WatchedFileHandler``, plus ``reopen()`` on SIGUSR1), stderr, the
journal (stderr with ``<N>`` priority prefixes when ``JOURNAL_STREAM`` says so) and optionally
syslog. State changes are logged at info; a line per check is logged only at debug.
"""

from __future__ import annotations

import logging
import logging.handlers
import os
import sys
from datetime import datetime

DBDET = 5
logging.addLevelName(DBDET, "dbdet")
LEVELS = {"error": logging.ERROR, "warn": logging.WARNING, "info": logging.INFO,
          "debug": logging.DEBUG, "dbdet": DBDET}
_NAMES = {logging.CRITICAL: "error", logging.ERROR: "error", logging.WARNING: "warn",
          logging.INFO: "info", logging.DEBUG: "debug", DBDET: "dbdet"}
# journald / syslog priorities as the original mapped them: info is NOTICE, debug is INFO.
_PRIORITY = {"error": 3, "warn": 4, "info": 5, "debug": 6, "dbdet": 7}


def level_name(levelno: int) -> str:
    return _NAMES.get(levelno, "info" if levelno > DBDET else "dbdet")


class OriginalFormatter(logging.Formatter):
    """The original's line format, local time with microseconds."""

    def __init__(self, timestamp: bool = True, priority_prefix: bool = False) -> None:
        super().__init__()
        self.timestamp = timestamp
        self.priority_prefix = priority_prefix

    def format(self, record: logging.LogRecord) -> str:
        name = level_name(record.levelno)
        message = record.getMessage()
        if record.exc_info:
            message += "\n" + self.formatException(record.exc_info)
        text = f"{name:<6}: {message}"
        if self.timestamp:
            stamp = datetime.fromtimestamp(record.created).strftime("%Y-%m-%d %H:%M:%S.%f")
            text = f"[{stamp}] {text}"
        if self.priority_prefix:
            text = f"<{_PRIORITY[name]}>{text}"
        return text


def _under_journal() -> bool:
    stream = os.environ.get("JOURNAL_STREAM", "")
    try:
        dev, ino = (int(x) for x in stream.split(":"))
        st = os.fstat(2)
    except (ValueError, OSError):
        return False
    return (st.st_dev, st.st_ino) == (dev, ino)


def setup_logging(name: str, *, level: str = "info", destination: str = "stderr",
                  enabled: bool = True, use_syslog: bool = False,
                  syslog_timestamp: bool = False) -> logging.Logger:
    """Configure the ``name`` logger (``surealived`` or ``ipvssync``) and return it."""
    logger = logging.getLogger(name)
    for old in list(logger.handlers):
        logger.removeHandler(old)
        old.close()
    logger.setLevel(LEVELS[level])
    logger.propagate = False
    if enabled:
        handler: logging.Handler
        if destination in ("stderr", ""):
            journal = _under_journal()
            handler = logging.StreamHandler(sys.stderr)
            handler.setFormatter(OriginalFormatter(timestamp=not journal,
                                                   priority_prefix=journal))
        else:
            os.makedirs(os.path.dirname(destination) or ".", exist_ok=True)
            handler = logging.handlers.WatchedFileHandler(destination, encoding="utf-8")
            handler.setFormatter(OriginalFormatter())
        logger.addHandler(handler)
    if use_syslog and os.path.exists("/dev/log"):
        syslog = logging.handlers.SysLogHandler("/dev/log",
                                                logging.handlers.SysLogHandler.LOG_USER)
        syslog.ident = f"{name}[{os.getpid()}]: "
        syslog.setFormatter(OriginalFormatter(timestamp=syslog_timestamp))
        logger.addHandler(syslog)
    if not logger.handlers:
        logger.addHandler(logging.NullHandler())
    return logger


def reopen(logger: logging.Logger) -> None:
    """Reopen file handlers (SIGUSR1 after a copy-less rotation)."""
    for handler in logger.handlers:
        if isinstance(handler, logging.FileHandler):
            handler.acquire()
            try:
                handler.close()
                handler.stream = handler._open()
            finally:
                handler.release()


def verbosity_level(count: int, configured: str) -> str:
    """The original's -v counting: none keeps the configured level, then error..dbdet."""
    if count <= 0:
        return configured
    order = ("error", "warn", "info", "debug", "dbdet")
    return order[min(count, len(order)) - 1]
