"""The probe layer: what a tester talks to the real through, and ``run_check`` to run one check.

Strategy: ``run_check(tester, target)`` makes a ``CheckProbe``, runs ``tester.check(probe)`` under
one deadline (``target.timeout``) and turns whatever happens into a ``Result`` and a
``CheckTiming``: a timeout, an ``OSError`` or a ``ProbeError`` is "down" with a short reason naming
the step ("connect: connection refused", "timeout after 5s waiting for the status line"); any other
exception is a bug in the tester, logged with its traceback once and counted as down.

Connections are raw non-blocking sockets driven by ``loop.sock_*`` (no streams: this is the hot
path of tens of thousands of checks a second). TCP sockets close with an RST (``SO_LINGER`` 0) as
the original did, so no TIME_WAIT piles up on the checker. TLS runs on memory BIOs over the same
socket. A source address (``bindaddr``) is bound with ``IP_BIND_ADDRESS_NO_PORT`` so it does not
reserve an ephemeral port per check. With a ``Transcript``, every chunk sent and received is
recorded in the original's debugcomm format.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import socket
import ssl
import struct
import time
from collections.abc import Awaitable, Callable, Mapping
from datetime import datetime
from functools import lru_cache
from typing import Any

from ..tester_api import ProbeError, Result, Target, Tester
from .buffer import ReceiveBuffer
from .state import CheckTiming

log = logging.getLogger("surealived")

IP_BIND_ADDRESS_NO_PORT = getattr(socket, "IP_BIND_ADDRESS_NO_PORT", 24)
_LINGER_RST = struct.pack("ii", 1, 0)
_CHUNK = 65536
_TRANSCRIPT_LIMIT = 1 << 20


class Transcript:
    """A conversation in the original's debugcomm format: ``[time]  sd_write ->`` + data + ``\\n``.

    Bounded to about 1 MiB; ``render()`` gives the file's bytes."""

    __slots__ = ("chunks", "size", "truncated")

    def __init__(self) -> None:
        self.chunks: list[bytes] = []
        self.size = 0
        self.truncated = False

    def add(self, tag: str, data: bytes) -> None:
        if self.truncated:
            return
        stamp = datetime.now().strftime("%Y-%m-%d %H:%M:%S.%f")
        entry = f"[{stamp}]  {tag}\n".encode() + data + b"\n"
        if self.size + len(entry) > _TRANSCRIPT_LIMIT:
            self.truncated = True
            entry = f"[{stamp}]  (transcript truncated at {_TRANSCRIPT_LIMIT} bytes)\n".encode()
        self.chunks.append(entry)
        self.size += len(entry)

    def note(self, text: str) -> None:
        self.add("note:", text.encode("utf-8", "replace"))

    def render(self) -> bytes:
        return b"".join(self.chunks)

    def save(self, path: str) -> None:
        """Replace ``path`` with this transcript (the file holds the last check only)."""
        with open(path, "wb") as handle:
            handle.write(self.render())


@lru_cache(maxsize=64)
def tls_context(verify: bool, cafile: str | None) -> ssl.SSLContext:
    """One client context per (verify, CA file), as the original had one global context."""
    if verify:
        context = ssl.create_default_context(cafile=cafile)
    else:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


def describe_oserror(step: str, exc: OSError) -> str:
    """``connect: connection refused``; TLS verification errors keep OpenSSL's words."""
    if isinstance(exc, ssl.SSLCertVerificationError):
        return f"{step}: certificate verify failed: {exc.verify_message}"
    if isinstance(exc, ssl.SSLError):
        text = str(exc.reason or exc.strerror or exc).lower().replace("_", " ")
        return f"{step}: {text}"
    text = (os.strerror(exc.errno) if exc.errno else "") or exc.strerror or str(exc) or repr(exc)
    return f"{step}: {text[:1].lower()}{text[1:]}"


def _family(addr: str) -> socket.AddressFamily:
    return socket.AF_INET6 if ":" in addr else socket.AF_INET


def _new_socket(target: Target, kind: socket.SocketKind) -> socket.socket:
    family = _family(target.addr)
    sock = socket.socket(family, kind | socket.SOCK_NONBLOCK)
    try:
        if kind == socket.SOCK_STREAM:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_RST)
        if target.bindaddr:
            if _family(target.bindaddr) != family:
                raise ProbeError(f"bindaddr {target.bindaddr} and real {target.addr} are of "
                                 "different address families")
            if kind == socket.SOCK_STREAM:
                sock.setsockopt(socket.SOL_IP, IP_BIND_ADDRESS_NO_PORT, 1)
            sock.bind((target.bindaddr, 0))
    except BaseException:
        sock.close()
        raise
    return sock


