#!/usr/bin/env python3
"""A tiny HTTP backend for the demo: answers every request with 200 and its name.

    backend.py NAME PORT [ADDR ...]     (default addresses: 127.0.0.1 and ::1)
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import sys


async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, name: str) -> None:
    try:
        await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
        body = f"ok {name}\n".encode()
        writer.write(b"HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\nContent-Length: "
                     + str(len(body)).encode() + b"\r\n\r\n" + body)
        await writer.drain()
    except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError):
        pass
    finally:
        writer.close()


async def main(name: str, port: int, addrs: list[str]) -> None:
    servers = []
    for addr in addrs:
        family = socket.AF_INET6 if ":" in addr else socket.AF_INET
        try:
            servers.append(await asyncio.start_server(
                lambda r, w: handle(r, w, name), addr, port, family=family, reuse_address=True))
        except OSError as exc:
            print(f"backend {name}: cannot listen on {addr}:{port}: {exc}", file=sys.stderr)
    if not servers:
        sys.exit(1)
    await asyncio.gather(*(s.serve_forever() for s in servers))


if __name__ == "__main__":
    addresses = sys.argv[3:] or ["127.0.0.1", "::1"]
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(main(sys.argv[1], int(sys.argv[2]), addresses))
