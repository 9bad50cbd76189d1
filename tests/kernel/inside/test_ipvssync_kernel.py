"""ipvssync against a real IPVS kernel (inside the VM), each case checked with ``ipvsadm -Ln``."""

from __future__ import annotations

import logging
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from surealived.ipvssync.files import SyncPaths
from surealived.ipvssync.kernel import Kernel
from surealived.ipvssync.planner import Op
from surealived.ipvssync.syncer import Settings, Syncer
from tests.ipvssync.sync_folder import Files

from .conftest import ipvsadm, listing

DATA = Path(__file__).resolve().parents[2] / "ipvssync" / "data"
VA = "vname=web vproto=tcp vaddr=10.0.0.1 vport=80 vfwmark=0 vrt=dr vsched=wrr"


class Recording:
    """The real kernel, with every operation sent to it recorded."""

    def __init__(self, kernel: Kernel) -> None:
        self.kernel = kernel
        self.ops: list[Op] = []

    def read_table(self, keys=None):
        return self.kernel.read_table(keys)

    def apply(self, ops):
        self.ops.extend(ops)
        return self.kernel.apply(ops)


BODY = (f"virtual {VA}\nreal rname=r1 raddr=10.1.0.1 rport=80 rweight=10\n"
        "real rname=r2 raddr=10.1.0.2 rport=80 rweight=10\n\n")


def syncer(paths: SyncPaths, backend, **kw) -> Syncer:
    log = logging.getLogger("ipvssync.kernel-test")
    log.setLevel(logging.DEBUG)
    return Syncer(Settings(paths, interval=10.0, **kw), backend, log)


@pytest.fixture
def files(tmp_path):
    return Files(tmp_path / "sync")


def test_original_daemon_files_full_sync(kernel, tmp_path):
    """The snapshot + diff chain the original C surealived wrote (reference examples)."""
    shutil.copytree(DATA / "original", tmp_path / "o")
    assert syncer(SyncPaths.from_dir(str(tmp_path / "o")), kernel).once()
    assert listing() == {
        "TCP 192.168.0.1:80 wrr": ["-> 213.180.146.27:80 Route 5"],
        "TCP 192.168.0.2:80 wrr": ["-> 212.77.100.101:80 Route 11"],
    }


def test_fwmark_udp_ops_persistence_thresholds_masq_tun_weight0(kernel, tmp_path):
    shutil.copytree(DATA / "variants", tmp_path / "v")
    cfg = tmp_path / "v" / "ipvsfull.cfg"
    cfg.write_text(cfg.read_text().replace(
        "vsched=rr vops=1\n", "vsched=rr vops=1\nreal rname=t raddr=10.0.0.7 rport=53\n\n"))
    assert syncer(SyncPaths.from_dir(str(tmp_path / "v")), kernel).once()
    assert listing() == {
        "TCP 10.0.0.9:80 rr": ["-> 10.0.0.3:80 Route 1"],
        "UDP 192.168.0.9:53 rr ops": ["-> 10.0.0.7:53 Tunnel 1"],
        "FWM 7 wlc persistent 300": ["-> 10.0.0.1:80 Route 5", "-> 10.0.0.2:8080 Masq 0"],
    }
    assert listing("--thresholds")["FWM 7 wlc persistent 300"] == [
        "-> 10.0.0.1:80 100 10", "-> 10.0.0.2:8080 0 0"]


def test_ipv6_services_and_fwmark(kernel, files):
    files.snapshot(
        "virtual vname=v6 vproto=tcp vaddr=2001:db8::1 vport=443 vrt=masq vsched=rr vpers=60\n"
        "real rname=a raddr=2001:db8::10 rport=8443 rweight=3\n"
        "real rname=b raddr=2001:db8::11 rport=8443 rweight=0\n\n"
        "virtual vname=f6 vproto=fwmark vaddr=:: vport=0 vrt=dr vsched=wlc vfwmark=9\n"
        "real rname=c raddr=2001:db8::12 rport=80 rweight=2\n\n")
    assert syncer(files.paths, kernel).once()
    assert listing() == {
        "TCP [2001:db8::1]:443 rr persistent 60": ["-> [2001:db8::10]:8443 Masq 3",
                                                   "-> [2001:db8::11]:8443 Masq 0"],
        "FWM 9 IPv6 wlc": ["-> [2001:db8::12]:80 Route 2"],
    }
    again = Recording(kernel)
    assert syncer(files.paths, again).once() and again.ops == []  # read back equal


