"""The HTTP status server (aiohttp), a daemon Component; off unless ``status_listen`` is set.

Endpoints, all read-only:
* ``/metrics``: Prometheus text (``metrics.py``); ``?scope=global``, ``?virtual=NAME`` and
  ``?histograms=off`` narrow it (``metrics.Scope``);
* ``/status``: the whole state as JSON (``views.status_view``) plus engine and process figures;
* ``/ready``: 200 once every real has been tested at least once, else 503 saying how many are
  left (for keepalived-style "do not take traffic before the checks know" gates);
* ``/``: the status page (``page.py``).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable
from importlib import metadata
from typing import TYPE_CHECKING, Any

from aiohttp import web

from ..control.process import read_process_info
from . import metrics, page, recent
from .views import status_view, untested_count

if TYPE_CHECKING:
    from ..daemon import Daemon

log = logging.getLogger("surealived.status")
CACHE_MAX_S = 2.0

try:
    VERSION = metadata.version("surealived")
except metadata.PackageNotFoundError:  # running from a source tree
    VERSION = "unknown"


class StatusServer:
    """The HTTP status endpoints as a daemon Component."""

    def __init__(self, clock: Any = time.time) -> None:
        self.daemon: Any = None
        self.clock = clock
        self.history = metrics.CheckHistory()
        self.recent = recent.RecentChecks()  # the last hour of each real, for the page
        self.runner: web.AppRunner | None = None
        self.bound: tuple[str, int] | None = None
        self.cache: dict[str, tuple[float, str]] = {}  # path -> (monotonic expiry, body)

    # -- component --
    async def start(self, daemon: Daemon) -> None:
        self.daemon = daemon
        listen = daemon.maincfg.status_listen
        self.bound = listen
        if listen is None:
            return
        daemon.state.round_listeners.append(self.history.on_round)
        daemon.state.round_listeners.append(self.recent.on_round)
        daemon.state.listeners.append(self.recent.on_event)
        host, port = listen
        self.runner = web.AppRunner(self.app(), access_log=None, handle_signals=False)
        await self.runner.setup()
        try:
            await web.TCPSite(self.runner, host, port, reuse_address=True).start()
        except OSError as exc:
            await self.runner.cleanup()
            self.runner = None
            log.error("Unable to bind the status server to [%s:%d]: %s", host, port,
                      exc.strerror or exc)
            raise
        log.info("Status server on http://%s/ (metrics, status, ready)", self.url_host)

    async def reloaded(self, daemon: Daemon) -> None:
        self.daemon = daemon
        if daemon.maincfg.status_listen != self.bound:
            await self.stop(daemon)
            await self.start(daemon)

    async def stop(self, daemon: Daemon) -> None:
        rounds = daemon.state.round_listeners
        for listener in (self.history.on_round, self.recent.on_round):
            if listener in rounds:
                rounds.remove(listener)
        if self.recent.on_event in daemon.state.listeners:
            daemon.state.listeners.remove(self.recent.on_event)
        if self.runner is not None:
            await self.runner.cleanup()
            self.runner = None

    @property
    def address(self) -> tuple[str, int]:
        """The bound address (the real port when the configured one was 0)."""
        assert self.runner is not None
        addr = self.runner.addresses[0]
        return addr[0], addr[1]

    @property
    def url_host(self) -> str:
        host, port = self.address
        return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"

    # -- http --
    def app(self) -> web.Application:
        app = web.Application()
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
            loop=str(getattr(d, "loop_name", "")),
            engine=metrics.engine_figures(getattr(d, "engine", None)),
            last_snapshot=metrics.last_snapshot_of(getattr(d, "components", ()), now),
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
        data = status_view(self.daemon.state, fig.now)
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
            self.daemon.state, self.clock(), view=view, recent=self.recent))
        return web.Response(text=text, content_type="text/html")
