"""ipvssync's loop on real files with an in-memory kernel (the real kernel runs in tests/kernel).

The fake kernel keeps a table and answers like IPVS does (EEXIST, ESRCH, ENOENT for an unknown
scheduler); it records every operation so that "no flapping" can be checked op by op.
"""

from __future__ import annotations

import errno
import logging
import os
from collections.abc import Iterable
from pathlib import Path

import pytest

from surealived.ipvssync.planner import (
    ADD_DEST,
    ADD_SERVICE,
    DEL_DEST,
    DEL_SERVICE,
    EDIT_DEST,
    EDIT_SERVICE,
    Op,
)
from surealived.ipvssync.syncer import Settings, Syncer
from surealived.ipvssync.table import Dest, ServiceKey, Table, make_service
from tests.ipvssync.sync_folder import Files

A = ServiceKey("tcp", "10.0.0.1", 80)
B = ServiceKey("udp", "10.0.0.2", 53)
FOREIGN = ServiceKey("tcp", "192.0.2.50", 25)
VA = "vname=a vproto=tcp vaddr=10.0.0.1 vport=80 vfwmark=0 vrt=dr vsched=wrr"


class FakeKernel:
    def __init__(self) -> None:
        self.table = Table()
        self.log: list[Op] = []
        self.known_scheds = {"rr", "wrr", "wlc", "sh"}

    def read_table(self, keys: Iterable[ServiceKey] | None = None) -> Table:
        return self.table.copy() if keys is None else self.table.subset(set(keys))

    def apply(self, ops: list[Op]) -> list[tuple[int, str]]:
        return [(self._one(op), "") for op in ops]

    def _one(self, op: Op) -> int:
        t, key = self.table, op.service.key
        if op.kind in (ADD_SERVICE, EDIT_SERVICE) and op.service.sched not in self.known_scheds:
            return errno.ENOENT
        if op.kind == ADD_SERVICE:
            if key in t.services:
                return errno.EEXIST
            t.add_service(op.service)
        elif key not in t.services:
            return errno.ESRCH
        elif op.kind == EDIT_SERVICE:
            t.services[key] = op.service
        elif op.kind == DEL_SERVICE:
            t.remove_service(key)
        else:
            assert op.dest is not None
            present = op.dest.key in t.dests[key]
            if op.kind == ADD_DEST and present:
                return errno.EEXIST
            if op.kind in (EDIT_DEST, DEL_DEST) and not present:
                return errno.ENOENT
            if op.kind == DEL_DEST:
                t.remove_dest(key, op.dest.key)
            else:
                t.set_dest(key, op.dest)
        self.log.append(op)
        return 0


BODY = (f"virtual {VA}\nreal rname=r1 raddr=10.1.0.1 rport=80 rweight=10\n"
        "real rname=r2 raddr=10.1.0.2 rport=80 rweight=10\n\n"
        "virtual vname=b vproto=udp vaddr=10.0.0.2 vport=53 vrt=masq vsched=rr\n"
        "real rname=d1 raddr=10.1.0.3 rport=53 rweight=1\n\n")


@pytest.fixture
def files(tmp_path):
    return Files(tmp_path)


def make(files: Files, kernel: FakeKernel, **kw) -> Syncer:
    log = logging.getLogger("ipvssync.test")
    log.setLevel(logging.DEBUG)
    return Syncer(Settings(files.paths, interval=10.0, **kw), kernel, log)


def weights(kernel: FakeKernel, key: ServiceKey) -> dict[str, int]:
    return {d.addr: d.weight for d in kernel.table.dests.get(key, {}).values()}


def test_start_up_full_sync_then_diffs_live_then_no_more_ops(files):
    files.snapshot(BODY, 100)
    kernel = FakeKernel()
    syncer = make(files, kernel)
    syncer.step(0.0)
    assert weights(kernel, A) == {"10.1.0.1": 10, "10.1.0.2": 10}
    assert kernel.table.dests[B][("10.1.0.3", 53)].fwd == "masq"
    assert not os.path.exists(files.paths.full_reload_file)
    files.diff(f"cmd=addreal {VA} rname=r1 raddr=10.1.0.1 rport=80 rweight=0",
               f"cmd=chgreal {VA} rname=r1 raddr=10.1.0.1 rport=80 rweight=0",
               f"cmd=delreal {VA} rname=r2 raddr=10.1.0.2 rport=80 rweight=0")
    kernel.log.clear()
    syncer.step(1.0)
    assert weights(kernel, A) == {"10.1.0.1": 0}  # quiesced, not removed
    assert [op.kind for op in kernel.log] == [DEL_DEST, EDIT_DEST]
    kernel.log.clear()
    syncer.step(2.0)
    syncer.step(20.0)  # the full comparison: nothing to repair
    assert kernel.log == []


