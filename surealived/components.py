"""The parts of the daemon beside the engine, each started, reloaded and stopped in one place.

A component is anything with ``start``, ``reloaded`` and ``stop`` coroutines taking the daemon:
the sync writer, persistence, notifiers, the control port, the HTTP status server, statistics
logs. ``build(daemon)`` lists them in start order; they stop in reverse order. A component reads
``daemon.state`` and subscribes to its events; it never changes a real's state by itself.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from .daemon import Daemon


class Component(Protocol):
    async def start(self, daemon: Daemon) -> None: ...
    async def reloaded(self, daemon: Daemon) -> None: ...
    async def stop(self, daemon: Daemon) -> None: ...


def build(daemon: Daemon) -> list[Component]:
    """Every component of this daemon, in start order (each helper adds its own line)."""
    from .control.server import ControlServer
    from .limits import MemoryLimit
    from .lua.component import LuaComponent
    from .notify import NotifyComponent
    from .persist.component import PersistComponent
    from .sdnotify import SystemdNotifier
    from .statslog import StatsLogComponent
    from .status.server import StatusServer
    from .sync.component import SyncComponent

    components: list[Component] = []
    components.append(MemoryLimit())
    components.append(LuaComponent())  # Lua limits from surealived.cfg, lua_errors counter
    components.append(PersistComponent())  # restores override, offline, stats dumps
    components.append(NotifyComponent())  # restores notify.dump
    components.append(SyncComponent())  # forced snapshot + reload flag, after the restores
    components.append(StatsLogComponent())
    components.append(ControlServer())
    components.append(StatusServer())  # only listens when status_listen is set
    components.append(SystemdNotifier())  # keep last: READY=1 once the others are up
    return components
