"""`surealived -t` as an operator runs it: exit status, every error, a summary."""

from __future__ import annotations

import glob
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
EXAMPLES = sorted(glob.glob(os.path.join(ROOT, "examples", "**", "*.xml"), recursive=True))


def run_check(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", "from surealived.cli import surealived_main;"
                           "surealived_main()", "-t", *args],
                          capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize("xml", EXAMPLES, ids=[os.path.relpath(p, ROOT) for p in EXAMPLES])
def test_every_example_is_valid(xml: str) -> None:
    cfg = os.path.join(os.path.dirname(xml), "surealived.cfg")
    if not os.path.exists(cfg):
        cfg = os.path.join(ROOT, "examples", "surealived.cfg")
    result = run_check("-c", cfg, xml)
    assert result.returncode == 0, result.stderr
    assert "OK:" in result.stdout


def test_errors_are_all_printed_with_a_summary(tmp_path) -> None:
    cfg = tmp_path / "sd.cfg"
    cfg.write_text("logging loud\nfoo bar\n")
    xml = tmp_path / "bad.xml"
    xml.write_text('<surealived>\n<virtual name="v" addr="192.0.2.1" port="80" proto="tcp" '
                   'sched="wrr" rt="dr">\n<tester proto="tcp" testport="80" timeout="0"/>\n'
                   '<real name="r" addr="127.0.0.1" port="80" weight="-1"/>\n</virtual>\n'
                   '</surealived>\n')
    result = run_check("-c", str(cfg), str(xml))
    assert result.returncode == 1
    err = result.stderr.splitlines()
    assert f"{cfg}:1: logging: bad value 'loud' (valid: error, warn, info, debug, dbdet)" in err
    assert any(line.startswith(f"{cfg}:2: unknown key 'foo'") for line in err)
    assert any(line.startswith(f"{xml}:3: <tester proto=\"tcp\"> timeout:") for line in err)
    assert any(line.startswith(f"{xml}:4: <real name=\"r\"> weight:") for line in err)
    assert "ERROR" in result.stdout and "(4 errors)" in result.stdout


def test_missing_xml_file(tmp_path) -> None:
    result = run_check(str(tmp_path / "none.xml"))
    assert result.returncode == 1
    assert "none.xml:0: cannot read" in result.stderr
