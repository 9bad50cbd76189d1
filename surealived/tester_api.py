"""The tester API: everything a tester module imports, and nothing else.

A tester is one class: the XML attributes it takes (``attributes``), the transport it needs, and
one ``async def check(self, probe) -> Result``. The engine owns scheduling, deadlines, retries,
TLS, source addresses, statistics and the transcript; a tester only talks to the real through
the ``Probe`` it is given and returns a verdict. Every method of the probe and its connections
is served by the engine's one check runner, for built-in and third-party testers alike: a
check awaits those (or ``probe.spawn`` for other work) and nothing else. Raising
``ProbeError`` (or letting an ``OSError`` from the probe escape) means "down" with that reason;
any other exception is a bug in the tester, logged with its traceback, and the check counts as
failed.

Built-in testers live in ``builtin_testers/``; third-party ones register through the entry point
group ``surealived.testers`` or are ``*.py`` files in surealived.cfg ``modules_path``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol, TypeVar

from .errors import SureAliveError

T = TypeVar("T")

__all__ = [
    "Attr",
    "Connection",
    "Datagram",
    "Probe",
    "ProbeError",
    "Result",
    "Target",
    "Tester",
]


@dataclass(frozen=True)
class Attr:
    """One XML attribute a tester accepts on ``<tester>`` (and, overriding it, on ``<real>``).

    ``kind`` is one of: str, name, addr, port, int, uint, bool, seconds, choice, path, exec,
    threshold, regex, statuslist. ``limit`` is the maximum length of a string or the maximum of a
    number; ``minimum`` the minimum of a number. ``default`` is used when the attribute is absent
    and not ``mandatory``.
    """

    name: str
    kind: str = "str"
    default: Any = None
    mandatory: bool = False
    limit: int | None = None
    minimum: int | float = 0
    choices: tuple[str, ...] = ()
    per_real: bool = True
    help: str = ""


@dataclass(frozen=True, slots=True)
class Result:
    """A verdict: up or down with a reason; an up verdict may carry a weight (or a percentage)."""

    ok: bool
    reason: str = ""
    weight: int | None = None
    percent: bool = False

    @classmethod
    def up(cls, reason: str = "") -> Result:
        return cls(True, reason)

    @classmethod
    def down(cls, reason: str) -> Result:
        return cls(False, reason)

    @classmethod
    def with_weight(cls, weight: int, *, percent: bool = False, reason: str = "") -> Result:
        return cls(True, reason, weight, percent)


class ProbeError(SureAliveError):
    """A check failed in an expected way; the message is the reason shown to operators."""


@dataclass(frozen=True, slots=True)
class Target:
    """What one check is about: the real, its virtual, and the engine's settings for it."""

    addr: str
    port: int  # the tested port (testport)
    rname: str
    rport: int  # the IPVS port
    vname: str
    vaddr: str
    vport: int
    vproto: str
    vfwmark: int
    timeout: float
    ssl: bool = False
    sni: str | None = None
    ssl_verify: bool = False
    ssl_ca: str | None = None
    bindaddr: str | None = None


class Connection(Protocol):
    """A stream to the real, bounded by the check's deadline (the engine's probe layer)."""

    bytes_sent: int
    bytes_received: int

    # ``what`` names the awaited piece for a timeout reason ("timeout after 5s waiting for the
    # status line"). receive_line strips the line end; receive_until consumes the delimiter and
    # returns what precedes it; receive_some returns b"" at end of stream; receive_all reads
    # until end of stream and fails past ``limit``.
    def send(self, data: bytes | bytearray | memoryview) -> Awaitable[Any]: ...
    def receive_exactly(self, n: int, *, what: str = "") -> Awaitable[bytes]: ...
    def receive_line(self, limit: int = 65536, *, what: str = "") -> Awaitable[bytes]: ...
    def receive_until(self, delimiter: bytes, limit: int = 65536, *,
                      what: str = "") -> Awaitable[bytes]: ...
    def receive_some(self, limit: int = 65536, *, what: str = "") -> Awaitable[bytes]: ...
    def receive_all(self, limit: int = 1 << 20, *, what: str = "") -> Awaitable[bytes]: ...
    def start_tls(self, sni: str | None = None, verify: bool = False) -> Awaitable[Any]: ...
    def close(self) -> None: ...


class Datagram(Protocol):
    """A connected UDP socket to the real."""

    def send(self, data: bytes | bytearray | memoryview) -> Awaitable[Any]: ...
    def receive(self, limit: int = 65536, *, what: str = "") -> Awaitable[bytes]: ...
    def close(self) -> None: ...


class Probe(Protocol):
    """What the engine hands a tester for one check."""

    target: Target
    settings: Mapping[str, Any]
    step: str  # what the check is doing now, for a timeout reason ("waiting for the reply")

    # every method that does I/O returns an awaitable: ``await probe.connect()``
    # hold_ack: the handshake's last ACK waits for the first bytes sent (a tester that speaks
    # first); closing before sending any resets the connection before the real's application
    # sees it: a half-open check
    def connect(self, *, hold_ack: bool = False) -> Awaitable[Connection]: ...
    def datagram(self) -> Awaitable[Datagram]: ...
    def sleep(self, seconds: float) -> Awaitable[Any]: ...
    # run work the probe does not cover (a subprocess, say) as a task of the event loop; it is
    # cancelled at the check's deadline, and ``step`` names it in the timeout's reason
    def spawn(self, awaitable: Awaitable[T]) -> Awaitable[T]: ...
    def note(self, text: str) -> None: ...


class Tester:
    """Base class of testers. Subclasses set ``name``, ``attributes`` and implement ``check``.

    ``transport``: ``tcp`` (the engine may wrap the stream in TLS when ``SSL="1"``), ``udp``,
    ``exec`` or ``none``. One instance is made per distinct settings, so per-settings work (such
    as building a request) belongs in ``__init__``.
    """

    name: ClassVar[str] = ""
    aliases: ClassVar[tuple[str, ...]] = ()
    transport: ClassVar[str] = "tcp"
    attributes: ClassVar[tuple[Attr, ...]] = ()
    # the same real with the same settings under several virtuals is checked once for all of
    # them, unless the check depends on the virtual (a script reads ``t.vname``)
    shared: ClassVar[bool] = True
    # services the daemon owns that the tester uses, by name (``services.Services``: today
    # ``lua_scripts``): the registry gives each as a class attribute of the class the engine
    # gets, the daemon's own, so ``self.lua_scripts`` and ``cls.lua_scripts`` in ``validate``
    uses: ClassVar[tuple[str, ...]] = ()

    def __init__(self, settings: Mapping[str, Any]) -> None:
        self.settings = settings

    @classmethod
    def validate(cls, settings: Mapping[str, Any]) -> list[tuple[str, str]]:
        """Offline checks run by ``surealived -t``: ``[(attribute, problem), ...]``."""
        return []

    async def check(self, probe: Probe) -> Result:
        raise NotImplementedError
