"""A third-party tester as the README shows one, loaded from ``modules_path`` by the engine
bench: the http tester's naive exchange (connect, the request, the 12 bytes of the status line),
written with nothing but ``surealived.tester_api``."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from surealived.tester_api import Attr, Probe, ProbeError, Result, Tester


class BenchHttpTester(Tester):
    name = "bench_http"
    attributes = (Attr("url", "str", "/"), Attr("host", "str", "localhost"))

    def __init__(self, settings: Mapping[str, Any]) -> None:
        super().__init__(settings)
        self.request = (f"GET {settings['url']} HTTP/1.0\r\nHost: {settings['host']}\r\n"
                        "User-Agent: SureAliveD\r\n\r\n").encode()

    async def check(self, probe: Probe) -> Result:
        conn = await probe.connect(hold_ack=True)  # we speak first, as the http tester
        await conn.send(self.request)
        head = await conn.receive_exactly(12, what="the status line")
        if not head.startswith(b"HTTP/1.") or head[9:12] != b"200":
            raise ProbeError(f"not a 200 status line: {head!r}")
        return Result.up()
