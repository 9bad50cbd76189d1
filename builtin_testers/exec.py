"""exec: run ``exec addr testport params...`` (no shell); exit status 0 means up."""

from __future__ import annotations

from surealived.tester_api import Attr, Probe, Result, Tester


class ExecTester(Tester):
    name = "exec"
    transport = "exec"
    attributes = (
        Attr("exec", "exec", mandatory=True, per_real=False, help="program to run"),
        Attr("params", "str", "", limit=1024, help="extra arguments, split on blanks"),
    )

    async def check(self, probe: Probe) -> Result:
        raise NotImplementedError
