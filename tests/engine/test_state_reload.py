"""SIGHUP reload keeps the state of reals whose definition did not change (pure, no daemon)."""

from __future__ import annotations

from surealived.engine.state import CheckTiming, DaemonState
from surealived.engine.weights import WeightSpec
from surealived.registry import load_testers
from surealived.tester_api import Result
from surealived.xmlconfig import parse_config_bytes

REGISTRY = load_testers()
BASE = """<surealived>
<virtual name="web" addr="192.0.2.1" port="80" proto="tcp" sched="wrr" rt="dr">
  <tester proto="tcp" testport="80" retries2fail="1"/>
  <real name="a" addr="127.0.0.1" port="80" weight="10"/>
  <real name="b" addr="127.0.0.2" port="80" weight="10"/>
</virtual>
</surealived>
"""


def state_of(xml: str) -> DaemonState:
    return DaemonState(parse_config_bytes(xml.encode(), "t.xml", REGISTRY))


def prepared() -> DaemonState:
    state = state_of(BASE)
    a, b = state.virtuals[0].reals
    state.record_result(a, Result.down("refused"), CheckTiming())
    state.set_admin(b, rstate="OFFLINE", override=WeightSpec(5), reason="maintenance")
    return state


def reload(state: DaemonState, xml: str) -> None:
    state.load(parse_config_bytes(xml.encode(), "t.xml", REGISTRY), keep=True)


def test_added_real_and_moved_lines_keep_the_others_state() -> None:
    state = prepared()
    xml = BASE.replace("<surealived>\n", "<surealived>\n<!-- a comment -->\n\n").replace(
        "</virtual>", '  <real name="c" addr="127.0.0.3" port="80" weight="10"/>\n</virtual>')
    reload(state, xml)
    a, b, c = state.virtuals[0].reals
    assert not a.online and a.weight == 0
    assert (b.rstate, b.override, b.override_reason) == ("OFFLINE", WeightSpec(5), "maintenance")
    assert c.online and not c.tested
    assert not state.virtuals[0].tested  # the new real still has to be tested


def test_a_changed_real_starts_afresh_and_the_others_keep_their_state() -> None:
    state = prepared()
    reload(state, BASE.replace('name="a" addr="127.0.0.1" port="80" weight="10"',
                               'name="a" addr="127.0.0.1" port="80" weight="20"'))
    a, b = state.virtuals[0].reals
    assert a.online and a.weight == 20
    assert b.rstate == "OFFLINE" and b.override == WeightSpec(5)


def test_a_changed_tester_resets_its_reals() -> None:
    state = prepared()
    reload(state, BASE.replace('retries2fail="1"', 'retries2fail="3"'))
    a, b = state.virtuals[0].reals
    assert a.online and b.rstate == "ONLINE" and b.override is None
