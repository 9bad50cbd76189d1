"""Fixtures: a DaemonState built from a small XML (IPv4, IPv6, fwmark, an empty virtual)."""

from __future__ import annotations

import pytest

from surealived.config.main import MainConfig
from surealived.config.xml import parse_config_bytes
from surealived.control.process import ProcessInfo
from surealived.control.protocol import Context
from surealived.engine.state import DaemonState
from surealived.engine.verdict import Counters
from surealived.registry import load_testers

XML = b"""<?xml version="1.0"?>
<surealived>
  <virtual name="web" proto="tcp" addr="10.1.1.2" port="80" sched="wrr" rt="dr">
    <tester proto="tcp" testport="80" loopdelay="3" timeout="5" retries2ok="1" retries2fail="1"/>
    <real name="h1" addr="127.0.0.1" port="80" weight="10"/>
    <real name="h2" addr="127.0.0.2" port="81" weight="20"/>
  </virtual>
  <virtual name="web6" proto="tcp" addr="2001:db8::1" port="443" sched="wlc" rt="masq">
    <tester proto="tcp" testport="443"/>
    <real name="s1" addr="2001:db8::10" port="443" weight="5"/>
  </virtual>
  <virtual name="marked" proto="fwmark" fwmark="7" sched="wrr" rt="dr">
    <tester proto="none"/>
    <real name="m1" addr="127.0.0.3" port="0" weight="1"/>
  </virtual>
  <virtual name="empty" proto="udp" addr="10.1.1.3" port="53" sched="rr" rt="dr">
    <tester proto="tcp" testport="53"/>
  </virtual>
</surealived>
"""

FAKE_PROCESS = ProcessInfo(pid=4242, user_time=0.025015, system_time=1.5, fd_used=12,
                           memory=(("Peak", 48164, "kB"), ("Size", 48104, "kB")))


def make_state(xml: bytes = XML) -> DaemonState:
    """Every real up, as after a start with an empty offline.dump."""
    registry = load_testers()
    state = DaemonState(parse_config_bytes(xml, "test.xml", registry), clock=lambda: 1000.0)
    for real in state.reals():
        real.counters = Counters()
    return state


@pytest.fixture
def state() -> DaemonState:
    return make_state()


@pytest.fixture
def ctx(state: DaemonState) -> Context:
    reloads: list[int] = []
    context = Context(state, MainConfig(), process=lambda: FAKE_PROCESS,
                      request_reload=lambda: reloads.append(1))
    context.reloads = reloads  # type: ignore[attr-defined]
    return context
