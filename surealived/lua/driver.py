"""The coroutine driver: one Lua check run as a coroutine on the event loop, its I/O done here.

Strategy: the check is a Lua coroutine (``run_check`` of the prelude). Each time it yields a
request (``op, socket id, arguments``) the driver awaits the I/O on the engine's probe layer and
resumes it with the result: data, a count, ``true``, or an error table (``nil, err, partial`` on
the Lua side). Errors are short and lowercase as OpenResty's (``timeout``, ``closed``,
``connection refused``). A read timeout leaves the socket usable; every other error closes it.
The whole check stays under the tester's deadline, which the engine enforces around ``check``.

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
from typing import Any

from ..engine.probe import CheckProbe, TcpConnection, UdpDatagram, describe_oserror
from ..logsetup import LEVELS
from ..tester_api import Connection, Datagram, Probe, ProbeError, Result, Target
from .runtime import LuaError, LuaMemoryError
from .scripts import SCRIPTS, Script

log = logging.getLogger("surealived")

LINE_LIMIT = 65536
ALL_LIMIT = 1 << 20
EXACT_LIMIT = 16 << 20
UNTIL_LIMIT = 1 << 20
MEMORY = "memory limit of the Lua runtime reached"


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
    """The Python side of one Lua check: its sockets and the requests' implementations."""

    def __init__(self, script: Script, probe: Probe) -> None:
        self.script = script
        self.probe = probe
        self.target = probe.target
        self.slots: dict[int, Slot] = {}
        self.mkerr = script.runtime.mkerr

    async def handle(self, request: Any) -> Any:
        if not isinstance(request, tuple) or not request:
            request = (request,)
        op = OPS.get(request[0]) if isinstance(request[0], bytes) else None
        if op is None:
            raise ProbeError(f"lua: unknown request {request[0]!r}")
        try:
            return await op(self, *request[1:])
        except SockError as exc:
            if not exc.keep and len(request) > 1 and request[1] in self.slots:
                self.slots[request[1]].close()
            return self.mkerr(exc.err.encode(), exc.partial)

    def close(self) -> None:
        for slot in self.slots.values():
            slot.close()

    # -- helpers ---------------------------------------------------------------------------
    def slot(self, sid: int) -> Slot:
        slot = self.slots.get(sid)
        if slot is None:
            slot = self.slots[sid] = Slot()
        return slot

    def stream(self, sid: int) -> Connection:
        slot = self.slots.get(sid)
        if slot is None or slot.conn is None:
            raise SockError("closed")
        return slot.conn

    async def timed(self, awaitable: Awaitable[Any], ms: float | None, keep: bool = False) -> Any:
        try:
            if not ms:
                return await awaitable
            async with asyncio.timeout(ms / 1000):
                return await awaitable
        except TimeoutError:
            raise SockError("timeout", keep=keep) from None
        except (ProbeError, OSError) as exc:
            raise SockError(_strerror(exc)) from None

    def check_host(self, host: bytes) -> None:
        if host.decode("utf-8", "replace") == self.target.addr:
            return
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
    async def bind(self, sid: int, addr: bytes) -> Any:
        text = _normal_addr(addr.decode("utf-8", "replace"))
        if text is None:
            raise SockError(f"bad address {addr.decode('utf-8', 'replace')!r}")
        if (":" in text) != (":" in self.target.addr):
            raise SockError("address family differs from the real's")
        self.slot(sid).bind = text
        return 1

    async def connect(self, sid: int, host: bytes, port: int, ms: float | None) -> Any:
        self.check_host(host)
        slot = self.slot(sid)
        slot.close()
        slot.conn, slot.tls = await self.timed(self.open_tcp(port, slot.bind), ms)
        return 1

    async def peer(self, sid: int, host: bytes, port: int) -> Any:
        self.check_host(host)
        slot = self.slot(sid)
        slot.close()
        slot.dgram = await self.timed(self.open_udp(port, slot.bind), None)
        return 1

    async def tls(self, sid: int, sni: bytes | None, verify: bool, ms: float | None) -> Any:
        slot = self.slots.get(sid)
        if slot is None or slot.conn is None:
            raise SockError("closed")
        if not slot.tls:
            name = sni.decode("utf-8", "replace") if sni else self.target.sni
            try:
                await self.timed(slot.conn.start_tls(name, bool(verify)), ms)
            except SockError as exc:
                raise SockError(f"handshake failed: {exc.err}") from None
            slot.tls = True
        return True

    async def send(self, sid: int, data: bytes, ms: float | None) -> Any:
        slot = self.slots.get(sid)
        if slot is not None and slot.dgram is not None:
            await self.timed(slot.dgram.send(data), ms)
        else:
            await self.timed(self.stream(sid).send(data), ms)
        return len(data)

    async def receive(self, sid: int, mode: bytes, arg: Any, ms: float | None) -> Any:
        if mode == b"datagram":
            slot = self.slots.get(sid)
            if slot is None or slot.dgram is None:
                raise SockError("closed")
            return await self.timed(slot.dgram.receive(min(int(arg), 65535)), ms, keep=True)
        conn = self.stream(sid)
        if mode == b"line":
            job = conn.receive_line(LINE_LIMIT)
        elif mode == b"exactly":
            if arg > EXACT_LIMIT:
                raise SockError(f"size too large (at most {EXACT_LIMIT})", keep=True)
            job = conn.receive_exactly(int(arg))
        elif mode == b"any":
            job = conn.receive_some(min(int(arg), EXACT_LIMIT))
        elif mode == b"until":
            job = conn.receive_until(arg, UNTIL_LIMIT)
        else:
            job = conn.receive_all(ALL_LIMIT)
        try:
            data = await self.timed(job, ms, keep=True)
        except SockError as exc:
            if exc.err == "closed":
                exc.partial = await conn.receive_some(EXACT_LIMIT)
            raise
        if mode == b"any" and not data:
            raise SockError("closed")
        return data

    async def close_slot(self, sid: int) -> Any:
        slot = self.slots.get(sid)
        if slot is None or (slot.conn is None and slot.dgram is None):
            raise SockError("closed")
        slot.close()
        return 1

    async def sleep(self, _: int, ms: float) -> Any:
        if isinstance(self.probe, CheckProbe):
            self.probe.step = "in sd.sleep()"
        await asyncio.sleep(ms / 1000)
        return 1

    async def now(self, _: int) -> Any:
        return time.time()

    async def log(self, level: bytes, message: bytes) -> Any:
        text = message.decode("utf-8", "replace")
        name = level.decode()
        log.log(LEVELS.get(name, logging.DEBUG), "lua %s [%s %s]: %s", self.script.name,
                self.target.rname, self.target.addr, text)
        self.probe.note(f"lua {name}: {text}")
        return None


