"""Benchmark: the status outputs at N reals (default 20,000), every real with a check history.
Run by hand:

    .venv/bin/python tests/bench/bench_status.py [--reals 20000] [--per-virtual 40]

Prints the time (best of 3) of /metrics, /status JSON, the page, and the control port's stats,
connstats and one rlist, then one JSON line. Rendering runs on the event loop, so these are the
stalls one request causes.
"""

from __future__ import annotations

import argparse
import json
import time

from surealived.config.main import MainConfig
from surealived.config.xml import parse_config_bytes
from surealived.control.process import ProcessInfo
from surealived.control.protocol import Context, execute
from surealived.engine.state import CheckTiming, DaemonState, RoundReport
from surealived.registry import load_testers
from surealived.status import metrics, page
from surealived.status.views import status_view
from surealived.tester_api import Result


def build(reals: int, per_virtual: int) -> DaemonState:
    lines = ["<surealived>"]
    for v in range((reals + per_virtual - 1) // per_virtual):
        a, b = divmod(v, 250)
        lines.append(f'<virtual name="v{v}" addr="10.{a}.{b}.1" port="80" proto="tcp" '
                     'sched="wrr" rt="dr"><tester proto="tcp" testport="80"/>')
        for r in range(per_virtual):
            lines.append(f'<real name="r{r}" addr="10.200.{r}.{v % 250}" port="{80 + v // 250}" '
                         'weight="10"/>')
        lines.append("</virtual>")
    lines.append("</surealived>")
    state = DaemonState(parse_config_bytes("\n".join(lines).encode(), "bench.xml",
                                           load_testers()))
    return state


def best(fn, runs: int = 3) -> tuple[float, int]:  # type: ignore[no-untyped-def]
    times, size = [], 0
    for _ in range(runs):
        start = time.perf_counter()
        size = len(fn())
        times.append(time.perf_counter() - start)
    return min(times), size


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--reals", type=int, default=20_000)
    parser.add_argument("--per-virtual", type=int, default=40)
    args = parser.parse_args()
    state = build(args.reals, args.per_virtual)
    history = metrics.CheckHistory()
    state.round_listeners.append(history.on_round)
    for i, v in enumerate(state.virtuals):
        done = []
        for j, real in enumerate(v.reals):
            result = Result.up() if (i + j) % 7 else Result.down(f"HTTP 50{j % 4}")
            timing = CheckTiming(started=time.time(), conn_us=500, resp_us=1500, total_us=2000)
            state.record_result(real, result, timing)
            done.append((real, result, timing))
        state.finish_round(RoundReport(v, 0.0, 0.0, tuple(done)))
    fig = metrics.Figures(now=time.time(), engine={"inflight": 1, "loop_lag_ms": 0.5})
    ctx = Context(state, MainConfig(), process=ProcessInfo)
    figures = {
        "metrics": best(lambda: metrics.render(state, history, fig)),
        "status_json": best(lambda: json.dumps(status_view(state, time.time()))),
        "page": best(lambda: page.render(state, time.time())),
        "stats": best(lambda: "\n".join(execute("stats", ctx))),
        "connstats": best(lambda: "\n".join(execute("connstats", ctx))),
        "rlist": best(lambda: "\n".join(execute("rlist vproto=tcp vaddr=10.0.0.1 vport=80",
                                                ctx))),
    }
    for name, (seconds, size) in figures.items():
        print(f"{name:12} {seconds * 1000:8.1f} ms  {size / 1e6:6.2f} MB")
    print(json.dumps({"reals": args.reals, **{f"{k}_ms": round(s * 1000, 1)
                                              for k, (s, _) in figures.items()}}))


if __name__ == "__main__":
    main()
