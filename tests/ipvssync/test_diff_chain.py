"""Following the diff chain: any length in bounded memory, lines cut across read chunks kept
whole, and ``DIFF file=`` followed only to files inside the diffs folder."""

from __future__ import annotations

import io
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest

from surealived.errors import ConfigErrors
from surealived.ipvssync import files as sync_files
from surealived.ipvssync.files import MAX_LINE, complete_lines, load_wanted
from surealived.ipvssync.table import ServiceKey
from tests.ipvssync.sync_folder import Files, write_long_chain
from tests.ipvssync.test_syncer import VA, FakeKernel, make, weights

A = ServiceKey("tcp", "10.0.0.1", 80)
R1 = "rname=r1 raddr=10.1.0.1 rport=80"
BODY = f"virtual {VA}\nreal {R1} rweight=10\n\n"
SECRET = "root:x:0:0:secret-marker:/root:/bin/bash"
IPVSSYNC = [sys.executable, "-c", "from surealived.ipvssync.cli import main; main()"]
HAS_IPVS = os.path.exists("/proc/net/ip_vs")


@pytest.fixture
def files(tmp_path: Path) -> Files:
    return Files(tmp_path / "sync")


def test_lines_across_read_chunks_are_whole_and_an_overlong_line_is_cut(monkeypatch):
    monkeypatch.setattr(sync_files, "_CHUNK", 7)  # every line crosses a chunk boundary
    long = b"x" * (MAX_LINE + 500)
    data = b"first line\n\nsecond, longer line\n" + long + b"\nlast\ncut"
    lines = list(complete_lines(io.BytesIO(data)))
    assert [raw for raw, _ in lines] == [b"first line", b"", b"second, longer line",
                                          long[:MAX_LINE + 1], b"last"]
    assert sum(size for _, size in lines) == len(data) - len(b"cut")


def test_a_chain_longer_than_16_mb_is_read_to_its_last_line(files):
    """The issue's case: a diff chain beyond the old 16 MB read cap; the last line wins."""
    files.snapshot(BODY, 100)
    written = write_long_chain(files, VA, R1, 24, 4242)
    assert sum(p.stat().st_size for p in (files.root / "diffs").iterdir()) > 24 * 2**20
    wanted = load_wanted(files.paths)
    assert wanted.replayed == written
    assert wanted.table.dests[A][("10.1.0.1", 80)].weight == 4242
    assert wanted.problems == []


def test_a_burst_beyond_16_mb_reaches_the_kernel_in_one_step(files):
    """While running: 20 MB of new lines at once (the old reader took 16 MB of them and then
    saw nothing new until the file changed again)."""
    files.snapshot(BODY, 100)
    kernel = FakeKernel()
    syncer = make(files, kernel)
    syncer.log.setLevel(logging.INFO)  # not a debug line for each of the 160,000 changes
    syncer.step(0.0)
    write_long_chain(files, VA, R1, 20, 4242)
    syncer.step(1.0)
    assert weights(kernel, A) == {"10.1.0.1": 4242}


def run_measured(folder: Path, *args: str) -> tuple[int, str, str, int]:
    """``ipvssync --dir folder ARGS`` as a process: exit status, stdout, stderr, peak RSS kB."""
    out, err = folder / "out.txt", folder / "err.txt"
    with open(out, "w") as stdout, open(err, "w") as stderr:
        proc = subprocess.Popen([*IPVSSYNC, "--dir", str(folder), *args], stdout=stdout,
                                stderr=stderr)
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)  # reaped here, not by Popen
    return proc.returncode, out.read_text(), err.read_text(), usage.ru_maxrss


@pytest.mark.skipif(HAS_IPVS, reason="this kernel has IPVS: the plan would read it")
def test_ipvssync_plans_the_last_weight_of_a_30_mb_chain_in_bounded_memory(tmp_path):
    """The plan after a one-line chain and after a 30 MB one ending on the same line: the same
    operations, and the same memory give or take a few MB (the old reader held 16 MB of the
    chain and every line of it at once: weight 7 and 209 MB here). On the host, not in the
    VM: its qemu runs without KVM here, where reading 30 MB took more than 2 minutes."""
    small = Files(tmp_path / "small")
    small.snapshot(BODY, 100)
    small.diff(f"cmd=chgreal {VA} {R1} rweight=4242")
    big = Files(tmp_path / "big")
    big.snapshot(BODY, 100)
    write_long_chain(big, VA, R1, 30, 4242)
    code, base, err, small_rss = run_measured(small.root, "--plan")
    assert code == 0, err
    code, plan, err, big_rss = run_measured(big.root, "--plan")
    assert code == 0, err
    assert "add-dest tcp 10.0.0.1:80 (a) > 10.1.0.1:80 (r1) dr weight=4242" in plan
    assert plan == base
    assert big_rss - small_rss < 10_000, (small_rss, big_rss)  # kB


