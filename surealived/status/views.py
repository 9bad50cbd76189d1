"""How a virtual, a real and the whole daemon look as JSON: one definition shared by the control
port's ``format=json`` and the HTTP ``/status`` document. Pure: state in, plain dicts out."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from ..engine.state import DaemonState, RealState, VirtualState

if TYPE_CHECKING:
    from ..lua.scripts import ScriptProblem


def virtual_id(v: VirtualState) -> str:
    """A short identity for labels and page anchors: ``tcp:10.0.0.1:80``, ``fwmark:5``."""
    c = v.config
    if c.fwmark:
        return f"fwmark:{c.fwmark}"
    addr = f"[{c.addr}]" if ":" in c.addr else c.addr
    return f"{c.proto}:{addr}:{c.port}"


def real_id(r: RealState) -> str:
    c = r.config
    addr = f"[{c.addr}]" if ":" in c.addr else c.addr
    return f"{addr}:{c.port}"


def virtual_view(index: int, v: VirtualState) -> dict[str, Any]:
    c = v.config
    return {
        "index": index, "name": c.name, "proto": c.proto, "addr": c.addr, "port": c.port,
        "fwmark": c.fwmark, "rt": c.rt, "sched": c.sched, "tester": c.tester.proto,
        "id": virtual_id(v),
    }


def real_state_word(r: RealState) -> str:
    """One word for the page and JSON: up, down, drained (rstate OFFLINE or weight 0 while up),
    removed (rstate DOWN), or unknown (not tested yet)."""
    if r.rstate == "DOWN":
        return "removed"
    if r.rstate == "OFFLINE":
        return "drained"  # the operator's word first, as HAProxy shows MAINT over DOWN
    if not (r.tested or r.virtual.tested):
        return "unknown"
    if not r.online:
        return "down"
    return "drained" if r.weight == 0 else "up"


def real_view(index: int, r: RealState) -> dict[str, Any]:
    c = r.config
    return {
        "index": index, "name": c.name, "addr": c.addr, "port": c.port, "testport": c.testport,
        "weight": r.weight, "confwgt": c.weight, "online": r.online, "rstate": r.rstate,
        "override": str(r.override) if r.override is not None else None,
        "reason": r.override_reason, "state": real_state_word(r),
        "tested": r.tested, "last_ok": r.last_ok, "last_reason": r.last_reason,
        "last_check": r.last_check or None, "last_duration": r.last_duration,
        "in_table": r.in_table,
        # when the test state or rstate last changed; null: not since the daemon started
        "state_changed": r.changed or None,
    }


def virtual_summary(v: VirtualState) -> dict[str, Any]:
    """One virtual at a glance: reals by state word, weight in the table against the XML's,
    and the newest change of any of its reals (0: none since start)."""
    words: dict[str, int] = {}
    weight = 0
    config_weight = 0
    changed = 0.0
    for r in v.reals:
        word = real_state_word(r)
        words[word] = words.get(word, 0) + 1
        if r.in_table:
            weight += r.weight
        config_weight += r.config.weight
        changed = max(changed, r.changed)
    return {"reals": len(v.reals), "up": words.get("up", 0), "states": words,
            "weight": weight, "config_weight": config_weight, "changed": changed or None}


def untested_count(state: DaemonState) -> int:
    return sum(1 for r in state.reals() if not (r.tested or r.virtual.tested))


def script_problems(problems: Iterable[ScriptProblem]) -> list[dict[str, Any]]:
    """Lua scripts whose file is broken (the last good version, if any, keeps running)."""
    return [{"path": p.path, "message": p.message, "since": p.since,
             "running_old": p.running_old} for p in problems]


def status_view(state: DaemonState, now: float,
                script_errors: Iterable[ScriptProblem] = ()) -> dict[str, Any]:
    """The whole ``/status`` document."""
    virtuals = []
    for i, v in enumerate(state.virtuals):
        entry = virtual_view(i, v)
        entry["summary"] = virtual_summary(v)
        entry["reals"] = [real_view(j, r) for j, r in enumerate(v.reals)]
        virtuals.append(entry)
    reals = sum(len(v.reals) for v in state.virtuals)
    untested = untested_count(state)
    return {
        "time": now, "started": state.started, "config": state.config.path,
        "virtuals_count": len(state.virtuals), "reals_count": reals,
        "untested": untested, "ready": untested == 0,
        "script_errors": script_problems(script_errors),
        "virtuals": virtuals,
    }
