"""Shared test configuration: async tests of the engine and testers run on both event loops.

Test servers (nginx, dnsmasq, misbehaving servers) live in ``tests/servers.py``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from pathlib import Path

import pytest

try:
    import uvloop
except ImportError:  # uvloop is optional: then asyncio only
    uvloop = None

# Directories whose async tests run on asyncio and on uvloop (the daemon's default loop).
BOTH_LOOPS = ("engine", "testers")


def pytest_asyncio_loop_factories(
    config: pytest.Config, item: pytest.Item
) -> Mapping[str, Callable[[], asyncio.AbstractEventLoop]]:
    factories: dict[str, Callable[[], asyncio.AbstractEventLoop]] = {
        "asyncio": asyncio.new_event_loop}
    here = Path(str(item.path)).parent.name
    if uvloop is not None and here in BOTH_LOOPS:
        factories["uvloop"] = uvloop.new_event_loop
    return factories


def pytest_configure(config: pytest.Config) -> None:
    """Refuse to test compiled modules older than their source: the edit would not run."""
    from surealived.compiled import stale_modules

    stale = stale_modules()
    if stale:
        pytest.exit(f"compiled before their last edit: {', '.join(stale)}; build them again "
                    "(pip install -e .) or remove their .so files to run them as Python",
                    returncode=4)
