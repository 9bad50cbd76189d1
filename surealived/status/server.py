"""The HTTP status server (aiohttp), a daemon Component; off unless ``status_listen`` is set.

Endpoints, all read-only:
* ``/metrics``: Prometheus text (``metrics.py``); ``?scope=global``, ``?virtual=NAME`` and
  ``?histograms=off`` narrow it (``metrics.Scope``);
* ``/status``: the whole state as JSON (``views.status_view``) plus engine and process figures;
* ``/ready``: 200 once every real has been tested at least once, else 503 saying how many are
  left (for keepalived-style "do not take traffic before the checks know" gates);
* ``/``: the status page (``page.py``).

Budgets (``ConnectionGuard``): at most ``status_max_clients`` connections (fewer when the
descriptor limit leaves less beside the checks, ``limits.status_client_budget``; one more gets a
503 and is closed); a client has ``status_header_timeout`` seconds from its connect, or from its
last response, to send a request, and an idle keep-alive connection is closed after
``status_idle_timeout``; a response taking more than ``RESPONSE_MAX_S`` (a client that does not
read it) is cut. Idle, half-sent and never-reading clients so cost a slot for seconds only.
"""

from __future__ import annotations

import asyncio
import json
import logging
import resource
import time
from collections.abc import Callable
from importlib import metadata
from typing import TYPE_CHECKING, Any

from aiohttp import web

from .. import compiled
from ..control.process import read_process_info
from ..limits import status_client_budget
from . import metrics, page, recent
from .views import status_view, untested_count

if TYPE_CHECKING:
    from ..components import DaemonView

log = logging.getLogger("surealived.status")
CACHE_MAX_S = 2.0
RESPONSE_MAX_S = 60.0
REFUSED = (b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain\r\n"
           b"Content-Length: 25\r\nConnection: close\r\n\r\ntoo many status clients\r\n")
REFUSAL_LOG_EVERY_S = 10.0


class ConnectionGuard(asyncio.Protocol):
    """Wraps aiohttp's protocol for one connection: counts it against the limit and closes it
    when its current deadline (request, idle, response) passes."""

    def __init__(self, gate: Gate, inner: asyncio.Protocol) -> None:
        self.gate = gate
        self.inner = inner
        self.transport: asyncio.BaseTransport | None = None
        self.timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport
        if len(self.gate.open) >= self.gate.limit:
            self.gate.refused(transport)
            self.transport = None
            return
        self.gate.open[transport] = self
        self.inner.connection_made(transport)
        self.arm(self.gate.header_timeout)

    def data_received(self, data: bytes) -> None:
        if self.transport is not None:
            self.inner.data_received(data)

    def eof_received(self) -> bool | None:
        return self.inner.eof_received() if self.transport is not None else None

    def pause_writing(self) -> None:
        if self.transport is not None:
            self.inner.pause_writing()

    def resume_writing(self) -> None:
        if self.transport is not None:
            self.inner.resume_writing()

    def connection_lost(self, exc: Exception | None) -> None:
        if self.transport is None:
            return
        self.gate.open.pop(self.transport, None)
        self.transport = None
        if self.timer is not None:
            self.timer.cancel()
        self.inner.connection_lost(exc)

    def arm(self, seconds: float) -> None:
        if self.timer is not None:
            self.timer.cancel()
        self.timer = asyncio.get_running_loop().call_later(seconds, self.expire)

    def expire(self) -> None:
        if self.transport is not None:
            self.transport.close()


