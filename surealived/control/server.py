"""The control port's asyncio adapter: sockets in, ``protocol.execute`` per line, bytes out.

Budgets, each without harm to other clients: at most ``control_max_clients`` connections (one
more is told so in one line and closed); a connection idle for ``control_idle_timeout`` seconds
is closed; a line over 8 KiB gets one error line and the connection is closed (there is no safe
place to resynchronise in the middle of a line); a client that does not read its responses is
not read from until it does (asyncio flow control), so pipelined commands queue in its own socket.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from typing import TYPE_CHECKING, Any, cast

from ..errors import ControlError
from .process import read_process_info
from .protocol import MAX_LINE, Context, LineReader, LineTooLong, error_lines, execute

if TYPE_CHECKING:
    from ..daemon import Daemon

log = logging.getLogger("surealived.control")


def context_for(daemon: Any) -> Context:
    """What a command sees of the daemon (read afresh for every command, so a reload shows)."""
    return Context(
        state=daemon.state,
        maincfg=daemon.maincfg,
        process=read_process_info,
        request_reload=getattr(daemon, "request_reload", None),
        watchdog_pid=getattr(daemon, "watchdog_pid", -1),
    )


class ControlProtocol(asyncio.Protocol):
    """One client connection."""

    def __init__(self, server: ControlServer) -> None:
        self.server = server
        # connection
        self.transport: asyncio.Transport | None = None
        self.peer = "?"
        # input: bytes become lines; lines wait here while the client is not reading
        self.reader = LineReader(MAX_LINE)
        self.pending: deque[str] = deque()
        self.writing_paused = False
        self.eof = False
        self.discarding = False  # after a line too long: input is dropped until the close
        # idleness
        self.idle_timer: asyncio.TimerHandle | None = None

    # -- asyncio callbacks --
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses, only alike
        self.transport = cast(asyncio.Transport, transport)
        peer = transport.get_extra_info("peername")
        self.peer = f"{peer[0]}:{peer[1]}" if peer else "?"
        limit = self.server.max_clients
        if len(self.server.clients) >= limit:
            log.warning("Control client %s refused: %d clients already connected",
                        self.peer, limit)
            self.send(error_lines(ControlError(
                "cmd_connect", f"too many clients (limit {limit}); try again later")))
            self.transport.close()
            return
        self.server.clients.add(self)
        self.touch()

    def data_received(self, data: bytes) -> None:
        if self.discarding:
            return
        self.touch()
        try:
            self.pending.extend(self.reader.feed(data))
        except LineTooLong:
            log.warning("Control client %s sent a line over %d bytes; closing", self.peer,
                        MAX_LINE)
            self.pending.clear()
            self.send(error_lines(ControlError(
                "", f"Invalid request! line longer than {MAX_LINE} bytes; closing")))
            self.close_after_discard()
            return
        self.run_pending()

    def close_after_discard(self) -> None:
        # Closing with unread input makes the kernel send a reset, and the client loses the
        # error line: send FIN after it, swallow what is still coming, close soon after.
        assert self.transport is not None
        if not self.transport.can_write_eof():
            self.close()
            return
        self.discarding = True
        self.transport.write_eof()
        asyncio.get_running_loop().call_later(2.0, self.close)

    def pause_writing(self) -> None:
        self.writing_paused = True
        if self.transport is not None:
            self.transport.pause_reading()

    def resume_writing(self) -> None:
        self.writing_paused = False
        if self.transport is not None and not self.transport.is_closing():
            self.transport.resume_reading()
        self.run_pending()

    def eof_received(self) -> bool:
        if self.discarding:
            return False
        # Answer what was already sent (printf 'vlist\n' | nc -N), then close.
        self.eof = True
        self.run_pending()
        return bool(self.pending)  # keep the half-open socket until the queue is answered

    def connection_lost(self, exc: Exception | None) -> None:
        self.server.clients.discard(self)
        if self.idle_timer is not None:
            self.idle_timer.cancel()
            self.idle_timer = None
        self.transport = None

    # -- work --
    def run_pending(self) -> None:
        """Every complete line in order, until the client stops reading its responses."""
        while self.pending and not self.writing_paused and self.transport is not None:
            line = self.pending.popleft()
            self.send(self.server.execute(line))
        if self.eof and not self.pending:
            self.close()

    def send(self, lines: list[str]) -> None:
        if lines and self.transport is not None and not self.transport.is_closing():
            self.transport.write(("\n".join(lines) + "\n").encode("utf-8", errors="replace"))

    def touch(self) -> None:
        if self.idle_timer is not None:
            self.idle_timer.cancel()
        loop = asyncio.get_running_loop()
        self.idle_timer = loop.call_later(self.server.idle_timeout, self.idle)

    def idle(self) -> None:
        log.info("Control client %s idle for %ss; closing", self.peer, self.server.idle_timeout)
        self.close()

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()


class ControlServer:
    """The control port as a daemon Component."""

    def __init__(self) -> None:
        self.daemon: Any = None
        self.server: asyncio.Server | None = None
        self.clients: set[ControlProtocol] = set()
        self.bound: tuple[str, int] | None = None

    @property
    def max_clients(self) -> int:
        return int(self.daemon.maincfg.control_max_clients)

    @property
    def idle_timeout(self) -> float:
        return float(self.daemon.maincfg.control_idle_timeout)

    @property
    def address(self) -> tuple[str, int]:
        """The bound address (the real port when listen_port was 0)."""
        assert self.server is not None and self.server.sockets
        host, port = self.server.sockets[0].getsockname()[:2]
        return host, port

    def execute(self, line: str) -> list[str]:
        try:
            return execute(line, context_for(self.daemon))
        except Exception:  # a bug or a failing listener must not take the port down
            log.exception("Control command failed: %r", line[:200])
            name = line.split()[0] if line.split() else ""
            return error_lines(ControlError(f"cmd_{name}", "internal error (see the log)"))

    async def start(self, daemon: Daemon) -> None:
        self.daemon = daemon
        cfg = daemon.maincfg
        self.bound = (cfg.listen_addr, cfg.listen_port)
        loop = asyncio.get_running_loop()
        try:
            self.server = await loop.create_server(
                lambda: ControlProtocol(self), cfg.listen_addr, cfg.listen_port,
                reuse_address=True, backlog=16)
        except OSError as exc:
            log.error("Unable to bind to socket: [%s:%d] %s", cfg.listen_addr,
                      cfg.listen_port, exc.strerror or exc)
            raise
        # After the bind, so that listen_port 0 logs the port it got.
        log.info("Binding cmd interface to [%s:%d]", *self.address)

    async def reloaded(self, daemon: Daemon) -> None:
        self.daemon = daemon
        cfg = daemon.maincfg
        if (cfg.listen_addr, cfg.listen_port) != self.bound:
            await self.stop(daemon)
            await self.start(daemon)

    async def stop(self, daemon: Daemon) -> None:
        if self.server is None:
            return
        self.server.close()
        for client in list(self.clients):
            client.close()
        await self.server.wait_closed()
        self.server = None

