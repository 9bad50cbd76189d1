"""The request vocabulary: everything a check can ask the runner to do, one class each.

A check (a tester's ``check`` coroutine, or a Lua script through its bridge) is a sequence of
these requests. Each is awaitable: ``await Send(stream, data)`` yields the request itself to the
runner (``engine/flight.py``), which serves it on its epoll set and resumes the coroutine with the
reply (``coro.send``), or with an ``IOFailure`` (``coro.throw``). No task, future or timeout scope
is made per check. Requests are plain slotted values; the runner's state is in its ``Stream`` and
``Dgram`` objects, which a request names but does not own.

``ms``: a socket timeout of the request's own (a Lua script's ``settimeout``), 0 for none; the
check's deadline bounds every request anyway. ``what`` names the awaited piece in reasons
("timeout after 5s waiting for the status line").
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Generator
from typing import Any

# receive modes
EXACTLY, LINE, UNTIL, SOME, ALL = range(5)
# the transcript tag of what each mode reads, as the original's debugcomm wrote them
READ_TAGS = ("sd_read <-", "sd_read <-", "sd_read <-", "sd_read_av <-", "sd_eof <-")


class Request:
    """Base of the requests: awaiting one hands it to the runner."""

    __slots__ = ()
    ms: float = 0  # a request with a timeout of its own has the slot

    def __await__(self) -> Generator[Any, Any, Any]:
        return (yield self)

    def step(self) -> str:
        """What the check is doing while this request waits (for a timeout's reason)."""
        raise NotImplementedError


class Ready:
    """An awaitable already answered (a piece the receive buffer held): no trip to the
    runner."""

    __slots__ = ("value",)

    def __init__(self, value: Any) -> None:
        self.value = value

    def __await__(self) -> Generator[Any, Any, Any]:
        return self.value
        yield  # a generator that yields nothing


class Connect(Request):
    """A TCP connection to the real's address on ``port`` (from ``bind`` or the target's
    ``bindaddr``), then TLS when ``tls``; the reply is the runner's ``Stream``, or what
    ``reply`` makes of it (the tester's ``Connection``). ``hold_ack``: see
    ``sockets.open_stream``."""

    __slots__ = ("bind", "hold_ack", "ms", "port", "reply", "sni", "tls", "verify")

    def __init__(self, port: int, bind: str | None = None, ms: float = 0, tls: bool = False,
                 sni: str | None = None, verify: bool = False,
                 reply: Callable[[Any], Any] | None = None, hold_ack: bool = False) -> None:
        self.hold_ack = hold_ack
        self.port = port
        self.bind = bind
        self.ms = ms
        self.tls = tls
        self.sni = sni
        self.verify = verify
        self.reply = reply

    def __await__(self) -> Generator[Any, Any, Any]:
        stream = yield self
        return stream if self.reply is None else self.reply(stream)

    def step(self) -> str:
        return "connecting"


class StartTls(Request):
    """A TLS handshake on a connected stream (SNI ``sni``; the CA file is the target's),
    offering ``session`` (an ``ssl.SSLSession`` of an earlier handshake) for resumption."""

    __slots__ = ("ms", "session", "sni", "stream", "verify")

    def __init__(self, stream: Any, sni: str | None, verify: bool, ms: float = 0,
                 session: Any = None) -> None:
        self.stream = stream
        self.sni = sni
        self.verify = verify
        self.ms = ms
        self.session = session

    def step(self) -> str:
        return "TLS handshake"


class Send(Request):
    """All of ``data`` on a stream or datagram socket; the reply is the byte count."""

    __slots__ = ("data", "ms", "stream")

    def __init__(self, stream: Any, data: bytes, ms: float = 0) -> None:
        self.stream = stream
        self.data = data
        self.ms = ms

    def step(self) -> str:
        return "sending"


class Receive(Request):
    """A piece of a stream: ``EXACTLY`` ``size`` bytes, a ``LINE`` (without its end) of at most
    ``size``, the bytes ``UNTIL`` ``delimiter`` (consumed, not returned) within ``size``,
    ``SOME`` of what is there (b"" at the end of the stream), or ``ALL`` to the end (at most
    ``size``)."""

    __slots__ = ("delimiter", "mode", "ms", "size", "stream", "what")

    def __init__(self, stream: Any, mode: int, size: int, what: str, ms: float = 0,
                 delimiter: bytes = b"") -> None:
        self.stream = stream
        self.mode = mode
        self.size = size
        self.what = what
        self.ms = ms
        self.delimiter = delimiter

    def step(self) -> str:
        return f"waiting for {self.what}"


class OpenDatagram(Request):
    """A UDP socket connected to the real's address on ``port``; the reply is a ``Dgram``, or
    what ``reply`` makes of it."""

    __slots__ = ("bind", "port", "reply")

    def __init__(self, port: int, bind: str | None = None,
                 reply: Callable[[Any], Any] | None = None) -> None:
        self.port = port
        self.bind = bind
        self.reply = reply

    def __await__(self) -> Generator[Any, Any, Any]:
        dgram = yield self
        return dgram if self.reply is None else self.reply(dgram)

    def step(self) -> str:
        return "connecting"


class ReceiveDatagram(Request):
    """One datagram of at most ``size`` bytes."""

    __slots__ = ("ms", "size", "stream", "what")

    def __init__(self, stream: Any, size: int, what: str, ms: float = 0) -> None:
        self.stream = stream
        self.size = size
        self.what = what
        self.ms = ms

    def step(self) -> str:
        return f"waiting for {self.what}"


class Reuse(Request):
    """An idle connection of the runner's keepalive pool (``engine/pool.py``) filed under
    ``key``, now the check's: the reply is ``(stream, times reused)``, or None when there is
    none."""

    __slots__ = ("key",)

    def __init__(self, key: tuple[Any, ...]) -> None:
        self.key = key

    def step(self) -> str:
        return "connecting"


class Park(Request):
    """A stream of the check handed to the keepalive pool under ``key``, idle for at most
    ``seconds``, in a pool of at most ``size`` for the key; ``reused`` and ``tls`` are kept
    with it for the check that takes it up. The reply is 1; an ``IOFailure`` when the
    connection has unread data (``connection in dubious state``, the stream stays the
    check's) or is closed."""

    __slots__ = ("key", "reused", "seconds", "size", "stream", "tls")

    def __init__(self, stream: Any, key: tuple[Any, ...], seconds: float, size: int,
                 reused: int = 0, tls: Any = None) -> None:
        self.stream = stream
        self.key = key
        self.seconds = seconds
        self.size = size
        self.reused = reused
        self.tls = tls

    def step(self) -> str:
        return "pooling the connection"


class Sleep(Request):
    """Nothing for ``seconds``."""

    __slots__ = ("seconds", "what")

    def __init__(self, seconds: float, what: str = "sleeping") -> None:
        self.seconds = seconds
        self.what = what

    def step(self) -> str:
        return self.what


class Spawn(Request):
    """Work the other requests do not cover (a program run by ``exec``), run as a task of the
    event loop; the reply is its result, its exception is raised in the check, and it is
    cancelled at the check's deadline."""

    __slots__ = ("awaitable", "what")

    def __init__(self, awaitable: Awaitable[Any], what: str) -> None:
        self.awaitable = awaitable
        self.what = what

    def step(self) -> str:
        return self.what
