"""What crosses from a Lua script into Python, made safe to keep and to log.

A script controls the bytes of its reasons, its errors and its log lines. Each is cut to a
documented size where it crosses (the Lua side already cuts to one byte more, so no more than
that ever crosses), and its control characters are escaped, so one log line stays one line and
no script can forge a line that reads like the daemon's:

- a reason: ``REASON_MAX`` bytes (codes.py, also what verdict.lua cuts to);
- an error (a script error, or a message from compiling a script): ``ERROR_MAX`` bytes;
- an ``sd.log``/``print`` line or transcript note: ``LOG_MAX`` bytes (codes.py).

A cut text ends with ``...``. Escaping happens after the cut: ``\\n``, ``\\r`` and ``\\xNN``
for the other C0 and C1 controls (but the tab) and DEL, ``\\u2028``/``\\u2029`` for the
Unicode line separators, so an escaped text is at most four times its limit.
"""

from __future__ import annotations

from .codes import LOG_MAX, REASON_MAX

ERROR_MAX = 512

# a tab stays: it breaks no line (print() separates its values with tabs)
_ESCAPES: dict[int, str | None] = {c: f"\\x{c:02x}"
                                   for c in (*range(0x20), 0x7F, *range(0x80, 0xA0)) if c != 9}
_ESCAPES.update({0x0A: "\\n", 0x0D: "\\r", 0x2028: "\\u2028", 0x2029: "\\u2029"})

__all__ = ["ERROR_MAX", "LOG_MAX", "REASON_MAX", "clean", "first_line"]


def clean(raw: bytes | str, limit: int) -> str:
    """``raw`` cut to ``limit`` bytes (characters for a str), decoded, control characters
    escaped."""
    cut = len(raw) > limit
    if cut:
        raw = raw[:limit]
    text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else raw
    if not text.isprintable():  # the usual reason is printable: nothing to do
        text = text.translate(_ESCAPES)
    return text + "..." if cut else text


def first_line(message: str, limit: int = ERROR_MAX) -> str:
    """The first line of an error message, cleaned (a message can be megabytes: it is not
    split into lines)."""
    end = message.find("\n", 0, limit + 1)
    if end >= 0:
        return clean(message[:end], limit)
    return clean(message, limit)
