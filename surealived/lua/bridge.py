"""The bridge: one Lua check, its thread's requests turned into the runner's requests.

Strategy: a check thread (``worker`` of the sandbox) runs one check after another; idle threads
wait in ``Runtime.idle`` (one that raised or was abandoned at its deadline is never reused).
Each time the check needs I/O, the thread yields a request ``code, socket id, arguments`` (plain
values, a fixed shape per code; the codes are ``codes.py``'s) and ``run_script``, which is
``LuaTester.check``, awaits the matching runner request like any Python tester and resumes the
thread with the reply: data, a count, ``true``, or ``nil, err[, partial]``. A finished check
yields ``DONE, status, reason, weight``. Errors are short and lowercase as OpenResty's
(``timeout``, ``closed``, ``connection refused``: the runner's ``IOFailure.word``). A read
timeout leaves the socket usable and hands back what had arrived as its partial; every other
error closes it. ``setkeepalive`` parks a connection in the runner's keepalive pool
(``engine/pool.py``) under a key of the script, its params and the real, which ``connect``
looks in first once the script has parked any.

Sockets reach the real under test only: ``connect`` accepts the real's address (any port), so a
script cannot be used to reach other hosts. The test port, from the tester's own source address,
is in TLS when the tester says ``SSL="1"``.
"""

from __future__ import annotations

import ipaddress
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from ..engine.requests import (
    ALL,
    EXACTLY,
    LINE,
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
    StartTls,
)
from ..engine.sockets import IOFailure, get_option, handshake_word, set_option
from ..logsetup import LEVELS
from ..tester_api import Probe, Result, Target
from .codes import (
    BIND,
    CLOSE,
    CONNECT,
    DONE,
    KEEPALIVE,
    LOG,
    MAX_SOCKETS,
    NOW,
    OPTION,
    PEER,
    RECV_ALL,
    RECV_ANY,
    RECV_DGRAM,
    RECV_EXACTLY,
    RECV_LINE,
    RECV_UNTIL,
    REQUIRE,
    REUSED,
    SEND,
    SLEEP,
    TLS,
)
from .crossing import ERROR_MAX, LOG_MAX, REASON_MAX, clean, first_line
from .runtime import MEMORY, LuaError, LuaMemoryError
from .scripts import SHARED_LOOK, Script

log = logging.getLogger("surealived")
monotonic = time.monotonic

LINE_LIMIT = 65536
ALL_LIMIT = 1 << 20
EXACT_LIMIT = 16 << 20
UNTIL_LIMIT = 1 << 20
IDLE_THREADS = 256  # idle check threads kept per runtime, for the next checks
ARGS_CACHE = 100_000  # targets whose check arguments a tester keeps
KEEPALIVE_IDLE = 60.0  # seconds a pooled connection idles without a timeout (OpenResty's)
POOL_SIZE = 4  # connections a pool of one key keeps without a size (OpenResty: 30)
POOL_SIZE_MAX = 16  # ... at most (larger sizes are taken as this)
TLS_SESSIONS = 256  # TLS sessions a script keeps for sslhandshake(session)


class SockError(Exception):
    """An error of the bridge's own handed back to Lua as ``nil, err``."""

    def __init__(self, err: str, keep: bool = False) -> None:
        super().__init__(err)
        self.err = err
        self.keep = keep  # the socket stays usable


TlsSetup = tuple[str | None, bool, str | None]  # server name, verified, CA file


class Slot:
    """One open Lua socket of a check."""

    __slots__ = ("connect_tls", "dgram", "key", "pool_size", "reused", "stream", "tls")

    def __init__(self) -> None:
        self.stream: Any = None  # the runner's Stream
        self.dgram: Any = None  # the runner's Dgram
        self.tls: TlsSetup | None = None  # how TLS was set up on the stream
        self.connect_tls = False  # by connect itself (the test port with SSL="1")
        self.reused = 0  # times the connection came from the keepalive pool
        self.key: tuple[Any, ...] = ()  # where it goes: port, source, TLS, pool name
        self.pool_size = 0  # connect's pool_size option

    def close(self) -> None:
        if self.stream is not None:
            self.stream.close()
            self.stream = None
        if self.dgram is not None:
            self.dgram.close()
            self.dgram = None


def _normal_addr(text: str) -> str | None:
    try:
        return ipaddress.ip_address(text).compressed
    except ValueError:
        return None


