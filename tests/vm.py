"""Host tests that boot the test VM (``contrib/vm/run-in-vm.sh``, Debian's kernel with IPVS) to
run one command there: the kernel cases and the end-to-end story."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
RUNNER = ROOT / "contrib" / "vm" / "run-in-vm.sh"
VM_TIMEOUT = 420  # seconds the VM may run; the host waits 30 more


def run_in_vm(command: str) -> subprocess.CompletedProcess[str]:
    """Run ``command`` (a shell line, from the repository root) in the VM and give back its
    output. Skips the test when this machine cannot boot the VM; fails it when the VM does not
    finish in time."""
    try:
        done = subprocess.run([str(RUNNER), command], capture_output=True, text=True,
                              timeout=VM_TIMEOUT + 30, cwd=ROOT,
                              env={"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin"
                                           ":/sbin:/bin", "IVM_TIMEOUT": str(VM_TIMEOUT)})
    except subprocess.TimeoutExpired:
        pytest.fail(f"the VM did not finish within {VM_TIMEOUT + 30} s")
    if done.returncode == 126:
        pytest.skip(f"cannot boot the test VM: {done.stderr.strip()}")
    return done
