"""The coroutine driver: one Lua check run on a check thread of the script's runtime, its I/O
done here on the engine's probe layer.

Strategy: a check thread (``worker``, lua/worker.lua) runs one check after another; idle threads
wait in ``Runtime.idle`` (one that raised or was abandoned at its deadline is never reused).
Each time the check needs I/O, the thread yields a request ``code, socket id, arguments`` (plain
values, a fixed shape per code; the codes are in ``codes.py``) and the driver awaits
the I/O and resumes it with the reply: data, a count, ``true``, or ``nil, err[, partial]``.
A finished check yields ``DONE, status, reason, weight``. The usual requests (connecting to the
test port, sending, reading N bytes, without a timeout) are done in the loop of ``run_script``
itself; the others by the ``Session`` methods. Errors are short and lowercase as OpenResty's
(``timeout``, ``closed``, ``connection refused``). A read timeout leaves the socket usable;
every other error closes it. The whole check stays under the tester's deadline, which the
engine enforces around ``check``.

Sockets reach the real under test only: ``connect`` accepts the real's address (any port), so a
script cannot be used to reach other hosts. The test port goes through ``probe.connect()`` (with
TLS when the tester says ``SSL="1"``); other ports and ``bind`` addresses get their own socket,
recorded in the same transcript and statistics.
"""

from __future__ import annotations

import asyncio
import dataclasses
import ipaddress
import logging
import os
import ssl
import time
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from ..engine.probe import CheckProbe, TcpConnection, UdpDatagram, describe_oserror
from ..logsetup import LEVELS
from ..tester_api import Connection, Datagram, Probe, ProbeError, Result, Target
from .codes import (
    BIND,
    CLOSE,
    CONNECT,
    DONE,
    LOG,
    MAX_SOCKETS,
    NOW,
    PEER,
    RECV_ALL,
    RECV_ANY,
    RECV_DGRAM,
    RECV_EXACTLY,
    RECV_LINE,
    RECV_UNTIL,
    SEND,
    SLEEP,
    TLS,
)
from .runtime import LuaError, LuaMemoryError
from .scripts import SCRIPTS, SHARED_LOOK, Script

log = logging.getLogger("surealived")
monotonic = time.monotonic

LINE_LIMIT = 65536
ALL_LIMIT = 1 << 20
EXACT_LIMIT = 16 << 20
UNTIL_LIMIT = 1 << 20
MEMORY = "memory limit of the Lua runtime reached"
IDLE_THREADS = 256  # idle check threads kept per runtime, for the next checks


class SockError(Exception):
    """An error handed back to Lua as ``nil, err[, partial]``."""

    def __init__(self, err: str, partial: bytes | None = None, keep: bool = False) -> None:
        super().__init__(err)
        self.err = err
        self.partial = partial
        self.keep = keep  # the socket stays usable (a read timeout)


def _strerror(exc: BaseException) -> str:
    if isinstance(exc, ProbeError):
        text = str(exc)
        if text.startswith("connection closed"):
            return "closed"
        for prefix in ("connect: ", "TLS handshake: "):
            if text.startswith(prefix):
                return text[len(prefix):]
        return text
    if isinstance(exc, ssl.SSLError):
        return describe_oserror("tls", exc).removeprefix("tls: ")
    if isinstance(exc, OSError):
        text = os.strerror(exc.errno) if exc.errno else (exc.strerror or str(exc))
        return text.lower()
    return str(exc) or type(exc).__name__


class Slot:
    """One Lua socket of a check."""

    __slots__ = ("bind", "conn", "dgram", "tls")

    def __init__(self) -> None:
        self.conn: Connection | None = None
        self.dgram: Datagram | None = None
        self.bind: str | None = None
        self.tls = False

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None
        if self.dgram is not None:
            self.dgram.close()
            self.dgram = None


def _normal_addr(text: str) -> str | None:
    try:
        return ipaddress.ip_address(text).compressed
    except ValueError:
        return None