class Session:
    """The Python side of one Lua check: its open sockets, and a method per request code.

    Every method takes the whole request tuple (``code, socket id, arguments``) and returns the
    reply; errors are raised (``SockError``, ``IOFailure``) and turned into ``nil, err
    [, partial]`` by ``run_script``. A socket that closes leaves ``slots``, so its length is
    the number of open sockets."""

    __slots__ = ("probe", "script", "slots", "target")

    def __init__(self, script: Script, probe: Probe) -> None:
        self.script = script
        self.probe = probe
        self.target = probe.target
        self.slots: dict[int, Slot] = {}

    def failed(self, request: tuple[Any, ...], err: str, partial: bytes | None,
               keep: bool) -> tuple[None, bytes, bytes | None]:
        """The reply to a failed request; the socket is closed unless ``keep``. A stream read
        that timed out consumes what had arrived, as OpenResty's: it is the ``partial``."""
        code = request[0]
        if code in SOCKET_CODES:
            if not keep:
                slot = self.slots.pop(request[1], None)
                if slot is not None:
                    slot.close()
            elif code in STREAM_READS and err == "timeout" and partial is None:
                slot = self.slots.get(request[1])
                if slot is not None and slot.stream is not None:
                    partial = slot.stream.buffer.extract_rest()
        return None, err.encode(), partial

    def close(self) -> None:
        for slot in self.slots.values():
            slot.close()

    # -- helpers ---------------------------------------------------------------------------
    def new_slot(self, sid: Any) -> Slot:
        """A slot for socket ``sid`` (its earlier connection closed), within the open sockets'
        limit."""
        if type(sid) is not int or sid < 1:  # a script set sock._id
            raise SockError("not a socket of this check")
        old = self.slots.pop(sid, None)
        if old is not None:
            old.close()
        if len(self.slots) >= MAX_SOCKETS:
            raise SockError(f"too many sockets (at most {MAX_SOCKETS} open per check)")
        return Slot()

    def stream(self, sid: int) -> Any:
        slot = self.slots.get(sid)
        if slot is None or slot.stream is None:
            raise SockError("closed")
        return slot.stream

    def check_host(self, host: bytes | bool) -> None:
        """Refuse any host but the real's (``false`` from Lua: the real's address itself)."""
        if host is False:
            return
        assert isinstance(host, bytes)
        text = host.decode("utf-8", "replace")
        if text != self.target.addr and _normal_addr(text) != self.target.addr:
            raise SockError(f"only the real under test ({self.target.addr}) may be reached")

    def source(self, bind: bytes | bool) -> str | None:
        """The source address of ``sock:bind`` (checked there), or None."""
        return _normal_addr(bind.decode("utf-8", "replace")) if isinstance(bind, bytes) else None

    def pool_key(self, slot: Slot) -> tuple[Any, ...]:
        """The connection's key in the keepalive pool: the script and its params, the real,
        and where the connection goes (``slot.key``)."""
        return (self.script.path, self.probe.settings.get("params", ""), self.target.addr,
                *slot.key)

    def test_port(self, port: int, source: str | None) -> bool:
        """The tester's own port and source address (TLS with SSL="1")."""
        return port == self.target.port and source in (None, self.target.bindaddr)

    # -- requests --------------------------------------------------------------------------
    async def bind(self, request: tuple[Any, ...]) -> Any:
        addr = request[2]
        text = _normal_addr(addr.decode("utf-8", "replace"))
        if text is None:
            raise SockError(f"bad address {clean(addr, 64)!r}")
        if (":" in text) != (":" in self.target.addr):
            raise SockError("address family differs from the real's")
        return 1

    async def connect(self, request: tuple[Any, ...]) -> Any:
        _, sid, host, port, ms, bind, pool, pool_size = request
        self.check_host(host)
        slot = self.new_slot(sid)
        target = self.target
        source = self.source(bind)
        tls: TlsSetup | None = None
        if self.test_port(port, source) and target.ssl:
            verify = target.ssl_verify
            tls = (target.sni or self.probe.settings.get("host") or None, verify,
                   target.ssl_ca if verify else None)
        script = self.script
        slot.key = (port, source or target.bindaddr or None, tls, pool or None)
        slot.pool_size = pool_size or 0
        slot.connect_tls = tls is not None
        if script.pooled:
            pooled = await Reuse(self.pool_key(slot))
            if pooled is not None:
                slot.stream, slot.reused, slot.tls = pooled
                self.slots[sid] = slot
                return 1
        if tls is not None:
            slot.stream = await Connect(port, None, ms or 0, True, tls[0], tls[1])
        else:
            slot.stream = await Connect(port, source, ms or 0)
        slot.tls = tls
        self.slots[sid] = slot
        return 1

    async def peer(self, request: tuple[Any, ...]) -> Any:
        _, sid, host, port, bind = request
        self.check_host(host)
        slot = self.new_slot(sid)
        source = self.source(bind)
        slot.dgram = await OpenDatagram(port, None if self.test_port(port, source) else source)
        self.slots[sid] = slot
        return 1

    async def tls(self, request: tuple[Any, ...]) -> Any:
        _, sid, sni, verify, ms, offered = request
        slot = self.slots.get(sid)
        if slot is None or slot.stream is None:
            raise SockError("closed")
        target = self.target
        name = sni.decode("utf-8", "replace") if sni else target.sni
        setup = (name, bool(verify), target.ssl_ca if verify else None)
        server = (target.addr, slot.stream.port, setup)
        sessions = self.script.tls_sessions
        if slot.tls is None:
            session = sessions.get(server) if offered else None
            try:
                await StartTls(slot.stream, name, setup[1], ms or 0, session)
            except IOFailure as exc:
                self.slots.pop(sid, None)
                slot.close()
                raise SockError(handshake_word(exc.word)) from None
            slot.tls = setup
            tls = slot.stream.tls
            if tls is not None and tls.session is not None:
                if len(sessions) >= TLS_SESSIONS:
                    sessions.clear()
                sessions[server] = tls.session
        elif slot.reused and not slot.connect_tls and slot.tls != setup:
            # a pooled connection whose TLS another check set up otherwise: never taken as
            # verified for this name
            self.slots.pop(sid, None)
            slot.close()
            raise SockError("handshake failed: the pooled connection is in TLS for another "
                            "server name or verification")
        return True

    # send, receive(n) and receive("*l") on a stream are served in run_script's loop; these
    # are the other cases
    async def send(self, request: tuple[Any, ...]) -> Any:
        _, sid, data, ms = request
        slot = self.slots.get(sid)
        if slot is None or slot.dgram is None:
            raise SockError("closed")
        await Send(slot.dgram, data, ms or 0)
        return 1  # a datagram: 1, as OpenResty's

    async def receive_exactly(self, request: tuple[Any, ...]) -> Any:
        self.stream(request[1])
        raise SockError(f"size too large (at most {EXACT_LIMIT})", keep=True)

    async def receive_line(self, request: tuple[Any, ...]) -> Any:
        raise SockError("closed")

    async def receive_all(self, request: tuple[Any, ...]) -> Any:
        _, sid, _, ms = request
        return await Receive(self.stream(sid), ALL, ALL_LIMIT, "the end of the reply", ms or 0)

    async def receive_any(self, request: tuple[Any, ...]) -> Any:
        _, sid, n, ms = request
        data = await Receive(self.stream(sid), SOME, min(int(n), EXACT_LIMIT), "data", ms or 0)
        if not data:
            raise SockError("closed")
        return data

    async def receive_until(self, request: tuple[Any, ...]) -> Any:
        _, sid, pattern, ms = request
        return await Receive(self.stream(sid), UNTIL, UNTIL_LIMIT, repr(pattern), ms or 0,
                             pattern)

    async def receive_datagram(self, request: tuple[Any, ...]) -> Any:
        _, sid, n, ms = request
        slot = self.slots.get(sid)
        if slot is None or slot.dgram is None:
            raise SockError("closed")
        return await ReceiveDatagram(slot.dgram, min(int(n), 65535), "a reply", ms or 0)

    async def close_slot(self, request: tuple[Any, ...]) -> Any:
        slot = self.slots.pop(request[1], None)
        if slot is None:
            raise SockError("closed")
        slot.close()
        return 1

    async def keepalive(self, request: tuple[Any, ...]) -> Any:
        _, sid, ms, size = request
        slot = self.slots.get(sid)
        if slot is None or slot.stream is None:
            raise SockError("closed")
        seconds = ms / 1000 if ms else KEEPALIVE_IDLE
        size = min(int(size or slot.pool_size or POOL_SIZE), POOL_SIZE_MAX)
        await Park(slot.stream, self.pool_key(slot), seconds, size, slot.reused, slot.tls)
        del self.slots[sid]  # the pool's now
        self.script.pooled = True
        return 1

    async def reused(self, request: tuple[Any, ...]) -> Any:
        slot = self.slots.get(request[1])
        if slot is None or slot.stream is None:
            raise SockError("closed")
        return slot.reused

    async def option(self, request: tuple[Any, ...]) -> Any:
        _, sid, name, value = request
        slot = self.slots.get(sid)
        sock = None if slot is None or slot.stream is None else slot.stream.sock
        if sock is None:
            raise SockError("closed")
        text = name.decode("utf-8", "replace")
        try:
            if value is False:
                return get_option(sock, text)
            set_option(sock, text, value)
        except ValueError as exc:
            raise SockError(str(exc), keep=True) from None
        return True

    async def sleep(self, request: tuple[Any, ...]) -> Any:
        await Sleep(request[2] / 1000, "in sd.sleep()")
        return 1

    async def now(self, request: tuple[Any, ...]) -> Any:
        return time.time()

    async def log(self, request: tuple[Any, ...]) -> Any:
        _, level, message = request
        log_line(self.script, self.target, level, message, self.probe)
        return None

    async def require(self, request: tuple[Any, ...]) -> Any:
        return self.script.find_module(request[1])  # a module's file: no I/O to wait for


