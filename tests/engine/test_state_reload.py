"""SIGHUP reload keeps the state of reals whose definition did not change, and only the test
counters of reals whose address and port did not change in a virtual of the same key; a virtual
tested before under the same key stays tested, a new real starts down (pure, no daemon)."""

from __future__ import annotations

from surealived.config.xml import parse_config_bytes
from surealived.engine.state import CheckTiming, DaemonState, RoundReport
from surealived.engine.verdict import Counters
from surealived.engine.weights import WeightSpec
from surealived.registry import load_testers
from surealived.tester_api import Result

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


def finish_a_round(state: DaemonState) -> None:
    state.finish_round(RoundReport(state.virtuals[0], 0.0, 0.0, ()))


# a after its one failure (retries2fail 1): down, distinct from a real nothing is known about
A_FAILED = Counters(online=False, ok_run=0, fail_run=1)
# a real nothing is known about (no init_state, retries2ok 1): down, one passing check from up
FRESH = Counters(online=False, ok_run=0, fail_run=0)


def test_added_real_and_moved_lines_keep_the_others_state() -> None:
    state = prepared()
    finish_a_round(state)
    assert state.virtuals[0].reals[0].counters == A_FAILED
    xml = BASE.replace("<surealived>\n", "<surealived>\n<!-- a comment -->\n\n").replace(
        "</virtual>", '  <real name="c" addr="127.0.0.3" port="80" weight="10"/>\n</virtual>')
    reload(state, xml)
    a, b, c = state.virtuals[0].reals
    assert a.counters == A_FAILED and a.tested and a.last_ok is False and a.weight == 0
    assert (b.rstate, b.override, b.override_reason) == ("OFFLINE", WeightSpec(5), "maintenance")
    assert c.counters == FRESH and not c.online and not c.tested and c.weight == 0
    # the new real starts out of the table, so the virtual tested before stays tested
    assert state.virtuals[0].tested


def test_a_changed_real_keeps_only_its_test_counters_and_the_others_keep_their_state() -> None:
    state = prepared()
    a, _ = state.virtuals[0].reals
    state.set_admin(a, override=WeightSpec(7), reason="heavy")
    reload(state, BASE.replace('name="a" addr="127.0.0.1" port="80" weight="10"',
                               'name="a" addr="127.0.0.1" port="80" weight="20"'))
    a, b = state.virtuals[0].reals
    assert a.config.weight == 20 and a.counters == A_FAILED and not a.online and a.weight == 0
    assert (a.rstate, a.override, a.override_reason) == ("ONLINE", None, "")
    assert (b.rstate, b.override, b.override_reason) == ("OFFLINE", WeightSpec(5), "maintenance")
    assert b.counters == FRESH


def test_a_changed_tester_keeps_the_test_counters_and_resets_the_rest() -> None:
    state = prepared()
    finish_a_round(state)
    reload(state, BASE.replace('retries2fail="1"', 'retries2fail="3"'))
    a, b = state.virtuals[0].reals
    assert a.virtual.config.tester.retries2fail == 3
    assert a.counters == A_FAILED and not a.online and not a.tested and a.last_ok is None
    assert b.counters == FRESH and (b.rstate, b.override, b.override_reason) == ("ONLINE", None, "")
    assert state.virtuals[0].tested  # tested before under the same key
