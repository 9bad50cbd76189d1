"""tcp: the real is up when a TCP connection (and TLS, with ``SSL="1"``) can be made."""

from __future__ import annotations

from surealived.engine.fastpath import Exchange
from surealived.tester_api import Probe, Result, Tester


class TcpTester(Tester):
    name = "tcp"
    transport = "tcp"

    async def check(self, probe: Probe) -> Result:
        conn = await probe.connect()
        conn.close()
        return Result.up()

    def fast_exchange(self) -> Exchange:
        """The same check for the engine's fast path: connect, nothing more."""
        return Exchange()