def log_line(script: Script, target: Target, level: bytes, message: bytes,
             probe: Probe | None = None) -> None:
    """A line of ``sd.log``/``print`` in the log, within the script's rate (and in the probe's
    transcript, which is bounded on its own), cut and escaped (crossing.py)."""
    text = clean(message, LOG_MAX)
    name = level.decode()
    number = LEVELS.get(name, logging.DEBUG)
    # lines below the log level cost the script's rate nothing
    if log.isEnabledFor(number) and script.may_log():
        log.log(number, "lua %s [%s %s]: %s", script.name, target.rname, target.addr, text)
    if probe is not None:
        probe.note(f"lua {name}: {text}")


OPS: dict[int, Callable[[Session, tuple[Any, ...]], Awaitable[Any]]] = {
    CONNECT: Session.connect, TLS: Session.tls, SEND: Session.send, CLOSE: Session.close_slot,
    BIND: Session.bind, PEER: Session.peer, RECV_EXACTLY: Session.receive_exactly,
    RECV_LINE: Session.receive_line, RECV_ALL: Session.receive_all,
    RECV_ANY: Session.receive_any, RECV_UNTIL: Session.receive_until,
    RECV_DGRAM: Session.receive_datagram, SLEEP: Session.sleep, NOW: Session.now,
    LOG: Session.log, KEEPALIVE: Session.keepalive, REUSED: Session.reused,
    OPTION: Session.option, REQUIRE: Session.require,
}
HOT = frozenset((SEND, RECV_EXACTLY, RECV_LINE))  # served in run_script's loop on a stream
SOCKET_CODES = frozenset((CONNECT, TLS, SEND, CLOSE, BIND, PEER, RECV_EXACTLY, RECV_LINE,
                          RECV_ALL, RECV_ANY, RECV_UNTIL, RECV_DGRAM, KEEPALIVE, REUSED,
                          OPTION))
