"""What one daemon owns that a tester may use: ``Services``, made with the daemon's settings.

A tester class names the services it uses in ``Tester.uses``; the registry (registry.py) hands
the engine a subclass of it with each of them as a class attribute, one per registry, so two
daemons in one process (or a daemon, ``surealived -t`` and ``surealived probe``) share nothing.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields

from .config.main import MainConfig
from .lua.scripts import Limits, ScriptRegistry
from .proctree import Helper


@dataclass(frozen=True)
class Services:
    """The daemon-owned objects a tester may declare in ``uses``, by name."""

    lua_scripts: ScriptRegistry = field(default_factory=ScriptRegistry)  # the Lua scripts
    # the exec tester's helper process (started at the first program, ended by close())
    process_trees: Helper = field(default_factory=Helper)

    @classmethod
    def from_maincfg(cls, cfg: MainConfig) -> Services:
        limits = Limits(cfg.lua_memory_kb * 1024, cfg.lua_instructions)
        return cls(lua_scripts=ScriptRegistry(limits, cfg.lua_path))

    def close(self) -> None:
        """At the daemon's end: its helper process goes (the programs it runs end with it)."""
        self.process_trees.close()


SERVICE_NAMES = tuple(f.name for f in fields(Services))