def foreign_file(tmp_path: Path) -> Path:
    """A file outside the diffs folder holding a secret and a diff line that would apply."""
    path = tmp_path / "foreign"
    path.write_text(f"{SECRET}\ncmd=chgreal {VA} {R1} rweight=666\n")
    return path


@pytest.mark.parametrize("how", ["absolute", "dotdot", "symlink"])
def test_a_snapshot_naming_a_file_outside_the_diffs_folder_is_refused(tmp_path, files, how):
    foreign = foreign_file(tmp_path)
    named = {"absolute": str(foreign), "dotdot": "diffs/../../foreign",
             "symlink": str(files.root / "diffs" / "diff_sync.7")}[how]
    if how == "symlink":
        os.symlink(foreign, named)
    files.snapshot(BODY, 100)
    full = Path(files.paths.full_sync_file)
    full.write_text(full.read_text().replace(f"DIFF file={files.current}", f"DIFF file={named}"))
    with pytest.raises(ConfigErrors) as info:
        load_wanted(files.paths)
    message = str(info.value)
    assert f"ipvsfull.cfg:3: file: DIFF names {named}" in message
    assert f"outside the diffs folder {files.paths.diff_sync_dir}: not followed" in message
    if how == "symlink":
        assert f"(a symbolic link to {foreign})" in message
    assert "secret-marker" not in message


@pytest.mark.parametrize("how", ["dotdot", "symlink"])
def test_a_link_out_of_the_diffs_folder_stops_the_chain_there(tmp_path, files, caplog, how):
    """The lines before the link apply; the foreign file is neither applied nor quoted."""
    foreign = foreign_file(tmp_path)
    files.snapshot(BODY, 100)
    kernel = FakeKernel()
    syncer = make(files, kernel)
    syncer.step(0.0)
    named = "../../foreign"
    if how == "symlink":
        named = str(files.root / "diffs" / "diff_sync.99")
        os.symlink(foreign, named)
    files.diff(f"cmd=chgreal {VA} {R1} rweight=5", f"DIFF file={named}",
               f"cmd=chgreal {VA} {R1} rweight=6")
    with caplog.at_level(logging.INFO):
        syncer.step(1.0)
        syncer.step(2.0)  # tried again: no second error line
    assert weights(kernel, A) == {"10.1.0.1": 5}
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert errors == [
        f"diff_sync.100:2: DIFF names {named}"
        + (f" (a symbolic link to {foreign})" if how == "symlink" else "")
        + f", which is outside the diffs folder {files.paths.diff_sync_dir}: not followed "
        "(ipvssync reads diff files from that folder only); the lines after it wait until "
        "it can be followed (or for a new snapshot)"]
    assert "secret-marker" not in caplog.text


def test_check_refuses_a_link_to_etc_passwd_without_quoting_it(files):
    """The issue's case, through ``ipvssync -t``: one line naming the link, nothing of the
    file it points to."""
    os.symlink("/etc/passwd", files.root / "diffs" / "diff_sync.5")
    files.snapshot(BODY, 100)
    files.diff(f"DIFF file={files.root / 'diffs' / 'diff_sync.5'}")
    code, out, err, _ = run_measured(files.root, "-t")
    assert code == 0, err  # the snapshot itself is fine; the chain stops at the link
    assert "syntax OK: 1 virtuals, 1 reals, 0 diff lines replayed" in out
    passwd = Path("/etc/passwd").read_text().splitlines()[0]
    assert passwd not in out + err
    assert err.splitlines() == [
        f"warning: diff_sync.100:1: DIFF names {files.root}/diffs/diff_sync.5 (a symbolic "
        f"link to /etc/passwd), which is outside the diffs folder {files.root}/diffs: not "
        "followed (ipvssync reads diff files from that folder only)"]


def test_relative_names_and_links_inside_the_folder_are_followed(files):
    files.snapshot(BODY, 100)
    os.rename(files.current, files.root / "diffs" / "diff_sync.100.real")
    os.symlink("diff_sync.100.real", files.current)  # a link that stays inside the folder
    full = Path(files.paths.full_sync_file)
    full.write_text(full.read_text().replace(f"DIFF file={files.current}",
                                             "DIFF file=diffs/diff_sync.100"))
    (files.root / "diffs" / "diff_sync.101").write_text(f"cmd=chgreal {VA} {R1} rweight=9\n")
    files.diff(f"cmd=chgreal {VA} {R1} rweight=8", "DIFF file=./diff_sync.101")
    wanted = load_wanted(files.paths)
    assert (wanted.replayed, wanted.tail.blocked) == (2, "")
    assert wanted.table.dests[A][("10.1.0.1", 80)].weight == 9
