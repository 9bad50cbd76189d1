"""The keepalive pool: idle connections a check handed back (Lua's ``setkeepalive``) for a later
check to take up (``connect``), as OpenResty's cosocket pool.

Strategy: the pool belongs to the runner (one per daemon, one per ``run_check``), and closes
everything it holds when the runner closes. A connection is filed under a key its user builds
(the bridge: script, parameters, the real's address and port, source, TLS, pool name), so a
connection is only ever handed to a check of the same target; a key's pool is made with a size
(its first ``Park`` fixes it, as OpenResty's, for as long as it holds connections) and loses
its oldest connection when a new one would not fit. The runner's whole pool holds at most
``MAX_IDLE`` connections (the oldest goes first), and each leaves after its idle time (the
runner's timers, so fake time drives them).

While idle, a connection stays in the runner's epoll set with an ``Idle`` as its flight: any
readiness lands in ``Idle.ready``, and a connection the real closed or sent data on is dropped
(for TLS, records without data, session tickets say, are taken in and it stays). A check takes
the newest connection of its key; it is looked at once more (one ``recv``) before it is handed
out, so a connection whose close came in the same loop turn is never reused.
"""

from __future__ import annotations

import _socket
import ssl
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from .requests import Park, Reuse
from .sockets import IOFailure

if TYPE_CHECKING:
    from .flight import Flight, Stream

MAX_IDLE = 256  # idle connections per runner, all keys together
_PEEK = _socket.MSG_PEEK
_CHUNK = 65536

CallLater = Callable[..., Any]


class Spent:
    """What a parked stream leaves in its check's list of sockets: its byte counts (for the
    check's figures), and nothing to close."""

    __slots__ = ("received", "sent")

    def __init__(self, sent: int, received: int) -> None:
        self.sent = sent
        self.received = received

    def close(self) -> None:
        pass


class Idle:
    """One pooled connection. It stands in for the stream's flight while idle: the runner's
    readiness callback looks for ``wait_stream``, ``retry_fn`` and ``ready()`` there."""

    __slots__ = ("coro", "key", "pool", "retry_fn", "reused", "runner", "stream", "target",
                 "timer", "tls", "transcript", "wait_stream")

    def __init__(self, pool: Pool, flight: Flight, stream: Stream, request: Park) -> None:
        self.pool = pool
        self.runner = flight.runner
        self.target = flight.target
        self.stream = self.wait_stream = stream
        self.key = request.key
        self.reused = request.reused
        self.tls = request.tls
        self.coro = None
        self.transcript = None
        self.retry_fn: Any = True  # always "waiting": every readiness is looked at
        self.timer: Any = None

    def ready(self) -> None:
        if state_of(self.stream) != IDLE:
            self.pool.drop(self)


IDLE, DATA, CLOSED = range(3)


def state_of(stream: Stream) -> int:
    """Whether a connection may go idle or stay so: ``IDLE`` (nothing came on it; for TLS, no
    data), ``DATA`` (unread data: TLS data is moved into the stream's buffer) or ``CLOSED``."""
    sock = stream.sock
    if sock is None:
        return CLOSED
    if stream.buffer:
        return DATA
    tls = stream.tls
    if tls is None:
        try:
            return DATA if sock.recv(1, _PEEK) else CLOSED
        except BlockingIOError:
            return IDLE
        except OSError:
            return CLOSED
    assert stream.tls_in is not None
    while True:  # records without data (tickets, key updates) are taken in
        try:
            raw = sock.recv(_CHUNK)
        except BlockingIOError:
            break
        except OSError:
            return CLOSED
        if not raw:
            return CLOSED
        stream.tls_in.write(raw)
    try:
        plain = tls.read(_CHUNK)
    except ssl.SSLWantReadError:
        return IDLE
    except (ssl.SSLError, OSError):
        return CLOSED
    if not plain:
        return CLOSED
    stream.buffer.feed(plain)
    return DATA


