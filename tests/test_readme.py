"""The README stays true: reference tables (and the man pages in contrib/man/) generated from the
declarations, every CLI flag and control command documented, and CI running the README's test
command."""

from __future__ import annotations

import os
import subprocess
import sys

import click

from surealived.cli import main as surealived_cli
from surealived.control import protocol
from surealived.ipvssync.cli import main as ipvssync_cli
from surealived.probe_cli import probe as probe_cli

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
with open(os.path.join(ROOT, "README.md"), encoding="utf-8") as _f:
    README = _f.read()


def test_reference_tables_and_man_pages_match_the_declarations() -> None:
    result = subprocess.run([sys.executable, os.path.join(ROOT, "contrib", "gen-reference.py"),
                             "--check"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


def _flags(command: click.Command) -> list[str]:
    return [opt for p in command.params if isinstance(p, click.Option) for opt in p.opts]


def test_every_cli_flag_is_documented() -> None:
    missing = [f"{name} {flag}" for name, command in
               (("surealived", surealived_cli), ("ipvssync", ipvssync_cli),
                ("surealived probe", probe_cli))
               for flag in _flags(command) if f"`{flag}" not in README]
    assert not missing


def test_every_control_command_is_documented() -> None:
    names = [n[len("cmd_"):] for n in dir(protocol) if n.startswith("cmd_")]
    assert names, "the control protocol lists its commands as cmd_<name>"
    assert all(f"`{n}" in README for n in names), names


def test_the_two_commands_and_ci() -> None:
    assert "./contrib/demo.sh" in README and "./contrib/run-tests.sh" in README
    with open(os.path.join(ROOT, ".ci", "run"), encoding="utf-8") as f:
        ci = f.read()
    assert "./contrib/run-tests.sh" in ci
