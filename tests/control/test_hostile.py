"""Thousands of random and hostile lines: never an exception, one framed answer each, and no
change to the state unless the line was a valid ``rset``."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from surealived.config.main import MainConfig
from surealived.control.protocol import END, Context, execute

from .conftest import FAKE_PROCESS, make_state

STATE = make_state()
CTX = Context(STATE, MainConfig(), process=lambda: FAKE_PROCESS)

KEYS = ["vproto", "vaddr", "vport", "vfwmark", "raddr", "rport", "rstate", "rweight", "reason",
        "format", "command", ""]
VALUES = ["tcp", "udp", "fwmark", "10.1.1.2", "80", "127.0.0.1", "2001:db8::1", "[::1]", "-1",
          "65536", "4294967296", "OFFLINE", "online", "50%", "101%", "0", "%", "json", "xml",
          "1e3", "\x00", "\u202e", "0x50", "٣", "9" * 40, ""]
COMMANDS = ["vlist", "rlist", "rset", "stats", "connstats", "help", "reload", "vlistXYZ", "RSET",
            "", " rlist"]

token = st.one_of(
    st.builds(lambda k, v: f"{k}={v}", st.sampled_from(KEYS), st.sampled_from(VALUES)),
    st.text(max_size=12),
)
structured = st.builds(lambda c, ts: " ".join([c, *ts]), st.sampled_from(COMMANDS),
                       st.lists(token, max_size=9))
anything = st.text(max_size=200)


def fingerprint() -> list[tuple[object, ...]]:
    return [(r.rstate, r.override, r.override_reason) for r in STATE.reals()]


def valid_rset(line: str) -> bool:
    words = line.split()
    return bool(words) and words[0] == "rset"


@settings(max_examples=3000, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.one_of(structured, anything))
def test_hostile_lines(line: str) -> None:
    line = line.replace("\n", " ")
    before = fingerprint()
    lines = execute(line, CTX)
    if not line.strip(" \t\r"):
        assert lines == []
        return
    assert lines and lines[-1] == END
    assert all("\n" not in out for out in lines)
    assert END not in lines[:-1]
    is_error = len(lines) == 2 and lines[0].startswith(("cmd_", "Invalid request!", '{"error"'))
    if is_error or not valid_rset(line):
        assert fingerprint() == before, line
    else:
        assert lines[0].startswith(("Set: ", '{"rstate"'))
    for real in STATE.reals():  # whatever happened, the state stays within its rules
        assert real.rstate in ("ONLINE", "OFFLINE", "DOWN")
        assert 0 <= real.weight <= 65535