OPS: dict[bytes, Callable[..., Awaitable[Any]]] = {
    b"connect": Session.connect, b"tls": Session.tls, b"send": Session.send,
    b"recv": Session.receive, b"close": Session.close_slot, b"bind": Session.bind,
    b"peer": Session.peer, b"sleep": Session.sleep, b"now": Session.now, b"log": Session.log,
}


def _text(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value or "")


def _result(script: Script, reply: Any) -> Result:
    status, reason, weight = (tuple(reply) + (None,) * 3)[:3]
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


async def _error_ended(session: Session, exc: LuaError) -> Result:
    """The check raised: log what it printed before, then fail with the error's first line."""
    logs = list(session.script.runtime.drain().values())
    for level, message in zip(logs[::2], logs[1::2], strict=False):
        await session.log(level, message)
    if isinstance(exc, LuaMemoryError):
        return _script_error(session.script, MEMORY)
    text = str(exc).splitlines()[0] if str(exc) else "error object is not a string"
    return _script_error(session.script, text)


_args_cache: dict[int, tuple[Target, str, tuple[Any, ...]]] = {}


def check_args(probe: Probe) -> tuple[Any, ...]:
    """``run_check``'s arguments for this target (kept per target: the engine reuses them)."""
    t = probe.target
    params = probe.settings.get("params", "")
    cached = _args_cache.get(id(t))
    if cached is not None and cached[0] is t and cached[1] == params:
        return cached[2]
    args = (t.addr.encode(), t.port, t.vname.encode(), t.vaddr.encode(), t.vport,
            t.vproto.encode(), t.vfwmark, t.rname.encode(), t.rport, params.encode(),
            int(t.timeout * 1000), t.ssl)
    if len(_args_cache) > 100_000:
        _args_cache.clear()
    _args_cache[id(t)] = (t, params, args)
    return args


async def run_script(script: Script, probe: Probe) -> Result:
    """One check of ``script`` against the probe's target."""
    script.refresh()
    if script.factory is None:
        return Result.down(f"lua: {script.error}")
    session = Session(script, probe)
    co = script.runtime.run_check.coroutine(script.factory, script.limits.instructions,
                                            *check_args(probe))
    reply: Any = None
    try:
        while True:
            try:
                request = co.send(reply)
            except LuaError as exc:
                return await _error_ended(session, exc)
            if not co:
                return _result(script, request)
            reply = await session.handle(request)
    finally:
        if not isinstance(probe, CheckProbe):  # the engine closes what a CheckProbe opened
            session.close()