STREAM_READS = frozenset((RECV_EXACTLY, RECV_LINE, RECV_ALL, RECV_UNTIL))


def _text(value: Any) -> str:
    """A reason from verdict.lua (at most REASON_MAX + 1 bytes), cut and escaped."""
    return clean(value, REASON_MAX) if isinstance(value, bytes) else str(value or "")


def _result(script: Script, done: tuple[Any, ...]) -> Result:
    """The verdict a check thread handed back: ``DONE, status, reason, weight`` (kept per script:
    a script gives a few verdicts over and over)."""
    verdicts = script.verdicts
    result = verdicts.get(done)
    if result is not None:
        return result
    result = _new_result(script, done)
    if result.ok or done[1] == b"down":  # not errors: those are logged and counted every time
        if len(verdicts) >= 64:
            verdicts.clear()
        verdicts[done] = result
    return result


def _new_result(script: Script, done: tuple[Any, ...]) -> Result:
    _, status, reason, weight = done
    text = _text(reason)
    if status == b"up":
        return Result.up(text)
    if status == b"down":
        return Result.down(text)
    if status == b"weight":
        return Result.with_weight(int(weight), reason=text)
    if status == b"percent":
        return Result.with_weight(int(weight), percent=True, reason=text)
    return _script_error(script, text)


def _script_error(script: Script, text: str) -> Result:
    if text.startswith(MEMORY):
        script.runtime.recover()
    script.report_once(text)
    script.registry.count_error()
    return Result.down(f"lua: {text}")


def error_ended(script: Script, target: Target, exc: LuaError,
                probe: Probe | None = None) -> Result:
    """The check raised: log what it printed before, then fail with the error's first line."""
    try:
        logs = list(script.runtime.drain().values())
    except LuaError:  # no memory left even for that
        logs = []
    for level, message in zip(logs[::2], logs[1::2], strict=False):
        log_line(script, target, level, message, probe)
    if isinstance(exc, LuaMemoryError):
        return _script_error(script, MEMORY)
    message = str(exc)
    text = first_line(message, ERROR_MAX) if message else "error object is not a string"
    return _script_error(script, text)


