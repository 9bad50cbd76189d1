"""Lua checks on the engine's fast path: the check thread resumed from epoll callbacks.

Why: through ``run_check`` a Lua check pays for a task, a probe, a timeout scope and a future per
wait, on top of the Lua it runs; the http tester's naive check pays for none of these (it runs on
the fast path). Most scripts are "connect to the test port, send, read a line or N bytes,
judge", so those requests are served here, from the readiness callbacks, as the original C
daemon drove its Lua scripts from its epoll loop.

How: ``LuaDriver.begin`` takes a check thread (``driver.take_thread``) and resumes it. The
requests served here are connecting socket 1..16 to the real's test port (the first connect of
the check), sending, reading N bytes, a line or all (each within its socket timeout when the
script set one), closing, ``sd.now()`` and the verdict. The first request of any other kind (TLS,
another port or socket, UDP, ``sd.sleep``, ``sd.log``, ``receiveuntil``, ``receiveany``...)
hands the check over, with its connection, buffered bytes and counters, to ``run_check`` and
the generic driver (``driver.drive``), which serves that request and the rest within what is left
of the check's deadline. Replies and errors are those of the generic driver for the same events
(``tests/lua/test_fast.py`` runs the same scripts both ways).
"""

from __future__ import annotations

import _socket
import asyncio
import errno
import logging
import os
import select
import socket
import time
from typing import Any

from ..engine.buffer import ReceiveBuffer
from ..engine.fastpath import FastPath, FastSpec, open_stream, timing_of
from ..engine.probe import CheckProbe, TcpConnection, describe_oserror, run_check
from ..tester_api import ProbeError, Result
from .codes import CLOSE, CONNECT, DONE, MAX_SOCKETS, NOW, RECV_ALL, RECV_EXACTLY, RECV_LINE, SEND
from .driver import (
    ALL_LIMIT,
    EXACT_LIMIT,
    LINE_LIMIT,
    HasScript,
    Slot,
    _result,
    _strerror,
    drive,
    error_ended,
    release_thread,
    take_thread,
)
from .runtime import LuaError

log = logging.getLogger("surealived")
_CHUNK = 65536
_IN, _OUT, _ERR = select.EPOLLIN, select.EPOLLOUT, select.EPOLLERR
_READABLE = _IN | _ERR | select.EPOLLHUP | select.EPOLLRDHUP
_WAIT = object()  # a request waits for the socket
_AGAIN = object()  # the socket has nothing more now
_CLOSED = (None, b"closed", None)
_TIMEOUT = (None, b"timeout", None)
READS = (RECV_EXACTLY, RECV_LINE, RECV_ALL)
TIMED = frozenset((CONNECT, SEND, *READS))  # their last value: a timeout (ms)


class LuaDriver:
    """What ``LuaTester.fast_driver()`` offers the engine's fast path."""

    __slots__ = ("tester",)

    def __init__(self, tester: HasScript) -> None:
        self.tester = tester

    def begin(self, fast: FastPath, check: Any, spec: FastSpec) -> None:
        flight = LuaFlight(fast, check, spec, self.tester)
        try:
            flight.begin()
        except Exception:  # a bug past the script: this check fails, the others go on
            log.exception("Lua check of %s failed", spec.address)
            flight.fail("internal error")


