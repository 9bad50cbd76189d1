"""The shipped systemd units, sysusers/tmpfiles rules and logrotate rule are what systemd and
logrotate accept: checked with their own tools, not by reading."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from .conftest import BIN

SYSTEMD = Path(__file__).resolve().parents[2] / "contrib" / "systemd"


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.skip(f"{name} is not installed (contrib/ci-deps.sh installs systemd)")
    return path


def _read(name: str) -> str:
    return (SYSTEMD / name).read_text()


def test_units_pass_systemd_analyze_verify(tmp_path):
    analyze = _tool("systemd-analyze")
    # verify checks that every Exec= binary exists: point them at this installation's
    for unit in ("surealived.service", "ipvssync.service"):
        text = _read(unit).replace("/usr/bin/surealived", str(BIN / "surealived"))
        (tmp_path / unit).write_text(text.replace("/usr/sbin/ipvssync", str(BIN / "ipvssync")))
    out = subprocess.run([analyze, "verify", str(tmp_path / "surealived.service"),
                          str(tmp_path / "ipvssync.service")], capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout + out.stderr == ""


@pytest.mark.parametrize("unit", ["surealived.service", "ipvssync.service"])
def test_units_are_sandboxed(unit):
    analyze = _tool("systemd-analyze")
    out = subprocess.run([analyze, "security", "--offline=yes", str(SYSTEMD / unit)],
                         capture_output=True, text=True, timeout=60)
    score = float(out.stdout.rsplit("Overall exposure level for", 1)[1].split(":")[1].split()[0])
    assert score < 2.0, out.stdout


def test_units_are_notify_with_watchdog_reload_and_least_capabilities():
    sure, sync = _read("surealived.service"), _read("ipvssync.service")
    for text in (sure, sync):
        assert "Type=notify\n" in text and "WatchdogSec=" in text
        assert "ExecReload=/bin/kill -HUP $MAINPID" in text
        assert "User=surealived" in text and "Restart=on-failure" in text
    assert "ExecStartPre=/usr/bin/surealived -t ${SUREALIVED_XML}" in sure
    assert "\nCapabilityBoundingSet=\n" in sure and "\nAmbientCapabilities=\n" in sure
    assert "\nCapabilityBoundingSet=CAP_NET_ADMIN\n" in sync
    assert "\nAmbientCapabilities=CAP_NET_ADMIN\n" in sync
    assert "\nPrivateNetwork=" not in sync  # it must see the host's IPVS table


def test_sysusers_and_tmpfiles_create_the_user_and_folders(tmp_path):
    sysusers, tmpfiles = _tool("systemd-sysusers"), _tool("systemd-tmpfiles")
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc/passwd").write_text("root:x:0:0::/root:/bin/sh\n")
    (tmp_path / "etc/group").write_text("root:x:0:\nadm:x:4:\n")
    made = subprocess.run([sysusers, f"--root={tmp_path}",
                           str(SYSTEMD / "sysusers.d/surealived.conf")],
                          capture_output=True, text=True, timeout=60)
    assert made.returncode == 0, made.stderr
    assert "\nsurealived:x:" in (tmp_path / "etc/passwd").read_text()
    made = subprocess.run([tmpfiles, "--create", f"--root={tmp_path}",
                           str(SYSTEMD / "tmpfiles.d/surealived.conf")],
                          capture_output=True, text=True, timeout=60)
    assert made.returncode == 0, made.stderr
    for folder, mode in (("var/lib/surealived", 0o750), ("var/lib/surealived/diffs", 0o750),
                         ("var/log/surealived", 0o2750), ("var/log/surealived/stats", 0o2750)):
        st = os.stat(tmp_path / folder)
        assert st.st_mode & 0o7777 == mode, folder


def test_modules_load_names_ip_vs():
    lines = [line.strip() for line in _read("modules-load.d/surealived.conf").splitlines()]
    assert [line for line in lines if line and not line.startswith("#")] == ["ip_vs"]


def test_logrotate_rule_parses(tmp_path):
    logrotate = _tool("logrotate")
    rule = (SYSTEMD.parent / "logrotate" / "surealived").read_text()
    # -d: debug mode, rotates nothing; the su user must exist here, so use root's
    (tmp_path / "rule").write_text(rule.replace("su surealived adm", "su root root")
                                   .replace("create 0640 surealived adm", "create 0640 root root"))
    out = subprocess.run([logrotate, "-d", "-s", str(tmp_path / "state"), str(tmp_path / "rule")],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "error" not in out.stderr.lower()
