"""New reals against a running surealived: with no state, a real starts out of the table
(weight 0, or absent with remove_on_fail) and enters after its first passing check; a SIGHUP
that adds a dead real writes it at weight 0 in the very snapshot of the reload, and /ready
stays ready; init_state="up" is the original's start; a restart with offline.dump keeps the
dump's states."""

from __future__ import annotations

import signal
import socket
import subprocess
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.daemon_harness import Project, free_port, stop, wait_until
from tests.sync.helpers import read_snapshot, reals_by_virtual

VIRTUALS = """<surealived>
  <virtual name="web" addr="192.0.2.1" port="80" proto="tcp" sched="wrr" rt="dr">
    <tester proto="tcp" testport="{live}" loopdelay="0.3" timeout="1"/>
    <real name="a" addr="127.0.0.1" port="80" weight="10"/>
    {web_extra}
  </virtual>
  <virtual name="rm" addr="192.0.2.2" port="80" proto="tcp" sched="wrr" rt="dr">
    <tester proto="tcp" testport="{live}" loopdelay="0.3" timeout="1" remove_on_fail="1"/>
    <real name="a" addr="127.0.0.1" port="80" weight="10"/>
    {rm_extra}
  </virtual>
  <virtual name="orig" addr="192.0.2.3" port="80" proto="tcp" sched="wrr" rt="dr">
    <tester proto="tcp" testport="{dead}" loopdelay="0.3" timeout="1" init_state="up"/>
    <real name="a" addr="127.0.0.1" port="80" weight="10"/>
  </virtual>
</surealived>
"""
NEW = '<real name="new" addr="127.0.0.9" port="80" weight="7" testport="{dead}"/>'


def snapshot(state: Path) -> dict[str, str | None]:
    """vname/rname -> rweight, as ipvssync reads the snapshot (absent reals are not there)."""
    return {f"{vname}/{dest.name}": str(dest.weight)
            for vname, dests in reals_by_virtual(read_snapshot(state / "ipvsfull.cfg")).items()
            for dest in dests}


def ready(port: int) -> int:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/ready", timeout=10) as r:
            return r.status
    except urllib.error.HTTPError as exc:
        return exc.code
    except OSError:  # not listening yet (it starts after the sync files are written)
        return 0


class Running:
    def __init__(self, root: Path, live: int) -> None:
        self.project = Project(root)
        self.status = free_port()
        self.project.write_cfg(status_listen=f"127.0.0.1:{self.status}",
                               snapshot_interval="3600")
        self.live, self.dead = live, free_port()
        self.write()
        self.proc: subprocess.Popen[str] | None = None

    def write(self, added: bool = False) -> None:
        new = NEW.format(dead=self.dead) if added else ""
        self.project.xml.write_text(VIRTUALS.format(live=self.live, dead=self.dead,
                                                    web_extra=new, rm_extra=new))

    def start(self) -> dict[str, str | None]:
        """Start; the snapshot the daemon forced at its start."""
        reload_flag = self.project.state / "ipvsfull.reload"
        reload_flag.unlink(missing_ok=True)
        with open(self.project.root / "daemon.log", "a") as log:
            self.proc = self.project.start(stderr=log)
        wait_until(reload_flag.exists, "the start's snapshot")
        return snapshot(self.project.state)


@pytest.fixture
def running(tmp_path: Path) -> Iterator[Running]:
    live = socket.socket()
    live.bind(("127.0.0.1", 0))
    live.listen(64)
    run = Running(tmp_path, live.getsockname()[1])
    yield run
    if run.proc is not None:
        stop(run.proc)
    live.close()


def test_new_reals_wait_for_their_first_passing_check(running: Running):
    first = running.start()
    # nothing known yet: out of the table, but for init_state="up" (the original's start)
    assert first == {"web/a": "0", "orig/a": "10"}
    state = running.project.state
    diff = Path(read_snapshot(state / "ipvsfull.cfg").diff_file)
    wait_until(lambda: "rname=a raddr=127.0.0.1 rport=80 rweight=10" in diff.read_text()
               and "vname=rm" in diff.read_text(), "the live reals entering after a check")
    wait_until(lambda: ready(running.status) == 200, "/ready")

    running.write(added=True)
    (state / "ipvsfull.reload").unlink()
    assert running.proc is not None
    running.proc.send_signal(signal.SIGHUP)
    wait_until((state / "ipvsfull.reload").exists, "the reload's snapshot")
    after = snapshot(state)  # read at once: before any check of the new reals
    assert after["web/new"] == "0" and "rm/new" not in after
    assert after["web/a"] == "10" and after["rm/a"] == "10" and after["orig/a"] == "0"
    assert ready(running.status) == 200  # a reload that only adds reals keeps /ready (it was
    # listening before the SIGHUP, so "not listening" cannot hide a 503 here)
    log = (running.project.root / "daemon.log").read_text()
    assert "Configuration reloaded" in log
    assert "[web:new - 192.0.2.1:80:tcp 127.0.0.9:80] changed its test state" not in log


def test_a_restart_with_offline_dump_keeps_its_states(running: Running):
    running.start()
    state = running.project.state
    wait_until(lambda: ready(running.status) == 200, "/ready")
    assert running.proc is not None and stop(running.proc) == 0
    assert (state / "offline.dump").read_text() == "192.0.2.3:80:0:0 - 127.0.0.1:80\n"
    second = running.start()
    # the healthy reals are in at once (no drain at a restart), the failed one stays out
    assert second == {"web/a": "10", "rm/a": "10", "orig/a": "0"}