class Gate:
    """The status server's open connections and their budgets."""

    def __init__(self, limit: int, header_timeout: float, idle_timeout: float) -> None:
        self.limit = limit
        self.header_timeout = header_timeout
        self.idle_timeout = idle_timeout
        self.open: dict[asyncio.BaseTransport, ConnectionGuard] = {}
        self.refusals = 0
        self.next_refusal_log = 0.0

    def refused(self, transport: asyncio.BaseTransport) -> None:
        self.refusals += 1
        now = time.monotonic()
        if now >= self.next_refusal_log:  # a flood must not flood the log too
            self.next_refusal_log = now + REFUSAL_LOG_EVERY_S
            log.warning("Status client refused: %d connections open (limit %d; %d refused "
                        "so far)", len(self.open), self.limit, self.refusals)
        if isinstance(transport, asyncio.WriteTransport):
            transport.write(REFUSED)
        transport.close()

    @web.middleware
    async def middleware(self, request: web.Request, handler: Any) -> web.StreamResponse:
        guard = self.open.get(request.transport) if request.transport else None
        if guard is not None:
            guard.arm(RESPONSE_MAX_S)
        try:
            return await handler(request)
        finally:
            if guard is not None:  # kept alive: the next request must come within the idle time
                guard.arm(self.idle_timeout)

try:
    VERSION = metadata.version("surealived")
except metadata.PackageNotFoundError:  # running from a source tree
    VERSION = "unknown"


