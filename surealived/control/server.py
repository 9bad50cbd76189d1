"""The control port's asyncio adapter: sockets in, ``protocol.execute`` per line, bytes out.

Budgets, each without harm to other clients: at most ``control_max_clients`` connections per
listener (one more is told so in one line and closed); a connection that has sent no complete
line for ``control_idle_timeout`` seconds is closed (bytes dripped without a newline do not
count); a line over 8 KiB gets one error line and the connection is closed (there is no safe
place to resynchronise in the middle of a line); a client that does not read its responses is
not read from until it does (asyncio flow control), so pipelined commands queue in its own socket.

Listeners: TCP on ``listen_addr:listen_port`` always (read-only with ``control_tcp_readonly``),
and with ``control_socket`` a Unix socket beside it, whose file mode and group decide who may
connect (HAProxy's stats socket model); its peer is named by uid (``SO_PEERCRED``). Each listener
has its own client budget, so that TCP clients cannot lock the socket's users out.
"""

from __future__ import annotations

import asyncio
import contextlib
import grp
import logging
import os
import socket
import stat
import struct
from collections import deque
from typing import TYPE_CHECKING, Any, cast

from ..errors import ControlError
from .process import read_process_info
from .protocol import MAX_LINE, Context, LineReader, LineTooLong, error_lines, execute

if TYPE_CHECKING:
    from ..components import DaemonView

log = logging.getLogger("surealived.control")


def context_for(daemon: DaemonView, peer: str = "?", read_only: bool = False) -> Context:
    """What a command sees of the daemon (read afresh for every command, so a reload shows)."""
    return Context(
        state=daemon.state,
        maincfg=daemon.maincfg,
        process=read_process_info,
        request_reload=daemon.request_reload,
        peer=peer,
        read_only=read_only,
    )


def peer_name(transport: asyncio.BaseTransport) -> str:
    """``ADDR:PORT`` of a TCP client, ``uid N pid P (socket)`` of a Unix socket client."""
    peer = transport.get_extra_info("peername")
    if isinstance(peer, tuple) and peer:
        return f"{peer[0]}:{peer[1]}"
    sock = transport.get_extra_info("socket")
    try:
        creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    except (AttributeError, OSError):
        return "? (socket)"
    pid, uid, _gid = struct.unpack("3i", creds)
    return f"uid {uid} pid {pid} (socket)"


