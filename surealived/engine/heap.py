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
"""

from __future__ import annotations

import gc

_YOUNG = 10_000  # allocations between collections of the youngest generation


def settle() -> None:
    """Collect once, then hide every surviving object from later collections."""
    gc.collect()
    gc.freeze()
    young, older, oldest = gc.get_threshold()
    gc.set_threshold(max(young, _YOUNG), older, oldest)


def unsettle() -> None:
    """Let the collector see the long-lived objects again (before they are replaced)."""
    gc.unfreeze()
