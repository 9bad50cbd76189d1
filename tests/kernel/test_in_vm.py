"""The kernel tests, from the host: one VM boot runs every case in ``inside/``, each reported here.

This machine's kernel has no IPVS, so ``contrib/vm/run-in-vm.sh`` boots Debian's kernel in qemu
with this root filesystem shared read-only and runs ``pytest tests/kernel/inside`` there. The
inner session prints ``KERNEL-RESULTS <json>``; each inner case becomes one test here, so a
failure is named and shows the inner traceback. Takes 1 to 3 minutes under TCG.

    .venv/bin/pytest tests/kernel -q          # the whole set, one boot
"""

from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest

from tests.vm import ROOT, VM_TIMEOUT, run_in_vm

INSIDE = Path(__file__).resolve().parent / "inside"


def inner_cases() -> list[str]:
    """``file::test_name`` of every test function in inside/ (read, not imported)."""
    cases = []
    for path in sorted(INSIDE.glob("test_*.py")):
        tree = ast.parse(path.read_text())
        cases += [f"{path.name}::{node.name}" for node in tree.body
                  if isinstance(node, ast.FunctionDef) and node.name.startswith("test_")]
    return cases


@pytest.fixture(scope="session")
def vm_results() -> dict[str, list[str]]:
    command = ("cd " + str(ROOT) + " && .venv/bin/python -m pytest tests/kernel/inside -q "
               "-p no:cacheprovider -o addopts= 2>&1")
    done = run_in_vm(command)
    for line in done.stdout.splitlines():
        if line.startswith("KERNEL-RESULTS "):
            return json.loads(line[len("KERNEL-RESULTS "):])
    pytest.fail(f"no results from the VM (exit status {done.returncode}):\n"
                f"{done.stdout[-4000:]}\n{done.stderr[-4000:]}")


@pytest.mark.kernel
@pytest.mark.timeout(VM_TIMEOUT + 60)
@pytest.mark.parametrize("case", inner_cases())
def test_kernel(case: str, vm_results: dict[str, list[str]]) -> None:
    found = {nodeid: result for nodeid, result in vm_results.items()
             if nodeid.split("/")[-1] == case or nodeid.split("/")[-1].startswith(case + "[")}
    assert found, f"{case} did not run in the VM (results: {sorted(vm_results)})"
    failed = {nodeid: message for nodeid, (outcome, message) in found.items()
              if outcome != "passed"}
    assert not failed, "\n\n".join(f"{nodeid}\n{message}" for nodeid, message in failed.items())