class Session:
    """The Python side of one Lua check: its sockets and the requests' implementations.

    Every request method takes the whole request tuple (``code, socket id, arguments``, a fixed
    shape per code, made by lua/sock.lua) and returns the reply; errors are raised (``SockError``,
    ``TimeoutError`` of a socket timeout, ``ProbeError``, ``OSError``) and turned into
    ``nil, err[, partial]`` by ``run_script``.
    """

    __slots__ = ("probe", "script", "slots", "target")

    def __init__(self, script: Script, probe: Probe, slots: dict[int, Slot]) -> None:
        self.script = script
        self.probe = probe
        self.target = probe.target
        self.slots = slots

    def failed(self, request: tuple[Any, ...], err: str, partial: bytes | None,
               keep: bool) -> tuple[None, bytes, bytes | None]:
        """The reply to a failed request; the socket is closed unless ``keep``."""
        if not keep and request[0] in SOCKET_CODES:
            slot = self.slots.get(request[1])
            if slot is not None:
                slot.close()
        return None, err.encode(), partial

    async def failed_io(self, request: tuple[Any, ...], exc: ProbeError | OSError
                        ) -> tuple[None, bytes, bytes | None]:
        """The reply to a request the probe layer failed; a stream read that found the
        connection closed hands back what had arrived as the partial data."""
        err = _strerror(exc)
        partial = None
        if err == "closed" and request[0] in STREAM_READS:
            slot = self.slots.get(request[1])
            if slot is not None and slot.conn is not None:
                partial = await slot.conn.receive_some(EXACT_LIMIT)
        return self.failed(request, err, partial, False)

    def close(self) -> None:
        for slot in self.slots.values():
            slot.close()

    # -- helpers ---------------------------------------------------------------------------
    def slot(self, sid: int) -> Slot:
        slot = self.slots.get(sid)
        if slot is None:
            if type(sid) is not int or not 0 < sid <= MAX_SOCKETS:  # a script set sock._id
                raise SockError(f"not a socket of this check (at most {MAX_SOCKETS})")
            slot = self.slots[sid] = Slot()
        return slot

    def stream(self, sid: int) -> Connection:
        slot = self.slots.get(sid)
        if slot is None or slot.conn is None:
            raise SockError("closed")
        return slot.conn

    def check_host(self, host: bytes | bool) -> None:
        """Refuse any host but the real's (``false`` from Lua: the real's address itself)."""
        if host is False:
            return
        assert isinstance(host, bytes)
        if _normal_addr(host.decode("utf-8", "replace")) != self.target.addr:
            raise SockError(f"only the real under test ({self.target.addr}) may be reached")

    async def open_tcp(self, port: int, bindaddr: str | None) -> tuple[Connection, bool]:
        """A connection to the real on ``port``; True when it is already in TLS."""
        target, probe = self.target, self.probe
        if port == target.port and bindaddr in (None, target.bindaddr):
            return await probe.connect(), target.ssl
        if not isinstance(probe, CheckProbe):
            raise SockError(f"only the test port {target.port} can be reached here")
        other = CheckProbe(dataclasses.replace(target, port=port, ssl=False,
                                               bindaddr=bindaddr or target.bindaddr),
                           probe.settings, probe.transcript, probe.loop)
        try:
            conn = await other.connect()
        except BaseException:
            other.close()
            raise
        return self._adopt(other, conn), False

    async def open_udp(self, port: int, bindaddr: str | None) -> Datagram:
        target, probe = self.target, self.probe
        if port == target.port and bindaddr in (None, target.bindaddr):
            return await probe.datagram()
        if not isinstance(probe, CheckProbe):
            raise SockError(f"only the test port {target.port} can be reached here")
        other = CheckProbe(dataclasses.replace(target, port=port,
                                               bindaddr=bindaddr or target.bindaddr),
                           probe.settings, probe.transcript, probe.loop)
        try:
            dgram = await other.datagram()
        except BaseException:
            other.close()
            raise
        return self._adopt(other, dgram)

    def _adopt(self, other: CheckProbe, conn: Any) -> Any:
        """Move a connection made on a side probe into the check's probe (closed and counted
        with the others, steps and transcript shared)."""
        probe = self.probe
        assert isinstance(probe, CheckProbe) and isinstance(conn, TcpConnection | UdpDatagram)
        other.open.remove(conn)
        conn.probe = probe
        probe.open.append(conn)
        if probe.connected is None:
            probe.connected = other.connected
        return conn

    # -- requests --------------------------------------------------------------------------
    async def bind(self, request: tuple[Any, ...]) -> Any:
        _, sid, addr = request
        text = _normal_addr(addr.decode("utf-8", "replace"))
        if text is None:
            raise SockError(f"bad address {addr.decode('utf-8', 'replace')!r}")
        if (":" in text) != (":" in self.target.addr):
            raise SockError("address family differs from the real's")
        self.slot(sid).bind = text
        return 1

    async def connect(self, request: tuple[Any, ...]) -> Any:
        _, sid, host, port, ms = request
        self.check_host(host)
        slot = self.slot(sid)
        slot.close()
        target = self.target
        if not ms and port == target.port and slot.bind is None:  # the usual case, directly
            slot.conn = await self.probe.connect()
            slot.tls = target.ssl
            return 1
        job = self.open_tcp(port, slot.bind)
        slot.conn, slot.tls = await (_timed(job, ms) if ms else job)
        return 1

    async def peer(self, request: tuple[Any, ...]) -> Any:
        _, sid, host, port = request
        self.check_host(host)
        slot = self.slot(sid)
        slot.close()
        slot.dgram = await self.open_udp(port, slot.bind)
        return 1

    async def tls(self, request: tuple[Any, ...]) -> Any:
        _, sid, sni, verify, ms = request
        slot = self.slots.get(sid)
        if slot is None or slot.conn is None:
            raise SockError("closed")
        if not slot.tls:
            name = sni.decode("utf-8", "replace") if sni else self.target.sni
            job = slot.conn.start_tls(name, bool(verify))
            try:
                await (_timed(job, ms) if ms else job)
            except TimeoutError:
                raise SockError("handshake failed: timeout") from None
            except (ProbeError, OSError) as exc:
                raise SockError(f"handshake failed: {_strerror(exc)}") from None
            slot.tls = True
        return True

    async def send(self, request: tuple[Any, ...]) -> Any:
        _, sid, data, ms = request
        slot = self.slots.get(sid)
        if slot is None:
            raise SockError("closed")
        if slot.conn is not None:
            job = slot.conn.send(data)
        elif slot.dgram is not None:
            job = slot.dgram.send(data)
        else:
            raise SockError("closed")
        await (_timed(job, ms) if ms else job)
        return len(data)

    # Stream reads: on "closed", what had arrived goes back as the partial data (failed_io).
    async def receive_exactly(self, request: tuple[Any, ...]) -> Any:
        _, sid, n, ms = request
        conn = self.stream(sid)
        if n > EXACT_LIMIT:
            raise SockError(f"size too large (at most {EXACT_LIMIT})", keep=True)
        job = conn.receive_exactly(int(n))
        return await (_timed(job, ms) if ms else job)

    async def receive_line(self, request: tuple[Any, ...]) -> Any:
        _, sid, _, ms = request
        conn = self.stream(sid)
        job = conn.receive_line(LINE_LIMIT)
        return await (_timed(job, ms) if ms else job)

    async def receive_all(self, request: tuple[Any, ...]) -> Any:
        _, sid, _, ms = request
        conn = self.stream(sid)
        job = conn.receive_all(ALL_LIMIT)
        return await (_timed(job, ms) if ms else job)

    async def receive_any(self, request: tuple[Any, ...]) -> Any:
        _, sid, n, ms = request
        conn = self.stream(sid)
        job = conn.receive_some(min(int(n), EXACT_LIMIT))
        data = await (_timed(job, ms) if ms else job)
        if not data:
            raise SockError("closed")
        return data

    async def receive_until(self, request: tuple[Any, ...]) -> Any:
        _, sid, pattern, ms = request
        conn = self.stream(sid)
        job = conn.receive_until(pattern, UNTIL_LIMIT)
        return await (_timed(job, ms) if ms else job)

    async def receive_datagram(self, request: tuple[Any, ...]) -> Any:
        _, sid, n, ms = request
        slot = self.slots.get(sid)
        if slot is None or slot.dgram is None:
            raise SockError("closed")
        job = slot.dgram.receive(min(int(n), 65535))
        return await (_timed(job, ms) if ms else job)

    async def close_slot(self, request: tuple[Any, ...]) -> Any:
        slot = self.slots.get(request[1])
        if slot is None or (slot.conn is None and slot.dgram is None):
            raise SockError("closed")
        slot.close()
        return 1

    async def sleep(self, request: tuple[Any, ...]) -> Any:
        if isinstance(self.probe, CheckProbe):
            self.probe.step = "in sd.sleep()"
        await asyncio.sleep(request[2] / 1000)
        return 1

    async def now(self, request: tuple[Any, ...]) -> Any:
        return time.time()

    async def log(self, request: tuple[Any, ...]) -> Any:
        _, level, message = request
        log_line(self.script, self.target, level, message, self.probe)
        return None