def test_diffs_applied_live_weight0_stays_delreal_removes(kernel, files):
    files.snapshot(BODY)
    s = syncer(files.paths, kernel)
    s.step(0.0)
    files.diff(f"cmd=addreal {VA} rname=r1 raddr=10.1.0.1 rport=80 rweight=0",
               f"cmd=chgreal {VA} rname=r1 raddr=10.1.0.1 rport=80 rweight=0")
    s.step(0.1)
    assert listing() == {"TCP 10.0.0.1:80 wrr": ["-> 10.1.0.1:80 Route 0",
                                                 "-> 10.1.0.2:80 Route 10"]}
    files.diff(f"cmd=delreal {VA} rname=r2 raddr=10.1.0.2 rport=80 rweight=0",
               f"cmd=addreal {VA} rname=r3 raddr=10.1.0.3 rport=80 rweight=4 rrt=masq",
               f"cmd=chgreal {VA} rname=r3 raddr=10.1.0.3 rport=80 rweight=4 rrt=masq")
    s.step(0.2)
    assert listing() == {"TCP 10.0.0.1:80 wrr": ["-> 10.1.0.1:80 Route 0",
                                                 "-> 10.1.0.3:80 Masq 4"]}


def test_u_removes_unmanaged_services_and_without_u_they_stay(kernel, files):
    files.snapshot(BODY)
    ipvsadm("-A", "-t", "192.0.2.50:25", "-s", "rr")
    ipvsadm("-a", "-t", "192.0.2.50:25", "-r", "10.9.0.1:25", "-m")
    assert syncer(files.paths, kernel).once()
    assert set(listing()) == {"TCP 10.0.0.1:80 wrr", "TCP 192.0.2.50:25 rr"}
    assert syncer(files.paths, kernel, manage_unmanaged=True).once()
    assert set(listing()) == {"TCP 10.0.0.1:80 wrr"}


def test_foreign_real_in_a_managed_service_is_removed(kernel, files):
    files.snapshot(BODY)
    assert syncer(files.paths, kernel).once()
    ipvsadm("-a", "-t", "10.0.0.1:80", "-r", "10.9.0.2:80", "-g")
    assert syncer(files.paths, kernel).once()
    assert listing()["TCP 10.0.0.1:80 wrr"] == ["-> 10.1.0.1:80 Route 10",
                                                "-> 10.1.0.2:80 Route 10"]


def test_drift_repaired_after_ipvsadm_D_C_and_e(kernel, files, caplog):
    files.snapshot(BODY + "virtual vname=d vproto=udp vaddr=10.0.0.2 vport=53 vrt=masq "
                   "vsched=rr\nreal rname=d1 raddr=10.1.0.9 rport=53 rweight=1\n\n")
    s = syncer(files.paths, kernel)
    s.step(0.0)
    expected = listing()
    ipvsadm("-D", "-u", "10.0.0.2:53")
    ipvsadm("-e", "-t", "10.0.0.1:80", "-r", "10.1.0.1:80", "-g", "-w", "99")
    with caplog.at_level(logging.INFO, logger="ipvssync.kernel-test"):
        s.step(10.0)
    assert listing() == expected
    assert "repair: the kernel drifted from the wanted table: 3 operations" in caplog.text
    ipvsadm("-C")
    s.step(20.0)
    assert listing() == expected


def test_edit_service_keeps_its_dests(kernel, files):
    files.snapshot(BODY)
    s = syncer(files.paths, Recording(kernel))
    s.step(0.0)
    files.snapshot(BODY.replace("vsched=wrr", "vsched=sh vpers=120"))
    backend = Recording(kernel)
    s.backend = backend
    s.step(1.0)
    assert [op.kind for op in backend.ops] == ["edit-service"]
    assert listing() == {"TCP 10.0.0.1:80 sh persistent 120": ["-> 10.1.0.1:80 Route 10",
                                                               "-> 10.1.0.2:80 Route 10"]}


