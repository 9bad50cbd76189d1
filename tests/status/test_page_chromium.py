"""The status page in a real browser (Debian's headless Chromium): it renders, a real that goes
down between two refreshes shows as down without anyone reloading the page, and at 20,000 reals
the page is one summary row per virtual, small, and its filter and search work."""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
from collections.abc import Awaitable, Callable
from types import SimpleNamespace

import aiohttp
import pytest
from aiohttp import web

from surealived.config.main import MainConfig
from surealived.config.xml import parse_config_bytes
from surealived.engine.state import CheckTiming, DaemonState
from surealived.registry import load_testers
from surealived.services import Services
from surealived.status import page
from surealived.status.recent import RecentChecks
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
    daemon = SimpleNamespace(state=state, maincfg=MainConfig(), engine=None, components=[],
                             services=Services())
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
    assert 'data-virtual="web6"' in dom and 'data-virtual="marked"' in dom
    assert '<tr class="r up" id="web/h1">' in dom
    assert '<td class="state">UP</td>' in dom
    assert '<td class="state">2/2 up</td>' in dom  # web's summary row
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
    assert '<tr class="r down" id="web/h1">' in dom
    assert '<td class="state">DOWN</td>' in dom
    assert "FAIL: connection refused" in dom
    assert '<tr class="r up" id="web/h2">' in dom


# -- 20,000 reals --------------------------------------------------------------------------

BIG_REALS = 20_000
PER_VIRTUAL = 40
NOW = 1_700_003_600.0


def big_state() -> tuple[DaemonState, RecentChecks]:
    """500 virtuals of 40 reals; every 7th real down; an hour of checks behind each real."""
    lines = ["<surealived>"]
    for v in range(BIG_REALS // PER_VIRTUAL):
        a, b = divmod(v, 250)
        lines.append(f'<virtual name="v{v}" addr="10.{a}.{b}.1" port="80" proto="tcp" '
                     'sched="wrr" rt="dr"><tester proto="tcp" testport="80" retries2fail="1"/>')
        lines.extend(f'<real name="r{r}" addr="10.200.{r}.{v % 250}" port="{80 + v // 250}" '
                     'weight="10"/>' for r in range(PER_VIRTUAL))
        lines.append("</virtual>")
    lines.append("</surealived>")
    state = DaemonState(parse_config_bytes("\n".join(lines).encode(), "big.xml",
                                           load_testers()), clock=lambda: NOW - 3600)
    recent = RecentChecks()
    for i, real in enumerate(state.reals()):
        down = i % 7 == 0
        for minute in range(60):
            recent.record(real, not (down and minute > 50), 0.002 + (i % 5) * 0.001,
                          NOW - 3600 + minute * 60)
        result = Result.down("connection refused") if down else Result.up()
        state.record_result(real, result, CheckTiming(started=NOW - 400, total_us=2000))
        if down:
            recent.mark_change(real, real.changed)
    return state, recent


HARNESS = """<!DOCTYPE html><html><body><pre id="out"></pre>
<iframe id="page" src="/%s" width="1400" height="900"></iframe><script>
var frame=document.getElementById('page'),out=document.getElementById('out'),t0=performance.now();
function say(k,v){out.textContent+=k+'='+v+'\\n';}
frame.onload=function(){
  var d=frame.contentDocument;
  d.body.getBoundingClientRect();  // layout done
  say('loaded_ms',Math.round(performance.now()-t0));
  say('summary_rows',d.querySelectorAll('tr.v').length);
  say('real_rows',d.querySelectorAll('tr.r').length);
  if(!%s) return;
  var box=d.querySelector('input[name=problems]');
  box.checked=true;
  box.dispatchEvent(new Event('input',{bubbles:true}));
  var tries=0,poll=setInterval(function(){
    var rows=d.querySelectorAll('tr.r');
    if(rows.length||++tries>100){
      clearInterval(poll);
      var up=0;rows.forEach(function(r){if(r.classList.contains('up'))up++;});
      say('filtered_rows',rows.length);say('filtered_up',up);
      say('url',frame.contentWindow.location.search);
    }
  },100);
};
</script></body></html>"""


def big_server() -> StatusServer:
    state, recent = big_state()
    server = StatusServer(clock=lambda: NOW)
    server.daemon = SimpleNamespace(state=state, maincfg=MainConfig(), engine=None,
                                    components=[], services=Services())
    server.recent = recent
    return server


def harness_app(server: StatusServer) -> web.Application:
    app = server.app()

    async def harness(request: web.Request) -> web.Response:
        target = request.query.get("page", "")
        return web.Response(text=HARNESS % (target, request.query.get("filter", "0")),
                            content_type="text/html")

    app.router.add_get("/harness", harness)
    return app


def figures(dom: str) -> dict[str, str]:
    found = {}
    for line in dom.split('<pre id="out">', 1)[1].split("</pre>", 1)[0].splitlines():
        key, _, value = line.partition("=")
        found[key] = value
    return found


async def test_20000_reals_page_is_one_row_per_virtual_and_the_filter_works() -> None:
    server = big_server()
    runner, url = await serve(harness_app(server))
    try:
        async with aiohttp.ClientSession() as session:
            async with session.get(url, headers={"Accept-Encoding": "identity"}) as response:
                page_bytes = len(await response.read())
            async with session.get(url + "?problems=1") as response:
                problems_bytes = len(await response.read())
        loaded = figures(await dump_dom(url + "harness"))
        filtered = figures(await dump_dom(url + "harness?filter=1", budget_ms=20_000))
        found = await dump_dom(url + "?q=10.200.7.3:81")
    finally:
        await runner.cleanup()
    print(f"\n20,000 reals: page {page_bytes} bytes, loaded and laid out in "
          f"{loaded['loaded_ms']} ms; problems only {problems_bytes} bytes")
    assert loaded["summary_rows"] == "500" and loaded["real_rows"] == "0"  # collapsed
    assert page_bytes < 400_000
    # problems only: the down reals (every 7th), drawn up to the row cap, none of them up
    assert filtered["filtered_rows"] == str(page.MAX_ROWS) and filtered["filtered_up"] == "0"
    assert filtered["url"] == "?problems=1"
    # search by address: one real (r7 of v253: 10.200.7.3 port 81)
    assert found.count('<tr class="r ') == 1 and 'id="v253/r7"' in found
    assert found.count('<tr class="v ') == 1