def log_line(script: Script, target: Target, level: bytes, message: bytes,
             probe: Probe | None = None) -> None:
    """A line of ``sd.log``/``print`` in the log (and the probe's transcript)."""
    text = message.decode("utf-8", "replace")
    name = level.decode()
    log.log(LEVELS.get(name, logging.DEBUG), "lua %s [%s %s]: %s", script.name, target.rname,
            target.addr, text)
    if probe is not None:
        probe.note(f"lua {name}: {text}")


async def _timed(job: Awaitable[Any], ms: float) -> Any:
    async with asyncio.timeout(ms / 1000):
        return await job


OPS: dict[int, Callable[[Session, tuple[Any, ...]], Awaitable[Any]]] = {
    CONNECT: Session.connect, TLS: Session.tls, SEND: Session.send, CLOSE: Session.close_slot,
    BIND: Session.bind, PEER: Session.peer, RECV_EXACTLY: Session.receive_exactly,
    RECV_LINE: Session.receive_line, RECV_ALL: Session.receive_all,
    RECV_ANY: Session.receive_any, RECV_UNTIL: Session.receive_until,
    RECV_DGRAM: Session.receive_datagram, SLEEP: Session.sleep, NOW: Session.now,
    LOG: Session.log,
}
SOCKET_CODES = frozenset((CONNECT, TLS, SEND, CLOSE, BIND, PEER, RECV_EXACTLY, RECV_LINE,
                          RECV_ALL, RECV_ANY, RECV_UNTIL, RECV_DGRAM))
