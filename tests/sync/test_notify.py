"""Notify scripts: the conditions (absolute and percent, no division by zero), one run per
transition with the original's arguments, the real notifier, the deadline, the environment,
and notify.dump across restarts."""

from __future__ import annotations

import asyncio
import os
import stat
from pathlib import Path

import pytest

from surealived.config.main import MainConfig
from surealived.engine.state import DaemonState, RoundReport
from surealived.engine.weights import WeightSpec
from surealived.notify import NotifyComponent, booted_after, evaluate, next_state

from .helpers import check, state_of
from .test_dumps import FakeDaemon

SCRIPT = """#!/bin/sh
printf '%s|' "$0" "$@" >> {out}
echo "NOTIFY_SOCKET=${{NOTIFY_SOCKET:-unset}}" >> {out}.env
"""


def script(tmp: Path, name: str) -> str:
    path = tmp / name
    path.write_text(SCRIPT.format(out=tmp / "calls"))
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return str(path)


def xml(tmp: Path, min_reals: str = "0", min_weight: str = "0", weights=(10, 10, 10)) -> str:
    up, down = script(tmp, "up.sh"), script(tmp, "down.sh")
    rup, rdown = script(tmp, "rup.sh"), script(tmp, "rdown.sh")
    reals = "".join(f'<real name="r{i}" addr="10.0.0.{i}" port="80" weight="{w}"/>'
                    for i, w in enumerate(weights, start=1))
    return f"""<surealived>
      <virtual name="web" addr="192.0.2.1" port="80" proto="tcp" sched="wrr" rt="dr">
        <tester proto="tcp" testport="80" notify_up="{up}" notify_down="{down}"
                notify_min_reals="{min_reals}" notify_min_weight="{min_weight}"
                real_notify_up="{rup}" real_notify_down="{rdown}"/>
        {reals}
      </virtual></surealived>"""


def calls(tmp: Path) -> list[list[str]]:
    path = tmp / "calls"
    if not path.exists():
        return []
    # each call is "$0|arg|arg|", calls follow each other without a newline
    text = path.read_text().replace("|/", "|\n/")
    return [part.strip("|").split("|") for part in text.splitlines() if part]


@pytest.mark.parametrize(("min_reals", "min_weight", "up", "ok"), [
    ((0, False), (0, False), 0, True),
    ((2, False), (0, False), 2, True),
    ((2, False), (0, False), 1, False),
    ((50, True), (0, False), 2, True),  # 2 of 3 = 66 %
    ((70, True), (0, False), 2, False),
    ((0, False), (20, False), 2, True),  # absolute weight: the original never checked it
    ((0, False), (25, False), 2, False),
    ((0, False), (60, True), 2, True),  # 20 of 30 = 66 %
    ((0, False), (70, True), 2, False),
])
def test_conditions(tmp_path, min_reals, min_weight, up, ok):
    state = state_of(xml(tmp_path, f"{min_reals[0]}{'%' if min_reals[1] else ''}",
                         f"{min_weight[0]}{'%' if min_weight[1] else ''}"))
    v = state.virtuals[0]
    for real in v.reals[up:]:
        check(state, real, False)
    assert evaluate(v).ok is ok


def test_percent_weight_with_all_weights_zero_does_not_divide_by_zero(tmp_path):
    state = state_of(xml(tmp_path, min_weight="50%", weights=(0, 0, 0)))
    ev = evaluate(state.virtuals[0])
    assert (ev.ok, ev.curr_weight) == (False, 0)


def test_transitions():
    assert next_state("UNKNOWN", True) == "UP"
    assert next_state("UNKNOWN", False) == "DOWN"
    assert next_state("UP", True) is None
    assert next_state("UP", False) == "DOWN"
    assert next_state("DOWN", False) is None
    assert next_state("DOWN", True) == "UP"


def end_round(state: DaemonState) -> None:
    state.finish_round(RoundReport(state.virtuals[0], 0.0, 0.0, ()))


async def settle(comp: NotifyComponent) -> None:
    assert comp.runner is not None
    while comp.runner.tasks:
        await asyncio.wait(set(comp.runner.tasks))


