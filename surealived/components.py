"""What a part of the daemon beside the engine is, and what it sees of the daemon.

A component is anything with ``start``, ``reloaded`` and ``stop`` coroutines taking the daemon:
the sync writer, persistence, notifiers, the control port, the HTTP status server, statistics
logs, the memory limit, systemd's notifier. It sees the daemon as a ``DaemonView``: the state it
reads and subscribes to, the settings, the logger, the engine's figures, and the two requests it
may make (stop, reload). It never changes a real's state by itself.

This module imports neither the daemon nor any component, so every component can depend on it
and none on ``daemon.py``; the daemon lists its components (``daemon.build_components``) and
satisfies ``DaemonView``.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from .config.main import MainConfig
    from .engine.scheduler import EngineMetrics
    from .engine.state import DaemonState
    from .services import Services


class EngineView(Protocol):
    """What a component reads of the engine: its in-flight bound and its figures."""

    @property
    def max_inflight(self) -> int: ...
    @property
    def metrics(self) -> EngineMetrics: ...


class DaemonView(Protocol):
    """What a component reads of the running daemon, and what it may ask of it.

    A reload loads the new configuration into ``state`` in place, so a component may keep
    ``state``; ``engine`` is None only before the daemon has built it."""

    @property
    def state(self) -> DaemonState: ...
    @property
    def maincfg(self) -> MainConfig: ...  # -n and -k already folded in (no_sync, use_offline_dump)
    @property
    def logger(self) -> logging.Logger: ...
    @property
    def engine(self) -> EngineView | None: ...
    @property
    def components(self) -> Sequence[Component]: ...  # the status page reads their figures
    @property
    def loop_name(self) -> str: ...
    @property
    def services(self) -> Services: ...  # what the daemon owns for testers (its Lua scripts)

    exit_code: int  # the memory limit stops the daemon with its own exit status

    def request_stop(self) -> None: ...
    def request_reload(self) -> None: ...


class Component(Protocol):
    async def start(self, daemon: DaemonView) -> None: ...
    async def reloaded(self, daemon: DaemonView) -> None: ...
    async def stop(self, daemon: DaemonView) -> None: ...
