"""The HTTP status server: /metrics parsed by prometheus_client, /status, /ready, the page."""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import AsyncIterator
from types import SimpleNamespace
from typing import Any

import aiohttp
import pytest
import pytest_asyncio
from prometheus_client.parser import text_string_to_metric_families

from surealived.config.main import MainConfig
from surealived.engine.state import CheckTiming, DaemonState, RoundReport
from surealived.services import Services
from surealived.status import metrics
from surealived.status.server import StatusServer
from surealived.tester_api import Result
from tests.control.conftest import make_state


class FakeMetrics:
    def as_dict(self) -> dict[str, float]:
        return {"inflight": 3, "waiting": 0, "loop_lag_ms": 1.5, "loop_lag_max_ms": 12.0,
                "rounds": 7, "schedule_lag_p50_ms": 0.2, "schedule_lag_p99_ms": 4.0}


class FakeSync:
    last_snapshot = 1_700_000_000.0


def stand_in(state: DaemonState) -> SimpleNamespace:
    return SimpleNamespace(state=state, maincfg=MainConfig(status_listen=("127.0.0.1", 0)),
                           engine=SimpleNamespace(max_inflight=64, metrics=FakeMetrics()),
                           loop_name="asyncio", services=Services(),
                           components=[FakeSync()])


def finish_round(state: DaemonState, vindex: int, results: list[Result],
                 total_us: int = 20_000) -> None:
    """What the engine does after a round: record every result, then report the round."""
    v = state.virtuals[vindex]
    done = []
    for real, result in zip(v.reals, results, strict=True):
        timing = CheckTiming(started=1000.0, conn_us=100, resp_us=total_us - 100,
                             total_us=total_us, problem=None if result.ok else "rst")
        state.record_result(real, result, timing)
        done.append((real, result, timing))
    state.finish_round(RoundReport(v, 1000.0, 1000.1, tuple(done)))


@pytest_asyncio.fixture
async def served() -> AsyncIterator[tuple[Any, StatusServer, str]]:
    daemon = stand_in(make_state())
    server = StatusServer(clock=lambda: 1_700_000_010.0)
    await server.start(daemon)
    try:
        yield daemon, server, f"http://{server.url_host}"
    finally:
        await server.stop(daemon)


async def get(url: str) -> tuple[int, str, str]:
    async with aiohttp.ClientSession() as session, session.get(url) as response:
        return response.status, response.headers["Content-Type"], await response.text()


@pytest.mark.asyncio
async def test_ready_only_once_every_real_was_tested(
        served: tuple[Any, StatusServer, str]) -> None:
    daemon, _, base = served
    status, _, text = await get(f"{base}/ready")
    assert status == 503 and text == "not ready: 4 of 4 reals not tested yet\n"
    finish_round(daemon.state, 0, [Result.up(), Result.down("HTTP 503")])
    finish_round(daemon.state, 1, [Result.up()])
    status, _, text = await get(f"{base}/ready")
    assert status == 503 and "1 of 4" in text
    finish_round(daemon.state, 2, [Result.up()])
    status, _, text = await get(f"{base}/ready")
    assert status == 200 and text == "ready: all 4 reals tested\n"


@pytest.mark.asyncio
async def test_metrics_parse_and_say_what_happened(
        served: tuple[Any, StatusServer, str]) -> None:
    daemon, _, base = served
    finish_round(daemon.state, 0, [Result.up(), Result.down("connection refused: [Errno 111]")])
    finish_round(daemon.state, 0, [Result.up(), Result.down('HTTP 503 "busy"\n')])
    daemon.state.set_admin(daemon.state.virtuals[1].reals[0], "OFFLINE")
    status, ctype, text = await get(f"{base}/metrics")
    assert status == 200 and ctype.startswith("text/plain; version=0.0.4")
    families = {f.name: f for f in text_string_to_metric_families(text)}
    h1 = {"virtual": "tcp:10.1.1.2:80", "real": "127.0.0.1:80"}
    h2 = {**h1, "real": "127.0.0.2:81"}

    def value(family: str, sample: str, **labels: str) -> float:
        for s in families[family].samples:
            if s.name == sample and s.labels == labels:
                return s.value
        raise AssertionError(f"no {sample} {labels}")

    assert value("surealived_real_up", "surealived_real_up", **h1) == 1
    assert value("surealived_real_up", "surealived_real_up", **h2) == 0
    assert value("surealived_real_weight", "surealived_real_weight", **h2) == 0
    assert value("surealived_real_weight", "surealived_real_weight", **h1) == 10
    s1 = {"virtual": "tcp:[2001:db8::1]:443", "real": "[2001:db8::10]:443"}
    assert value("surealived_real_info", "surealived_real_info", **s1, vname="web6", rname="s1",
                 tester="tcp") == 1
    assert value("surealived_real_rstate", "surealived_real_rstate", **s1, rstate="OFFLINE") == 1
    assert value("surealived_real_rstate", "surealived_real_rstate", **s1, rstate="ONLINE") == 0
    hist = "surealived_real_check_duration_seconds"
    assert value(hist, f"{hist}_count", **h1) == 2
    assert value(hist, f"{hist}_bucket", **h1, le="0.05") == 2
    assert value(hist, f"{hist}_bucket", **h1, le="0.01") == 0
    checks = "surealived_real_checks"
    assert value(checks, f"{checks}_total", **h2, result="down",
                 reason="connection refused") == 1
    assert value(checks, f"{checks}_total", **h2, result="down", reason="http 503 busy") == 1
    assert value(checks, f"{checks}_total", **h1, result="up", reason="ok") == 2
    assert value("surealived_checks", "surealived_checks_total", result="failed") == 2
    assert value("surealived_reals_untested", "surealived_reals_untested") == 2
    assert value("surealived_loop_lag_seconds", "surealived_loop_lag_seconds") == 0.0015
    assert value("surealived_checks_in_flight", "surealived_checks_in_flight") == 3
    assert value("surealived_last_snapshot_age_seconds",
                 "surealived_last_snapshot_age_seconds") == 10
    assert value("surealived_lua_errors", "surealived_lua_errors_total") == 0
    assert value("process_open_fds", "process_open_fds") > 0