class ControlProtocol(asyncio.Protocol):
    """One client connection."""

    def __init__(self, server: ControlServer, clients: set[ControlProtocol] | None = None,
                 read_only: bool = False) -> None:
        self.server = server
        self.clients = server.clients if clients is None else clients
        self.read_only = read_only
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
        self.peer = peer_name(transport)
        limit = self.server.max_clients
        if len(self.clients) >= limit:
            log.warning("Control client %s refused: %d clients already connected",
                        self.peer, limit)
            self.send(error_lines(ControlError(
                "cmd_connect", f"too many clients (limit {limit}); try again later")))
            self.transport.close()
            return
        self.clients.add(self)
        self.touch()

    def data_received(self, data: bytes) -> None:
        if self.discarding:
            return
        try:
            lines = self.reader.feed(data)
        except LineTooLong:
            log.warning("Control client %s sent a line over %d bytes; closing", self.peer,
                        MAX_LINE)
            self.pending.clear()
            self.send(error_lines(ControlError(
                "", f"Invalid request! line longer than {MAX_LINE} bytes; closing")))
            self.close_after_discard()
            return
        if lines:  # only a whole line counts as activity: a byte-a-minute client is idle
            self.pending.extend(lines)
            self.touch()
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
        self.clients.discard(self)
        if self.idle_timer is not None:
            self.idle_timer.cancel()
            self.idle_timer = None
        self.transport = None

    # -- work --
    def run_pending(self) -> None:
        """Every complete line in order, until the client stops reading its responses."""
        while self.pending and not self.writing_paused and self.transport is not None:
            line = self.pending.popleft()
            self.send(self.server.execute(line, self.peer, self.read_only))
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
        self.daemon: DaemonView  # set by start()
        self.server: asyncio.Server | None = None
        self.unix_server: asyncio.Server | None = None
        self.clients: set[ControlProtocol] = set()
        self.unix_clients: set[ControlProtocol] = set()
        self.bound: tuple[str, int, str, int, str, bool] | None = None

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

    def execute(self, line: str, peer: str = "?", read_only: bool = False) -> list[str]:
        try:
            return execute(line, context_for(self.daemon, peer, read_only))
        except Exception:  # a bug or a failing listener must not take the port down
            log.exception("Control command failed: %r", line[:200])
            name = line.split()[0] if line.split() else ""
            return error_lines(ControlError(f"cmd_{name}", "internal error (see the log)"))

    @staticmethod
    def listening(cfg: Any) -> tuple[str, int, str, int, str, bool]:
        return (cfg.listen_addr, cfg.listen_port, cfg.control_socket, cfg.control_socket_mode,
                cfg.control_socket_group, cfg.control_tcp_readonly)

    async def start(self, daemon: DaemonView) -> None:
        self.daemon = daemon
        cfg = daemon.maincfg
        self.bound = self.listening(cfg)
        loop = asyncio.get_running_loop()
        read_only = bool(cfg.control_tcp_readonly)
        try:
            self.server = await loop.create_server(
                lambda: ControlProtocol(self, self.clients, read_only), cfg.listen_addr,
                cfg.listen_port, reuse_address=True, backlog=16)
        except OSError as exc:
            raise OSError(exc.errno, f"unable to bind the control port to [{cfg.listen_addr}]:"
                                     f"{cfg.listen_port}: {exc.strerror or exc}") from None
        # After the bind, so that listen_port 0 logs the port it got.
        log.info("Binding cmd interface to [%s:%d]%s", *self.address,
                 " (read-only)" if read_only else "")
        if cfg.control_socket:
            await self.start_unix(cfg)

    async def start_unix(self, cfg: Any) -> None:
        path = cfg.control_socket
        gid = -1
        if cfg.control_socket_group:
            try:
                gid = grp.getgrnam(cfg.control_socket_group).gr_gid
            except KeyError:
                raise OSError(0, f"control_socket_group {cfg.control_socket_group!r}: no such "
                                 "group (valid: a group name of this host)") from None
        try:  # a socket file left by a crash; the instance lock says it is no one's now
            if stat.S_ISSOCK(os.lstat(path).st_mode):
                os.unlink(path)
        except FileNotFoundError:
            pass
        loop = asyncio.get_running_loop()
        # The mode is set on the bound file before anyone can connect: the umask narrows the
        # file at bind(), then chmod widens it to exactly control_socket_mode.
        old_umask = os.umask(0o177)
        try:
            self.unix_server = await loop.create_unix_server(
                lambda: ControlProtocol(self, self.unix_clients), path, backlog=16)
            os.chown(path, -1, gid)
            os.chmod(path, cfg.control_socket_mode)
        except OSError as exc:
            raise OSError(exc.errno, f"control_socket {path}: {exc.strerror or exc}") from None
        finally:
            os.umask(old_umask)
        log.info("Binding cmd interface to %s (mode %04o%s)", path, cfg.control_socket_mode,
                 f", group {cfg.control_socket_group}" if cfg.control_socket_group else "")

    async def reloaded(self, daemon: DaemonView) -> None:
        self.daemon = daemon
        if self.listening(daemon.maincfg) != self.bound:
            await self.stop(daemon)
            await self.start(daemon)

    async def stop(self, daemon: DaemonView) -> None:
        for server, clients in ((self.server, self.clients),
                                (self.unix_server, self.unix_clients)):
            if server is None:
                continue
            server.close()
            for client in list(clients):
                client.close()
            await server.wait_closed()
        if self.unix_server is not None and self.bound and self.bound[2]:
            with contextlib.suppress(OSError):
                os.unlink(self.bound[2])
        self.server = self.unix_server = None