class Pool:
    """The runner's idle connections, by key."""

    __slots__ = ("by_key", "call_later", "idle", "max_idle", "sizes")

    def __init__(self, call_later: CallLater, max_idle: int = MAX_IDLE) -> None:
        self.call_later = call_later
        self.max_idle = max_idle
        self.idle: dict[Idle, None] = {}  # every idle connection, oldest first
        self.by_key: dict[tuple[Any, ...], list[Idle]] = {}  # each key's, oldest first
        self.sizes: dict[tuple[Any, ...], int] = {}  # each key's size, fixed when it is made

    def __len__(self) -> int:
        return len(self.idle)

    def park(self, flight: Flight, request: Park) -> int:
        """``request.stream`` into the pool: 1, also for a connection the real has closed
        (it is closed at once, as OpenResty's pool would on its first event)."""
        stream = request.stream
        if stream.eof:  # read to its end ("*a"): closed, as OpenResty's
            stream.close()
        state = state_of(stream) if not stream.unsent else DATA
        if state == DATA:
            raise IOFailure("pooling the connection: unread data", "connection in dubious state",
                            keep=True)
        if stream.sock is None:
            raise IOFailure("pooling the connection: the connection is closed", "closed")
        streams = flight.streams
        # the check's figures keep the bytes; its end closes nothing
        streams[streams.index(stream)] = Spent(stream.sent, stream.received)
        if state == CLOSED:
            stream.close()
            return 1
        key = request.key
        size = self.sizes.get(key, request.size)
        queue = self.by_key.get(key)
        while queue and len(queue) >= size:  # the key's oldest makes room
            self.drop(queue[0])
            queue = self.by_key.get(key)
        while len(self.idle) >= self.max_idle:
            self.drop(next(iter(self.idle)))
        queue = self.by_key.get(key)
        if queue is None:
            queue = self.by_key[key] = []
            self.sizes[key] = size
        entry = Idle(self, flight, stream, request)
        stream.flight = entry
        queue.append(entry)
        self.idle[entry] = None
        entry.timer = self.call_later(request.seconds, self.drop, entry)
        return 1

    def reuse(self, flight: Flight, request: Reuse) -> tuple[Stream, int, Any] | None:
        """The newest live connection of ``request.key``, now ``flight``'s (the ones found
        dead on the way are dropped)."""
        queue = self.by_key.get(request.key)
        while queue:
            entry = queue[-1]
            stream = entry.stream
            if state_of(stream) != IDLE:
                self.drop(entry)
                queue = self.by_key.get(request.key)
                continue
            self.forget(entry)
            stream.flight = flight
            stream.sent = stream.received = 0
            stream.readable = True  # events may have come while idle: look again
            flight.streams.append(stream)
            if not flight.connected:
                flight.connected = flight.runner.clock()
            if flight.transcript is not None:
                flight.transcript.note(f"connection from the keepalive pool, reused "
                                       f"{entry.reused + 1} times")
            return stream, entry.reused + 1, entry.tls
        return None

    def forget(self, entry: Idle) -> None:
        """Take ``entry`` out of the pool (its stream stays open)."""
        if entry.timer is not None:
            entry.timer.cancel()
            entry.timer = None
        if entry in self.idle:
            del self.idle[entry]
            queue = self.by_key[entry.key]
            queue.remove(entry)
            if not queue:
                del self.by_key[entry.key]
                del self.sizes[entry.key]

    def drop(self, entry: Idle) -> None:
        """Close ``entry``'s connection and take it out of the pool."""
        self.forget(entry)
        entry.stream.close()

    def close(self) -> None:
        for entry in list(self.idle):
            self.drop(entry)


def serve_reuse(flight: Flight, request: Reuse) -> Any:
    return flight.runner.pool.reuse(flight, request)


def serve_park(flight: Flight, request: Park) -> Any:
    return flight.runner.pool.park(flight, request)