def test_reason_labels_are_bounded() -> None:
    history = metrics.CheckHistory(max_reasons=3)
    labels = {history.reason_label(False, f"error {n}: details {n}") for n in range(50)}
    assert labels == {"error 0", "error 1", "error 2", "other"}
    assert history.reason_label(True, "anything") == "ok"
    assert metrics.CheckHistory().reason_label(False, "\x00\x01: x") == "unknown"


def test_snapshot_time_on_either_clock() -> None:
    import time

    mono = SimpleNamespace(last_snapshot=time.monotonic() - 30)
    assert abs(metrics.last_snapshot_of([mono], 5000.0) - 4970.0) < 5
    assert metrics.last_snapshot_of([FakeSync(), object()], 5000.0) == 1_700_000_000.0
    assert metrics.last_snapshot_of([SimpleNamespace(last_snapshot=0.0)], 5000.0) is None


def test_metrics_without_engine_figures() -> None:
    state = make_state()
    text = metrics.render(state, metrics.CheckHistory(), metrics.Figures(now=0.0))
    names = {f.name for f in text_string_to_metric_families(text)}
    assert "surealived_real_up" in names and "surealived_loop_lag_seconds" not in names


@pytest.mark.asyncio
async def test_status_json(served: tuple[Any, StatusServer, str]) -> None:
    daemon, _, base = served
    finish_round(daemon.state, 0, [Result.up(), Result.down("HTTP 503")])
    status, ctype, text = await get(f"{base}/status")
    assert status == 200 and ctype.startswith("application/json")
    data = json.loads(text)
    assert data["reals_count"] == 4 and data["untested"] == 2 and data["ready"] is False
    web = data["virtuals"][0]
    assert web["name"] == "web" and web["id"] == "tcp:10.1.1.2:80"
    assert [(r["name"], r["state"], r["last_reason"]) for r in web["reals"]] == [
        ("h1", "up", ""), ("h2", "down", "HTTP 503")]
    assert data["engine"]["inflight"] == 3 and data["last_snapshot"] == 1_700_000_000.0


@pytest.mark.asyncio
async def test_page_renders_states(served: tuple[Any, StatusServer, str]) -> None:
    daemon, _, base = served
    finish_round(daemon.state, 0, [Result.up(), Result.down("HTTP 503 <script>")])
    daemon.state.set_admin(daemon.state.virtuals[1].reals[0], "OFFLINE", reason="swap")
    status, ctype, text = await get(f"{base}/")
    assert status == 200 and ctype.startswith("text/html")
    assert '<tr class="r up" id="web/h1">' in text
    assert '<tr class="r down" id="web/h2">' in text
    assert "HTTP 503 &lt;script&gt;" in text  # reasons are escaped
    assert '<tr class="r removed"' not in text
    assert '<tr class="r drained" id="web6/s1">' in text


def test_status_listen_setting() -> None:
    from surealived.config.main import MainConfig, parse_maincfg

    assert MainConfig().status_listen is None  # off by default
    assert parse_maincfg("status_listen 127.0.0.1:9337\n", "/x.cfg").status_listen == (
        "127.0.0.1", 9337)
    assert parse_maincfg("status_listen [::1]:9337\n", "/x.cfg").status_listen == ("::1", 9337)
    assert parse_maincfg("status_listen off\n", "/x.cfg").status_listen is None


