"""The check runner: every check, of every tester, runs here as a coroutine of requests.

Strategy. A check is ``tester.check(probe)``, a coroutine that awaits requests
(``engine/requests.py``) and nothing else. The runner resumes it with ``coro.send(reply)`` and
serves each request it yields on raw non-blocking sockets registered, edge-triggered, with an
epoll set of its own: the event loop watches that one descriptor, so one callback serves every
socket that is ready. A request that can be answered at once (the bytes are buffered, the socket
has them, the send fits) is answered in the same turn, so a check runs from one readiness to the
next without a task, a future or a timeout scope of its own. The original C program drove its
checks from one epoll loop in the same way.

Deadlines: checks with the same timeout start in order, so one deque per timeout value is sorted
by deadline and one timer sweeps the expired heads. A check past its deadline is abandoned
(its coroutine closed, its sockets and tasks ended) and judged down with what it was waiting for.
Finished checks at the head of a deque leave as the next check of their timeout starts, and keep
nothing alive while they wait there (a garbage collector walking thousands of dead checks
stalled the loop for tens of milliseconds).

Here, once: the reasons of failed I/O (``sockets.py`` words them), the problem codes (conn, rst,
arp), the timings, the transcript, and what a tester's bug costs (its own check, logged once).
The clock and the timers are the engine's, so fake-time tests drive this same runner.
"""

from __future__ import annotations

import _socket
import asyncio
import contextlib
import errno
import logging
import select
import ssl
import time
from collections import deque
from collections.abc import Callable, Coroutine, Mapping
from functools import lru_cache
from typing import Any

from ..tester_api import ProbeError, Result, Target, Tester
from .buffer import ReceiveBuffer
from .pool import Idle, Pool, Spent, serve_park, serve_reuse
from .probe import CheckProbe
from .requests import (
    EXACTLY,
    LINE,
    READ_TAGS,
    SOME,
    UNTIL,
    Connect,
    OpenDatagram,
    Park,
    Receive,
    ReceiveDatagram,
    Reuse,
    Send,
    Sleep,
    Spawn,
    StartTls,
)
from .sockets import (
    IOFailure,
    closed_failure,
    connect_problem,
    describe_oserror,
    errno_failure,
    family_of,
    open_datagram,
    open_stream,
    os_failure,
    source_of,
    timeout_reason,
    too_large_failure,
)
from .state import CheckTiming
from .transcript import Transcript

log = logging.getLogger("surealived")

_IN, _OUT, _ERR = select.EPOLLIN, select.EPOLLOUT, select.EPOLLERR
_READABLE = _IN | _ERR | select.EPOLLHUP | select.EPOLLRDHUP
_WRITABLE = _OUT | _ERR | select.EPOLLHUP
_FAILED = _ERR | select.EPOLLHUP
_EVENTS = _IN | _OUT | select.EPOLLRDHUP | select.EPOLLET
_CHUNK = 65536
_SOL_SOCKET, _SO_ERROR = _socket.SOL_SOCKET, _socket.SO_ERROR
_INET, _INET6 = int(_socket.AF_INET), int(_socket.AF_INET6)
WAIT = object()  # a request waits for its socket, a timer or a task

Finish = Callable[[Any, Result, CheckTiming], None]
CallLater = Callable[..., Any]  # loop.call_later's shape: (delay, callback, *args) -> handle


@lru_cache(maxsize=64)
def tls_context(verify: bool, cafile: str | None) -> ssl.SSLContext:
    """One client context per (verify, CA file), built once with its CA store, as the original
    had one global context: nothing per check but the ``SSLObject``."""
    if verify:
        return ssl.create_default_context(cafile=cafile)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


class Socket:
    """A socket of a check, watched by the runner's epoll set until it closes."""

    __slots__ = ("batch", "failed", "fd", "flight", "port", "readable", "received", "sent",
                 "sock", "writable")

    def __init__(self, flight: Flight, sock: _socket.socket, port: int) -> None:
        self.flight: Flight | Idle = flight  # the keepalive pool's Idle while pooled
        self.sock: _socket.socket | None = sock
        self.fd = sock.fileno()
        self.port = port
        self.readable = False  # an EPOLLIN edge came since a read last found nothing
        self.writable = False
        self.failed = False  # EPOLLERR or EPOLLHUP came: SO_ERROR says why
        self.sent = self.received = 0
        self.batch = flight.runner.watch(self)

    def close(self) -> None:
        sock = self.sock
        if sock is not None:
            self.sock = None
            del self.flight.runner.sockets[self.fd]
            sock.close()  # also leaves the epoll set