ArgsCache = dict[int, tuple[Target, Any, Any, int, tuple[Any, ...]]]


def check_args(script: Script, t: Target, settings: Any, cache: ArgsCache) -> tuple[Any, ...]:
    """The arguments of a check thread for this check: the script's version, the instruction
    budget and the metatable of the target's fields (the sandbox's ``target()``), made once
    per target in ``cache`` (the engine reuses targets) in the script's runtime (the version is
    the runtime's: a check of another script makes its own)."""
    version, budget = script.version, script.limits.instructions
    cached = cache.get(id(t))
    if (cached is not None and cached[0] is t and cached[1] is settings
            and cached[2] is version and cached[3] == budget):
        return cached[4]
    params = settings.get("params", "")
    record = script.runtime.target(
        t.addr.encode(), t.port, t.vname.encode(), t.vaddr.encode(), t.vport, t.vproto.encode(),
        t.vfwmark, t.rname.encode(), t.rport, params.encode(), int(t.timeout * 1000), t.ssl)
    args = (version, budget, record)
    if len(cache) > ARGS_CACHE:
        cache.clear()
    cache[id(t)] = (t, settings, version, budget, args)
    return args


class HasScript(Protocol):
    script: Script
    args_cache: ArgsCache


def take_thread(script: Script, target: Target, settings: Any, cache: ArgsCache
                ) -> tuple[Any, Any] | Result:
    """A check thread for one check of ``script`` and the first value to resume it with (an idle
    thread of the runtime, or a new one); or the verdict when the script cannot run. The caller
    owns one count of ``script.running`` from here and gives it back with ``release_thread``."""
    if not script.running or monotonic() - script.looked >= SHARED_LOOK:
        script.refresh_for_check()
    if script.version is None:
        return Result.down(f"lua: {script.error}")
    runtime = script.runtime
    try:
        args = check_args(script, target, settings, cache)
    except LuaError:  # no memory left in the runtime for the target's table
        return _script_error(script, MEMORY)
    script.running += 1
    idle = runtime.idle
    if idle:
        return idle.pop(), args
    return runtime.worker.coroutine(*args), None


def release_thread(script: Script, co: Any = None) -> None:
    """Give back what ``take_thread`` gave: the count of ``script.running``, and the thread
    ``co`` to the idle ones (a thread whose check ended well; one that raised or was abandoned
    is not reused)."""
    script.running -= 1
    if co is not None and len(script.runtime.idle) < IDLE_THREADS:
        script.runtime.idle.append(co)


async def run_script(owner: HasScript, probe: Probe) -> Result:
    """One check of ``owner.script`` against the probe's target, on an idle thread of its
    runtime (a new one when none is idle). ``LuaTester.check`` is this function."""
    script = owner.script
    target = probe.target
    taken = take_thread(script, target, probe.settings, owner.args_cache)
    if isinstance(taken, Result):
        return taken
    co, reply = taken
    send = co.send
    session = Session(script, probe)
    slots = session.slots
    kept = None  # the thread, once its check ended well
    try:
        while True:
            try:
                request = send(reply)
            except LuaError as exc:
                return error_ended(script, target, exc, probe)
            code = request[0] if type(request) is tuple else -1
            if code == DONE:
                kept = co
                return _result(script, request)
            try:
                # the usual requests straight to the runner: no coroutine of their own
                if code in HOT:
                    slot = slots.get(request[1])
                    stream = None if slot is None else slot.stream
                    if stream is not None:
                        if code == SEND:
                            reply = await Send(stream, request[2], request[3] or 0)
                            continue
                        n = request[2]  # stream reads: on "closed", the partial data too
                        if code == RECV_LINE:
                            reply = await Receive(stream, LINE, LINE_LIMIT, "a line",
                                                  request[3] or 0)
                            continue
                        if n <= EXACT_LIMIT:
                            n = int(n)
                            piece = stream.buffer.maybe_extract_exactly(n)
                            reply = piece if piece is not None else await Receive(
                                stream, EXACTLY, n, f"{n} bytes", request[3] or 0)
                            continue
                op = OPS.get(code)
                if op is None:  # only the sandbox yields to Python: a bug there
                    return Result.down(f"lua: unknown request {request!r}"[:200])
                reply = await op(session, request)
            except SockError as exc:
                reply = session.failed(request, exc.err, None, exc.keep)
            except IOFailure as exc:
                reply = session.failed(request, exc.word, exc.partial, exc.keep)
    finally:
        release_thread(script, kept)
        session.close()