def test_state_change_time_in_metrics_and_status() -> None:
    state = make_state()  # started at 1000.0
    h2 = state.virtuals[0].reals[1]
    state.record_result(h2, Result.down("refused"), CheckTiming(started=1200.0, total_us=500_000))
    state.set_admin(state.virtuals[1].reals[0], "OFFLINE")  # the state's clock says 1000.0
    text = metrics.render(state, metrics.CheckHistory(), metrics.Figures(now=1300.0))
    family = next(f for f in text_string_to_metric_families(text)
                  if f.name == "surealived_real_state_change_timestamp_seconds")
    by_real = {(s.labels["virtual"], s.labels["real"]): s.value for s in family.samples}
    assert by_real[("tcp:10.1.1.2:80", "127.0.0.2:81")] == 1200.5  # when the verdict came
    assert by_real[("tcp:10.1.1.2:80", "127.0.0.1:80")] == 1000.0  # unchanged since start
    from surealived.status.views import status_view

    web = status_view(state, 1300.0)["virtuals"][0]
    assert [r["state_changed"] for r in web["reals"]] == [None, 1200.5]
    assert web["summary"] == {"reals": 2, "up": 0, "states": {"unknown": 1, "down": 1},
                              "weight": 10, "config_weight": 30, "changed": 1200.5}


@pytest.mark.asyncio
async def test_metrics_scope(served: tuple[Any, StatusServer, str]) -> None:
    daemon, _, base = served
    finish_round(daemon.state, 0, [Result.up(), Result.down("HTTP 503")])

    async def families(query: str) -> dict[str, Any]:
        status, _, text = await get(f"{base}/metrics{query}")
        assert status == 200, text
        return {f.name: f for f in text_string_to_metric_families(text)}

    everything = await families("")
    assert "surealived_real_check_duration_seconds" in everything
    glob = await families("?scope=global")
    assert not [name for name in glob if name.startswith("surealived_real_")]
    reals = {s.labels["vname"]: s.value for s in glob["surealived_virtual_reals"].samples}
    assert reals == {"web": 2, "web6": 1, "marked": 1, "empty": 0}
    up = {s.labels["vname"]: s.value for s in glob["surealived_virtual_reals_up"].samples}
    assert up["web"] == 1
    web = await families("?virtual=web&histograms=off")
    assert {s.labels["virtual"] for s in web["surealived_real_up"].samples} == {"tcp:10.1.1.2:80"}
    assert "surealived_real_check_duration_seconds" not in web
    assert "surealived_real_checks" in web and "surealived_virtual_reals" in web
    status, _, text = await get(f"{base}/metrics?scope=some")
    assert status == 400 and "valid: all, global" in text
    status, _, text = await get(f"{base}/metrics?virtuals=web")
    assert status == 400 and "unknown parameter 'virtuals'" in text


PROMTOOL = shutil.which("promtool")


@pytest.mark.skipif(PROMTOOL is None, reason="promtool (Debian package prometheus) is missing")
@pytest.mark.parametrize("scope", [metrics.Scope(), metrics.Scope(per_real=False),
                                   metrics.Scope(virtuals=frozenset({"web"}), histograms=False)])
def test_promtool_accepts_the_metrics(scope: metrics.Scope) -> None:
    state = make_state()
    history = metrics.CheckHistory()
    state.round_listeners.append(history.on_round)
    finish_round(state, 0, [Result.up(), Result.down("connection refused")])
    text = metrics.render(state, history, metrics.Figures(now=1010.0), scope)
    assert PROMTOOL is not None
    done = subprocess.run([PROMTOOL, "check", "metrics"], input=text, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0 and not done.stdout.strip() and not done.stderr.strip(), (
        done.stdout + done.stderr)


def test_recent_minutes_and_the_view_in_the_url() -> None:
    from surealived.status import page
    from surealived.status.recent import RecentChecks

    state = make_state()
    h1 = state.virtuals[0].reals[0]
    recent = RecentChecks()
    recent.record(h1, True, 0.002, 60 * 1000 + 5)   # minute 1000
    recent.record(h1, False, 0.5, 60 * 1000 + 30)   # same minute: the slowest one, failed
    recent.mark_change(h1, 60 * 1030)
    minutes = recent.minutes(h1, 60 * 1059 + 1)
    assert len(minutes) == 60 and minutes[0].failed and minutes[0].latency == 183  # 0.5 s
    assert minutes[30].changed and not any(m.latency for m in minutes[1:])
    assert recent.minutes(h1, 60 * 1060)[0].latency == 0  # an hour later it is gone
    view = page.View.from_query({"q": [" 127.0.0.2 "], "problems": ["1"], "open": ["web"]})
    assert view == page.View("127.0.0.2", True, frozenset({"web"}))
    assert view.query(opened=frozenset()) == "?q=127.0.0.2&problems=1"
    text = page.render(state, 1010.0, view=page.View(search="127.0.0.2"), recent=recent)
    assert text.count('<tr class="r ') == 1 and 'id="web/h2"' in text
