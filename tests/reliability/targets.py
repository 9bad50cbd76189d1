"""Misbehaving targets on many loopback addresses, served from a background thread: each mode
listens on one port of a range of 127.x.y.z addresses, so every real is a distinct
(address, port) and the daemon cannot share one probe between them.

Modes: good (an HTTP 200), silent (accept, read, never answer), reset (accept, then RST),
drip (an HTTP status one byte every 0.5 s), endless (a 200 then an endless body), tls_garbage
(answer a ClientHello with junk)."""

from __future__ import annotations

import asyncio
import contextlib
import resource
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field

from tests.servers import misbehave

MODES = ("good", "silent", "reset", "drip", "endless", "tls_garbage")


GOOD_REPLY = b"HTTP/1.0 200 OK\r\nContent-Length: 3\r\n\r\nok\n"


async def _serve(mode: str, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        await misbehave("http" if mode == "good" else mode, GOOD_REPLY, reader, writer)
    except (ConnectionError, asyncio.CancelledError):
        pass
    finally:
        writer.transport.abort()


@dataclass
class Targets:
    """Where each mode listens: ``addresses[mode]`` (all on ``port``)."""

    port: int
    addresses: dict[str, list[str]] = field(default_factory=dict)
    accepted: dict[str, int] = field(default_factory=dict)


def raise_nofile(wanted: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < wanted:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(wanted, hard), hard))


def _free_port_on(addresses: list[str]) -> int:
    """A port free on every address (tried by binding them all)."""
    for _ in range(50):
        with socket.socket() as probe:
            probe.bind((addresses[0], 0))
            port = probe.getsockname()[1]
        socks = []
        try:
            for addr in addresses:
                s = socket.socket()
                socks.append(s)
                s.bind((addr, port))
            return int(port)
        except OSError:
            continue
        finally:
            for s in socks:
                s.close()
    raise RuntimeError("no port free on every address")


@contextlib.contextmanager
def serve_targets(per_mode: dict[str, int], base: int = 1) -> Iterator[Targets]:
    """Start the servers: ``per_mode[mode]`` addresses each, ``127.<base+i>.<hi>.<lo>``."""
    total = sum(per_mode.values())
    raise_nofile(total * 3 + 1024)
    addresses = {}
    for i, (mode, count) in enumerate(per_mode.items()):
        addresses[mode] = [f"127.{base + i}.{(n + 1) // 250}.{(n + 1) % 250 + 1}"
                           for n in range(count)]
    port = _free_port_on([a for addrs in addresses.values() for a in addrs])
    targets = Targets(port, addresses, dict.fromkeys(per_mode, 0))
    loop = asyncio.new_event_loop()
    ready = threading.Event()
    servers: list[asyncio.Server] = []
    failure: list[BaseException] = []

    async def start() -> None:
        for mode, addrs in addresses.items():
            def handler(r: asyncio.StreamReader, w: asyncio.StreamWriter,
                        mode: str = mode) -> asyncio.Task[None]:
                targets.accepted[mode] += 1
                return asyncio.ensure_future(_serve(mode, r, w))
            servers.append(await asyncio.start_server(handler, addrs, port, backlog=1024))

    def run() -> None:
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(start())
        except BaseException as exc:  # reported to the test thread
            failure.append(exc)
            ready.set()
            return
        ready.set()
        loop.run_forever()

    thread = threading.Thread(target=run, name="targets", daemon=True)
    thread.start()
    ready.wait(60)
    if failure:
        raise failure[0]
    try:
        yield targets
    finally:
        async def stop() -> None:
            for server in servers:
                server.close()
            for task in asyncio.all_tasks():
                if task is not asyncio.current_task():
                    task.cancel()
            await asyncio.sleep(0.1)
        asyncio.run_coroutine_threadsafe(stop(), loop).result(30)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(30)
        loop.close()