class Stream(Socket):
    """A TCP connection of a check: its socket, receive buffer, TLS state and counters."""

    __slots__ = ("buffer", "eof", "tls", "tls_in", "tls_out", "unsent")

    def __init__(self, flight: Flight, sock: _socket.socket, port: int) -> None:
        Socket.__init__(self, flight, sock, port)
        self.buffer = ReceiveBuffer()
        self.eof = False
        self.unsent: memoryview | bytes = b""
        self.tls: ssl.SSLObject | None = None
        self.tls_in: ssl.MemoryBIO | None = None
        self.tls_out: ssl.MemoryBIO | None = None

    def flush(self, step: str) -> bool:
        """Send what is queued (TLS records, the rest of a send); False while some is left."""
        if self.tls_out is not None and self.tls_out.pending:
            self.unsent = bytes(self.unsent) + self.tls_out.read()
        unsent = self.unsent
        if not unsent:
            return True
        sock = self.sock
        assert sock is not None
        try:
            n = sock.send(unsent)
        except BlockingIOError:
            n = 0
        except OSError as exc:
            self.close()
            raise os_failure(step, exc) from None
        if n < len(unsent):
            self.unsent = memoryview(unsent)[n:]
            self.writable = False
            return False
        self.unsent = b""
        return True

    def fill(self, request: Receive, exactly: int = 0) -> bytes | bool:
        """One chunk from the socket into the buffer: True, or False when the socket has
        nothing now; with ``exactly`` and an empty buffer, the first ``exactly`` bytes of a
        chunk that has them are returned, the rest buffered (the usual fixed-size read)."""
        if not self.readable:  # edge-triggered: nothing came since the socket said "empty"
            return False
        sock = self.sock
        assert sock is not None
        try:
            chunk = sock.recv(_CHUNK)
        except BlockingIOError:
            self.readable = False
            return False
        except OSError as exc:
            self.close()
            raise os_failure(request.step(), exc) from None
        if self.tls is not None:
            plain = self._decrypt(chunk, request)
            if plain is None:
                return True
            chunk = plain
        if not chunk:
            self.eof = True
            return True
        self.received += len(chunk)
        transcript = self.flight.transcript
        if transcript is not None:
            transcript.add(READ_TAGS[request.mode], chunk)
        if exactly and len(chunk) >= exactly and not self.buffer:
            if len(chunk) > exactly:
                self.buffer.feed(chunk[exactly:])
                return chunk[:exactly]
            return chunk
        self.buffer.feed(chunk)
        return True

    def _decrypt(self, raw: bytes, request: Receive) -> bytes | None:
        """The plain bytes in ``raw`` (b"" at the end of the TLS stream; None: none yet)."""
        assert self.tls is not None and self.tls_in is not None
        if raw:
            self.tls_in.write(raw)
        else:
            self.tls_in.write_eof()
        plain = b""
        try:
            while True:
                piece = self.tls.read(_CHUNK)
                if not piece:
                    break
                plain += piece
        except ssl.SSLWantReadError:
            pass
        except (ssl.SSLZeroReturnError, ssl.SSLEOFError):
            return plain  # b"" when nothing came before the end
        except ssl.SSLError as exc:
            self.close()
            raise os_failure(request.step(), exc) from None
        if self.tls_out is not None and self.tls_out.pending:
            self.flush(request.step())  # post-handshake records the peer expects
        return plain if plain else (None if raw else b"")


class Dgram(Socket):
    """A connected UDP socket of a check."""

    __slots__ = ()


# -- serving requests: each returns the reply, WAIT, or raises IOFailure ---------------------
def _closed_socket(step: str) -> IOFailure:
    return IOFailure(f"{step}: the connection is closed", "closed")


