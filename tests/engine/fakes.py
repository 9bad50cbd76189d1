"""Fake time for scheduler tests: a clock and a sleep that jump instead of waiting."""

from __future__ import annotations

import asyncio
import heapq
import itertools
from typing import Any

from surealived.engine.state import CheckTiming
from surealived.registry import load_testers
from surealived.tester_api import Result, Target, Tester
from surealived.xmlconfig import parse_config_bytes

REGISTRY = load_testers()


def config_from(xml: str) -> Any:
    return parse_config_bytes(xml.encode(), "/tmp/test.xml", REGISTRY)


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


class FakeRunner:
    """Stands in for ``run_check``: records each start, answers after ``duration`` fake
    seconds with ``verdicts[rname]`` (up by default)."""

    def __init__(self, time: FakeTime, duration: float = 0.0) -> None:
        self.time = time
        self.duration = duration
        self.starts: list[tuple[str, str, float]] = []  # (vname, rname, time)
        self.verdicts: dict[str, bool] = {}

    async def __call__(self, tester: Tester, target: Target, settings: Any,
                       *, transcript: Any = None) -> tuple[Result, CheckTiming]:
        self.starts.append((target.vname, target.rname, self.time.now))
        if self.duration:
            await self.time.sleep(self.duration)
        ok = self.verdicts.get(target.rname, True)
        return (Result.up() if ok else Result.down("scripted failure")), CheckTiming()
