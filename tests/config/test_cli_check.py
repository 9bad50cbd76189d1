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
    out = result.stdout.splitlines()
    assert out == [f"Main configuration file [{cfg}] ERROR (2 errors)",
                   f"XML configuration file [{xml}] ERROR: no virtuals loaded (2 errors)"]


def test_missing_xml_file(tmp_path) -> None:
    result = run_check(str(tmp_path / "none.xml"))
    assert result.returncode == 1
    assert f"{tmp_path / 'none.xml'}: cannot read: No such file or directory" in result.stderr


def test_missing_cfg_file_is_the_cfg_error_not_a_line_0(tmp_path) -> None:
    xml = tmp_path / "ok.xml"
    xml.write_text(GOOD)
    result = run_check("-c", str(tmp_path / "none.cfg"), str(xml))
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        f"{tmp_path / 'none.cfg'}: cannot read: No such file or directory"]
    assert result.stdout.splitlines() == [
        f"Main configuration file [{tmp_path / 'none.cfg'}] ERROR (1 error)",
        f"XML configuration file [{xml}] OK: 1 virtual, 1 real, testers: tcp x1"]


GOOD = ('<surealived>\n<virtual name="v" addr="192.0.2.1" port="80" proto="tcp" sched="wrr" '
        'rt="dr">\n<tester proto="tcp" testport="80"/>\n'
        '<real name="r" addr="127.0.0.1" port="80" weight="1"/>\n</virtual>\n</surealived>\n')

# Several faults at once: a missing Lua script, a missing exec program, a copy of v1 whose
# tester attribute is misspelled, a real's misspelled weight, an unknown tester whose own
# attribute must not be reported as well, and a misspelled element.
MANY = """<surealived>
<virtual name="v1" addr="192.0.2.1" port="80" proto="tcp" sched="wrr" rt="dr">
  <tester proto="lua" testport="80" script="missing.lua"/>
  <real name="r1" addr="127.0.0.1" port="80" weight="1"/>
</virtual>
<virtual name="v2" addr="192.0.2.2" port="80" proto="tcp" sched="wrr" rt="dr">
  <tester proto="exec" testport="80" exec="nope.sh"/>
  <real name="r1" addr="127.0.0.1" port="80" weight="1"/>
</virtual>
<virtual name="v1" addr="192.0.2.1" port="80" proto="tcp" sched="wrr" rt="dr">
  <tester proto="tcp" testport="80" timout="2"/>
  <real name="r1" addr="127.0.0.1" port="80" weigth="1"/>
</virtual>
<virtual name="v4" addr="192.0.2.4" port="80" proto="tcp" sched="wrr" rt="dr">
  <tester proto="htp" testport="80" url="/"/>
  <reel name="r1" addr="127.0.0.1" port="80" weight="1"/>
</virtual>
</surealived>
"""


def test_every_fault_once_on_its_own_line(tmp_path) -> None:
    xml = tmp_path / "many.xml"
    xml.write_text(MANY)
    cfg = tmp_path / "sd.cfg"
    cfg.write_text("loging info\nmaxfd 1024\n")
    result = run_check("-c", str(cfg), str(xml))
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        f"{cfg}:1: unknown key 'loging', did you mean 'logging'?",
        f"{xml}:3: <tester proto=\"lua\"> script: file '{tmp_path}/missing.lua' does not exist"
        " (valid: a path to a readable file)",
        f"{xml}:7: <tester proto=\"exec\"> exec: program '{tmp_path}/nope.sh' does not exist"
        " (valid: a path to an executable file)",
        f"{xml}:10: <virtual name=\"v1\"> repeats the <virtual> of line 2 (same name and "
        "service) (valid: one <virtual> per address, port and protocol (or fwmark))",
        f"{xml}:11: <tester proto=\"tcp\"> timout: unknown attribute 'timout', did you mean "
        "'timeout'?",
        f"{xml}:12: <real name=\"r1\"> weigth: unknown attribute 'weigth', did you mean "
        "'weight'?",
        f"{xml}:15: <tester proto=\"htp\"> proto: no tester named 'htp', did you mean 'http'?",
        f"{xml}:16: <reel name=\"r1\"> <reel> is not allowed inside <virtual> (valid: did you "
        "mean real?)",
    ]
    assert result.stdout.splitlines() == [
        f"Main configuration file [{cfg}] ERROR (1 error)",
        f"XML configuration file [{xml}] ERROR: no virtuals loaded (7 errors)"]


def test_one_error_is_singular(tmp_path) -> None:
    xml = tmp_path / "one.xml"
    xml.write_text(GOOD.replace('weight="1"', 'weight="x"'))
    result = run_check(str(xml))
    assert result.returncode == 1
    assert result.stdout.endswith("no virtuals loaded (1 error)\n")


def complete(words: str, cword: int) -> list[str]:
    env = {**os.environ, "_SUREALIVED_COMPLETE": "bash_complete", "COMP_WORDS": words,
           "COMP_CWORD": str(cword)}
    result = subprocess.run([sys.executable, "-c", "from surealived.cli import surealived_main;"
                             "surealived_main()"], env=env, capture_output=True, text=True,
                            timeout=60)
    return [line.split(",", 1)[1] for line in result.stdout.splitlines()]


def test_shell_completion_knows_probe_and_its_options() -> None:
    assert complete("surealived pr", 1) == ["probe"]
    assert complete("surealived probe lua --ad", 3) == ["--addr"]
    assert "--no-sync" in complete("surealived --no", 1)


def test_options_after_the_xml_and_probe_as_a_subcommand(tmp_path) -> None:
    xml = tmp_path / "ok.xml"
    xml.write_text(GOOD)
    after = subprocess.run([sys.executable, "-c", "from surealived.cli import surealived_main;"
                            "surealived_main()", str(xml), "-t"], capture_output=True, text=True,
                           timeout=60)
    assert after.returncode == 0 and "OK: 1 virtual" in after.stdout
    probe = subprocess.run([sys.executable, "-c", "from surealived.cli import surealived_main;"
                            "surealived_main()", "probe", "none", "--addr", "127.0.0.1", "-q"],
                           capture_output=True, text=True, timeout=60)
    assert probe.returncode == 0 and probe.stdout.startswith("verdict: up")
