"""One sandboxed Lua 5.1 runtime (``lupa.lua51``): its memory cap and the Lua side of the sandbox.

PUC Lua 5.1, not LuaJIT (whose JIT ignores both the instruction hook and the memory cap) and not
plain ``import lupa`` (Lua 5.5). The runtime is made with no Python builtins, no ``python.eval``,
no ``python`` global once ``sandbox.lua`` has run, and an attribute filter refusing every
attribute of every Python object, in case one ever got in. Strings cross as bytes
(``encoding=None``).

The Lua side is the files of ``lua/`` (package data), loaded in the order of ``FILES``, each
called with one table they share, ``lib``: the request codes and the socket limit of
``codes.py``, a seed from the system for the runtime's own random generator (``lib.seed``), the
native helpers of ``native.py`` (``lib.native``: only the library files call them, through Lua
functions of their own), and the module each file loaded before returned (``lib.sandbox``...).
The last, ``worker.lua``, returns the functions Python calls.
"""

from __future__ import annotations

import secrets
from importlib import resources
from typing import Any

import lupa.lua51 as lua51

from .codes import CODES, LOG_MAX, MAX_SOCKETS, REASON_MAX
from .native import Natives

LuaError = lua51.LuaError
LuaMemoryError = lua51.LuaMemoryError
MEMORY = "memory limit of the Lua runtime reached"  # what a LuaMemoryError is called

DEFAULT_MEMORY = 64 << 20
DEFAULT_INSTRUCTIONS = 10_000_000

# In load order: each file uses what the ones before it returned.
FILES = ("sandbox", "pattern", "bounded", "sock", "frozen", "ngx_re", "ngx", "libs", "env",
         "modules", "verdict", "legacy", "worker")
LUA_DIR = resources.files(__package__ or "surealived.lua") / "lua"


def lua_source(name: str) -> bytes:
    """The text of ``lua/<name>.lua``, as installed (from a wheel as from a checkout)."""
    return (LUA_DIR / f"{name}.lua").read_bytes()


def chunk_name(name: str) -> bytes:
    """How errors inside the file name it: its path in the source tree (``=``: verbatim)."""
    return f"=surealived/lua/lua/{name}.lua".encode()


SOURCES = tuple((name, lua_source(name)) for name in FILES)


def _no_attributes(obj: object, name: str, is_setting: bool) -> str:
    raise AttributeError("Python objects are not accessible from Lua")


class Runtime:
    """A LuaRuntime with the sandbox files loaded (one per script file)."""

    def __init__(self, max_memory: int = DEFAULT_MEMORY) -> None:
        self.lua = lua51.LuaRuntime(register_eval=False, register_builtins=False,
                                    unpack_returned_tuples=True, encoding=None,
                                    attribute_filter=_no_attributes, max_memory=max_memory)
        api = self._load()
        self.worker: Any = api[b"worker"]
        self.compile: Any = api[b"compile"]
        self.inspect: Any = api[b"inspect"]
        self.drain: Any = api[b"drain"]
        self.target: Any = api[b"target"]
        self.is_builtin: Any = api[b"is_builtin"]
        self.idle: list[Any] = []  # check threads waiting for their next check (bridge.py)

    def _load(self) -> Any:
        table_from, loadstring = self.lua.table_from, self.lua.globals().loadstring
        codes = table_from({name.encode(): code for name, code in CODES.items()})
        seed = table_from([secrets.randbits(31), secrets.randbits(31)])
        native = table_from(Natives().table())
        lib = table_from({b"codes": codes, b"MAX_SOCKETS": MAX_SOCKETS,
                          b"REASON_MAX": REASON_MAX, b"LOG_MAX": LOG_MAX, b"seed": seed,
                          b"native": native})
        module = None
        for name, source in SOURCES:
            chunk = loadstring(source, chunk_name(name))
            if isinstance(chunk, tuple):  # nil, err: a broken file of the package
                raise LuaError(chunk[1].decode("utf-8", "replace"))
            module = chunk(lib)
            lib[name.encode()] = module
        return module

    def set_max_memory(self, max_memory: int) -> None:
        self.lua.set_max_memory(max_memory)

    def memory_used(self) -> int:
        return int(self.lua.get_memory_used() or 0)

    def recover(self) -> None:
        """After a memory error: collect what the failed check left (else the runtime stays
        starved until the next full collection)."""
        self.lua.gccollect()
