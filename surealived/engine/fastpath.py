"""The fast path: checks that are only "connect, maybe send a request, read N bytes, judge them",
run without a coroutine, a task or a future per check.

Why it exists: at 20,000 checks a second, the generic path (``run_check``: a task, coroutine
frames, a ``CheckProbe``, ``asyncio.timeout``, and a reader/writer registration with the event loop
for every check) costs more CPU than the kernel's own work for a loopback connect. The tcp tester
and the http tester's naive case (the original's default) are most of what an installation runs,
and both are that simple, so the engine runs them here, as the original C program did: one
non-blocking socket per check, driven by callbacks.

How: a tester offers its check in this form through ``fast_exchange()`` (returning an
``Exchange``); the engine uses it when the check needs neither TLS nor a transcript, and runs
everything else (Lua, dns, exec, third-party testers, TLS, debugcomm) through ``run_check``
unchanged. Sockets are registered once, edge-triggered, with an epoll set of our own; the event
loop watches that one epoll descriptor, so one loop callback serves every socket that is ready,
and closing a socket removes it from the set without another system call. Deadlines: checks with
the same timeout start in order, so one deque per timeout value is sorted by deadline, and one
timer sweeps the expired heads; finished checks at the head leave as the next check of their
timeout starts, and keep nothing alive while they wait there (checks that lived for a whole
timeout in these queues made the garbage collector's older generations large and slow).
Results, reasons, timings and problems are those ``run_check`` gives for the same events
(``tests/engine/test_fastpath.py`` runs both against the same servers).

A tester whose conversation is not fixed in advance (a Lua script) offers a driver instead
(``fast_driver()``): its ``begin(fast, check, spec)`` runs the check on flights of its own, which
this loop serves through their ``ready(events)`` and ``expire()`` methods, and which may hand the
rest of the check over to ``run_check`` when it needs more than this path does.
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
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..tester_api import ProbeError, Result, Target, Tester
from .probe import _LINGER_RST, IP_BIND_ADDRESS_NO_PORT, _tester_bug, describe_oserror
from .state import CheckTiming

log = logging.getLogger("surealived")

_UP = Result.up()
_EVENTS = select.EPOLLIN | select.EPOLLOUT | select.EPOLLET
_CHUNK = 65536
_STREAM = socket.SOCK_STREAM | socket.SOCK_NONBLOCK
_SOL_SOCKET, _SO_LINGER, _SO_ERROR = socket.SOL_SOCKET, socket.SO_LINGER, socket.SO_ERROR


@dataclass(frozen=True, slots=True)
class Exchange:
    """A check that is only: connect, send ``request`` (if any), receive ``reply_size`` bytes
    (if any, described as ``what`` in reasons), and ``judge`` them (up when there is no judge).
    A tester offers one from ``fast_exchange()`` when its ``check`` does exactly that."""

    request: bytes = b""
    reply_size: int = 0
    what: str = ""
    judge: Callable[[bytes], Result] | None = None


def _offer(tester: Tester, name: str) -> Any:
    """What the tester's ``name`` method offers, unless it has none or a subclass replaced
    ``check`` (then the offer inherited from the parent no longer describes what it does)."""
    offer = getattr(tester, name, None)
    if offer is None:
        return None
    cls = type(tester)
    owner = next(c for c in cls.__mro__ if name in c.__dict__)
    if getattr(cls, "check", None) is not getattr(owner, "check", None):
        return None
    return offer()


def exchange_of(tester: Tester) -> Exchange | None:
    """The tester's ``Exchange`` (``fast_exchange()``), if it offers one."""
    exchange: Exchange | None = _offer(tester, "fast_exchange")
    return exchange


def open_stream(spec: FastSpec) -> tuple[_socket.socket, int]:
    """A non-blocking TCP socket to the spec's address (closing with an RST, bound to its
    ``bindaddr``), connecting: the socket and the errno of ``connect_ex``."""
    # the C socket type: socket.socket's Python layer costs more than it gives here
    sock = _socket.socket(spec.family, _STREAM)
    try:
        sock.setsockopt(_SOL_SOCKET, _SO_LINGER, _LINGER_RST)
        if spec.bindaddr:
            if spec.family == socket.AF_INET:
                sock.setsockopt(socket.SOL_IP, IP_BIND_ADDRESS_NO_PORT, 1)
            sock.bind((spec.bindaddr, 0))
        return sock, sock.connect_ex(spec.address)
    except BaseException:
        sock.close()
        raise


