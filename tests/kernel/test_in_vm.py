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
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
INSIDE = Path(__file__).resolve().parent / "inside"
RUNNER = ROOT / "contrib" / "vm" / "run-in-vm.sh"
VM_TIMEOUT = 420


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
    try:
        done = subprocess.run([str(RUNNER), command], capture_output=True, text=True,
                              timeout=VM_TIMEOUT + 30,
                              env={"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin"
                                           ":/sbin:/bin", "IVM_TIMEOUT": str(VM_TIMEOUT)})
    except subprocess.TimeoutExpired:
        pytest.fail(f"the VM did not finish within {VM_TIMEOUT + 30} s")
    if done.returncode == 126:
        pytest.skip(f"cannot boot the test VM: {done.stderr.strip()}")
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
