"""lua: a Lua 5.1 script run in a sandbox (cosocket ``check(t)`` or the original's API).

The script is compiled when the configuration is read (``surealived -t`` reports its errors
with file and line) and recompiled when the file changes; see ``lua_testers/README.md``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from surealived.lua import ArgsCache, ScriptRegistry, run_script
from surealived.tester_api import Attr, Tester


class LuaTester(Tester):
    name = "lua"
    transport = "tcp"
    shared = False  # a script sees the virtual (t.vname, t.vaddr...)
    uses = ("lua_scripts",)
    lua_scripts: ClassVar[ScriptRegistry]  # the daemon's scripts, set by the registry
    attributes = (
        Attr("script", "path", mandatory=True, help="path of the Lua script"),
        Attr("params", "str", "", limit=1024, help="string handed to the script"),
    )

    def __init__(self, settings: Mapping[str, Any]) -> None:
        super().__init__(settings)
        self.script = self.lua_scripts.get(settings["script"])
        self.args_cache: ArgsCache = {}  # the check thread's arguments, per target

    @classmethod
    def validate(cls, settings: Mapping[str, Any]) -> list[tuple[str, str]]:
        script = cls.lua_scripts.look(settings["script"])
        if script.error:
            return [("script", script.error)]
        return [("script", problem) for problem in script.check_requires()]

    check = run_script  # run_script(self, probe): the check loop itself
