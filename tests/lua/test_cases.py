"""The shipped Lua testers against loopback dialogue servers (the cases in ``cases.py``)."""

from __future__ import annotations

import pytest

from .cases import CASES, Case
from .helpers import LUA_TESTERS, dialogue_server, lua_check


@pytest.mark.asyncio
@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
async def test_case(case: Case) -> None:
    async with dialogue_server(case.server) as server:
        result, _ = await lua_check(str(LUA_TESTERS / case.script), server.port,
                                    params=case.params)
    assert result.ok is case.ok, result
    assert result.reason.startswith(case.reason), result.reason
    if case.sent is not None:
        assert server.received[0].startswith(case.sent), server.received[0]


def test_every_shipped_script_has_a_case_and_documents_its_params() -> None:
    scripts = {p.name for p in LUA_TESTERS.glob("*.lua")}
    assert scripts == {c.script for c in CASES}
    for name in scripts:
        header = (LUA_TESTERS / name).read_text().split("\n\n", 1)[0]
        assert header.startswith(f"-- {name}: ") and "params" in header, name