def serve_connect(flight: Flight, request: Connect) -> Any:
    target = flight.target
    source = source_of(target, request.bind)
    try:
        sock, err = open_stream(_INET6 if ":" in target.addr else _INET,
                                (target.addr, request.port), source, request.hold_ack)
    except OSError as exc:
        raise os_failure("connecting", exc) from None
    stream = Stream(flight, sock, request.port)
    flight.streams.append(stream)
    flight.wait_stream = stream
    if err and err != errno.EINPROGRESS:
        stream.close()
        raise flight.connect_failed(errno_failure("connect", err))
    if not err:
        return _connected(flight, request, stream)
    return WAIT


def _connecting(flight: Flight, request: Connect) -> Any:
    stream = flight.wait_stream
    assert isinstance(stream, Stream) and stream.sock is not None
    if not stream.writable:
        return WAIT
    if stream.failed:
        err = stream.sock.getsockopt(_SOL_SOCKET, _SO_ERROR)
        if err:
            stream.close()
            raise flight.connect_failed(errno_failure("connect", err))
    return _connected(flight, request, stream)


def _connected(flight: Flight, request: Connect, stream: Stream) -> Any:
    if not request.tls:
        if not flight.connected:
            flight.connected = flight.runner.clock()
        return stream
    # as the original: the connect time of a TLS check includes its handshake
    begin_tls(flight, stream, request.sni, request.verify)
    flight.retry_fn = _handshaking
    return _handshaking(flight, request)


def begin_tls(flight: Flight, stream: Stream, sni: str | None, verify: bool,
              session: ssl.SSLSession | None = None) -> None:
    if stream.tls is not None:
        raise IOFailure("TLS is already on", "TLS is already on")
    target = flight.target
    context = tls_context(verify, target.ssl_ca if verify else None)
    stream.tls_in, stream.tls_out = ssl.MemoryBIO(), ssl.MemoryBIO()
    stream.tls = context.wrap_bio(stream.tls_in, stream.tls_out,
                                  server_hostname=sni or (target.addr if verify else None))
    if session is not None:
        with contextlib.suppress(ValueError):  # made with another context: a full handshake
            stream.tls.session = session
    if stream.buffer:  # bytes that came before STARTTLS belong to the handshake
        stream.tls_in.write(stream.buffer.extract_rest())
    flight.wait_stream = stream
    flight.phase = "TLS handshake"


def _handshaking(flight: Flight, request: Any) -> Any:
    stream = flight.wait_stream
    assert isinstance(stream, Stream) and stream.tls is not None and stream.tls_in is not None
    while True:
        if stream.sock is None:
            raise _closed_socket("TLS handshake")
        if not stream.flush("TLS handshake"):
            return WAIT
        try:
            stream.tls.do_handshake()
            break
        except ssl.SSLWantReadError:
            pass
        except ssl.SSLError as exc:
            stream.close()
            raise os_failure("TLS handshake", exc) from None
        if not stream.flush("TLS handshake"):
            return WAIT
        if not stream.readable:
            return WAIT
        try:
            raw = stream.sock.recv(_CHUNK)
        except BlockingIOError:
            stream.readable = False
            return WAIT
        except OSError as exc:
            stream.close()
            raise os_failure("TLS handshake", exc) from None
        if not raw:
            stream.close()
            raise IOFailure("TLS handshake: connection closed by the real", "closed")
        stream.tls_in.write(raw)
    if not stream.flush("TLS handshake"):
        flight.retry_fn = _flushing_handshake
        return WAIT
    return _handshake_done(flight, request, stream)


def _flushing_handshake(flight: Flight, request: Any) -> Any:
    stream = flight.wait_stream
    assert isinstance(stream, Stream)
    if not stream.flush("TLS handshake"):
        return WAIT
    return _handshake_done(flight, request, stream)


def _handshake_done(flight: Flight, request: Any, stream: Stream) -> Any:
    flight.phase = None
    assert stream.tls is not None
    if flight.transcript is not None:
        resumed = " (session reused)" if stream.tls.session_reused else ""
        flight.transcript.note(f"TLS {stream.tls.version()} {stream.tls.cipher()}{resumed}")
    if type(request) is not Connect:
        return True
    if not flight.connected:
        flight.connected = flight.runner.clock()
    return stream