STREAM_READS = frozenset((RECV_EXACTLY, RECV_LINE, RECV_ALL, RECV_ANY, RECV_UNTIL))
# a read timeout leaves the socket usable
KEEP_ON_TIMEOUT = frozenset((RECV_EXACTLY, RECV_LINE, RECV_ALL, RECV_ANY, RECV_UNTIL,
                             RECV_DGRAM))


def _text(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value or "")


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
    SCRIPTS.count_error()
    return Result.down(f"lua: {text}")


def error_ended(script: Script, target: Target, exc: LuaError,
                probe: Probe | None = None) -> Result:
    """The check raised: log what it printed before, then fail with the error's first line."""
    logs = list(script.runtime.drain().values())
    for level, message in zip(logs[::2], logs[1::2], strict=False):
        log_line(script, target, level, message, probe)
    if isinstance(exc, LuaMemoryError):
        return _script_error(script, MEMORY)
    text = str(exc).splitlines()[0] if str(exc) else "error object is not a string"
    return _script_error(script, text)


_args_cache: dict[int, tuple[Target, Any, Any, int, tuple[Any, ...]]] = {}


def check_args(script: Script, t: Target, settings: Any) -> tuple[Any, ...]:
    """The arguments of a check thread for this check: the script's version, the instruction
    budget and the metatable of the target's fields (``target()`` of ``lua/worker.lua``), made once
    per target (the engine reuses them) in the script's runtime (the factory is the runtime's:
    a check of another script makes its own)."""
    factory, budget = script.factory, script.limits.instructions
    cached = _args_cache.get(id(t))
    if (cached is not None and cached[0] is t and cached[1] is settings
            and cached[2] is factory and cached[3] == budget):
        return cached[4]
    params = settings.get("params", "")
    record = script.runtime.target(
        t.addr.encode(), t.port, t.vname.encode(), t.vaddr.encode(), t.vport, t.vproto.encode(),
        t.vfwmark, t.rname.encode(), t.rport, params.encode(), int(t.timeout * 1000), t.ssl)
    args = (factory, budget, record)
    if len(_args_cache) > 100_000:
        _args_cache.clear()
    _args_cache[id(t)] = (t, settings, factory, budget, args)
    return args


