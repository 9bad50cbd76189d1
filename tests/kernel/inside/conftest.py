"""Inside the VM: a real IPVS table, ``ipvsadm`` to check it, and results for the host.

Every test starts from an empty IPVS table. At the end of the session one line
``KERNEL-RESULTS <json>`` goes to stdout: ``{nodeid: [outcome, message]}``, which the host side
(``tests/kernel/test_in_vm.py``) turns into one named test per case.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from collections.abc import Iterator

import pytest

from surealived.ipvssync.kernel import Kernel, open_kernel

if os.environ.get("SUREALIVED_IN_VM") != "1":
    raise RuntimeError("tests/kernel/inside only runs inside the VM (contrib/vm/run-in-vm.sh)")

_RESULTS: dict[str, list[str]] = {}


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if report.when == "call" or report.outcome != "passed":
        previous = _RESULTS.get(report.nodeid)
        if previous and previous[0] != "passed":
            return  # keep the first failure (setup or call) of a test
        message = ""
        if report.outcome != "passed":
            message = f"{report.when}: {report.longreprtext[-3000:]}"
        _RESULTS[report.nodeid] = [report.outcome, message]


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    print("\nKERNEL-RESULTS " + json.dumps(_RESULTS), flush=True)


@pytest.fixture(scope="session")
def session_kernel() -> Iterator[Kernel]:
    with open_kernel() as kernel:
        yield kernel


@pytest.fixture
def kernel(session_kernel: Kernel) -> Kernel:
    session_kernel.flush()
    return session_kernel


def ipvsadm(*args: str) -> str:
    return subprocess.run(["ipvsadm", *args], capture_output=True, text=True, check=True,
                          timeout=30).stdout


def listing(*extra: str) -> dict[str, list[str]]:
    """``ipvsadm -Ln`` as {service line: sorted dest lines}, blanks squeezed, counters cut
    (ActiveConn/InActConn; with --thresholds the two threshold columns are kept)."""
    out: dict[str, list[str]] = {}
    current = ""
    for line in ipvsadm("-Ln", *extra).splitlines()[3:]:
        words = line.split()
        if not words:
            continue
        if words[0] == "->":
            out[current].append(" ".join(words[:4]))  # address, then 2 columns of interest
        else:
            current = re.sub(r"\s+", " ", line.strip())
            out[current] = []
    return {k: sorted(v) for k, v in out.items()}