class FastSpec:
    """How one planned check runs on the fast path (built once per configuration)."""

    __slots__ = ("address", "bindaddr", "driver", "exchange", "family", "port", "target",
                 "timeout", "timeout_text")

    def __init__(self, target: Target, exchange: Exchange | None, driver: Any = None) -> None:
        self.target = target
        self.family = socket.AF_INET6 if ":" in target.addr else socket.AF_INET
        self.address = (target.addr, target.port)
        self.port = target.port
        self.bindaddr = target.bindaddr or None
        self.exchange = exchange
        self.driver = driver  # begin(fast, check, spec), when there is no exchange
        self.timeout = target.timeout
        self.timeout_text = f"timeout after {target.timeout:g}s"

    @classmethod
    def of(cls, tester: Tester, target: Target) -> FastSpec | None:
        if target.ssl:
            return None
        if target.bindaddr and (":" in target.bindaddr) != (":" in target.addr):
            return None  # run_check explains the mismatch
        exchange = exchange_of(tester)
        if exchange is not None:
            return cls(target, exchange)
        driver = _offer(tester, "fast_driver")
        return None if driver is None else cls(target, None, driver)


class _Flight:
    """One check on the fast path. ``sock`` is None once it has finished."""

    __slots__ = ("check", "connected", "data", "deadline", "exchange", "fd", "pending",
                 "received", "sent", "sock", "spec", "started", "wall")

    def __init__(self, check: Any, spec: FastSpec, sock: _socket.socket, started: float) -> None:
        assert spec.exchange is not None
        self.check = check
        self.spec = spec
        self.exchange = spec.exchange
        self.sock: _socket.socket | None = sock
        self.fd = sock.fileno()
        self.started = started
        self.wall = time.time()
        self.deadline = started + spec.timeout
        self.connected = 0.0
        self.pending = b""  # request bytes not sent yet
        self.data = b""
        self.sent = 0
        self.received = 0


Finish = Callable[[Any, Result, CheckTiming], None]


def timing_of(flight: Any, problem: str | None) -> CheckTiming:
    """The timing of a flight (ours or a driver's) that ends now: it has ``started``,
    ``connected`` (0.0 until then), ``wall``, ``sent`` and ``received``."""
    ended = time.monotonic()
    total = int((ended - flight.started) * 1e6)
    if flight.connected:
        conn = int((flight.connected - flight.started) * 1e6)
        resp = int((ended - flight.connected) * 1e6)
    else:
        conn, resp = 0, total
    return CheckTiming(flight.wall, conn, resp, total, problem, flight.sent, flight.received)


