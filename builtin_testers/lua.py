"""lua: a Lua 5.1 script run in a sandbox (cosocket ``check(t)`` or the original's API)."""

from __future__ import annotations

from surealived.tester_api import Attr, Probe, Result, Tester


class LuaTester(Tester):
    name = "lua"
    transport = "tcp"
    attributes = (
        Attr("script", "path", mandatory=True, help="path of the Lua script"),
        Attr("params", "str", "", limit=1024, help="string handed to the script"),
    )

    async def check(self, probe: Probe) -> Result:
        raise NotImplementedError
