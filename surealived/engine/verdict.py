"""retries2ok / retries2fail: how one check result moves a real's test state. Pure.

Each result is counted exactly once (the original counted a test that ended before the round's
expiry twice, so ``retries2fail=2`` fired after one failure). A success resets the failure run
and vice versa; the state flips when a run reaches its threshold.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Counters:
    online: bool = True
    ok_run: int = 0
    fail_run: int = 0


def apply(counters: Counters, ok: bool, retries2ok: int, retries2fail: int) -> Counters:
    """The counters after one result; ``result.online != counters.online`` is a transition."""
    if ok:
        if counters.ok_run == retries2ok and not counters.fail_run and counters.online:
            return counters  # steadily up: nothing moves (the common case, once per check)
        ok_run = min(counters.ok_run + 1, retries2ok)
        online = True if ok_run >= retries2ok else counters.online
        return Counters(online, ok_run, 0)
    if counters.fail_run == retries2fail and not counters.ok_run and not counters.online:
        return counters  # steadily down
    fail_run = min(counters.fail_run + 1, retries2fail)
    online = False if fail_run >= retries2fail else counters.online
    return Counters(online, 0, fail_run)
