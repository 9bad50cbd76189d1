"""Shared helpers: build a DaemonState from a small XML text; make checks pass or fail."""

from __future__ import annotations

import time

from surealived.engine.state import CheckTiming, DaemonState, RealState
from surealived.engine.verdict import Counters
from surealived.registry import load_testers
from surealived.tester_api import Result
from surealived.xmlconfig import parse_config_bytes

REGISTRY = load_testers()

ONETWP = """<surealived>
  <virtual name="onet" addr="192.168.0.1" port="80" proto="tcp" sched="wrr" rt="dr">
    <tester proto="tcp" testport="80"/>
    <real name="sg" addr="213.180.146.27" port="80" weight="10"/>
  </virtual>
  <virtual name="wp" addr="192.168.0.2" port="80" proto="tcp" sched="wrr" rt="dr">
    <tester proto="tcp" testport="80" remove_on_fail="1"/>
    <real name="sg" addr="212.77.100.101" port="80" weight="11"/>
  </virtual>
</surealived>
"""


def state_of(xml: str, path: str = "/tmp/test.xml", started_up: bool = True) -> DaemonState:
    """The state of ``xml``; with ``started_up`` every real is up, as a start with an empty
    offline.dump leaves them (without, each waits for its first passing check)."""
    state = DaemonState(parse_config_bytes(xml.encode(), path, REGISTRY))
    if started_up:
        for real in state.reals():
            real.counters = Counters()
    return state


def check(state: DaemonState, real: RealState, ok: bool) -> bool:
    """Feed one check result; True when the test state flipped."""
    result = Result.up() if ok else Result.down("refused")
    return state.record_result(real, result, CheckTiming(started=time.time()))