class LuaFlight:
    """One Lua check on the fast path, from its first resume to its verdict or hand-over."""

    __slots__ = ("buffer", "check", "co", "connected", "deadline", "eof", "fast", "fd", "ms",
                 "over", "readable", "received", "sent", "sid", "sock", "spec", "started",
                 "starting", "step", "tester", "timer", "unsent", "wait", "wall")

    def __init__(self, fast: FastPath, check: Any, spec: FastSpec, tester: HasScript) -> None:
        self.fast = fast
        self.check = check
        self.spec = spec
        self.tester = tester
        self.started = time.monotonic()
        self.wall = time.time()
        self.deadline = self.started + spec.timeout
        self.co: Any = None
        self.sock: _socket.socket | None = None
        self.fd = -1
        self.sid = 0  # the Lua socket id connected here
        self.connected = 0.0
        self.buffer = ReceiveBuffer()
        self.eof = False
        self.readable = False  # an EPOLLIN edge came since the last read found nothing
        self.unsent = b""
        self.wait: tuple[Any, ...] | None = None  # the request waiting for the socket
        self.ms = 0  # the socket timeout of the request being served (ms; 0: none)
        self.timer: asyncio.TimerHandle | None = None  # that timeout, while the request waits
        self.sent = self.received = 0
        self.step: str | tuple[Any, ...] = "starting"  # a read: its request (step_text)
        self.starting = True  # inside FastPath.start: a verdict now must wait for a callback
        self.over = False  # the verdict is given, or the check went to run_check

    # -- the check thread ----------------------------------------------------------------
    def begin(self) -> None:
        taken = take_thread(self.tester.script, self.spec.target, self.check.settings)
        if isinstance(taken, Result):
            self.finish(taken)
            return
        self.co, reply = taken
        self.advance(reply)
        self.starting = False

    def advance(self, reply: Any) -> None:
        """Resume the thread with ``reply`` and serve its requests until one must wait for the
        socket, the check ends, or a request needs the generic driver."""
        if self.timer is not None:  # the request that waited is served
            self.timer.cancel()
            self.timer = None
        send = self.co.send
        while True:
            try:
                request = send(reply)
            except LuaError as exc:
                self.end(error_ended(self.tester.script, self.spec.target, exc), False)
                return
            code = request[0] if type(request) is tuple else -1
            if code == DONE:
                self.end(_result(self.tester.script, request), True)
                return
            if code == NOW:
                reply = time.time()
                continue
            self.ms = request[-1] if code in TIMED else 0
            if code == CONNECT and not self.sid and self.plain_connect(request):
                reply = self.connect(request[1])
            elif not self.sid or code == CONNECT or request[1] != self.sid:
                self.hand_over(request)  # not the socket served here
                return
            elif code == CLOSE:
                reply = _CLOSED if self.sock is None else 1
                self.close_socket()
            elif code != SEND and code not in READS:
                self.hand_over(request)  # another kind of request
                return
            elif self.sock is None:
                reply = _CLOSED
            elif code == SEND:
                reply = self.send(request[2])
            elif code != RECV_EXACTLY or request[2] <= EXACT_LIMIT:
                reply = self.receive(request)
            else:
                self.hand_over(request)  # the generic driver's "size too large"
                return
            if reply is _WAIT:
                return

    def plain_connect(self, request: tuple[Any, ...]) -> bool:
        """``connect(t.addr, t.port)``, without a bound address of its own."""
        _, sid, host, port, _ = request
        return (host is False and port == self.spec.port and type(sid) is int
                and 0 < sid <= MAX_SOCKETS)

    # -- requests ------------------------------------------------------------------------
    def connect(self, sid: int) -> Any:
        self.sid = sid
        self.step = "connecting"
        try:
            sock, err = open_stream(self.spec)
        except OSError as exc:
            return None, _strerror(exc).encode(), None
        if err and err != errno.EINPROGRESS:
            sock.close()
            return None, self.connect_error(err), None
        self.sock, self.fd = sock, sock.fileno()
        self.fast.watch(self)  # the writable edge (now or later) says how the connect went
        return self.waiting((CONNECT,))

    @staticmethod
    def connect_error(err: int) -> bytes:
        text = describe_oserror("connect", OSError(err, os.strerror(err)))
        return text.removeprefix("connect: ").encode()

    def send(self, data: bytes, total: int = 0) -> Any:
        """Send ``data`` (the rest of ``total`` bytes when resuming a partial send)."""
        total = total or len(data)
        sock = self.sock
        assert sock is not None
        self.step = "sending"
        try:
            n = sock.send(data)
        except BlockingIOError:
            n = 0
        except OSError as exc:
            self.close_socket()
            return None, _strerror(exc).encode(), None
        self.sent += n
        if n < len(data):
            self.unsent = data[n:]
            return self.waiting((SEND, total))
        return total

    def receive(self, request: tuple[Any, ...]) -> Any:
        """The piece ``request`` asks for, from the buffer and what the socket has; or _WAIT
        (then ``wait`` is the request). Errors as the probe layer's, in the generic driver's
        words: a read that finds the end of the stream hands back what had come."""
        code, _, n, _ = request
        buffer = self.buffer
        self.step = request  # put in words only if needed (step_text)
        if code == RECV_EXACTLY:
            n = int(n)
            if n and not buffer and not self.eof:  # the usual case: the piece straight in
                got = self.fill(n)
                if got is _AGAIN:
                    return self.waiting(request)
                if got is not None:
                    return got
        while True:
            try:
                piece = self.piece(code, n)
            except ProbeError as exc:  # longer than the limit
                self.close_socket()
                return None, _strerror(exc).encode(), None
            if piece is not None:
                return piece
            if self.eof:
                rest = buffer.extract_rest()
                self.close_socket()
                return None, b"closed", rest
            got = self.fill()
            if got is _AGAIN:
                return self.waiting(request)
            if got is not None:
                return got

    def piece(self, code: int, n: int) -> bytes | None:
        """The piece a read asks for, when the buffer holds it (for ``*a``: at the end)."""
        buffer = self.buffer
        if code == RECV_EXACTLY:
            return buffer.maybe_extract_exactly(n)
        if code == RECV_LINE:
            return buffer.maybe_extract_line(LINE_LIMIT)
        if len(buffer) > ALL_LIMIT:
            raise ProbeError(f"more than {ALL_LIMIT} bytes while waiting for the end of the "
                             "reply")
        return buffer.extract_rest() if self.eof else None

    def fill(self, exactly: int = 0) -> Any:
        """One chunk from the socket into the buffer: None, _AGAIN, or the error's reply; or,
        when the buffer is empty and the chunk is ``exactly`` bytes, that chunk."""
        sock = self.sock
        assert sock is not None
        if not self.readable:  # edge-triggered: nothing came since the socket said "empty"
            return _AGAIN
        try:
            chunk = sock.recv(_CHUNK)
        except BlockingIOError:
            self.readable = False
            return _AGAIN
        except OSError as exc:
            self.close_socket()
            return None, _strerror(exc).encode(), None
        if chunk:
            self.received += len(chunk)
            if len(chunk) == exactly:
                return chunk
            self.buffer.feed(chunk)
        else:
            self.eof = True
        return None

    def step_text(self) -> str:
        """What the check was doing, in words (for reasons and the generic driver)."""
        step = self.step
        if isinstance(step, str):
            return step
        code, _, n, _ = step
        if code == RECV_EXACTLY:
            return f"waiting for {int(n)} bytes"
        if code == RECV_LINE:
            return "waiting for a line"
        return "waiting for the end of the reply"

    def waiting(self, request: tuple[Any, ...]) -> object:
        """Wait for the socket to serve ``request``, within its socket timeout if it has one."""
        self.wait = request
        if self.ms and self.timer is None:
            self.timer = self.fast.loop.call_later(self.ms / 1000, self.timed_out)
        return _WAIT

    def timed_out(self) -> None:
        """The socket timeout of the waiting request: ``nil, "timeout"``; a read leaves the
        socket usable, a connect or a send closes it (as the generic driver does)."""
        self.timer = None
        wait = self.wait
        if wait is None or self.sock is None:
            return
        self.wait = None
        if wait[0] not in READS:
            self.close_socket()
        try:
            self.advance(_TIMEOUT)
        except Exception:  # a bug past the script: this check fails, the others go on
            log.exception("Lua check of %s failed", self.spec.address)
            self.fail("internal error")

    # -- events from the fast path -------------------------------------------------------
    def ready(self, events: int) -> None:
        if events & _READABLE:
            self.readable = True
        wait = self.wait
        if wait is None or self.sock is None:
            return  # nothing waits: the next request reads what came
        code = wait[0]
        if code == CONNECT:
            err = self.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) if events & _ERR else 0
            if not err and not events & _OUT:
                return
            self.wait = None
            if err:
                self.close_socket()
                self.advance((None, self.connect_error(err), None))
                return
            self.connected = time.monotonic()
            self.advance(1)
        elif code == SEND:
            if not events & (_OUT | _ERR):
                return
            self.wait = None
            pending, self.unsent = self.unsent, b""
            reply = self.send(pending, wait[1])
            if reply is not _WAIT:
                self.advance(reply)
        elif events & _READABLE:
            self.wait = None
            reply = self.receive(wait)
            if reply is not _WAIT:
                self.advance(reply)

    def expire(self) -> None:
        """The check's deadline passed while it waited for the socket."""
        if self.sock is None:
            return
        problem = "conn" if not self.connected and self.spec.port else None
        self.drop()
        self.finish(Result.down(f"{self.spec.timeout_text} {self.step_text()}"), problem)

    def fail(self, reason: str) -> None:
        """A bug past the script (logged): down, the thread not reused."""
        self.drop()
        if not self.over:
            self.finish(Result.down(reason))

    def drop(self) -> None:
        """Abandon the check: its socket, its thread (never reused) and the check's count."""
        self.close_socket()
        if self.co is not None:
            self.co = None
            release_thread(self.tester.script)

    # -- the end -------------------------------------------------------------------------
    def close_socket(self) -> None:
        """Close the socket if open (a connect in progress too)."""
        sock = self.sock
        if sock is not None:
            self.sock = None
            self.wait = None
            if self.timer is not None:
                self.timer.cancel()
                self.timer = None
            del self.fast.flights[self.fd]
            sock.close()  # also leaves the epoll set

    def end(self, result: Result, reuse: bool) -> None:
        release_thread(self.tester.script, self.co if reuse else None)
        self.co = None
        self.close_socket()
        self.finish(result)

    def finish(self, result: Result, problem: str | None = None) -> None:
        self.over = True
        if self.starting:  # the engine must not get a verdict from inside FastPath.start
            self.starting = False
            self.fast.loop.call_soon(self.finish, result, problem)
            return
        check, self.check = self.check, None  # as FastPath._done: nothing kept alive
        self.fast.finish(check, result, timing_of(self, problem))

    def hand_over(self, request: tuple[Any, ...]) -> None:
        """Let ``run_check`` and the generic driver serve ``request`` and the rest."""
        fast, spec = self.fast, self.spec
        probe = CheckProbe(spec.target, self.check.settings, None, fast.loop)
        probe.started, probe.step = self.started, self.step_text()
        probe.connected = self.connected or None
        slots: dict[int, Slot] = {}
        counted = (self.sent, self.received)  # by run_check unless the socket goes with it
        if self.sid:
            slot = slots[self.sid] = Slot()
            if self.sock is not None:
                assert self.wait is None  # only a resumed thread asks for a hand-over
                fast.forget(self)
                raw, self.sock = self.sock, None
                sock = socket.socket(spec.family, socket.SOCK_STREAM, fileno=raw.detach())
                conn = TcpConnection(probe, sock, self.buffer, self.eof)
                conn.bytes_sent, conn.bytes_received = counted
                probe.open.append(conn)
                slot.conn = conn
                counted = (0, 0)
        co, self.co = self.co, None
        self.over = True
        script = self.tester.script

        async def rest(probe: Any) -> Result:
            return await drive(script, probe, co, None, slots, request)

        async def run() -> None:
            result, timing = await run_check(self.check.tester, spec.target,
                                             self.check.settings, rest=rest, probe=probe,
                                             wall=self.wall)
            timing.bytes_sent += counted[0]
            timing.bytes_received += counted[1]
            fast.finish(self.check, result, timing)

        task = fast.loop.create_task(run())
        fast.tasks.add(task)
        task.add_done_callback(fast.tasks.discard)