def serve_start_tls(flight: Flight, request: StartTls) -> Any:
    stream = request.stream
    if stream.sock is None:
        raise _closed_socket("TLS handshake")
    begin_tls(flight, stream, request.sni, request.verify, request.session)
    flight.retry_fn = _handshaking
    return _handshaking(flight, request)


def serve_send(flight: Flight, request: Send) -> Any:
    stream = request.stream
    if stream.sock is None:
        raise _closed_socket("sending")
    data = request.data
    transcript = flight.transcript
    if transcript is not None:
        transcript.add("sd_write ->", data)
    if type(stream) is Dgram:
        return _send_datagram(flight, request)
    if stream.tls is not None:
        stream.tls.write(data)
    elif stream.unsent:
        stream.unsent = bytes(stream.unsent) + data
    else:  # the usual send: all of it at once, or the rest waits in ``unsent``
        try:
            n = stream.sock.send(data)
        except BlockingIOError:
            n = 0
        except OSError as exc:
            stream.close()
            raise os_failure("sending", exc) from None
        if n == len(data):
            stream.sent += n
            return n
        stream.unsent = memoryview(data)[n:]
        stream.writable = False
    flight.wait_stream = stream
    return _sending(flight, request)


def _sending(flight: Flight, request: Send) -> Any:
    stream = request.stream
    if stream.sock is None:
        raise _closed_socket("sending")
    if not stream.flush("sending"):
        return WAIT
    stream.sent += len(request.data)
    return len(request.data)


def _send_datagram(flight: Flight, request: Send) -> Any:
    dgram = request.stream
    sock = dgram.sock
    if sock is None:
        raise _closed_socket("sending")
    try:
        sock.send(request.data)
    except BlockingIOError:
        dgram.writable = False
        flight.wait_stream = dgram
        return WAIT
    except OSError as exc:
        raise os_failure("sending", exc) from None
    dgram.sent += len(request.data)
    return len(request.data)


def _piece(buffer: ReceiveBuffer, request: Receive, eof: bool) -> bytes | None:
    mode = request.mode
    if mode == EXACTLY:
        return buffer.maybe_extract_exactly(request.size)
    if mode == LINE:
        return buffer.maybe_extract_line(request.size)
    if mode == UNTIL:
        return buffer.maybe_extract_until(request.delimiter, request.size)
    if mode == SOME:
        return buffer.maybe_extract_at_most(request.size)
    if len(buffer) > request.size:
        raise too_large_failure(request.size, request.what)
    return buffer.extract_rest() if eof else None


def serve_receive(flight: Flight, request: Receive) -> Any:
    stream = request.stream
    flight.wait_stream = stream
    buffer = stream.buffer
    mode = request.mode
    if mode == EXACTLY and not buffer and not stream.eof and stream.sock is not None:
        if not stream.readable:
            return WAIT
        got = stream.fill(request, request.size)
        if got is False:
            return WAIT
        if got is not True:
            return got  # the whole piece in one chunk
    while True:
        try:
            piece = _piece(buffer, request, stream.eof)
        except IOFailure:
            stream.close()
            raise
        except ProbeError as exc:  # past the limit of a line or delimiter
            stream.close()
            raise IOFailure(str(exc), "size too large") from None
        if piece is not None:
            return piece
        if stream.eof:
            if mode == SOME:
                return b""
            rest = buffer.extract_rest()
            stream.close()
            raise closed_failure(stream.received, request.what, rest)
        if stream.sock is None:
            raise _closed_socket(request.step())
        if stream.fill(request) is False:
            return WAIT


def serve_open_datagram(flight: Flight, request: OpenDatagram) -> Any:
    target = flight.target
    source = source_of(target, request.bind)
    try:
        sock = open_datagram(family_of(target.addr), (target.addr, request.port), source)
    except OSError as exc:
        raise flight.connect_failed(os_failure("connect", exc)) from None
    dgram = Dgram(flight, sock, request.port)
    flight.streams.append(dgram)
    if not flight.connected:
        flight.connected = flight.runner.clock()
    return dgram