class StatusServer:
    """The HTTP status endpoints as a daemon Component."""

    def __init__(self, clock: Any = time.time) -> None:
        self.daemon: DaemonView  # set by start()
        self.clock = clock
        self.history = metrics.CheckHistory()
        self.recent = recent.RecentChecks()  # the last hour of each real, for the page
        self.runner: web.AppRunner | None = None
        self.server: asyncio.Server | None = None
        self.gate: Gate | None = None
        self.bound: tuple[str, int] | None = None
        self.cache: dict[str, tuple[float, str]] = {}  # path -> (monotonic expiry, body)

    # -- component --
    async def start(self, daemon: DaemonView) -> None:
        self.daemon = daemon
        listen = daemon.maincfg.status_listen
        self.bound = listen
        if listen is None:
            return
        daemon.state.round_listeners.append(self.history.on_round)
        daemon.state.round_listeners.append(self.recent.on_round)
        daemon.state.listeners.append(self.recent.on_event)
        host, port = listen
        cfg = daemon.maincfg
        soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
        inflight = daemon.engine.max_inflight if daemon.engine is not None else 0
        control = cfg.control_max_clients * (2 if cfg.control_socket else 1)
        limit = status_client_budget(soft, inflight, control, cfg.status_max_clients)
        if limit < cfg.status_max_clients:
            log.warning("Status server: at most %d clients, not status_max_clients %d: the "
                        "descriptor limit %d keeps %d for checks and %d for control clients",
                        limit, cfg.status_max_clients, soft, inflight, control)
        self.gate = gate = Gate(limit, cfg.status_header_timeout, cfg.status_idle_timeout)
        self.runner = web.AppRunner(self.app(gate), access_log=None, handle_signals=False,
                                    keepalive_timeout=cfg.status_idle_timeout)
        await self.runner.setup()
        factory = self.runner.server
        assert factory is not None
        loop = asyncio.get_running_loop()
        try:
            self.server = await loop.create_server(
                lambda: ConnectionGuard(gate, factory()), host, port, reuse_address=True,
                backlog=128)
        except OSError as exc:
            await self.runner.cleanup()
            self.runner = None
            raise OSError(exc.errno, f"unable to bind the status server to [{host}]:{port}: "
                                     f"{exc.strerror or exc}") from None
        log.info("Status server on http://%s/ (metrics, status, ready; at most %d clients)",
                 self.url_host, limit)

    async def reloaded(self, daemon: DaemonView) -> None:
        self.daemon = daemon
        if daemon.maincfg.status_listen != self.bound:
            await self.stop(daemon)
            await self.start(daemon)

    async def stop(self, daemon: DaemonView) -> None:
        rounds = daemon.state.round_listeners
        for listener in (self.history.on_round, self.recent.on_round):
            if listener in rounds:
                rounds.remove(listener)
        if self.recent.on_event in daemon.state.listeners:
            daemon.state.listeners.remove(self.recent.on_event)
        if self.server is not None:
            self.server.close()
            if self.gate is not None:
                for transport in list(self.gate.open):
                    transport.close()
            await self.server.wait_closed()
            self.server = None
        if self.runner is not None:
            await self.runner.cleanup()
            self.runner = None

    @property
    def address(self) -> tuple[str, int]:
        """The bound address (the real port when the configured one was 0)."""
        assert self.server is not None and self.server.sockets
        addr = self.server.sockets[0].getsockname()
        return addr[0], addr[1]

    @property
    def url_host(self) -> str:
        host, port = self.address
        return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"

    # -- http --
    def app(self, gate: Gate | None = None) -> web.Application:
        app = web.Application(middlewares=[gate.middleware] if gate is not None else [])
        app.router.add_get("/", self.handle_page)
        app.router.add_get("/status", self.handle_status)
        app.router.add_get("/ready", self.handle_ready)
        app.router.add_get("/metrics", self.handle_metrics)
        return app

    def figures(self) -> metrics.Figures:
        d = self.daemon
        process = read_process_info()
        now = self.clock()
        return metrics.Figures(
            now=now,
            version=VERSION,
            loop=d.loop_name,
            check_path=compiled.check_path(),
            engine=metrics.engine_figures(d.engine),
            last_snapshot=metrics.last_snapshot_of(d.components, now),
            cpu_seconds=process.user_time + process.system_time,
            resident_bytes=process.memory_kb("RSS") * 1024,
            open_fds=process.fd_used,
        )

    async def handle_metrics(self, request: web.Request) -> web.StreamResponse:
        try:
            scope = metrics.parse_scope({k: request.query.getall(k) for k in request.query})
        except ValueError as exc:
            return web.Response(status=400, text=f"/metrics: {exc}\n")
        # Streamed in chunks, yielding to the event loop between them: at 20,000 reals the
        # whole text takes a few hundred ms to build, which must not delay the checks.
        response = web.StreamResponse(headers={
            "Content-Type": "text/plain; version=0.0.4; charset=utf-8"})
        response.enable_compression()
        await response.prepare(request)
        for chunk in metrics.render_chunks(self.daemon.state, self.history, self.figures(),
                                           scope):
            await response.write(chunk.encode())
            await asyncio.sleep(0)
        await response.write_eof()
        return response

    def cached(self, key: str, build: Callable[[], str]) -> str:
        """Share a render between viewers for ten times as long as it took to build (at most
        ``CACHE_MAX_S``): free for a small setup, and at 20,000 reals a page per viewer per
        refresh no longer costs the event loop a render each."""
        now = time.monotonic()
        hit = self.cache.get(key)
        if hit is not None and now < hit[0]:
            return hit[1]
        if len(self.cache) > 64:  # one entry per view (search) asked for: keep the live ones
            self.cache = {k: v for k, v in self.cache.items() if now < v[0]}
        body = build()
        took = time.monotonic() - now
        self.cache[key] = (now + min(CACHE_MAX_S, 10 * took), body)
        return body

    def status_json(self) -> str:
        fig = self.figures()
        data = status_view(self.daemon.state, fig.now,
                           self.daemon.services.lua_scripts.errors().values())
        data["engine"] = dict(fig.engine)
        data["last_snapshot"] = fig.last_snapshot
        data["version"] = fig.version
        return json.dumps(data)

    async def handle_status(self, request: web.Request) -> web.Response:
        return web.Response(text=self.cached("status", self.status_json),
                            content_type="application/json")

    async def handle_ready(self, request: web.Request) -> web.Response:
        state = self.daemon.state
        left = untested_count(state)
        total = sum(len(v.reals) for v in state.virtuals)
        if left:
            return web.Response(status=503, text=f"not ready: {left} of {total} reals not "
                                                 "tested yet\n")
        return web.Response(text=f"ready: all {total} reals tested\n")

    async def handle_page(self, request: web.Request) -> web.Response:
        view = page.View.from_query({k: request.query.getall(k) for k in request.query})
        text = self.cached(f"page{view.query()}", lambda: page.render(
            self.daemon.state, self.clock(), view=view, recent=self.recent,
            script_errors=self.daemon.services.lua_scripts.errors().values()))
        return web.Response(text=text, content_type="text/html")
