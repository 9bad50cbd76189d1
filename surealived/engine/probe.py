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
    Receive,
    ReceiveDatagram,
    Send,
    Sleep,
    Spawn,
    StartTls,
)

T = TypeVar("T")


class Connection:
    """A stream to the real (``tester_api.Connection``)."""

    __slots__ = ("stream",)

    def __init__(self, stream: Any) -> None:
        self.stream = stream  # the runner's Stream

    @property
    def bytes_sent(self) -> int:
        return int(self.stream.sent)

    @property
    def bytes_received(self) -> int:
        return int(self.stream.received)

    async def send(self, data: bytes) -> None:
        await Send(self.stream, data)

    async def receive_exactly(self, n: int, *, what: str = "") -> bytes:
        piece: bytes = await Receive(self.stream, EXACTLY, n, what or f"{n} bytes")
        return piece

    async def receive_line(self, limit: int = 65536, *, what: str = "") -> bytes:
        piece: bytes | None = self.stream.buffer.maybe_extract_line(limit)  # already here
        if piece is None:
            piece = await Receive(self.stream, LINE, limit, what or "a line")
        return piece

    async def receive_until(self, delimiter: bytes, limit: int = 65536, *,
                            what: str = "") -> bytes:
        piece: bytes = await Receive(self.stream, UNTIL, limit, what or repr(delimiter),
                                     delimiter=delimiter)
        return piece

    async def receive_some(self, limit: int = 65536, *, what: str = "") -> bytes:
        piece: bytes = await Receive(self.stream, SOME, limit, what or "data")
        return piece

    async def receive_all(self, limit: int = 1 << 20, *, what: str = "") -> bytes:
        piece: bytes = await Receive(self.stream, ALL, limit, what or "the end of the reply")
        return piece

    async def start_tls(self, sni: str | None = None, verify: bool = False) -> None:
        await StartTls(self.stream, sni, verify)

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

    async def send(self, data: bytes) -> None:
        await Send(self.dgram, data)

    async def receive(self, limit: int = 65536, *, what: str = "") -> bytes:
        data: bytes = await ReceiveDatagram(self.dgram, limit, what or "a reply")
        return data

    def close(self) -> None:
        self.dgram.close()


class CheckProbe:
    """What one check gets (``tester_api.Probe``): the target, the settings, connections."""

    __slots__ = ("flight", "settings", "step", "target")

    def __init__(self, flight: Any, target: Target, settings: Mapping[str, Any]) -> None:
        self.flight = flight  # the runner's Flight: its transcript
        self.target = target
        self.settings = settings
        self.step = "starting"

    async def connect(self) -> Connection:
        """A TCP connection to the real's test port, in TLS when the tester says SSL="1"."""
        target = self.target
        if target.ssl:
            sni = target.sni or self.settings.get("host") or None
            stream = await Connect(target.port, None, 0, True, sni, target.ssl_verify)
        else:
            stream = await Connect(target.port)
        return Connection(stream)

    async def datagram(self) -> Datagram:
        """A UDP socket connected to the real's test port."""
        return Datagram(await OpenDatagram(self.target.port))

    async def sleep(self, seconds: float) -> None:
        await Sleep(seconds)

    async def spawn(self, awaitable: Awaitable[T]) -> T:
        """Run ``awaitable`` as a task of the event loop (work the probe does not cover, such
        as a program of the exec tester); it is cancelled at the check's deadline, and
        ``step`` names it in a timeout's reason."""
        result: T = await Spawn(awaitable, self.step)
        return result

    def note(self, text: str) -> None:
        transcript = self.flight.transcript
        if transcript is not None:
            transcript.note(text)