class TcpConnection:
    """A stream to the real (``tester_api.Connection``), optionally wrapped in TLS."""

    def __init__(self, probe: CheckProbe, sock: socket.socket,
                 buffer: ReceiveBuffer | None = None, eof: bool = False) -> None:
        """``buffer`` and ``eof``: what was read so far, for a stream begun elsewhere (the fast
        path hands a Lua check over with its connection)."""
        self.probe = probe
        self.sock = sock
        self.loop = probe.loop
        self.bytes_sent = 0
        self.bytes_received = 0
        self._buffer = ReceiveBuffer() if buffer is None else buffer
        self._eof = eof
        self._tls: ssl.SSLObject | None = None
        self._tls_in: ssl.MemoryBIO | None = None
        self._tls_out: ssl.MemoryBIO | None = None

    # -- raw I/O, TLS aware --------------------------------------------------------------
    async def _flush_tls(self) -> None:
        assert self._tls_out is not None
        pending = self._tls_out.read()
        if pending:
            await self.loop.sock_sendall(self.sock, pending)

    async def _read_chunk(self, tag: str) -> bytes:
        """One chunk of plain data from the peer; b"" at end of stream."""
        if self._tls is None:
            data = await self.loop.sock_recv(self.sock, _CHUNK)
        else:
            data = await self._tls_read()
        if data:
            self.bytes_received += len(data)
            if self.probe.transcript is not None:
                self.probe.transcript.add(tag, data)
        return data

    async def _tls_read(self) -> bytes:
        assert self._tls is not None and self._tls_in is not None
        while True:
            try:
                return self._tls.read(_CHUNK)
            except ssl.SSLWantReadError:
                await self._flush_tls()
                raw = await self.loop.sock_recv(self.sock, _CHUNK)
                if not raw:
                    self._tls_in.write_eof()
                else:
                    self._tls_in.write(raw)
            except (ssl.SSLZeroReturnError, ssl.SSLEOFError):
                return b""

    async def _fill(self, tag: str, what: str) -> None:
        """Read one more chunk into the buffer; ProbeError at end of stream."""
        if self._eof:
            raise ProbeError(self._closed_reason(what))
        self.probe.step = f"waiting for {what}"
        data = await self._read_chunk(tag)
        if not data:
            self._eof = True
            raise ProbeError(self._closed_reason(what))
        self._buffer.feed(data)

    def _closed_reason(self, what: str) -> str:
        got = f" after {self.bytes_received} bytes" if self.bytes_received else ""
        return f"connection closed by the real{got} while waiting for {what}"

    # -- the Connection protocol -----------------------------------------------------------
    async def send(self, data: bytes) -> None:
        self.probe.step = "sending"
        if self.probe.transcript is not None:
            self.probe.transcript.add("sd_write ->", data)
        if self._tls is None:
            await self.loop.sock_sendall(self.sock, data)
        else:
            self._tls.write(data)
            await self._flush_tls()
        self.bytes_sent += len(data)

    async def receive_exactly(self, n: int, *, what: str = "") -> bytes:
        while (piece := self._buffer.maybe_extract_exactly(n)) is None:
            await self._fill("sd_read <-", what or f"{n} bytes")
        return piece

    async def receive_line(self, limit: int = 65536, *, what: str = "") -> bytes:
        while (piece := self._buffer.maybe_extract_line(limit)) is None:
            await self._fill("sd_read <-", what or "a line")
        return piece

    async def receive_until(self, delimiter: bytes, limit: int = 65536, *,
                            what: str = "") -> bytes:
        while (piece := self._buffer.maybe_extract_until(delimiter, limit)) is None:
            await self._fill("sd_read <-", what or repr(delimiter))
        return piece

    async def receive_some(self, limit: int = 65536, *, what: str = "") -> bytes:
        piece = self._buffer.maybe_extract_at_most(limit)
        if piece is not None:
            return piece
        if self._eof:
            return b""
        self.probe.step = f"waiting for {what or 'data'}"
        data = await self._read_chunk("sd_read_av <-")
        if not data:
            self._eof = True
            return b""
        self._buffer.feed(data)
        return self._buffer.maybe_extract_at_most(limit) or b""

    async def receive_all(self, limit: int = 1 << 20, *, what: str = "") -> bytes:
        while not self._eof:
            if len(self._buffer) > limit:
                raise ProbeError(f"more than {limit} bytes while waiting for "
                                 f"{what or 'the end of the reply'}")
            self.probe.step = f"waiting for {what or 'the end of the reply'}"
            data = await self._read_chunk("sd_eof <-")
            if data:
                self._buffer.feed(data)
            else:
                self._eof = True
        if len(self._buffer) > limit:
            raise ProbeError(f"more than {limit} bytes while waiting for "
                             f"{what or 'the end of the reply'}")
        return self._buffer.extract_rest()

    async def start_tls(self, sni: str | None = None, verify: bool = False) -> None:
        """TLS handshake on this connection (the engine calls it itself when SSL="1")."""
        if self._tls is not None:
            raise ProbeError("TLS is already on")
        target = self.probe.target
        self.probe.step = "TLS handshake"
        context = tls_context(verify, target.ssl_ca if verify else None)
        hostname = sni or (target.addr if verify else None)
        self._tls_in, self._tls_out = ssl.MemoryBIO(), ssl.MemoryBIO()
        self._tls = context.wrap_bio(self._tls_in, self._tls_out, server_hostname=hostname)
        if self._buffer:  # bytes that came before STARTTLS belong to the handshake
            self._tls_in.write(self._buffer.extract_rest())
        while True:
            try:
                self._tls.do_handshake()
                break
            except ssl.SSLWantReadError:
                await self._flush_tls()
                raw = await self.loop.sock_recv(self.sock, _CHUNK)
                if not raw:
                    raise ProbeError("TLS handshake: connection closed by the real") from None
                self._tls_in.write(raw)
        await self._flush_tls()
        if self.probe.transcript is not None:
            self.probe.transcript.note(f"TLS {self._tls.version()} {self._tls.cipher()}")

    def close(self) -> None:
        self.sock.close()


