"""The ipvssync command line on this machine, whose kernel has no IPVS (see tests/kernel for one
that has): -t, --plan against an empty table, and the one clear line when IPVS is missing."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

DATA = Path(__file__).parent / "data"
IPVSSYNC = [sys.executable, "-c", "from surealived.ipvssync.cli import main; main()"]
HAS_IPVS = os.path.exists("/proc/net/ip_vs")


def run(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*IPVSSYNC, *args], capture_output=True, text=True, timeout=60,
                          cwd=cwd)


def test_check_ok_and_error(tmp_path):
    ok = run("--dir", str(DATA / "original"), "-t")
    assert ok.returncode == 0, ok.stderr
    assert "syntax OK: 2 virtuals, 2 reals, 12 diff lines replayed" in ok.stdout
    shutil.copytree(DATA / "original", tmp_path / "d")
    cfg = tmp_path / "d" / "ipvsfull.cfg"
    cfg.write_text(cfg.read_text().replace("vaddr=192.168.0.2", "vaddr=10.1"))
    bad = run("--dir", str(tmp_path / "d"), "-t")
    assert bad.returncode == 1
    assert f"{cfg}:8: vaddr: vaddr=10.1 is not an IP address" in bad.stderr
    assert "syntax ERROR" in bad.stderr


@pytest.mark.skipif(HAS_IPVS, reason="this kernel has IPVS: the plan would read it")
def test_plan_without_ipvs_plans_against_an_empty_table_and_says_so():
    result = run("--dir", str(DATA / "original"), "--plan")
    assert result.returncode == 0
    assert ("IPVS not available in this kernel: load the ip_vs module (modprobe ip_vs); "
            "planning against an empty kernel table") in result.stderr
    assert result.stdout.splitlines() == [
        "add-service tcp 192.168.0.1:80 (onet) sched=wrr: missing in the kernel",
        "add-dest tcp 192.168.0.1:80 (onet) > 213.180.146.27:80 (sg) dr weight=5: "
        "missing in the kernel",
        "add-service tcp 192.168.0.2:80 (wp) sched=wrr: missing in the kernel",
        "add-dest tcp 192.168.0.2:80 (wp) > 212.77.100.101:80 (sg) dr weight=11: "
        "missing in the kernel",
        "4 operations: 2 add-service, 2 add-dest",
    ]
    script = run("--dir", str(DATA / "variants"), "--plan", "--ipvsadm")
    assert "ipvsadm -a -f 7 -r 10.0.0.1:80 -g -w 5 -x 100 -y 10" in script.stdout


@pytest.mark.skipif(HAS_IPVS, reason="this kernel has IPVS")
def test_without_ipvs_one_clear_line_and_non_zero_exit(tmp_path):
    shutil.copytree(DATA / "original", tmp_path / "d")  # --once takes ipvssync.lock there
    result = run("--dir", str(tmp_path / "d"), "--once", "-v")
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        result.stderr.strip().splitlines()[0]]
    assert result.stderr.rstrip().endswith(
        "error : IPVS not available in this kernel: load the ip_vs module (modprobe ip_vs)")


def test_bad_main_config_is_reported_and_c_is_honoured(tmp_path):
    cfg = tmp_path / "surealived.cfg"
    cfg.write_text("ipvssync_poll_ms nope\n")
    result = run("-c", str(cfg), "-t")
    assert result.returncode == 1
    assert f"{cfg}:1: ipvssync_poll_ms: bad value 'nope'" in result.stderr
    shutil.copytree(DATA / "variants", tmp_path / "v")
    cfg.write_text("full_sync_file v/ipvsfull.cfg\nlock_sync_file v/ipvsfull.lock\n"
                   "diff_sync_dir v/diffs\n")
    result = run("-c", str(cfg), "-t")
    assert result.returncode == 0, result.stderr
    assert f"[{tmp_path}/v/ipvsfull.cfg] syntax OK: 3 virtuals" in result.stdout


def test_version():
    result = run("--version")
    assert result.returncode == 0 and "ipvssync, version 2" in result.stdout