def serve_receive_datagram(flight: Flight, request: ReceiveDatagram) -> Any:
    dgram = request.stream
    sock = dgram.sock
    if sock is None:
        raise _closed_socket(request.step())
    flight.wait_stream = dgram
    if not dgram.readable:
        return WAIT
    try:
        data = sock.recv(request.size)
    except BlockingIOError:
        dgram.readable = False
        return WAIT
    except OSError as exc:
        raise os_failure(request.step(), exc) from None
    dgram.received += len(data)
    if flight.transcript is not None:
        flight.transcript.add("sd_read <-", data)
    return data


def serve_sleep(flight: Flight, request: Sleep) -> Any:
    flight.arm(request.seconds, flight.wake)
    return WAIT


def serve_spawn(flight: Flight, request: Spawn) -> Any:
    runner = flight.runner
    task = asyncio.ensure_future(request.awaitable, loop=runner.loop)
    flight.task = task
    runner.tasks.add(task)
    task.add_done_callback(flight.spawned)
    return WAIT


SERVE: dict[type, Callable[[Flight, Any], Any]] = {
    Connect: serve_connect, StartTls: serve_start_tls, Send: serve_send,
    Receive: serve_receive, OpenDatagram: serve_open_datagram,
    ReceiveDatagram: serve_receive_datagram, Sleep: serve_sleep, Spawn: serve_spawn,
    Reuse: serve_reuse, Park: serve_park,
}
# what a request that waits is retried with when its socket is ready
RETRY: dict[type, Callable[[Flight, Any], Any]] = {
    Connect: _connecting, StartTls: _handshaking, Send: _sending, Receive: serve_receive,
    ReceiveDatagram: serve_receive_datagram,
}
READS = (Receive, ReceiveDatagram)


