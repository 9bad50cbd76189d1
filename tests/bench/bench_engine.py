"""Engine benchmark (a script, not a test): N reals on 127.x.y.z with nginx behind them.

    .venv/bin/python tests/bench/bench_engine.py --reals 20000 --tester tcp --seconds 20

Runs in a network namespace of its own (``unshare -n``, needs root) so that nginx can listen on
the wildcard address and every 127.x.y.z reaches it, while nothing is reachable from outside.
The engine runs as in the daemon (scheduler, probes, state) without the other components. Prints
checks/s achieved against what the configuration asks for, CPU µs per check (user + system of
this whole process), peak RSS, open fds, checks in flight, schedule lag p50/p99, and one JSON
line.

The C yardstick: ``c_checker.c`` does the original daemon's per-check work (socket, SO_LINGER,
epoll, connect, the request and status line for http, close) and nothing else. It is compiled
and run after the engine, in the same namespace against the same nginx, reals and achieved rate,
so "CPU per check" of the Python engine can be read next to C measured on the same machine at
the same time (most of it is the kernel's TCP work for both ends of the loopback connection).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))


def reexec_in_netns() -> None:
    if os.environ.get("SD_BENCH_NETNS") == "1":
        return
    unshare = shutil.which("unshare")
    if os.geteuid() != 0 or unshare is None:
        sys.exit("needs root and unshare(1): the benchmark runs in its own network namespace")
    os.environ["SD_BENCH_NETNS"] = "1"
    script = "ip link set lo up && exec \"$@\""
    os.execv(unshare, [unshare, "-n", "sh", "-c", script, "sh", sys.executable, *sys.argv])


def address(i: int) -> str:
    n = i + 1 + 65536  # 127.1.0.1 onwards
    return f"127.{n >> 16 & 255}.{n >> 8 & 255}.{n & 255}"


# The http tester's naive exchange, written as a Lua tester (as in bench_lua.py)
LUA_SCRIPT = ROOT / "tests" / "bench" / "http_status.lua"


# A Redis PING inline and through resty.sdredis (bench_lua_modules.py)
REDIS_SCRIPTS = {"lua-redis": ROOT / "tests" / "bench" / "redis_inline.lua",
                 "lua-redis-module": ROOT / "tests" / "bench" / "redis_module.lua"}


# what each --tester runs: the tester's proto and its attributes (and SSL)
TESTERS = {
    "tcp": ("tcp", ""),
    "http": ("http", ' url="/health" host="bench.example.test"'),
    "http-body": ("http", ' url="/health" host="bench.example.test" naive="0" body_match="ok"'),
    "https": ("http", ' url="/health" host="real1.example.test" SSL="1"'),
    "dns": ("dns", ' request="example.test" qtype="soa"'),
    "exec": ("exec", ' exec="/bin/true"'),
    "lua": ("lua", f' script="{LUA_SCRIPT}"'),
    "thirdparty": ("bench_http", ' url="/health" host="bench.example.test"'),
    **{name: ("lua", f' script="{path}"') for name, path in REDIS_SCRIPTS.items()},
}


def build_xml(reals: int, per_virtual: int, tester: str, ports: list[int], loopdelay: float,
              timeout: float, interval: float | None = None) -> str:
    proto, extra = TESTERS[tester]
    if interval is not None:
        extra += f' interval="{interval}"'
    parts = ["<surealived>"]
    for v, first in enumerate(range(0, reals, per_virtual)):
        parts.append(f'<virtual name="v{v}" addr="10.{v >> 16 & 255}.{v >> 8 & 255}.{v & 255}" '
                     f'port="80" proto="tcp" sched="wrr" rt="dr">')
        parts.append(f'<tester proto="{proto}" testport="{ports[0]}" loopdelay="{loopdelay}" '
                     f'timeout="{timeout}"{extra}/>')
        for i in range(first, min(first + per_virtual, reals)):
            parts.append(f'<real name="r{i}" addr="{address(i)}" port="80" weight="1" '
                         f'testport="{ports[i % len(ports)]}"/>')
        parts.append("</virtual>")
    parts.append("</surealived>")
    return "\n".join(parts)


def nginx_workers() -> int:
    """One nginx worker per CPU but one: more would take turns with the checker for its CPU
    and bill it for their wake-ups (on loopback the kernel wakes the server in the checker's
    context)."""
    return max(1, len(os.sched_getaffinity(0)) - 1)


@contextlib.contextmanager
def serve(deferred: bool, workers: int, pin: bool, tester: str = "tcp") -> Iterator[list[int]]:
    """nginx in front of every real, on 16 ports (each with its own accept queue, 4096 max, as
    many servers would have): the ports (https: nginx's TLS port; dns: dnsmasq's; lua-redis*:
    one redis-server's). ``pin``: nginx on the last CPU, this process on the others (when
    there are several)."""
    from tests.servers import dnsmasq, nginx, redis

    if tester == "dns":
        with dnsmasq(listen="0.0.0.0") as dns:
            yield [dns.port]
        return
    if tester in REDIS_SCRIPTS:
        with redis(listen="0.0.0.0") as port:
            yield [port]
        return

    cpus = sorted(os.sched_getaffinity(0))
    pinned = pin and len(cpus) > 1
    if pinned:
        os.sched_setaffinity(0, cpus[-1:])  # nginx inherits this
    with nginx(listen="0.0.0.0", connections=16384, extra_ports=15, deferred=deferred,
               workers=workers) as web:
        if pinned:
            os.sched_setaffinity(0, cpus[:-1])
        yield [web.tls_port] if tester == "https" else [web.port, *map(int, web.extra.values())]


def c_yardstick(args: argparse.Namespace, ports: list[int], rate: float) -> dict[str, object]:
    """Run ``c_checker.c`` (the original's per-check work in C) against the same nginx, reals
    and rate: the C figure measured on this machine now, next to ours."""
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        return {"c_cpu_us_per_check": None}
    binary = Path(tempfile.mkdtemp(prefix="sd-bench-")) / "c_checker"
    subprocess.run([cc, "-O2", "-o", str(binary), str(Path(__file__).with_name("c_checker.c"))],
                   check=True)
    kind = "tcp" if args.tester == "tcp" else "http"  # lua and thirdparty: the http exchange
    out = subprocess.run([str(binary), kind, str(args.reals), str(rate), str(args.seconds),
                          ",".join(map(str, ports))],
                         check=True, capture_output=True, text=True).stdout
    shutil.rmtree(binary.parent)
    figures: dict[str, object] = json.loads(out)
    return figures


def round_period(args: argparse.Namespace) -> float:
    """The scheduled time from one round of a virtual to the next: its starts spread up to the
    last batch's offset, then timeout + loopdelay (the original's period); with --interval,
    interval after the last verdict (the checks' own time left out: the rate is a ceiling)."""
    from surealived.engine.scheduler import plan_batches

    spread = plan_batches(min(args.per_virtual, args.reals), args.startup_delay_ms, 100)[-1][0]
    return float(spread + (args.interval if args.interval is not None
                           else args.timeout + args.loopdelay))


def rss_mb() -> float:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / (1 << 20)


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def measure(args: argparse.Namespace, ports: list[int]) -> dict[str, object]:
    from surealived.config.main import MainConfig, folder_templates
    from surealived.config.xml import parse_config_bytes
    from surealived.engine import heap
    from surealived.engine.scheduler import Engine
    from surealived.engine.state import DaemonState
    from surealived.registry import load_testers
    from surealived.services import Services

    # lua_path: lua_testers/ (resty.sdredis for redis_module.lua)
    maincfg = MainConfig(maxfd=args.maxfd, startup_delay_ms=args.startup_delay_ms,
                         loop_interval_ms=100, max_inflight=args.max_inflight,
                         lua_path=folder_templates(str(ROOT / "lua_testers")))
    registry = load_testers(modules_path=str(Path(__file__).with_name("modules")),
                            services=Services.from_maincfg(maincfg))
    empty = rss_mb()  # the process with everything loaded but the configuration
    xml = build_xml(args.reals, args.per_virtual, args.tester, ports, args.loopdelay,
                    args.timeout, args.interval)
    config = parse_config_bytes(xml.encode(), "/tmp/bench.xml", registry)
    state = DaemonState(config)
    engine = Engine(state, registry, maincfg)
    engine.start()
    heap.settle()  # as the daemon does after start-up
    m = engine.metrics
    await asyncio.sleep(args.warmup)
    cpu0, done0, started0, late0, t0 = (cpu_seconds(), m.checks_done, m.checks_started,
                                        m.started_late, time.monotonic())
    usage0 = resource.getrusage(resource.RUSAGE_SELF)
    m._lag_count = 0  # lag percentiles over the measured window only
    fds = inflight = 0
    while time.monotonic() - t0 < args.seconds:
        await asyncio.sleep(0.25)
        fds = max(fds, len(os.listdir("/proc/self/fd")))
        inflight = max(inflight, m.inflight)
    elapsed = time.monotonic() - t0
    cpu, done = cpu_seconds() - cpu0, m.checks_done - done0
    usage = resource.getrusage(resource.RUSAGE_SELF)
    wakeups, preempted = usage.ru_nvcsw - usage0.ru_nvcsw, usage.ru_nivcsw - usage0.ru_nivcsw
    started, late = m.checks_started - started0, m.started_late - late0
    p50, p99 = m.lag_percentiles()
    failed = state.counters.t_failed
    durations = sorted(r.stats.last.total_us for r in state.reals())
    check_p50 = durations[len(durations) // 2] / 1000 if durations else 0.0
    check_p99 = durations[len(durations) * 99 // 100] / 1000 if durations else 0.0
    await engine.stop()
    period = round_period(args)
    return {
        "tester": args.tester, "reals": args.reals, "loop": args.loop,
        "scheduled_checks_per_s": round(args.reals / period),
        "achieved_checks_per_s": round(done / elapsed),
        "cpu_us_per_check": round(cpu / done * 1e6, 1) if done else None,
        "user_us_per_check": round((usage.ru_utime - usage0.ru_utime) / done * 1e6, 1)
        if done else None,
        "cpu_percent": round(cpu / elapsed * 100, 1),
        # the loop went to sleep / another process took the CPU (a loaded machine)
        "wakeups_per_check": round(wakeups / done, 3) if done else None,
        "preempted_per_check": round(preempted / done, 3) if done else None,
        "page_faults_per_check": round((usage.ru_minflt - usage0.ru_minflt) / done, 3)
        if done else None,
        "on_schedule": round(1 - late / started, 4) if started else None,
        "schedule_lag_p50_ms": round(p50, 2), "schedule_lag_p99_ms": round(p99, 2),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "empty_rss_mb": round(empty, 1),
        # what each real costs: peak RSS above the process before its configuration
        "kb_per_real": round((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 - empty)
                             * 1024 / args.reals, 2),
        "max_open_fds": fds, "max_inflight_seen": inflight,
        "max_inflight_allowed": engine.max_inflight, "failed_checks": failed,
        "loop_lag_max_ms": round(m.loop_lag_max_ms, 2),
        "check_time_p50_ms": round(check_p50, 2), "check_time_p99_ms": round(check_p99, 2),
    }


def alternating(testers: tuple[str, ...], ports: list[int], rounds: int, reals: int,
                seconds: float) -> dict[str, list[float]]:
    """CPU µs per check of each tester, a figure per round, the testers taking turns to go
    first (neither always meets the other's leftovers: caches, the collectors' state); exits
    on any failed check. For the scripts that compare two testers (bench_lua*.py)."""
    import uvloop

    figures: dict[str, list[float]] = {tester: [] for tester in testers}
    width = max(map(len, testers))
    for round_ in range(rounds):
        for tester in testers if round_ % 2 == 0 else tuple(reversed(testers)):
            run = arguments().parse_args(["--reals", str(reals), "--tester", tester,
                                          "--seconds", str(seconds), "--warmup", "2"])
            result = uvloop.run(measure(run, ports))
            if result["failed_checks"]:
                sys.exit(f"{tester}: {result['failed_checks']} checks failed")
            cpu = result["cpu_us_per_check"]
            assert isinstance(cpu, float)
            figures[tester].append(cpu)
            print(f"{tester:>{width}}: {cpu:6.1f} CPU µs per check "
                  f"({result['user_us_per_check']} user), "
                  f"{result['achieved_checks_per_s']} checks/s", flush=True)
    return figures


def arguments() -> argparse.ArgumentParser:
    """This script's options (bench_lua.py runs ``measure`` with them too)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reals", type=int, default=5000)
    parser.add_argument("--tester", choices=tuple(TESTERS), default="tcp",
                        help="http-body: naive=\"0\" with a body match; https: SSL=\"1\"; dns: "
                             "dnsmasq on loopback; exec: /bin/true; lua: http_status.lua and "
                             "thirdparty: modules/thirdparty_http.py (in tests/bench/), both "
                             "the http tester's naive exchange; lua-redis, lua-redis-module: "
                             "a Redis PING inline and through resty.sdredis")
    parser.add_argument("--seconds", type=float, default=15.0, help="measured window")
    parser.add_argument("--warmup", type=float, default=3.0)
    parser.add_argument("--loopdelay", type=float, default=0.5)
    parser.add_argument("--interval", type=float, default=None,
                        help="the tester's interval (next round this long after the last check) "
                             "instead of the original's period, timeout + loopdelay")
    parser.add_argument("--startup-delay-ms", type=int, default=500)
    parser.add_argument("--timeout", type=float, default=1.0)
    parser.add_argument("--per-virtual", type=int, default=100)
    parser.add_argument("--maxfd", type=int, default=65536)
    parser.add_argument("--max-inflight", type=int, default=0)
    parser.add_argument("--loop", choices=("uvloop", "asyncio"), default="uvloop")
    parser.add_argument("--profile", action="store_true", help="print a cProfile summary")
    parser.add_argument("--profile-out", metavar="PATH",
                        help="with --profile, also save the profile (pstats) to PATH")
    parser.add_argument("--nginx-workers", type=int, default=nginx_workers(),
                        help="default: one per CPU but one (the checker's), at least one")
    parser.add_argument("--no-c-yardstick", dest="c_yardstick", action="store_false",
                        help="skip tests/bench/c_checker.c (the original's per-check work in C, "
                             "run at the achieved rate when cc is installed)")
    parser.add_argument("--deferred-accept", action="store_true",
                        help="nginx accepts a connection once its request came (TCP_DEFER_ACCEPT)"
                             ": one wake-up of nginx per check fewer, which the loopback bills to "
                             "the checker (in production the real's CPU pays for it)")
    parser.add_argument("--pin", action="store_true",
                        help="nginx on the last CPU, the engine on the others (as in production, "
                             "where the reals are other machines)")
    return parser


def main() -> None:
    args = arguments().parse_args()
    reexec_in_netns()
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(args.maxfd, hard), hard))
    pinned = args.pin and len(os.sched_getaffinity(0)) > 1
    with serve(args.deferred_accept, args.nginx_workers, args.pin, args.tester) as ports:
        profiler = None
        if args.profile:
            import cProfile

            profiler = cProfile.Profile()
            profiler.enable()
        if args.loop == "uvloop":
            import uvloop

            result = uvloop.run(measure(args, ports))
        else:
            result = asyncio.run(measure(args, ports))
        if profiler is not None:
            import pstats

            profiler.disable()
            pstats.Stats(profiler).sort_stats("tottime").print_stats(25)
            if args.profile_out:
                profiler.dump_stats(args.profile_out)
        if args.c_yardstick and args.tester in ("tcp", "http", "lua", "thirdparty"):
            result.update(c_yardstick(args, ports, float(str(result["achieved_checks_per_s"]))))
            ours, theirs = result["cpu_us_per_check"], result["c_cpu_us_per_check"]
            if isinstance(ours, float) and isinstance(theirs, float) and theirs:
                result["ratio_to_c"] = round(ours / theirs, 2)
    result["pinned"] = pinned
    from surealived.compiled import check_path

    result["check_path"] = check_path()
    for key, value in result.items():
        print(f"{key:>24}: {value}")
    print(json.dumps(result))


if __name__ == "__main__":
    try:
        main()
    except subprocess.CalledProcessError as exc:
        sys.exit(str(exc))
