"""One sandboxed Lua 5.1 runtime (``lupa.lua51``): its memory cap and the prelude's functions.

PUC Lua 5.1, not LuaJIT (whose JIT ignores both the instruction hook and the memory cap) and not
plain ``import lupa`` (Lua 5.5). The runtime is made with no Python builtins, no ``python.eval``,
no ``python`` global once the prelude has run, and an attribute filter refusing every attribute
of every Python object, in case one ever got in. Strings cross as bytes (``encoding=None``).
"""

from __future__ import annotations

from typing import Any

import lupa.lua51 as lua51

from .prelude import PRELUDE

LuaError = lua51.LuaError
LuaMemoryError = lua51.LuaMemoryError

DEFAULT_MEMORY = 64 << 20
DEFAULT_INSTRUCTIONS = 10_000_000


def _no_attributes(obj: object, name: str, is_setting: bool) -> str:
    raise AttributeError("Python objects are not accessible from Lua")


class Runtime:
    """A LuaRuntime with the sandbox prelude loaded (one per script file)."""

    def __init__(self, max_memory: int = DEFAULT_MEMORY) -> None:
        self.lua = lua51.LuaRuntime(register_eval=False, register_builtins=False,
                                    unpack_returned_tuples=True, encoding=None,
                                    attribute_filter=_no_attributes, max_memory=max_memory)
        chunk = self.lua.globals().loadstring(PRELUDE.encode(), b"=sandbox")
        worker, compile_, inspect, drain, target = chunk()
        self.worker: Any = worker
        self.compile: Any = compile_
        self.inspect: Any = inspect
        self.drain: Any = drain
        self.target: Any = target
        self.idle: list[Any] = []  # check threads waiting for their next check (driver.py)

    def set_max_memory(self, max_memory: int) -> None:
        self.lua.set_max_memory(max_memory)

    def memory_used(self) -> int:
        return int(self.lua.get_memory_used() or 0)

    def recover(self) -> None:
        """After a memory error: collect what the failed check left (else the runtime stays
        starved until the next full collection)."""
        self.lua.gccollect()
