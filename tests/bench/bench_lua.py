"""Lua tester vs the built-in http tester, same exchange, as the daemon runs them (a script).

    .venv/bin/python tests/bench/bench_lua.py --reals 2000 --rounds 5 --seconds 8

``tests/bench/http_status.lua`` does what the http tester's naive check does (``GET /health
HTTP/1.0`` with Host and User-Agent, judge the 12-byte status line). Each round runs the engine
of ``bench_engine.py`` (scheduler, state, uvloop, the same reals on 127.x.y.z with nginx behind
them, in a private network namespace: needs root) once with the http tester and once with the
Lua tester, and measures this process's CPU (user + system) per check. Prints both, the ratio of
the best rounds (bar: Lua <= 1.2 x http), the median of each round pair's ratio (steadier on a
shared machine: both halves of a pair meet the same load) and one JSON line.

nginx defers its accepts (``TCP_DEFER_ACCEPT``) unless ``--no-deferred-accept``: on loopback
the kernel wakes nginx in the checker's context and bills the checker for it, and a Lua check,
which spends longer between its connect and its request, gives nginx more chances to fall
asleep in between (0.8 wake-ups of nginx per check against 0.58 for the http tester without
deferred accepts, 0.26 against 0.12 with them). With remote reals, as in production, the reals'
CPUs pay for those wake-ups.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from tests.bench import bench_engine  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reals", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=5, help="alternating rounds")
    parser.add_argument("--seconds", type=float, default=8.0, help="measured, per tester")
    parser.add_argument("--no-deferred-accept", dest="deferred", action="store_false",
                        help="nginx without TCP_DEFER_ACCEPT (see bench_engine.py "
                             "--deferred-accept)")
    parser.add_argument("--pin", action="store_true", help="as bench_engine.py --pin")
    args = parser.parse_args()
    bench_engine.reexec_in_netns()
    with bench_engine.serve(args.deferred, bench_engine.nginx_workers(), args.pin) as ports:
        figures = bench_engine.alternating(("http", "lua"), ports, args.rounds, args.reals,
                                           args.seconds)
    http_us, lua_us = min(figures["http"]), min(figures["lua"])
    ratio = lua_us / http_us
    paired = statistics.median(lu / ht for ht, lu in zip(figures["http"], figures["lua"],
                                                         strict=True))
    print(f"http tester: {http_us:6.1f} CPU µs per check (best of {args.rounds})")
    print(f"lua tester:  {lua_us:6.1f} CPU µs per check (best of {args.rounds})")
    print(f"ratio lua/http: {ratio:.2f} (bar: <= 1.2) {'OK' if ratio <= 1.2 else 'OVER'}; "
          f"median of the round pairs' ratios: {paired:.2f}")
    print(json.dumps({"bench": "lua_vs_http", "reals": args.reals, "rounds": args.rounds,
                      "seconds": args.seconds, "http_cpu_us": round(http_us, 1),
                      "lua_cpu_us": round(lua_us, 1), "ratio": round(ratio, 3),
                      "paired_ratio": round(paired, 3), "time": int(time.time())}))


if __name__ == "__main__":
    main()