def test_partial_last_line_is_left_for_later(files, caplog):
    files.snapshot(BODY, 100)
    kernel = FakeKernel()
    syncer = make(files, kernel)
    syncer.step(0.0)
    with open(files.current, "a") as handle:
        handle.write(f"cmd=chgreal {VA} rname=r1 raddr=10.1.0.1 rport=80 rweight=7")
    syncer.step(1.0)
    assert weights(kernel, A)["10.1.0.1"] == 10
    with open(files.current, "a") as handle:
        handle.write("7\n")
    syncer.step(2.0)
    assert weights(kernel, A)["10.1.0.1"] == 77


def test_reload_replays_the_diff_in_memory_first_no_flapping(files):
    files.snapshot(BODY, 100)
    kernel = FakeKernel()
    syncer = make(files, kernel)
    syncer.step(0.0)
    files.diff(f"cmd=chgreal {VA} rname=r1 raddr=10.1.0.1 rport=80 rweight=0")
    syncer.step(1.0)
    kernel.log.clear()
    # SIGHUP / init reload: the snapshot still says 10, its diff says 0
    (files.root / "ipvsfull.reload").write_text("")
    syncer.step(2.0)
    assert kernel.log == []  # the original went 0 -> 10 -> 0 here (its bug 7.7)
    assert not os.path.exists(files.paths.full_reload_file)


def test_restart_converges_without_touching_equal_dests(files):
    files.snapshot(BODY, 100)
    kernel = FakeKernel()
    make(files, kernel).step(0.0)
    files.diff(f"cmd=chgreal {VA} rname=r1 raddr=10.1.0.1 rport=80 rweight=3")
    kernel.log.clear()
    fresh = make(files, kernel)  # a new ipvssync process on a kernel the old one filled
    fresh.step(0.0)
    assert [(op.kind, op.dest.weight if op.dest else None) for op in kernel.log] == [
        (EDIT_DEST, 3)]


def test_refused_reload_keeps_the_table_and_u_deletes_nothing(files, caplog):
    files.snapshot(BODY, 100)
    kernel = FakeKernel()
    kernel.table.add_service(make_service(FOREIGN, "rr"))
    syncer = make(files, kernel, manage_unmanaged=True)
    syncer.step(0.0)
    assert FOREIGN not in kernel.table.services  # -u removed it
    kernel.log.clear()
    # surealived died mid-write: the new snapshot is cut after the first virtual's reals
    files.snapshot(BODY.split("\n\n")[0] + "\nreal rname=r3 raddr=10.1.0.9 rport=80\n", 200)
    with caplog.at_level(logging.ERROR, logger="ipvssync.test"):
        syncer.step(1.0)
        syncer.step(2.0)  # unchanged file: not retried, not logged again
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 2 and "ipvsfull.cfg:8: the last real" in errors[0]
    assert "cut short" in errors[0]
    assert "keeping the table last applied (2 services, 3 reals)" in errors[1]
    syncer.step(30.0)  # the full comparison still uses the table last applied
    assert kernel.log == [] and B in kernel.table.services
    assert os.path.exists(files.paths.full_reload_file)  # the reload stays pending
    files.snapshot(BODY.replace("rweight=10", "rweight=4"), 300)
    syncer.step(31.0)
    assert weights(kernel, A) == {"10.1.0.1": 4, "10.1.0.2": 4}


def test_drift_repaired_on_the_timer(files, caplog):
    files.snapshot(BODY, 100)
    kernel = FakeKernel()
    syncer = make(files, kernel)
    syncer.step(0.0)
    kernel.table.remove_service(A)  # ipvsadm -D -t 10.0.0.1:80
    kernel.table.set_dest(B, Dest("10.1.0.3", 53, "masq", 9))  # ipvsadm -e ... -w 9
    syncer.step(5.0)
    assert A not in kernel.table.services  # not yet: the timer is 10 s
    with caplog.at_level(logging.INFO, logger="ipvssync.test"):
        syncer.step(10.0)
    assert weights(kernel, A) == {"10.1.0.1": 10, "10.1.0.2": 10}
    assert weights(kernel, B) == {"10.1.0.3": 1}
    text = caplog.text
    assert "repair: the kernel drifted from the wanted table: 4 operations" in text
    assert "repair: edit-dest udp 10.0.0.2:53 (b) > 10.1.0.3:53 (d1) masq weight=1: " \
           "weight 9 -> 1" in text


def test_failed_op_logged_once_with_reason_and_retried(files, caplog):
    files.snapshot(BODY.replace("vsched=rr", "vsched=nosuch"), 100)
    kernel = FakeKernel()
    syncer = make(files, kernel)
    with caplog.at_level(logging.DEBUG, logger="ipvssync.test"):
        syncer.step(0.0)
        syncer.step(10.0)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING
                and "FAILED" in r.getMessage()]
    assert len(warnings) == 2  # the add-service and its add-dest, once each
    assert "ENOENT (No such file or directory: scheduler not found" in warnings[0]
    assert sum("FAILED add-service" in r.getMessage() for r in caplog.records) == 2  # retried
    kernel.known_scheds.add("nosuch")
    syncer.step(20.0)
    assert B in kernel.table.services
    assert "applied now, it failed before" in caplog.text


