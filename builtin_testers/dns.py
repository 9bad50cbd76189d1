"""dns: a query (SOA by default) for ``request`` sent to the real; up when it holds answers."""

from __future__ import annotations

from surealived.tester_api import Attr, Probe, Result, Tester


class DnsTester(Tester):
    name = "dns"
    transport = "udp"
    attributes = (
        Attr("request", "str", mandatory=True, limit=253, help="domain to query"),
        Attr("qtype", "choice", "soa", choices=("soa", "a", "aaaa", "ns", "mx", "txt", "cname",
                                                  "ptr", "srv"), help="query type"),
        Attr("expect", "str", None, limit=255, help="text one answer must contain"),
    )

    async def check(self, probe: Probe) -> Result:
        raise NotImplementedError