def test_restart_converges_without_flapping(kernel, files):
    files.snapshot(BODY)
    first = syncer(files.paths, kernel)
    first.step(0.0)
    files.diff(f"cmd=chgreal {VA} rname=r1 raddr=10.1.0.1 rport=80 rweight=0",
               f"cmd=delreal {VA} rname=r2 raddr=10.1.0.2 rport=80 rweight=0")
    first.step(0.1)
    before = listing()
    # a new process (restart): snapshot + diff replayed in memory, then compared
    backend = Recording(kernel)
    syncer(files.paths, backend).step(0.0)
    assert backend.ops == [] and listing() == before
    # surealived restarted too: a new snapshot with the same table and a reload flag
    files.snapshot(BODY.replace("rweight=10\nreal rname=r2 raddr=10.1.0.2 rport=80 rweight=10",
                                "rweight=0"))
    backend2 = Recording(kernel)
    s2 = syncer(files.paths, backend2)
    s2.step(0.0)
    assert backend2.ops == [] and listing() == before


def test_failed_operation_logged_with_the_kernels_reason(kernel, files, caplog):
    files.snapshot(BODY.replace("vsched=wrr", "vsched=nosuch"))
    with caplog.at_level(logging.WARNING, logger="ipvssync.kernel-test"):
        assert not syncer(files.paths, kernel).once()
    assert "FAILED add-service tcp 10.0.0.1:80 (web) sched=nosuch" in caplog.text
    assert "ENOENT (No such file or directory: scheduler not found" in caplog.text
    assert listing() == {}


def test_plan_reads_the_kernel(kernel, files, capsys):
    from surealived.ipvssync.cli import _plan

    files.snapshot(BODY)
    ipvsadm("-A", "-t", "10.0.0.1:80", "-s", "wrr")
    ipvsadm("-a", "-t", "10.0.0.1:80", "-r", "10.1.0.1:80", "-g", "-w", "10")
    assert _plan(files.paths, False, True) == 0
    assert capsys.readouterr().out.splitlines() == [
        "ipvsadm -a -t 10.0.0.1:80 -r 10.1.0.2:80 -g -w 10"]
    assert listing() == {"TCP 10.0.0.1:80 wrr": ["-> 10.1.0.1:80 Route 10"]}  # untouched


def wait_for(check, what: str, seconds: float = 20.0):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}; ipvsadm -Ln: {listing()}")


def test_daemon_follows_diffs_repairs_drift_reloads_and_stops(kernel, files, tmp_path):
    """The real command: ipvssync -c CFG --dir DIR, interval 1 s."""
    files.snapshot(BODY)
    cfg = tmp_path / "surealived.cfg"
    cfg.write_text("ipvssync_interval 1\nipvssync_poll_ms 50\n")
    with open(tmp_path / "ipvssync.log", "w") as log:
        proc = subprocess.Popen([sys.executable, "-m", "surealived.ipvssync", "-c", str(cfg),
                                 "--dir", str(files.root), "-vvvv"], stderr=log, stdout=log)
        try:
            _daemon_phases(files, proc)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    text = (tmp_path / "ipvssync.log").read_text()
    assert "repair: the kernel drifted from the wanted table" in text
    assert "removed 1 consumed diff file" in text
    assert sorted(os.listdir(files.root / "diffs")) == [os.path.basename(files.current)]


def _daemon_phases(files: Files, proc: subprocess.Popen) -> None:
    wait_for(lambda: len(listing().get("TCP 10.0.0.1:80 wrr", [])) == 2, "start-up sync")
    files.diff(f"cmd=chgreal {VA} rname=r2 raddr=10.1.0.2 rport=80 rweight=0")
    wait_for(lambda: "-> 10.1.0.2:80 Route 0" in listing()["TCP 10.0.0.1:80 wrr"],
             "a live diff line")
    ipvsadm("-C")
    wait_for(lambda: listing() == {"TCP 10.0.0.1:80 wrr": ["-> 10.1.0.1:80 Route 10",
                                                           "-> 10.1.0.2:80 Route 0"]},
             "the drift repair")
    files.snapshot(BODY.replace("rweight=10", "rweight=7"))
    wait_for(lambda: listing() == {"TCP 10.0.0.1:80 wrr": ["-> 10.1.0.1:80 Route 7",
                                                           "-> 10.1.0.2:80 Route 7"]},
             "the reload")
    assert not os.path.exists(files.paths.full_reload_file)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=10) == 0