class FastPath:
    """Runs ``Exchange`` checks; ``finish(check, result, timing)`` gets each verdict."""

    def __init__(self, loop: asyncio.AbstractEventLoop, finish: Finish) -> None:
        self.loop = loop
        self.finish = finish
        self.epoll = select.epoll()
        self.flights: dict[int, Any] = {}  # by fd: ours (_Flight) and drivers'
        self.tasks: set[asyncio.Task[None]] = set()  # checks drivers handed to run_check
        self.deadlines: dict[float, deque[Any]] = {}  # flights by timeout, each sorted
        self.timer: asyncio.TimerHandle | None = None
        self.timer_at = 0.0
        loop.add_reader(self.epoll.fileno(), self._on_ready)

    def start(self, check: Any, spec: FastSpec) -> None:
        """Start a check. Its verdict always comes from a later callback (never from inside
        ``start``: the engine starts waiting checks from verdicts and must not recurse)."""
        if spec.driver is not None:
            spec.driver.begin(self, check, spec)
            return
        started = time.monotonic()
        try:
            sock, err = open_stream(spec)
        except OSError as exc:
            failed = Result.down(describe_oserror("connecting", exc))
            self.loop.call_soon(self.finish, check, failed, CheckTiming(started=time.time()))
            return
        flight = _Flight(check, spec, sock, started)
        if err and err != errno.EINPROGRESS:
            self.flights[flight.fd] = flight
            self.loop.call_soon(self._connect_failed, flight, err)
            return
        # connected at once or not: registering reports the writable socket in a later callback
        self.watch(flight)

    def watch(self, flight: Any) -> None:
        """Serve a flight's socket (``flight.fd``) until it closes, and expire it at
        ``flight.deadline`` (a driver's flight too: it has ``spec`` and ``sock`` as ours)."""
        self.flights[flight.fd] = flight
        self.epoll.register(flight.fd, _EVENTS)
        queue = self.deadlines.get(flight.spec.timeout)
        if queue is None:
            queue = self.deadlines[flight.spec.timeout] = deque()
        while queue and queue[0].sock is None:  # finished ones need no deadline: let them go
            queue.popleft()
        queue.append(flight)
        if self.timer is None or flight.deadline < self.timer_at:
            self._arm(flight.deadline, time.monotonic())

    def forget(self, flight: Any) -> None:
        """Stop serving a driver's flight whose socket goes elsewhere (or is closed next)."""
        del self.flights[flight.fd]
        self.epoll.unregister(flight.fd)

    # -- events ---------------------------------------------------------------------------
    def _on_ready(self) -> None:
        flights = self.flights
        for fd, events in self.epoll.poll(0):
            flight = flights.get(fd)
            if flight is None:
                continue
            try:
                if type(flight) is not _Flight:
                    flight.ready(events)
                elif not flight.connected:
                    if events & select.EPOLLERR:
                        assert flight.sock is not None
                        err = flight.sock.getsockopt(_SOL_SOCKET, _SO_ERROR)
                        if err:
                            self._connect_failed(flight, err)
                            continue
                    self._connected(flight, events)
                elif flight.pending:
                    self._send(flight, events)
                else:
                    self._receive(flight)
            except Exception:  # a bug past the tester (a listener): keep serving the others
                log.exception("Fast check of %s failed", flight.spec.address)
                if type(flight) is not _Flight:
                    flight.fail("internal error")
                elif flight.sock is not None:
                    self._done(flight, Result.down("internal error"))

    def _connected(self, flight: _Flight, events: int) -> None:
        flight.connected = time.monotonic()
        exchange = flight.exchange
        if exchange.request:
            flight.pending = exchange.request
            self._send(flight, events)
        elif exchange.reply_size:
            if events & select.EPOLLIN:
                self._receive(flight)
        else:
            self._judge(flight, b"")

    def _connect_failed(self, flight: _Flight, err: int) -> None:
        reason = describe_oserror("connect", OSError(err, os.strerror(err)))
        quick = time.monotonic() - flight.started < 1.0
        self._done(flight, Result.down(reason), "rst" if quick else "arp")

    def _send(self, flight: _Flight, events: int) -> None:
        assert flight.sock is not None
        try:
            n = flight.sock.send(flight.pending)
        except BlockingIOError:
            return  # the next writable edge resumes
        except OSError as exc:
            self._done(flight, Result.down(describe_oserror("sending", exc)))
            return
        flight.pending = flight.pending[n:]
        if flight.pending:
            return
        flight.sent = len(flight.exchange.request)
        if not flight.exchange.reply_size:
            self._judge(flight, b"")
        elif events & select.EPOLLIN:  # edge-triggered: that edge will not come again
            self._receive(flight)

    def _receive(self, flight: _Flight) -> None:
        sock = flight.sock
        assert sock is not None
        exchange = flight.exchange
        while True:
            try:
                chunk = sock.recv(_CHUNK)
            except BlockingIOError:
                return
            except OSError as exc:
                step = f"waiting for {exchange.what}"
                self._done(flight, Result.down(describe_oserror(step, exc)))
                return
            if not chunk:
                got = f" after {flight.received} bytes" if flight.received else ""
                self._done(flight, Result.down(f"connection closed by the real{got} while "
                                               f"waiting for {exchange.what}"))
                return
            flight.received += len(chunk)
            flight.data += chunk
            if len(flight.data) >= exchange.reply_size:
                self._judge(flight, flight.data[:exchange.reply_size])
                return

    def _judge(self, flight: _Flight, reply: bytes) -> None:
        judge = flight.exchange.judge
        if judge is None:
            self._done(flight, _UP)
            return
        try:
            result = judge(reply)
        except ProbeError as exc:
            result = Result.down(str(exc) or "failed")
        except Exception as exc:
            result = Result.down(_tester_bug(flight.check.tester, exc))
        self._done(flight, result)

    # -- deadlines ------------------------------------------------------------------------
    def _arm(self, when: float, now: float) -> None:
        if self.timer is not None:
            self.timer.cancel()
        self.timer_at = when
        self.timer = self.loop.call_later(max(0.0, when - now), self._sweep)

    def _sweep(self) -> None:
        self.timer = None
        now = time.monotonic()
        soonest = 0.0
        for queue in list(self.deadlines.values()):  # expiring may start checks
            while queue:
                flight = queue[0]
                if flight.sock is not None:
                    if flight.deadline > now + 0.0005:
                        if not soonest or flight.deadline < soonest:
                            soonest = flight.deadline
                        break
                    self._expire(flight)
                queue.popleft()
        if soonest and (self.timer is None or soonest < self.timer_at):
            self._arm(soonest, now)

    def _expire(self, flight: Any) -> None:
        if type(flight) is not _Flight:
            flight.expire()
            return
        spec = flight.spec
        if not flight.connected:
            step, problem = "connecting", ("conn" if spec.port else None)
        elif flight.pending:
            step, problem = "sending", None
        else:
            step, problem = f"waiting for {flight.exchange.what}", None
        self._done(flight, Result.down(f"{spec.timeout_text} {step}"), problem)

    # -- the end of a check ---------------------------------------------------------------
    def _done(self, flight: _Flight, result: Result, problem: str | None = None) -> None:
        sock = flight.sock
        assert sock is not None
        flight.sock = None
        del self.flights[flight.fd]
        sock.close()  # also leaves the epoll set
        flight.data = flight.pending = b""
        check, flight.check = flight.check, None  # a finished flight may wait in a deadline
        self.finish(check, result, timing_of(flight, problem))  # queue: it keeps nothing alive

    def close(self) -> None:
        """Drop every check in flight (no verdicts) and stop watching."""
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        self.loop.remove_reader(self.epoll.fileno())
        for task in self.tasks:
            task.cancel()
        for flight in list(self.flights.values()):
            if type(flight) is not _Flight:
                flight.drop()  # its socket and check thread
            elif flight.sock is not None:
                flight.sock.close()
                flight.sock = None
        self.flights.clear()
        self.deadlines.clear()
        self.epoll.close()
