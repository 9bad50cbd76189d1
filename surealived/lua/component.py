"""The daemon's part for Lua testers: the limits from surealived.cfg and the error counter.

``lua_memory_kb`` caps each script's runtime, ``lua_instructions`` is the budget of one check;
both apply to running scripts on start and on reload. Every Lua error (a script error, a
broken budget or memory cap) counts in ``stats`` / the metrics as ``lua_errors``. The scripts
are the daemon's own (``daemon.services.lua_scripts``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..components import DaemonView as Daemon  # the view, under the name this file uses


class LuaComponent:
    async def start(self, daemon: Daemon) -> None:
        self._apply(daemon)

    async def reloaded(self, daemon: Daemon) -> None:
        self._apply(daemon)

    async def stop(self, daemon: Daemon) -> None:
        daemon.services.lua_scripts.on_error = None

    @staticmethod
    def _apply(daemon: Daemon) -> None:
        m = daemon.maincfg
        scripts = daemon.services.lua_scripts
        scripts.set_limits(m.lua_memory_kb * 1024, m.lua_instructions)
        counters = daemon.state.counters

        def count() -> None:
            counters.lua_errors += 1

        scripts.on_error = count
