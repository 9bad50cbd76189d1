"""tcp: the real is up when a TCP connection (and TLS, with ``SSL="1"``) can be made."""

from __future__ import annotations

from surealived.tester_api import Probe, Result, Tester

_UP = Result.up()


class TcpTester(Tester):
    name = "tcp"
    transport = "tcp"

    async def check(self, probe: Probe) -> Result:
        conn = await probe.connect()
        conn.close()
        return _UP