def test_consumed_diffs_removed_only_diff_sync_files_and_not_with_k(files):
    files.snapshot(BODY, 100)
    (files.root / "diffs" / "notes.txt").write_text("mine")
    (files.root / "diffs" / "diff_sync.50").write_text("")
    kernel = FakeKernel()
    syncer = make(files, kernel)
    syncer.step(0.0)
    files.snapshot(BODY, 200, reload=False)  # the periodic snapshot: chain link only
    files.diff(f"cmd=chgreal {VA} rname=r1 raddr=10.1.0.1 rport=80 rweight=2")
    syncer.step(1.0)
    assert weights(kernel, A)["10.1.0.1"] == 2
    assert sorted(os.listdir(files.root / "diffs")) == ["diff_sync.200", "notes.txt"]
    keeper = make(files, FakeKernel(), keep_diffs=True)
    files.snapshot(BODY, 300)
    keeper.step(0.0)
    assert "diff_sync.200" in os.listdir(files.root / "diffs")


def test_missing_lock_file_waits_and_says_why(files, caplog):
    files.snapshot(BODY, 100)
    os.unlink(files.paths.lock_sync_file)
    kernel = FakeKernel()
    syncer = make(files, kernel)
    with caplog.at_level(logging.ERROR, logger="ipvssync.test"):
        syncer.step(0.0)
    assert "ipvsfull.lock does not exist: waiting for surealived to create it" in caplog.text
    assert kernel.table.services == {}
    (files.root / "ipvsfull.lock").write_text("")
    syncer.step(1.0)
    assert A in kernel.table.services


def test_replaced_diff_file_starts_over_from_the_snapshot(files):
    files.snapshot(BODY, 100)
    kernel = FakeKernel()
    syncer = make(files, kernel)
    syncer.step(0.0)
    files.diff(f"cmd=chgreal {VA} rname=r1 raddr=10.1.0.1 rport=80 rweight=2")
    syncer.step(1.0)
    os.unlink(files.current)  # same name written again (a clock step back, bug 7.11)
    Path(files.current).write_text(
        f"cmd=chgreal {VA} rname=r2 raddr=10.1.0.2 rport=80 rweight=6\n")
    syncer.step(2.0)
    syncer.step(3.0)
    assert weights(kernel, A) == {"10.1.0.1": 10, "10.1.0.2": 6}


def test_metrics_textfile_counts_syncs_operations_drift_and_errors(files, tmp_path):
    import shutil
    import subprocess

    from prometheus_client.parser import text_string_to_metric_families

    from surealived.ipvssync.metrics import MetricsFile

    files.snapshot(BODY, 100)
    kernel = FakeKernel()
    syncer = make(files, kernel)
    out = MetricsFile(str(tmp_path / "ipvssync.prom"), refresh=60.0)
    syncer.step(0.0)  # start-up: 2 services and 3 reals added
    kernel.table.remove_dest(A, ("10.1.0.2", 80))  # someone ran ipvsadm -d
    syncer.step(20.0)  # the full comparison repairs it
    files.diff(f"cmd=chgreal {VA} rname=r1 raddr=10.1.0.1 rport=80 rweight=3")
    kernel.known_scheds.discard("wrr")
    kernel.table.remove_service(A)  # re-adding A now fails (unknown scheduler)
    syncer.step(21.0)
    assert out.maybe_write(syncer.figures, now=21.0)
    assert not out.maybe_write(syncer.figures, now=22.0)  # unchanged: not rewritten
    text = (tmp_path / "ipvssync.prom").read_text()
    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value
               for family in text_string_to_metric_families(text) for s in family.samples}
    applied = {labels: v for (name, labels), v in samples.items()
               if name == "ipvssync_operations_total" and ("result", "applied") in labels}
    assert applied[(("op", "add-dest"), ("result", "applied"))] == 4  # 3 at start, 1 repair
    assert applied[(("op", "add-service"), ("result", "applied"))] == 2
    assert samples[("ipvssync_operations_total",
                    (("op", "add-service"), ("result", "failed")))] >= 1
    assert samples[("ipvssync_drift_repaired_total", ())] == 1
    assert samples[("ipvssync_errors_total", (("kind", "operation"),))] >= 1
    assert samples[("ipvssync_in_sync", ())] == 0
    assert samples[("ipvssync_syncs_total", (("kind", "full"),))] == 2
    assert samples[("ipvssync_last_full_sync_timestamp_seconds", ())] > 1e9
    assert samples[("ipvssync_wanted_reals", ())] == 3
    promtool = shutil.which("promtool")
    if promtool:  # Debian's prometheus package
        done = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True,
                              text=True, timeout=60)
        assert done.returncode == 0 and not (done.stdout + done.stderr).strip(), done.stdout
