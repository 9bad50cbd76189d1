"""tcp: the real is up when a TCP connection (and TLS, with ``SSL="1"``) can be made.

Half-open by default (``half_open="1"``), as HAProxy's plain check: the real's SYN-ACK proves the
port is open and its kernel answers, and the connection is reset before the real's application
accepts it, so the check costs the real nothing above its kernel. ``half_open="0"`` completes the
handshake (the application's listen queue must take the connection; with TLS, the handshake is
made either way).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from mypy_extensions import mypyc_attr

from surealived.tester_api import Attr, Probe, Result, Tester

_UP = Result.up()


@mypyc_attr(allow_interpreted_subclasses=True)  # a tester of the operator's may build on it
class TcpTester(Tester):
    name = "tcp"
    transport = "tcp"
    attributes = (
        Attr("half_open", "bool", True,
             help="reset the connection at the real's SYN-ACK, before its application sees it"),
    )

    def __init__(self, settings: Mapping[str, Any]) -> None:
        super().__init__(settings)
        self.half_open: bool = settings.get("half_open", True)

    async def check(self, probe: Probe) -> Result:
        conn = await probe.connect(hold_ack=self.half_open)
        conn.close()
        return _UP