def test_each_transition_runs_its_script_once_with_the_originals_arguments(tmp_path,
                                                                            monkeypatch):
    monkeypatch.setenv("NOTIFY_SOCKET", "/run/systemd/notify")
    state = state_of(xml(tmp_path, min_reals="2", min_weight="15"))
    cfg = MainConfig(notify_dump=str(tmp_path / "notify.dump"), notify_timeout=10)
    d = FakeDaemon(state, cfg)
    comp = NotifyComponent()
    r1, r2, _r3 = state.virtuals[0].reals
    v = "|vname=web|vaddr=192.0.2.1|vport=80|vproto=tcp|vfwmark=0"

    async def scenario() -> None:
        await comp.start(d)
        end_round(state)  # UNKNOWN -> UP
        end_round(state)  # nothing changes
        await settle(comp)
        check(state, r1, False)  # real notifier: r1 down
        end_round(state)  # 2 reals up, weight 20: still UP
        await settle(comp)  # (scripts of different reals and virtuals may run concurrently)
        check(state, r2, False)
        await settle(comp)
        end_round(state)  # 1 real up: DOWN
        end_round(state)
        await settle(comp)
        state.set_admin(r2, rstate="OFFLINE")  # rset: no real notifier
        check(state, r2, True)  # test up again, but OFFLINE: still 1 counted
        await settle(comp)
        end_round(state)
        state.set_admin(r2, rstate="ONLINE", override=WeightSpec(5))  # 2 reals, weight 15
        end_round(state)  # UP again
        await settle(comp)
        await comp.stop(d)

    asyncio.run(scenario())
    t = str(tmp_path)
    assert calls(tmp_path) == [
        [f"{t}/up.sh", "notify=UP", *v.strip("|").split("|")],
        [f"{t}/rdown.sh", "notify=DOWN", *v.strip("|").split("|"), "rname=r1", "raddr=10.0.0.1",
         "rport=80"],
        [f"{t}/rdown.sh", "notify=DOWN", *v.strip("|").split("|"), "rname=r2", "raddr=10.0.0.2",
         "rport=80"],
        [f"{t}/down.sh", "notify=DOWN", *v.strip("|").split("|")],
        [f"{t}/rup.sh", "notify=UP", *v.strip("|").split("|"), "rname=r2", "raddr=10.0.0.2",
         "rport=80"],
        [f"{t}/up.sh", "notify=UP", *v.strip("|").split("|")],
    ]
    assert set((tmp_path / "calls.env").read_text().split()) == {"NOTIFY_SOCKET=unset"}
    assert (tmp_path / "notify.dump").read_text() == "vnotify 192.0.2.1:80:0:0 - state=UP\n"


def test_notify_dump_restores_state_so_a_restart_runs_nothing(tmp_path):
    (tmp_path / "notify.dump").write_text("vnotify 192.0.2.1:80:0:0 - state=UP\n")
    state = state_of(xml(tmp_path))
    d = FakeDaemon(state, MainConfig(notify_dump=str(tmp_path / "notify.dump")))
    comp = NotifyComponent()

    async def scenario() -> None:
        await comp.start(d)
        assert state.virtuals[0].notify_state == "UP"
        end_round(state)
        await settle(comp)
        await comp.stop(d)

    asyncio.run(scenario())
    assert calls(tmp_path) == []


def test_notify_dump_older_than_the_boot_is_dropped(tmp_path):
    dump = tmp_path / "notify.dump"
    dump.write_text("vnotify 192.0.2.1:80:0:0 - state=UP\n")
    os.utime(dump, (1, 1))  # written in 1970: before this boot
    state = state_of(xml(tmp_path))
    comp = NotifyComponent()

    async def scenario() -> None:
        await comp.start(FakeDaemon(state, MainConfig(notify_dump=str(dump))))
        assert state.virtuals[0].notify_state == "UNKNOWN"
        assert not dump.exists()
        end_round(state)
        await settle(comp)
        await comp.stop(FakeDaemon(state, MainConfig(notify_dump=str(dump))))

    asyncio.run(scenario())
    assert [c[1] for c in calls(tmp_path)] == ["notify=UP"]
    assert booted_after(100.0, "50.0 10.0", 120.0) and not booted_after(60.0, "50.0", 120.0)


def test_a_hanging_script_is_killed_with_its_children_at_the_deadline(tmp_path):
    hang = tmp_path / "hang.sh"
    hang.write_text(f"#!/bin/sh\nsleep 300 &\necho $! > {tmp_path}/child\nwait\n")
    hang.chmod(0o755)
    (tmp_path / "up.sh").write_text("")
    text = xml(tmp_path).replace(str(tmp_path / "up.sh"), str(hang))
    state = state_of(text)
    d = FakeDaemon(state, MainConfig(notify_dump=str(tmp_path / "notify.dump"),
                                     notify_timeout=1))
    comp = NotifyComponent()

    async def scenario() -> None:
        await comp.start(d)
        end_round(state)  # runs hang.sh
        await settle(comp)
        await comp.stop(d)

    asyncio.run(scenario())
    child = int((tmp_path / "child").read_text())
    assert not running(child)  # the script's own child was killed with its process group


def running(pid: int) -> bool:
    """Alive and not a zombie left to an init that does not reap (containers)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except FileNotFoundError:
        return False
    return fields[0] not in ("Z", "X")


def test_scripts_of_one_real_run_in_order(tmp_path):
    state = state_of(xml(tmp_path))
    d = FakeDaemon(state, MainConfig(notify_dump=str(tmp_path / "notify.dump")))
    comp = NotifyComponent()
    r1 = state.virtuals[0].reals[0]

    async def scenario() -> None:
        await comp.start(d)
        for ok in (False, True, False, True, False):  # flaps faster than the scripts run
            check(state, r1, ok)
        await settle(comp)
        await comp.stop(d)

    asyncio.run(scenario())
    assert [Path(c[0]).name for c in calls(tmp_path)] == ["rdown.sh", "rup.sh", "rdown.sh",
                                                          "rup.sh", "rdown.sh"]
