"""http: one request, the status line judged against ``retcode`` (and optionally the body)."""

from __future__ import annotations

from surealived.tester_api import Attr, Probe, Result, Tester


class HttpTester(Tester):
    name = "http"
    transport = "tcp"
    attributes = (
        Attr("url", "str", mandatory=True, limit=8192, help="request target, e.g. /health"),
        Attr("host", "str", mandatory=True, limit=255, help="Host header (and default SNI)"),
        Attr("naive", "bool", True, help="judge on the status line only (no body read)"),
        Attr("retcode", "statuslist", "200", help="accepted status codes: 200 or 200,301-302"),
        Attr("method", "choice", "get", choices=("get", "head", "post", "options"),
             help="request method"),
        Attr("http11", "bool", False, help="send HTTP/1.1 with Connection: close"),
        Attr("body_match", "regex", None, help="regular expression the body must match"),
        Attr("max_body", "uint", 65536, minimum=1, limit=16 << 20,
             help="bytes of body read at most"),
    )

    async def check(self, probe: Probe) -> Result:
        raise NotImplementedError