class Flight(CheckProbe):
    """One check, from its start to its verdict; it is also the probe its tester gets.
    ``coro`` is None once it has ended."""

    __slots__ = ("check", "connect_ended", "connect_failure", "connected", "coro", "deadline",
                 "delivered", "phase", "request", "retry_fn", "runner", "started", "starting",
                 "streams", "task", "tester", "timer", "wait_stream", "wall")

    def __init__(self, runner: Runner, check: Any, tester: Tester, target: Target,
                 settings: Mapping[str, Any], transcript: Transcript | None) -> None:
        self.runner = runner
        self.check = check
        self.tester = tester
        self.target = target
        self.settings = settings
        self.transcript = transcript
        self.step = "starting"
        self.started = started = runner.clock()
        self.wall = time.time()
        self.deadline = started + target.timeout
        self.connected = 0.0
        self.coro: Coroutine[Any, Any, Any] | None = None
        self.streams: list[Socket | Spent] = []  # Spent: a stream handed to the pool
        self.request: Any = None  # the request that waits
        self.retry_fn: Callable[[Flight, Any], Any] | None = None
        self.wait_stream: Socket | None = None
        self.phase: str | None = None  # overrides the request's step (a TLS handshake)
        self.timer: Any = None  # a sleep or a request's own timeout
        self.task: asyncio.Future[Any] | None = None
        self.connect_failure: IOFailure | None = None
        self.connect_ended = 0.0  # when the last connect failed, before any connection
        self.starting = True
        self.delivered = False

    # -- the coroutine --------------------------------------------------------------------
    def resume(self, value: Any = None, error: BaseException | None = None) -> None:
        """Resume the check with ``value`` (or raise ``error`` in it) and serve its requests
        until one must wait or the check ends."""
        coro = self.coro
        assert coro is not None
        while True:
            try:
                request = coro.send(value) if error is None else coro.throw(error)
            except StopIteration as stop:
                self.returned(stop.value)
                return
            except BaseException as exc:
                self.raised(exc)
                return
            error = None
            serve = SERVE.get(type(request))
            if serve is None:
                if self.foreign(request):
                    return
                value, error = None, TypeError(f"awaited {request!r}, which is not a request "
                                               "of the probe")
                continue
            # what serves the request again if it waits for its socket; a request may set its
            # own (the phases of a handshake). None while nothing waits.
            self.retry_fn = RETRY.get(type(request))
            self.phase = None
            try:
                value = serve(self, request)
            except IOFailure as failure:
                self.retry_fn = None
                value, error = None, failure
                continue
            if value is not WAIT:
                self.retry_fn = None
                continue
            self.request = request
            ms = request.ms
            if ms:
                self.arm(ms / 1000, self.request_timed_out)
            return

    def foreign(self, awaited: Any) -> bool:
        """A future of the event loop awaited directly (asyncio.sleep, say): resume when it is
        done, as a task would."""
        if not isinstance(awaited, asyncio.Future):
            return False
        awaited._asyncio_future_blocking = False
        self.task = awaited
        awaited.add_done_callback(self.awaited_done)
        self.request = Spawn(awaited, "waiting")
        return True

    def awaited_done(self, future: asyncio.Future[Any]) -> None:
        if self.task is not future or self.coro is None:
            return
        self.task = None
        self.request = None
        self.resume()

    def ready(self) -> None:
        """The socket the waiting request is on is ready: serve it again."""
        retry = self.retry_fn
        assert retry is not None
        try:
            value = retry(self, self.request)
        except IOFailure as failure:
            self.served()
            self.resume(None, failure)
            return
        if value is not WAIT:
            self.request = self.retry_fn = self.wait_stream = None
            if self.timer is not None:
                self.served()
            self.resume(value)

    def served(self) -> None:
        self.request = None
        self.retry_fn = None
        self.wait_stream = None
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None

    def arm(self, delay: float, callback: Callable[[], None]) -> None:
        self.timer = self.runner.call_later(delay, callback)

    def wake(self) -> None:
        """A sleep is over."""
        self.timer = None
        self.served()
        self.resume(1)

    def request_timed_out(self) -> None:
        """The waiting request's own timeout: a read leaves its socket usable, a connect or a
        send closes it."""
        self.timer = None
        request = self.request
        stream = self.wait_stream
        keep = type(request) in READS
        if not keep and stream is not None:
            stream.close()
        step = self.phase or request.step()
        self.served()
        self.phase = None
        self.resume(None, IOFailure(f"timeout after {request.ms:g}ms {step}", "timeout",
                                    keep=keep))

    def spawned(self, task: asyncio.Future[Any]) -> None:
        self.runner.tasks.discard(task)
        if self.task is not task or self.coro is None:
            return
        self.task = None
        self.served()
        if task.cancelled():
            self.resume(None, ProbeError("cancelled"))
        elif task.exception() is not None:
            self.resume(None, task.exception())
        else:
            self.resume(task.result())

    def connect_failed(self, failure: IOFailure) -> IOFailure:
        """``failure`` of a connect: a problem of the check (rst or arp) if it ends the check
        before any connection was made."""
        if not self.connected:
            self.connect_failure = failure
            self.connect_ended = self.runner.clock()
        return failure

    # -- the end --------------------------------------------------------------------------
    def returned(self, result: Any) -> None:
        if not isinstance(result, Result):
            result = Result.down(self.runner.tester_bug(
                self.tester, TypeError(f"check() returned {result!r}, not a Result")))
        self.end(result)

    def raised(self, exc: BaseException) -> None:
        problem = None
        if isinstance(exc, ProbeError):
            result = Result.down(str(exc) or "failed")
            if exc is self.connect_failure and not self.connected:
                problem = connect_problem(self.runner.clock() - self.started)
        elif isinstance(exc, OSError):
            result = Result.down(describe_oserror(self.step_text(), exc))
        elif isinstance(exc, Exception):
            result = Result.down(self.runner.tester_bug(self.tester, exc))
        elif isinstance(exc, asyncio.CancelledError):  # it awaited a task someone cancelled
            result = Result.down("cancelled")
        else:  # KeyboardInterrupt, SystemExit: not the check's to keep
            self.end(Result.down("internal error"))
            raise exc
        self.end(result, problem)

    def step_text(self) -> str:
        if self.phase is not None:
            return self.phase
        request = self.request
        return request.step() if request is not None else "starting"

    def expire(self) -> None:
        """The deadline passed: abandon the check, down with what it was waiting for."""
        target = self.target
        problem = ("conn" if not self.connected and target.port
                   and self.tester.transport != "exec" else None)
        result = Result.down(timeout_reason(target.timeout, self.step_text()))
        task = self.task
        self.abandon()
        if task is None or task.done():
            self.deliver(result, problem)
            return
        # spawned work ends first (exec notes the output its program wrote before the
        # deadline), within a second
        timer = self.runner.call_later(1.0, self.deliver, result, problem)

        def ended(_task: asyncio.Future[Any]) -> None:
            timer.cancel()
            self.deliver(result, problem)

        task.add_done_callback(ended)

    def abandon(self) -> None:
        """Stop the check where it is: its coroutine, sockets, timer and task."""
        coro, self.coro = self.coro, None
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        task, self.task = self.task, None
        if task is not None and not task.done():
            task.cancel()
        if coro is not None:
            try:
                coro.close()
            except Exception:  # a check that awaits again when closed: a tester bug
                log.exception("Tester %s would not stop at its deadline", self.tester.name)
        for stream in self.streams:
            stream.close()

    def end(self, result: Result, problem: str | None = None) -> None:
        self.coro = None
        for stream in self.streams:
            stream.close()
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        self.deliver(result, problem)

    def deliver(self, result: Result, problem: str | None) -> None:
        if self.delivered:
            return
        if self.starting:  # the engine must not get a verdict from inside Runner.start
            self.starting = False
            self.runner.loop.call_soon(self.deliver, result, problem)
            return
        self.delivered = True
        ended = self.runner.clock()
        total = int((ended - self.started) * 1e6)
        if self.connected:
            conn = int((self.connected - self.started) * 1e6)
            resp = int((ended - self.connected) * 1e6)
        elif self.connect_ended:  # a connect that failed took this long: the response none
            conn = int((self.connect_ended - self.started) * 1e6)
            resp = total - conn
        else:
            conn, resp = 0, total
        sent = received = 0
        for stream in self.streams:
            sent += stream.sent
            received += stream.received
        timing = CheckTiming(self.wall, conn, resp, total, problem, sent, received)
        if self.transcript is not None:
            self.transcript.note(f"result: {'up' if result.ok else 'down'} "
                                 f"{result.reason}".rstrip())
        # a finished flight may wait in a deadline queue: it keeps nothing alive there
        check, self.check = self.check, None
        self.streams = []
        self.request = self.wait_stream = self.transcript = None
        self.runner.finish(check, result, timing)


