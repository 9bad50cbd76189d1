"""Lua tester vs the built-in http tester, same exchange, against nginx on loopback (a script).

    .venv/bin/python tests/bench/bench_lua.py --checks 2000 --rounds 10 [--pin]

Both send ``GET /health HTTP/1.0`` with Host and User-Agent and judge the 12-byte status line
(the http tester's default, naive mode). Runs the engine's ``run_check`` as the daemon does and
measures this process's CPU (user + system; nginx is another process). Prints CPU µs per check
for each, the ratio (bar: Lua <= 1.3 x http) and one JSON line.

Rounds alternate (http, then lua). The ratio of the best rounds is the headline; on a shared,
busy machine the median of each round pair's ratio is steadier (both halves of a pair meet the
same load) and is printed too. ``--pin`` puts nginx on the last CPU and this process on the
others, as in production where the reals are other machines.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from builtin_testers.http import HttpTester  # noqa: E402
from builtin_testers.lua import LuaTester  # noqa: E402
from surealived.engine.probe import run_check  # noqa: E402
from surealived.tester_api import Target, Tester  # noqa: E402
from tests.servers import nginx  # noqa: E402
from tests.testers.helpers import settings  # noqa: E402

SCRIPT = r"""
local request = "GET /health HTTP/1.0\r\nHost: bench.example.test\r\nUser-Agent: SureAliveD\r\n\r\n"

function check(t)
  local sock = sd.tcp()
  local ok, err = sock:connect(t.addr, t.port)
  if not ok then return false, "connect: " .. err end
  sock:send(request)
  local line, rerr = sock:receive(12)
  if not line then return false, "status line: " .. rerr end
  local status = line:sub(10, 12)
  if status ~= "200" then return false, "status " .. status end
  return true
end
"""


def cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def measure(tester: Tester, port: int, checks: int, concurrency: int) -> tuple[float, int]:
    """CPU µs per check, and how many checks were up."""
    target = Target(addr="127.0.0.1", port=port, rname="r", rport=80, vname="v",
                    vaddr="192.0.2.1", vport=80, vproto="tcp", vfwmark=0, timeout=5)
    up = 0

    async def worker(count: int) -> None:
        nonlocal up
        for _ in range(count):
            result, _ = await run_check(tester, target)
            up += result.ok

    await asyncio.gather(*(worker(checks // concurrency) for _ in range(concurrency // 5)))
    start = cpu()
    await asyncio.gather(*(worker(checks // concurrency) for _ in range(concurrency)))
    return (cpu() - start) * 1e6 / (checks // concurrency * concurrency), up


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checks", type=int, default=3000)
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds, best kept")
    parser.add_argument("--pin", action="store_true",
                        help="nginx on the last CPU, this process on the others")
    args = parser.parse_args()
    cpus = sorted(os.sched_getaffinity(0))
    pinned = args.pin and len(cpus) > 1
    if pinned:
        os.sched_setaffinity(0, cpus[-1:])  # nginx inherits this
    with tempfile.TemporaryDirectory(prefix="sd-bench-lua-") as tmp, nginx(tmp) as web:
        if pinned:
            os.sched_setaffinity(0, cpus[:-1])
        script = Path(tmp) / "http_status.lua"
        script.write_text(SCRIPT)
        http = HttpTester(settings(HttpTester, url="/health", host="bench.example.test"))
        lua = LuaTester(settings(LuaTester, script=str(script)))
        figures: dict[str, list[float]] = {"http": [], "lua": []}
        for _ in range(args.rounds):
            for name, tester in (("http", http), ("lua", lua)):
                per_check, up = await measure(tester, web.port, args.checks, args.concurrency)
                if up < args.checks:
                    sys.exit(f"{name}: only {up} of {args.checks} checks were up")
                figures[name].append(per_check)
    http_us, lua_us = min(figures["http"]), min(figures["lua"])
    ratio = lua_us / http_us
    paired = statistics.median(lu / ht for ht, lu in zip(figures["http"], figures["lua"],
                                                         strict=True))
    print(f"http tester: {http_us:7.1f} CPU us per check (rounds: "
          f"{', '.join(f'{v:.1f}' for v in figures['http'])})")
    print(f"lua tester:  {lua_us:7.1f} CPU us per check (rounds: "
          f"{', '.join(f'{v:.1f}' for v in figures['lua'])})")
    print(f"ratio lua/http: {ratio:.2f} (bar: <= 1.3) {'OK' if ratio <= 1.3 else 'OVER'}; "
          f"median of the round pairs' ratios: {paired:.2f}")
    print(json.dumps({"bench": "lua_vs_http", "checks": args.checks,
                      "concurrency": args.concurrency, "rounds": args.rounds, "pinned": pinned,
                      "http_cpu_us": round(http_us, 1), "lua_cpu_us": round(lua_us, 1),
                      "ratio": round(ratio, 3), "paired_ratio": round(paired, 3),
                      "time": int(time.time())}))


if __name__ == "__main__":
    asyncio.run(main())
