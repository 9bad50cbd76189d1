"""The Debian packaging's maintainer scripts do what keepalived's and haproxy's do: restart the
running daemons after an upgrade, stop them on remove, start nothing on a first install. The
scripts run as dpkg runs them (with its arguments), in a mount namespace whose /run says
systemd is up, with systemctl and deb-systemd-invoke replaced by recorders. (The .deb itself
needs dh-virtualenv and a package index to build, so it is not built here.) The packaged cfg
passes ``surealived -t``, sets no log file (the units log to the journal), and logrotate rotates
only what the units write."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from .conftest import BIN

DEBIAN = Path(__file__).resolve().parents[2] / "contrib" / "debian"
RECORDER = '#!/bin/sh\necho "$(basename "$0") $*" >> "$CALLS"\n'


def run_script(tmp_path: Path, script: str, *args: str) -> list[str]:
    """The calls ``script`` made, run as ``script args`` with systemd "running"."""
    if shutil.which("unshare") is None:
        pytest.skip("unshare is not installed")
    stubs = tmp_path / "bin"
    stubs.mkdir(exist_ok=True)
    for tool in ("systemctl", "deb-systemd-invoke", "deb-systemd-helper"):
        (stubs / tool).write_text(RECORDER)
        (stubs / tool).chmod(0o755)
    body = (DEBIAN / script).read_text().replace("#DEBHELPER#", "")
    (tmp_path / script).write_text(body)
    calls = tmp_path / "calls"
    calls.write_text("")
    done = subprocess.run(
        ["unshare", "--mount", "sh", "-c",
         'mount -t tmpfs tmpfs /run && mkdir -p /run/systemd/system && exec sh "$@"', "sh",
         str(tmp_path / script), *args],
        env={"PATH": f"{stubs}:/usr/sbin:/usr/bin:/sbin:/bin", "CALLS": str(calls)},
        capture_output=True, text=True, timeout=30)
    if done.returncode != 0 and "Operation not permitted" in done.stderr:
        pytest.skip("no mount namespace here: " + done.stderr.strip())
    assert done.returncode == 0, done.stderr
    return calls.read_text().splitlines()


def test_upgrade_restarts_the_running_daemons(tmp_path):
    assert run_script(tmp_path, "surealived.prerm", "upgrade", "0.2.0") == []
    assert run_script(tmp_path, "surealived.postinst", "configure", "0.1.0") == [
        "systemctl --system daemon-reload",
        "deb-systemd-invoke try-restart surealived.service ipvssync.service"]


def test_first_install_starts_nothing(tmp_path):
    assert run_script(tmp_path, "surealived.postinst", "configure", "") == []


def test_remove_stops_both(tmp_path):
    assert run_script(tmp_path, "surealived.prerm", "remove") == [
        "deb-systemd-invoke stop ipvssync.service surealived.service"]


def test_dh_installsystemd_neither_starts_nor_stops_on_upgrade():
    rules = (DEBIAN / "rules").read_text()
    for name in ("surealived", "ipvssync"):
        assert (f"dh_installsystemd --name={name} --no-enable --no-start --no-stop-on-upgrade"
                in rules)


def test_packaged_cfg_and_logrotate_match_the_units(tmp_path):
    assert "debian/surealived.cfg etc/surealived" in (DEBIAN / "surealived.install").read_text()
    cfg = (DEBIAN / "surealived.cfg").read_text()
    keys = {line.split()[0] for line in cfg.splitlines() if line and not line.startswith("#")}
    assert not keys & {"log", "use_log", "ipvssync_log"}
    (tmp_path / "empty.xml").write_text("<surealived/>")
    check = subprocess.run([str(BIN / "surealived"), "-t", "-c", str(DEBIAN / "surealived.cfg"),
                            str(tmp_path / "empty.xml")], capture_output=True, text=True,
                           timeout=60)
    assert check.returncode == 0, check.stderr
    assert "warning" not in check.stderr
    rotate = (DEBIAN / "surealived.logrotate").read_text()
    rotated = [line for line in rotate.splitlines() if line.startswith("/")]
    assert rotated == ["/var/log/surealived/stats/sd_fullstats.log"]
