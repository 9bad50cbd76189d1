"""The status page in a real browser (Debian's headless Chromium): it renders, and a real that
goes down between two refreshes shows as down without anyone reloading the page."""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
from collections.abc import Awaitable, Callable
from types import SimpleNamespace

import pytest
from aiohttp import web

from surealived.engine.state import CheckTiming
from surealived.maincfg import MainConfig
from surealived.status.server import StatusServer
from surealived.tester_api import Result
from tests.control.conftest import make_state

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
pytestmark = [
    pytest.mark.asyncio,
    pytest.mark.skipif(not os.path.exists(CHROMIUM), reason="chromium is not installed"),
]

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


async def dump_dom(url: str, budget_ms: int | None = None) -> str:
    profile = tempfile.mkdtemp(prefix="sd-chromium-")
    args = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
            "--no-first-run", "--disable-background-networking", "--disable-component-update",
            "--disable-sync", f"--user-data-dir={profile}"]
    if budget_ms is not None:
        args.append(f"--virtual-time-budget={budget_ms}")
    proc = await asyncio.create_subprocess_exec(*args, "--dump-dom", url,
                                                stdout=asyncio.subprocess.PIPE,
                                                stderr=asyncio.subprocess.DEVNULL)
    try:
        out, _ = await asyncio.wait_for(proc.communicate(), 90)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        shutil.rmtree(profile, ignore_errors=True)
    return out.decode()


async def serve(app: web.Application) -> tuple[web.AppRunner, str]:
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    return runner, f"http://{host}:{port}/"


def status_server() -> tuple[StatusServer, SimpleNamespace]:
    state = make_state()
    daemon = SimpleNamespace(state=state, maincfg=MainConfig(), engine=None, components=[])
    server = StatusServer()
    server.daemon = daemon
    for real in state.virtuals[0].reals:
        state.record_result(real, Result.up(), CheckTiming(started=1000.0, total_us=12_000))
    return server, daemon


async def test_page_renders_in_chromium() -> None:
    server, _ = status_server()
    runner, url = await serve(server.app())
    try:
        dom = await dump_dom(url)
    finally:
        await runner.cleanup()
    assert "<h2" in dom and "web6" in dom and "marked" in dom
    assert '<tr class="up" id="web/h1">' in dom
    assert '<td class="state">UP</td>' in dom
    assert "no reals defined" in dom  # the empty virtual
    assert '<td class="num">12.0 ms</td>' in dom


async def test_a_real_going_down_shows_after_the_page_refreshes_itself() -> None:
    server, daemon = status_server()
    state = daemon.state
    h1 = state.virtuals[0].reals[0]
    pages: list[str] = []

    @web.middleware
    async def flip_after_first_page(request: web.Request, handler: Handler
                                    ) -> web.StreamResponse:
        response = await handler(request)
        if request.path == "/":
            pages.append(request.headers.get("User-Agent", ""))
            if len(pages) == 1:  # the browser has the page: now h1 fails its check
                state.record_result(h1, Result.down("connection refused"),
                                    CheckTiming(started=1001.0, total_us=3000, problem="rst"))
        return response

    app = server.app()
    app.middlewares.append(flip_after_first_page)
    runner, url = await serve(app)
    try:
        dom = await dump_dom(url, budget_ms=5000)
    finally:
        await runner.cleanup()
    assert len(pages) >= 2, "the page did not fetch itself again"
    assert '<tr class="down" id="web/h1">' in dom
    assert '<td class="state">DOWN</td>' in dom
    assert "FAIL: connection refused" in dom
    assert '<tr class="up" id="web/h2">' in dom