class HasScript(Protocol):
    script: Script


def take_thread(script: Script, target: Target, settings: Any) -> tuple[Any, Any] | Result:
    """A check thread for one check of ``script`` and the first value to resume it with (an idle
    thread of the runtime, or a new one); or the verdict when the script cannot run. The caller
    owns one count of ``script.running`` from here and hands it to ``drive``."""
    if not script.running or monotonic() - script.looked >= SHARED_LOOK:
        script.refresh_for_check()
    if script.factory is None:
        return Result.down(f"lua: {script.error}")
    runtime = script.runtime
    try:
        args = check_args(script, target, settings)
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
    taken = take_thread(owner.script, probe.target, probe.settings)
    if isinstance(taken, Result):
        return taken
    co, reply = taken
    return await drive(owner.script, probe, co, reply, {})


async def drive(script: Script, probe: Probe, co: Any, reply: Any, slots: dict[int, Slot],
                request: tuple[Any, ...] | None = None) -> Result:
    """Resume ``co`` with ``reply`` and serve its requests until it is done; or, with
    ``request``, begin by serving that one (a check the fast path handed over, its sockets in
    ``slots``). Releases the thread (``release_thread``) when it ends."""
    send = co.send
    kept = None  # the thread, once its check ended well
    session: Session | None = None  # made when a request needs more than the loop below
    target = probe.target
    pending, request = request, None
    try:
        while True:
            if pending is None:
                try:
                    request = send(reply)
                except LuaError as exc:
                    return error_ended(script, target, exc, probe)
            else:  # the handed-over request
                request, pending = pending, None
            code = request[0] if type(request) is tuple else -1
            if code == DONE:
                kept = co
                return _result(script, request)
            try:
                # the usual requests, without a timeout, done here directly
                if code == CONNECT and not request[4] and request[2] is False:
                    sid = request[1]
                    slot = slots.get(sid)
                    if slot is None and type(sid) is int and 0 < sid <= MAX_SOCKETS:
                        slot = slots[sid] = Slot()
                    if slot is not None and request[3] == target.port and slot.bind is None:
                        slot.close()
                        slot.conn = await probe.connect()
                        slot.tls = target.ssl
                        reply = 1
                        continue
                if code in (SEND, RECV_EXACTLY):
                    slot = slots.get(request[1])
                    conn = slot.conn if slot is not None else None
                    if conn is not None and not request[3]:
                        if code == SEND:
                            await conn.send(request[2])
                            reply = len(request[2])
                            continue
                        if request[2] <= EXACT_LIMIT:
                            reply = await conn.receive_exactly(int(request[2]))
                            continue
                op = OPS.get(code)
                if op is None:  # only lua/*.lua yield to Python: a bug there
                    raise ProbeError(f"lua: unknown request {request!r}"[:200])
                if session is None:
                    session = Session(script, probe, slots)
                reply = await op(session, request)
            except SockError as exc:
                session = session or Session(script, probe, slots)
                reply = session.failed(request, exc.err, exc.partial, exc.keep)
            except TimeoutError:
                session = session or Session(script, probe, slots)
                reply = session.failed(request, "timeout", None, code in KEEP_ON_TIMEOUT)
            except (ProbeError, OSError) as exc:
                session = session or Session(script, probe, slots)
                reply = await session.failed_io(request, exc)
    finally:
        release_thread(script, kept)
        if not isinstance(probe, CheckProbe):  # the engine closes what a CheckProbe opened
            for slot in slots.values():
                slot.close()
