"""With a real surealived process: dumps restored before the forced snapshot, diff lines as
reals fail, SIGHUP writing a new snapshot and the reload flag, SIGTERM saving the dumps, -n
writing nothing, -k leaving offline.dump alone, and kill -9 leaving files a reader can trust."""

from __future__ import annotations

import os
import random
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from surealived.ipvssync.reader import parse_snapshot
from surealived.ipvssync.table import Dest
from tests.daemon_harness import PROJECT_KEYS, Project, cfg_text, free_port, wait_until

from .helpers import commands, read_snapshot, reals_by_virtual, virtual_names
from .test_crash import check_chain

# The shared project without debug_comm_path and modules_path, snapshotting every second.
CFG = cfg_text({**PROJECT_KEYS, "debug_comm_path": None, "modules_path": None,
                "snapshot_interval": "1"})
VIRTUAL = """
  <virtual name="{name}" addr="192.0.2.{n}" port="80" proto="tcp" sched="wrr" rt="dr">
    <tester proto="tcp" testport="{port}" loopdelay="0.3" timeout="1"/>
    <real name="up" addr="127.0.0.1" port="80" weight="10"/>
    <real name="gone" addr="127.0.0.2" port="80" weight="5" testport="{dead}"/>
    <real name="held" addr="127.0.0.3" port="80" weight="7"/>
  </virtual>"""


def xml(port: int, dead: int, names=("web",)) -> str:
    body = "".join(VIRTUAL.format(name=n, n=i + 1, port=port, dead=dead)
                   for i, n in enumerate(names))
    return f"<surealived>{body}\n</surealived>\n"


def wait(predicate: Callable[[], object], what: str) -> None:
    wait_until(predicate, what, seconds=20.0)


@pytest.fixture
def listener() -> Iterator[int]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(64)
        yield s.getsockname()[1]


dead_port = free_port


def start(root: Path, *args: str) -> subprocess.Popen[str]:
    with open(root / "stderr.log", "a") as log:  # the log goes to stderr in the foreground
        project = Project(root, dirs=(), xml_name="s.xml")
        return project.start(*args, stdout=subprocess.DEVNULL, stderr=log)


def snapshot_reals(root: Path) -> dict[str, Dest]:
    snap = read_snapshot(root / "state" / "ipvsfull.cfg")
    return {f"{vname}/{r.name}": r for vname, reals in reals_by_virtual(snap).items()
            for r in reals}


def test_restore_diffs_reload_and_stop(tmp_path, listener):
    (tmp_path / "surealived.cfg").write_text(CFG)
    (tmp_path / "s.xml").write_text(xml(listener, dead_port()))
    state = tmp_path / "state"
    state.mkdir()
    # The previous run left "held" DOWN and "up" offline.
    (state / "override.dump").write_text("192.0.2.1:80:0:0 - 127.0.0.3:80 - weight=7  "
                                         "rstate=DOWN\n")
    (state / "offline.dump").write_text("192.0.2.1:80:0:0 - 127.0.0.1:80\n")
    proc = start(tmp_path)
    try:
        wait(lambda: (state / "ipvsfull.reload").exists(), "the forced snapshot")
        first = (state / "ipvsfull.cfg").read_text()
        reals = {line.split()[1] for line in first.splitlines() if line.startswith("real ")}
        assert "rname=held" not in reals  # DOWN from override.dump
        assert "real rname=up raddr=127.0.0.1 rport=80 rweight=0\n" in first  # offline.dump
        diff = parse_snapshot(first, str(state / "ipvsfull.cfg")).diff_file

        def came_back() -> bool:
            text = Path(diff).read_text() if os.path.exists(diff) else ""
            return "rname=up raddr=127.0.0.1 rport=80 rweight=10" in text
        wait(came_back, "the offline real coming back as a diff line")
        cmds = commands(Path(diff).read_text())
        assert ("addreal", "up", 10) in cmds and ("chgreal", "up", 10) in cmds
        # "gone" fails at its first check: weight 0 (remove_on_fail is off)
        wait(lambda: getattr(snapshot_reals(tmp_path).get("web/gone"), "weight", None) == 0,
             "a periodic snapshot with the failed real at weight 0")

        os.unlink(state / "ipvsfull.reload")
        (tmp_path / "s.xml").write_text(xml(listener, dead_port(), names=("web", "api")))
        proc.send_signal(signal.SIGHUP)
        wait(lambda: (state / "ipvsfull.reload").exists(), "the reload flag after SIGHUP")
        assert "api/up" in snapshot_reals(tmp_path)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(20) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    offline = (state / "offline.dump").read_text()
    assert "192.0.2.1:80:0:0 - 127.0.0.2:80\n" in offline
    assert "192.0.2.1:80:0:0 - 127.0.0.1:80" not in offline
    assert (state / "override.dump").read_text() == (
        "192.0.2.1:80:0:0 - 127.0.0.3:80 - weight=7  rstate=DOWN\n")
    assert "rstats 127.0.0.1:80 - " in (state / "stats.dump").read_text()
    snap = read_snapshot(state / "ipvsfull.cfg")
    check_chain(snap.diff_file)


def test_no_sync_writes_no_sync_file_and_keeps_running(tmp_path, listener):
    (tmp_path / "surealived.cfg").write_text(CFG)
    (tmp_path / "s.xml").write_text(xml(listener, dead_port()))
    proc = start(tmp_path, "-n")
    try:
        offline = tmp_path / "state" / "offline.dump"
        wait(lambda: offline.exists() and "127.0.0.2:80" in offline.read_text(),
             "a failing real in offline.dump")
        assert "changed its test state to ONLINE" in (tmp_path / "stderr.log").read_text()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(20) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    state = tmp_path / "state"
    assert not (state / "ipvsfull.cfg").exists() and not (state / "diffs").exists()
    assert not (state / "ipvsfull.lock").exists()
    assert (state / "offline.dump").exists()  # the dumps are not sync files


def test_no_dumpfile_leaves_offline_dump_alone(tmp_path, listener):
    (tmp_path / "surealived.cfg").write_text(CFG)
    (tmp_path / "s.xml").write_text(xml(listener, dead_port()))
    state = tmp_path / "state"
    state.mkdir()
    left = "192.0.2.1:80:0:0 - 127.0.0.1:80\n"  # a previous run left "up" offline
    (state / "offline.dump").write_text(left)
    proc = start(tmp_path, "-k")
    try:
        log = tmp_path / "stderr.log"
        wait(lambda: "[web:up - " in log.read_text() and "state to ONLINE" in log.read_text(),
             "the real the dump lists going online")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(20) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert (state / "offline.dump").read_text() == left  # not written at the stop
    assert (state / "override.dump").exists()  # the other dumps are


def test_kill_9_of_the_daemon_leaves_files_a_reader_can_trust(tmp_path, listener):
    (tmp_path / "surealived.cfg").write_text(CFG)
    names = tuple(f"v{i}" for i in range(30))
    (tmp_path / "s.xml").write_text(xml(listener, dead_port(), names=names))
    state = tmp_path / "state"
    rng = random.Random(7)
    for _ in range(6):
        proc = start(tmp_path)
        time.sleep(rng.uniform(0.3, 2.0))
        proc.kill()
        proc.wait()
        full = state / "ipvsfull.cfg"
        if full.exists():
            snap = read_snapshot(full)
            assert virtual_names(snap) == list(names)
            check_chain(snap.diff_file)