class UdpDatagram:
    """A connected UDP socket to the real (``tester_api.Datagram``)."""

    def __init__(self, probe: CheckProbe, sock: socket.socket) -> None:
        self.probe = probe
        self.sock = sock
        self.bytes_sent = 0
        self.bytes_received = 0

    async def send(self, data: bytes) -> None:
        self.probe.step = "sending"
        if self.probe.transcript is not None:
            self.probe.transcript.add("sd_write ->", data)
        await self.probe.loop.sock_sendall(self.sock, data)
        self.bytes_sent += len(data)

    async def receive(self, limit: int = 65536, *, what: str = "") -> bytes:
        self.probe.step = f"waiting for {what or 'a reply'}"
        data = await self.probe.loop.sock_recv(self.sock, limit)
        self.bytes_received += len(data)
        if self.probe.transcript is not None:
            self.probe.transcript.add("sd_read <-", data)
        return data

    def close(self) -> None:
        self.sock.close()


class CheckProbe:
    """What one check gets (``tester_api.Probe``): the target, the settings, and connections."""

    def __init__(self, target: Target, settings: Mapping[str, Any],
                 transcript: Transcript | None = None,
                 loop: asyncio.AbstractEventLoop | None = None) -> None:
        self.target = target
        self.settings = settings
        self.transcript = transcript
        self.loop = loop or asyncio.get_running_loop()
        self.step = "starting"
        self.started = time.monotonic()
        self.connected: float | None = None
        self.open: list[TcpConnection | UdpDatagram] = []

    async def connect(self) -> TcpConnection:
        """A TCP connection to the real's test port, in TLS when the tester says SSL="1"."""
        target = self.target
        self.step = "connecting"
        sock = _new_socket(target, socket.SOCK_STREAM)
        conn = TcpConnection(self, sock)
        self.open.append(conn)
        try:
            await self._connect(sock, (target.addr, target.port))
        except OSError as exc:
            raise ProbeError(describe_oserror("connect", exc)) from exc
        if target.ssl:
            sni = target.sni or self.settings.get("host") or None
            try:
                await conn.start_tls(sni, target.ssl_verify)
            except OSError as exc:
                raise ProbeError(describe_oserror("TLS handshake", exc)) from exc
        if self.connected is None:
            self.connected = time.monotonic()
        return conn

    async def _connect(self, sock: socket.socket, address: tuple[str, int]) -> None:
        # connect_ex + one writer callback: half the CPU of loop.sock_connect on this hot path
        # (no address resolution, no extra future plumbing); loopback often connects at once.
        err = sock.connect_ex(address)
        if err == errno.EINPROGRESS:
            loop = self.loop
            connected: asyncio.Future[None] = loop.create_future()
            fd = sock.fileno()
            loop.add_writer(fd, _wake, connected)
            try:
                await connected
            finally:
                loop.remove_writer(fd)
            err = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        if err:
            raise OSError(err, os.strerror(err))

    async def datagram(self) -> UdpDatagram:
        """A connected UDP socket to the real's test port."""
        target = self.target
        sock = _new_socket(target, socket.SOCK_DGRAM)
        datagram = UdpDatagram(self, sock)
        self.open.append(datagram)
        try:
            sock.connect((target.addr, target.port))
        except OSError as exc:
            raise ProbeError(describe_oserror("connect", exc)) from exc
        if self.connected is None:
            self.connected = time.monotonic()
        return datagram

    def note(self, text: str) -> None:
        if self.transcript is not None:
            self.transcript.note(text)

    def close(self) -> tuple[int, int]:
        """Close everything still open; returns (bytes sent, bytes received)."""
        sent = received = 0
        for conn in self.open:
            conn.close()
            sent += conn.bytes_sent
            received += conn.bytes_received
        self.open.clear()
        return sent, received


