"""Effective IPVS weight of a real (the original's ``sd_ipvssync_calculate_real_weight``), pure.

Rules, in order:
1. rstate DOWN or OFFLINE, or a failing test: weight 0.
2. Otherwise start from the configured weight. A weight the tester reported (a Lua check
   returning ``25``) replaces it; an administrative absolute override (``rset rweight=5``)
   replaces that.
3. Percentages scale what is left: the tester's (``"50%"``) first, then the administrative one
   (``rweight=50%``). A percentage p > 0 gives ``max(1, w * p // 100)``, so 1 % of any weight is
   at least 1, as in the original.
4. An override of 0 (or 0 %) means weight 0: a drain. (The original silently treated
   ``rweight=0`` as "no override"; we say what it does and do it.)
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class WeightSpec:
    """A weight as given by ``rset`` or a tester: an absolute value or a percentage."""

    value: int
    percent: bool = False

    def __str__(self) -> str:
        return f"{self.value}%" if self.percent else str(self.value)


def scale(weight: int, percent: int) -> int:
    return 0 if percent <= 0 else max(1, weight * percent // 100)


def serving_weight(conf: int, override: WeightSpec | None = None,
                   dynamic: WeightSpec | None = None) -> int:
    """The weight of a real that is up and administratively ONLINE."""
    weight = conf
    if dynamic is not None and not dynamic.percent:
        weight = dynamic.value
    if override is not None and not override.percent:
        weight = override.value
    if dynamic is not None and dynamic.percent:
        weight = scale(weight, dynamic.value)
    if override is not None and override.percent:
        weight = scale(weight, override.value)
    return weight


def effective_weight(conf: int, online: bool, rstate: str, override: WeightSpec | None = None,
                     dynamic: WeightSpec | None = None) -> int:
    """The weight written for ipvssync and shown as ``currwgt``."""
    if rstate != "ONLINE" or not online:
        return 0
    return serving_weight(conf, override, dynamic)
