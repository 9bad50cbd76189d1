"""What a tester talks to the real through: the probe of one check and its connections.

Strategy: these are facades with no socket calls. Every method that does I/O awaits a request
(``engine/requests.py``), which the runner (``engine/flight.py``) serves; the methods only choose
the request and its words ("waiting for the status line"). A request that fails raises an
``IOFailure`` (a ``ProbeError``) in the tester, with the reason an operator reads.
"""

from __future__ import annotations

from collections.abc import Awaitable, Mapping
from typing import Any, TypeVar

from ..tester_api import Target
from .requests import (
    ALL,
    EXACTLY,
    LINE,
    SOME,
    UNTIL,
    Connect,
    OpenDatagram,
    Ready,
    Receive,
    ReceiveDatagram,
    Send,
    Sleep,
    Spawn,
    StartTls,
)
from .transcript import Transcript

T = TypeVar("T")
BytesLike = bytes | bytearray | memoryview


def as_bytes(data: BytesLike) -> bytes:
    """What a tester sends, as bytes (a copy of a bytearray or memoryview, so that changing it
    later changes nothing sent); a str or a number is the tester's TypeError."""
    return data if type(data) is bytes else memoryview(data).tobytes()


class Connection:
    """A stream to the real (``tester_api.Connection``). Its I/O methods return the request
    itself: awaiting it is the I/O, with no coroutine of its own in between."""

    __slots__ = ("stream",)

    def __init__(self, stream: Any) -> None:
        self.stream = stream  # the runner's Stream

    @property
    def bytes_sent(self) -> int:
        return int(self.stream.sent)

    @property
    def bytes_received(self) -> int:
        return int(self.stream.received)

    def send(self, data: BytesLike) -> Awaitable[Any]:
        return Send(self.stream, as_bytes(data))

    # a piece the buffer holds already is answered here (its limit errors too)
    def receive_exactly(self, n: int, *, what: str = "") -> Awaitable[bytes]:
        piece = self.stream.buffer.maybe_extract_exactly(n)
        if piece is not None:
            return Ready(piece)
        return Receive(self.stream, EXACTLY, n, what or f"{n} bytes")

    def receive_line(self, limit: int = 65536, *, what: str = "") -> Awaitable[bytes]:
        piece = self.stream.buffer.maybe_extract_line(limit)
        if piece is not None:
            return Ready(piece)
        return Receive(self.stream, LINE, limit, what or "a line")

    def receive_until(self, delimiter: bytes, limit: int = 65536, *,
                      what: str = "") -> Awaitable[bytes]:
        piece = self.stream.buffer.maybe_extract_until(delimiter, limit)
        if piece is not None:
            return Ready(piece)
        return Receive(self.stream, UNTIL, limit, what or repr(delimiter), delimiter=delimiter)

    def receive_some(self, limit: int = 65536, *, what: str = "") -> Awaitable[bytes]:
        return Receive(self.stream, SOME, limit, what or "data")

    def receive_all(self, limit: int = 1 << 20, *, what: str = "") -> Awaitable[bytes]:
        return Receive(self.stream, ALL, limit, what or "the end of the reply")

    def start_tls(self, sni: str | None = None, verify: bool = False) -> Awaitable[Any]:
        return StartTls(self.stream, sni, verify)

    def close(self) -> None:
        self.stream.close()


class Datagram:
    """A connected UDP socket to the real (``tester_api.Datagram``)."""

    __slots__ = ("dgram",)

    def __init__(self, dgram: Any) -> None:
        self.dgram = dgram  # the runner's Dgram

    @property
    def bytes_sent(self) -> int:
        return int(self.dgram.sent)

    @property
    def bytes_received(self) -> int:
        return int(self.dgram.received)

    def send(self, data: BytesLike) -> Awaitable[Any]:
        return Send(self.dgram, as_bytes(data))

    def receive(self, limit: int = 65536, *, what: str = "") -> Awaitable[bytes]:
        return ReceiveDatagram(self.dgram, limit, what or "a reply")

    def close(self) -> None:
        self.dgram.close()


class CheckProbe:
    """What one check gets (``tester_api.Probe``): the target, the settings, connections.
    The runner's ``Flight`` is one (a check's probe and its state are one object)."""

    __slots__ = ("settings", "step", "target", "transcript")

    def __init__(self, target: Target, settings: Mapping[str, Any],
                 transcript: Transcript | None = None) -> None:
        self.target = target
        self.settings = settings
        self.transcript = transcript
        self.step = "starting"

    def connect(self, *, hold_ack: bool = False) -> Awaitable[Connection]:
        """A TCP connection to the real's test port, in TLS when the tester says SSL="1".
        ``hold_ack``: the handshake's last ACK waits for the first bytes sent (for a tester
        that speaks first), and closing before sending any resets the connection before the
        real's application sees it (a half-open check)."""
        target = self.target
        if target.ssl:
            sni = target.sni or self.settings.get("host") or None
            return Connect(target.port, None, 0, True, sni, target.ssl_verify, Connection,
                           hold_ack)
        return Connect(target.port, reply=Connection, hold_ack=hold_ack)

    def datagram(self) -> Awaitable[Datagram]:
        """A UDP socket connected to the real's test port."""
        return OpenDatagram(self.target.port, reply=Datagram)

    def sleep(self, seconds: float) -> Awaitable[Any]:
        return Sleep(seconds)

    def spawn(self, awaitable: Awaitable[T]) -> Awaitable[T]:
        """Run ``awaitable`` as a task of the event loop (work the probe does not cover, such
        as a program of the exec tester); it is cancelled at the check's deadline, and
        ``step`` names it in a timeout's reason."""
        return Spawn(awaitable, self.step)

    def note(self, text: str) -> None:
        transcript = self.transcript
        if transcript is not None:
            transcript.note(text)
