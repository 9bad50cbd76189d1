"""Fake time for scheduler tests: a clock and a sleep that jump instead of waiting."""

from __future__ import annotations

import asyncio
import heapq
import itertools
from collections.abc import Callable
from typing import Any

from surealived.config.xml import parse_config_bytes
from surealived.registry import Registry, load_testers
from surealived.tester_api import Probe, Result, Tester

REGISTRY = load_testers()


def config_from(xml: str) -> Any:
    return parse_config_bytes(xml.encode(), "/tmp/test.xml", REGISTRY)


class Timer:
    """A handle of ``FakeTime.call_later``."""

    def __init__(self, callback: Callable[..., Any], args: tuple[Any, ...]) -> None:
        self.callback: Callable[..., Any] | None = callback
        self.args = args

    def cancel(self) -> None:
        self.callback = None

    def fire(self, _future: asyncio.Future[None]) -> None:
        if self.callback is not None:
            self.callback(*self.args)


class FakeTime:
    """``clock()`` and ``sleep()`` for the engine; ``run_until(t)`` lets fake time pass,
    waking sleepers in order once the loop has nothing else to do."""

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start
        self._sleepers: list[tuple[float, int, asyncio.Future[None]]] = []
        self._seq = itertools.count()

    def clock(self) -> float:
        return self.now

    async def sleep(self, delay: float) -> None:
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._sleepers, (self.now + max(delay, 0.0), next(self._seq), future))
        await future

    def call_later(self, delay: float, callback: Callable[..., Any], *args: Any) -> Timer:
        """A timer of the runner's (a sleep, a deadline), in fake time."""
        timer = Timer(callback, args)
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        future.add_done_callback(timer.fire)
        heapq.heappush(self._sleepers, (self.now + max(delay, 0.0), next(self._seq), future))
        return timer

    async def settle(self) -> None:
        for _ in range(50):
            await asyncio.sleep(0)

    async def run_until(self, until: float) -> None:
        while True:
            await self.settle()
            if not self._sleepers or self._sleepers[0][0] > until:
                self.now = max(self.now, until)
                return
            when, _, future = heapq.heappop(self._sleepers)
            self.now = max(self.now, when)
            if not future.done():
                future.set_result(None)


class ScriptedChecks:
    """Checks in fake time, on the engine's own runner: a tester (``tester_class``) that
    records each start and answers after ``duration`` fake seconds (a ``probe.sleep``) with
    ``verdicts[rname]`` (up by default)."""

    def __init__(self, time: FakeTime, duration: float = 0.0) -> None:
        self.time = time
        self.duration = duration
        self.starts: list[tuple[str, str, float]] = []  # (vname, rname, time)
        self.verdicts: dict[str, bool] = {}

    def tester_class(self) -> type[Tester]:
        checks = self

        class Scripted(Tester):
            name = "tcp"

            async def check(self, probe: Probe) -> Result:
                target = probe.target
                checks.starts.append((target.vname, target.rname, checks.time.now))
                if checks.duration:
                    await probe.sleep(checks.duration)
                if checks.verdicts.get(target.rname, True):
                    return Result.up()
                return Result.down("scripted failure")

        return Scripted

    def registry(self) -> Registry:
        """The built-in testers, with ``tcp`` answered by this script."""
        registry = Registry(dict(REGISTRY.testers), dict(REGISTRY.origins))
        registry.testers["tcp"] = self.tester_class()
        return registry
