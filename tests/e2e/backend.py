#!/usr/bin/env python3
"""An HTTP backend for the end-to-end test: every request gets 200 and the backend's name.

    backend.py NAME [PORT]          (listens on 0.0.0.0, so it also answers a DR VIP on lo)

The body is ``NAME client=<peer address> local=<address the request came to>``: the client can
tell which backend answered, and whether NAT kept the client's address. ``socketserver``
rather than ``http.server.HTTPServer``: the latter does a reverse DNS lookup when it binds,
which stalls for seconds in a network namespace with a default route and no DNS. HTTP/1.0, so
one request per TCP connection (IPVS weight changes only affect new connections).
"""

from __future__ import annotations

import http.server
import socketserver
import sys


def handler_for(name: str) -> type[http.server.BaseHTTPRequestHandler]:
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            local = self.connection.getsockname()[0]
            body = f"{name} client={self.client_address[0]} local={local}\n".encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            pass

    return Handler


def main() -> None:
    name = sys.argv[1]
    port = int(sys.argv[2]) if len(sys.argv) > 2 else 80
    socketserver.TCPServer.allow_reuse_address = True
    with socketserver.TCPServer(("0.0.0.0", port), handler_for(name)) as server:
        print(f"backend {name} listening on port {port}", flush=True)
        server.serve_forever()


if __name__ == "__main__":
    main()