class Runner:
    """Runs checks; ``finish(check, result, timing)`` gets each verdict, always from a later
    callback than ``start``."""

    def __init__(self, loop: asyncio.AbstractEventLoop, finish: Finish, *,
                 clock: Callable[[], float] = time.monotonic,
                 call_later: CallLater | None = None) -> None:
        self.loop = loop
        self.finish = finish
        self.clock = clock
        self.call_later: CallLater = call_later or loop.call_later
        self.epoll = select.epoll()
        self.sockets: dict[int, Socket] = {}
        self.deadlines: dict[float, deque[Flight]] = {}  # flights by timeout, each sorted
        self.tasks: set[asyncio.Future[Any]] = set()
        self.timer: Any = None
        self.timer_at = 0.0
        self.batch = 0  # the readiness batch being served (see watch)
        self.reported_bugs: set[tuple[str, str]] = set()
        self.pool = Pool(self.call_later)  # idle connections kept by checks (setkeepalive)
        loop.add_reader(self.epoll.fileno(), self._on_ready)

    def start(self, check: Any, tester: Tester, target: Target, settings: Mapping[str, Any],
              transcript: Transcript | None = None) -> None:
        flight = Flight(self, check, tester, target, settings, transcript)
        queue = self.deadlines.get(target.timeout)
        if queue is None:
            queue = self.deadlines[target.timeout] = deque()
        while queue and queue[0].coro is None:  # finished ones need no deadline: let them go
            queue.popleft()
        queue.append(flight)
        if self.timer is None or flight.deadline < self.timer_at:
            self._arm(flight.deadline, flight.started)
        try:
            flight.coro = tester.check(flight)  # type: ignore[arg-type]
        except Exception as exc:  # check() itself is not a coroutine function: a bug
            flight.end(Result.down(self.tester_bug(tester, exc)))
        else:
            try:
                flight.resume()
            except Exception:
                self.runner_bug(flight)
        flight.starting = False

    def watch(self, stream: Socket) -> int:
        """Serve a new socket's readiness; returns the batch it was made in: a readiness
        batch can hold events of a socket closed earlier in the same batch whose descriptor
        number a new socket took, and those are not the new socket's."""
        self.sockets[stream.fd] = stream
        self.epoll.register(stream.fd, _EVENTS)
        return self.batch

    def _on_ready(self) -> None:
        self.batch += 1
        batch = self.batch
        sockets = self.sockets
        for fd, events in self.epoll.poll(0):
            stream = sockets.get(fd)
            if stream is None or stream.batch == batch:
                continue
            if events & _READABLE:
                stream.readable = True
            if events & _WRITABLE:
                stream.writable = True
                if events & _FAILED:
                    stream.failed = True
            flight = stream.flight
            if flight.wait_stream is not stream or flight.retry_fn is None:
                continue  # nothing waits on it: the next request finds the flags
            try:
                flight.ready()
            except Exception:
                self.runner_bug(flight)

    @staticmethod
    def runner_bug(flight: Flight | Idle) -> None:
        """An exception out of the runner's own code (a tester's ends in ``Flight.raised``):
        logged with its traceback; that check ends down, the others go on."""
        log.exception("Check of %s failed inside the runner (a bug of surealived)",
                      flight.target.addr)
        if flight.coro is not None:
            flight.abandon()
            flight.deliver(Result.down("internal error"), None)

    def tester_bug(self, tester: Tester, exc: BaseException) -> str:
        """The reason of a check whose tester raised ``exc``; logged with its traceback once
        per tester and place."""
        where = "?"
        tb = exc.__traceback__
        while tb is not None:
            where = f"{tb.tb_frame.f_code.co_filename}:{tb.tb_lineno}"
            tb = tb.tb_next
        key = (type(tester).__name__, where)
        if key not in self.reported_bugs:
            self.reported_bugs.add(key)
            log.error("Tester %s raised %r at %s (a bug in the tester; logged once)",
                      tester.name, exc, where, exc_info=exc)
        return f"tester error: {type(exc).__name__}: {exc}"

    # -- deadlines ------------------------------------------------------------------------
    def _arm(self, when: float, now: float) -> None:
        if self.timer is not None:
            self.timer.cancel()
        self.timer_at = when
        self.timer = self.call_later(max(0.0, when - now), self._sweep)

    def _sweep(self) -> None:
        self.timer = None
        now = self.clock()
        soonest = 0.0
        for queue in list(self.deadlines.values()):  # expiring may start checks
            while queue:
                flight = queue[0]
                if flight.coro is not None:
                    if flight.deadline > now + 0.0005:
                        if not soonest or flight.deadline < soonest:
                            soonest = flight.deadline
                        break
                    flight.expire()
                queue.popleft()
        if soonest and (self.timer is None or soonest < self.timer_at):
            self._arm(soonest, now)

    def close(self) -> None:
        """Drop every check in flight (no verdicts) and stop watching."""
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        self.loop.remove_reader(self.epoll.fileno())
        for queue in self.deadlines.values():
            for flight in queue:
                if flight.coro is not None:
                    flight.abandon()
        for task in list(self.tasks):
            task.cancel()
        self.pool.close()
        for stream in list(self.sockets.values()):
            stream.close()
        self.deadlines.clear()
        self.epoll.close()


async def run_check(tester: Tester, target: Target, settings: Mapping[str, Any] | None = None,
                    *, transcript: Transcript | None = None) -> tuple[Result, CheckTiming]:
    """One check of ``tester`` against ``target`` on a runner of its own (``surealived probe``
    and tests; the engine keeps one runner for all its checks). Never raises but for
    cancellation."""
    loop = asyncio.get_running_loop()
    verdict: asyncio.Future[tuple[Result, CheckTiming]] = loop.create_future()

    def finish(_check: Any, result: Result, timing: CheckTiming) -> None:
        if not verdict.done():
            verdict.set_result((result, timing))

    runner = Runner(loop, finish)
    try:
        runner.start(None, tester, target, tester.settings if settings is None else settings,
                     transcript)
        return await verdict
    finally:
        runner.close()
