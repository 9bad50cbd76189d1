"""Shared helpers: build a DaemonState from a small XML text; make checks pass or fail; read
what the writer wrote with ipvssync's reader (the one production runs)."""

from __future__ import annotations

import time
from pathlib import Path

from surealived.config.xml import parse_config_bytes
from surealived.engine.state import CheckTiming, DaemonState, RealState
from surealived.engine.verdict import Counters
from surealived.ipvssync.reader import Change, Link, Snapshot, parse_diff_line, parse_snapshot
from surealived.ipvssync.table import Dest
from surealived.registry import load_testers
from surealived.tester_api import Result

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




def read_snapshot(path: str | Path) -> Snapshot:
    """``ipvsfull.cfg`` as ipvssync parses it (raises ``ConfigErrors`` if ipvssync refuses it)."""
    return parse_snapshot(Path(path).read_text(), str(path))


def virtual_names(snap: Snapshot) -> list[str]:
    """The snapshot's virtuals by name, in file order."""
    return [service.name for service in snap.table.services.values()]


def reals_by_virtual(snap: Snapshot) -> dict[str, list[Dest]]:
    """Each virtual's reals as ipvssync would put them in the kernel, in file order."""
    return {snap.table.services[key].name: list(dests.values())
            for key, dests in snap.table.dests.items()}


def real_named(snap: Snapshot, vname: str, rname: str) -> Dest | None:
    return next((d for d in reals_by_virtual(snap).get(vname, []) if d.name == rname), None)


def read_diff(text: str) -> list[Change | Link]:
    """Every complete, non-blank line of a diff file as ipvssync parses it (a cut last line is
    left out, as ipvssync leaves it for later; a bad line raises ``ValueError``)."""
    return [parse_diff_line(line) for line in text.split("\n")[:-1] if line.strip()]


def commands(text: str) -> list[tuple[str, str, int]]:
    """``(cmd, rname, rweight)`` of each change line of a diff."""
    return [(x.cmd, x.dest.name, x.dest.weight) for x in read_diff(text)
            if isinstance(x, Change)]
