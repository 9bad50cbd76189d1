"""A Lua check through a required module vs the same check written inline, and ngx.re on hostile
input (a script).

    .venv/bin/python tests/bench/bench_lua_modules.py --reals 2000 --rounds 5 --seconds 8

Module vs inline: each round runs the engine of ``bench_engine.py`` (scheduler, state, uvloop,
the same reals on 127.x.y.z, in a private network namespace: needs root) once with
``tests/bench/redis_inline.lua`` (PING, ``+PONG``, on ``sd.tcp()`` directly) and once with
``tests/bench/redis_module.lua`` (the same PING through ``require "resty.sdredis"``, from
``lua_testers/`` as lua_path), against one redis-server, at the same schedule; which goes first
alternates. Prints CPU µs per check of each, the ratio of the best rounds (bar: module <= 1.1 x
inline), the median of the round pairs' ratios, and one JSON line. Before it, the Lua side
alone, steadier on a shared machine: both PINGs on a socket faked in Lua
(``redis_lua_work.lua``), µs per check.

ngx.re: ``tests/bench/re_hostile.lua`` times ``ngx.re.find`` in a check, on subjects that
double in size, for a pattern that makes a backtracking engine take exponential time
(``(x+x+)+y`` on x's), and for a pattern that doubles with its subject. Prints µs per call and
the growth per doubling (linear: about 2 for the first; at most about 4 for the second, whose
work is pattern x subject, until ngx.re refuses the search as too costly), and one JSON line.
Skipped (said so) when ``ngx.re`` is not there.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from tests.bench import bench_engine  # noqa: E402

RE_SCRIPT = Path(__file__).with_name("re_hostile.lua")
WORK_SCRIPT = Path(__file__).with_name("redis_lua_work.lua")


async def best_of(script: Path, params: str, tries: int = 5) -> float | str:
    """The smallest figure a check of ``script`` returns as its reason (best of ``tries``), or
    the reason of a check that failed."""
    from surealived.config.main import folder_templates
    from surealived.lua import ScriptRegistry
    from tests.lua.helpers import lua_check

    scripts = ScriptRegistry(lua_path=folder_templates(str(ROOT / "lua_testers")))
    best: float | None = None
    for _ in range(tries):
        result, _timing = await lua_check(str(script), 9, params=params, timeout=10,
                                          scripts=scripts)
        if not result.ok:
            return result.reason
        best = float(result.reason) if best is None else min(best, float(result.reason))
    assert best is not None
    return best


def lua_work() -> dict[str, object]:
    """The Lua side alone (sockets faked in Lua): what the module adds to a check."""
    figures = {kind: asyncio.run(best_of(WORK_SCRIPT, f"kind={kind} n=20000"))
               for kind in ("inline", "module")}
    inline, module = figures["inline"], figures["module"]
    if isinstance(inline, str) or isinstance(module, str):
        sys.exit(f"redis_lua_work.lua: {inline} / {module}")
    print(f"Lua work per check, sockets faked: inline {inline:.2f} µs, module {module:.2f} µs "
          f"(+{module - inline:.2f} µs)")
    return {"bench": "lua_module_work", "inline_us": inline, "module_us": module,
            "time": int(time.time())}


def module_vs_inline(args: argparse.Namespace) -> dict[str, object]:
    with bench_engine.serve(False, 1, False, "lua-redis") as ports:
        figures = bench_engine.alternating(("lua-redis", "lua-redis-module"), ports,
                                           args.rounds, args.reals, args.seconds)
    inline, module = min(figures["lua-redis"]), min(figures["lua-redis-module"])
    ratio = module / inline
    paired = statistics.median(m / i for i, m in zip(figures["lua-redis"],
                                                     figures["lua-redis-module"], strict=True))
    print(f"inline:  {inline:6.1f} CPU µs per check (best of {args.rounds})")
    print(f"module:  {module:6.1f} CPU µs per check (best of {args.rounds})")
    print(f"ratio module/inline: {ratio:.2f} (bar: <= 1.1) {'OK' if ratio <= 1.1 else 'OVER'}; "
          f"median of the round pairs' ratios: {paired:.2f}")
    return {"bench": "lua_module_vs_inline", "reals": args.reals, "rounds": args.rounds,
            "seconds": args.seconds, "inline_cpu_us": round(inline, 1),
            "module_cpu_us": round(module, 1), "ratio": round(ratio, 3),
            "paired_ratio": round(paired, 3), "time": int(time.time())}


async def re_call_us(n: int, kind: str) -> float | str:
    """µs per ngx.re.find call on n bytes (best of 5 checks), or the check's reason."""
    reps = max(1, min(200, 2_000_000 // (n * (n if kind == "both" else 1))))
    return await best_of(RE_SCRIPT, f"n={n} reps={reps} kind={kind}")


def re_hostile(args: argparse.Namespace) -> dict[str, object] | None:
    out: dict[str, object] = {"bench": "ngx_re_hostile", "time": int(time.time())}
    for kind, sizes in (("subject", [1024 << i for i in range(args.re_steps)]),
                        ("both", [64 << i for i in range(args.re_steps - 2)])):
        series: list[tuple[int, float]] = []
        for n in sizes:
            us = asyncio.run(re_call_us(n, kind))
            if isinstance(us, str) and not series:
                print(f"ngx.re: skipped ({us})")
                return None
            if isinstance(us, str):  # the sandbox's bound on a search's cost, say
                print(f"ngx.re {kind:>7} n={n:>7}: refused: {us}")
                out[f"{kind}_refused_at"] = n
                break
            growth = f"x{us / series[-1][1]:.2f}" if series and series[-1][1] else ""
            series.append((n, us))
            print(f"ngx.re {kind:>7} n={n:>7}: {us:10.2f} µs per call {growth}", flush=True)
        out[kind] = [[n, round(us, 3)] for n, us in series]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reals", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=5, help="alternating rounds")
    parser.add_argument("--seconds", type=float, default=8.0, help="measured, per script")
    parser.add_argument("--re-steps", type=int, default=7, help="doublings of the ngx.re sizes")
    parser.add_argument("--only", choices=("module", "re"), default=None)
    args = parser.parse_args()
    if args.only != "re":
        bench_engine.reexec_in_netns()
    if args.only != "module":
        figures = re_hostile(args)
        if figures is not None:
            print(json.dumps(figures))
    if args.only != "re":
        print(json.dumps(lua_work()))
        print(json.dumps(module_vs_inline(args)))


if __name__ == "__main__":
    main()