def test_daemonized_ipvssync_writes_its_pid_file_and_removes_it(kernel, files, tmp_path):
    """ipvssync -d returns once running, with ipvssync_pid_file holding the daemon's pid
    (what the logrotate rule signals); SIGTERM stops it and removes the file."""
    files.snapshot(BODY)
    pid_file = tmp_path / "run" / "ipvssync.pid"
    pid_file.parent.mkdir()
    cfg = tmp_path / "surealived.cfg"
    cfg.write_text(f"ipvssync_pid_file {pid_file}\nipvssync_log {tmp_path / 'ipvssync.log'}\n"
                   "ipvssync_poll_ms 50\n")
    started = subprocess.run([sys.executable, "-m", "surealived.ipvssync", "-c", str(cfg),
                              "--dir", str(files.root), "-d"], capture_output=True, text=True,
                             timeout=60)
    assert started.returncode == 0, started.stderr
    wait_for(lambda: pid_file.exists() and pid_file.read_text().strip().isdigit(),
             "the pid file")
    pid = int(pid_file.read_text())
    try:
        wait_for(lambda: len(listing().get("TCP 10.0.0.1:80 wrr", [])) == 2, "the first sync")
    finally:
        os.kill(pid, signal.SIGTERM)
    wait_for(lambda: not pid_file.exists(), "the pid file to go at exit")


def tree(root: Path) -> dict[str, tuple[int, int]]:
    return {str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns)
            for p in root.rglob("*")}


def test_a_second_ipvssync_on_the_same_files_fails_at_once_and_writes_nothing(kernel, files,
                                                                            tmp_path):
    """Two real ipvssync daemons on one folder: the second (in the foreground, with -d, with
    --once) exits 1 with one line naming the lock and the first one's pid, and leaves the files,
    its own log and pid file, and the kernel as they were. Once the first stops, one starts."""
    files.snapshot(BODY)
    cfg = tmp_path / "surealived.cfg"
    cfg.write_text("ipvssync_interval 1\nipvssync_poll_ms 50\n")
    second_cfg = tmp_path / "second.cfg"
    second_cfg.write_text(f"ipvssync_log {tmp_path / 'second.log'}\n"
                          f"ipvssync_pid_file {tmp_path / 'second.pid'}\n")
    command = [sys.executable, "-m", "surealived.ipvssync", "--dir", str(files.root)]
    with open(tmp_path / "first.log", "w") as log:
        first = subprocess.Popen([*command, "-c", str(cfg)], stdout=log, stderr=log)
    try:
        wait_for(lambda: len(listing().get("TCP 10.0.0.1:80 wrr", [])) == 2, "the first sync")
        wait_for(lambda: not os.path.exists(files.paths.full_reload_file), "the flag consumed")
        files.diff(f"cmd=chgreal {VA} rname=r2 raddr=10.1.0.2 rport=80 rweight=3")
        wait_for(lambda: "-> 10.1.0.2:80 Route 3" in listing()["TCP 10.0.0.1:80 wrr"],
                 "a diff line applied by the first")
        before, table = tree(files.root), listing()
        for mode in ([], ["-d"], ["--once", "-u"]):
            second = subprocess.run([*command, "-c", str(second_cfg), *mode],
                                    capture_output=True, text=True, timeout=30)
            assert second.returncode == 1, (mode, second)
            assert second.stderr.splitlines() == [
                f"ipvssync: another ipvssync (pid {first.pid}) holds the instance lock "
                f"{files.root}/ipvssync.lock: one ipvssync per set of sync files; stop that "
                "one first"], mode
            assert second.stdout == ""
        assert not (tmp_path / "second.log").exists()
        assert not (tmp_path / "second.pid").exists()
        assert tree(files.root) == before
        assert listing() == table
        assert first.poll() is None
    finally:
        first.send_signal(signal.SIGTERM)
        assert first.wait(timeout=10) == 0
    after = subprocess.run([*command, "--once"], capture_output=True, text=True, timeout=60)
    assert after.returncode == 0, after.stderr
