"""The garbage collector's view of a daemon with a large heap that barely changes.

The configuration and the state (hundreds of thousands of objects at 50,000 reals) live as long as
the configuration does, while every check allocates a few short-lived objects. Python's cyclic
collector counts those allocations and, every so often, walks the whole heap: at 20,000 checks a
second that was about a tenth of the daemon's CPU. ``settle()`` (after start-up and after each
reload) moves what exists into the collector's permanent generation, so only young objects are
walked; ``unsettle()`` (before a reload) gives them back, so the cycles of the configuration being
replaced (a virtual and its reals point at each other) can still be collected. The youngest
generation is also collected less often (every 10,000 allocations rather than 700): fewer of the
objects of checks in flight survive into older generations, which are walked again and again.

``trim()`` hands the C heap's free pages back to the system: libxml2 builds a configuration's
parse tree with ``malloc``, and glibc keeps the pages of a freed tree (about 1.3 kB a real) as
its own, so a daemon would carry its largest parse tree for life.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
from collections.abc import Callable

_YOUNG = 10_000  # allocations between collections of the youngest generation


def _malloc_trim() -> Callable[[int], int] | None:
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return libc.malloc_trim
    except (OSError, AttributeError):  # not glibc: nothing to trim
        return None


_TRIM = _malloc_trim()


def trim() -> None:
    """Give the C heap's free pages back to the system (glibc's ``malloc_trim``)."""
    if _TRIM is not None:
        _TRIM(0)


def settle() -> None:
    """Collect once, then hide every surviving object from later collections."""
    gc.collect()
    trim()
    gc.freeze()
    young, older, oldest = gc.get_threshold()
    gc.set_threshold(max(young, _YOUNG), older, oldest)


def unsettle() -> None:
    """Let the collector see the long-lived objects again (before they are replaced)."""
    gc.unfreeze()