def _wake(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


_reported_bugs: set[tuple[str, str]] = set()


def _tester_bug(tester: Tester, exc: BaseException) -> str:
    where = "?"
    tb = exc.__traceback__
    while tb is not None:
        where = f"{tb.tb_frame.f_code.co_filename}:{tb.tb_lineno}"
        tb = tb.tb_next
    key = (type(tester).__name__, where)
    if key not in _reported_bugs:
        _reported_bugs.add(key)
        log.error("Tester %s raised %r at %s (a bug in the tester; logged once)",
                  tester.name, exc, where, exc_info=exc)
    return f"tester error: {type(exc).__name__}: {exc}"


def _seconds(value: float) -> str:
    return f"{value:g}s"


async def run_check(tester: Tester, target: Target, settings: Mapping[str, Any] | None = None,
                    *, transcript: Transcript | None = None,
                    rest: Callable[[CheckProbe], Awaitable[Result]] | None = None,
                    probe: CheckProbe | None = None, wall: float | None = None
                    ) -> tuple[Result, CheckTiming]:
    """Run one check of ``tester`` against ``target`` under its deadline; never raises (but
    for cancellation).

    ``rest``, ``probe`` and ``wall``: the rest of a check the fast path began (its probe, holding
    the connection made so far, its start time and wall clock); ``rest(probe)`` runs in place of
    ``tester.check(probe)``, within what is left of the deadline."""
    if probe is None:
        probe = CheckProbe(target, tester.settings if settings is None else settings, transcript)
    timing = CheckTiming(started=time.time() if wall is None else wall)
    body = tester.check if rest is None else rest
    problem: str | None = None
    try:
        try:
            async with asyncio.timeout(target.timeout - (time.monotonic() - probe.started)):
                result = await body(probe)
        except TimeoutError:
            result = Result.down(f"timeout after {_seconds(target.timeout)} {probe.step}")
            if probe.connected is None and target.port and tester.transport != "exec":
                problem = "conn"
        except ProbeError as exc:
            result = Result.down(str(exc) or "failed")
            if probe.connected is None and isinstance(exc.__cause__, OSError):
                problem = "rst" if time.monotonic() - probe.started < 1.0 else "arp"
        except OSError as exc:
            result = Result.down(describe_oserror(probe.step, exc))
        except Exception as exc:
            result = Result.down(_tester_bug(tester, exc))
    finally:
        timing.bytes_sent, timing.bytes_received = probe.close()
    ended = time.monotonic()
    connected = probe.connected
    timing.total_us = int((ended - probe.started) * 1e6)
    if connected is not None:
        timing.conn_us = int((connected - probe.started) * 1e6)
        timing.resp_us = int((ended - connected) * 1e6)
    else:
        timing.resp_us = timing.total_us
    timing.problem = problem
    if transcript is not None:
        transcript.note(f"result: {'up' if result.ok else 'down'} {result.reason}".rstrip())
    return result, timing
