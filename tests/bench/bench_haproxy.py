"""Side by side with HAProxy's health checks (a script, not a test): CPU per check for both.

    .venv/bin/python tests/bench/bench_haproxy.py --reals 2000 --tester tcp --seconds 15

Root, as ``bench_engine.py``, whose parts it reuses: one network namespace of its own
(``unshare -n``), one nginx (``serve()``) behind every real on 127.x.y.z (``address(i)``), the
same reals in virtuals / backends of ``--per-virtual``. First surealived's engine runs
(``measure()``), then Debian's haproxy (``apt-get install haproxy``) with health checks only: no
frontend, no traffic, ``nbthread 1``, one ``server ... check inter P`` per real. Testers: tcp
(``check``: a connect), http (``option httpchk GET /health HTTP/1.0``, the Host header as
surealived's, ``http-check expect status 200``), https (the same over ``check-ssl verify none``
to nginx's TLS port; surealived ``SSL="1"``). haproxy resumes its last TLS session with each
server and surealived does not; ``--no-ssl-reuse`` gives haproxy a full handshake every check.

The same period. A surealived round starts a virtual's reals spread over ``startup_delay_ms``
(batches on the 100 ms loop grid: the last starts at ``plan_batches(...)[-1][0]``, 0.4 s with
the defaults) and the next round comes ``timeout`` + ``loopdelay`` after the last batch (the
original's period; ``--interval``: that long after the last verdict). haproxy's ``inter`` is set
to that period, ``bench_engine.round_period``; both achieved rates are printed, so a
difference shows.

Counted the same way for both. Checks: the kernel's TCP counters of the namespace
(``/proc/net/snmp``, which is per network namespace): ``ActiveOpens``, one per connect(),
whoever makes it, and only the checker connects in here; over the same window the CPU (user +
system, ``utime + stime`` of ``/proc/<pid>/stat``) of the checker's process and of nginx. Also
per check: ``PassiveOpens`` (handshakes nginx's kernel completed: a check that resets the
connection before its last ACK costs nginx no accept) and nginx's CPU; for https haproxy's full
handshakes per check (``SslBackendKeyRate`` of ``show info``: 0 when it resumed every session).
Prints both checkers' figures, the ratio surealived / haproxy, and one JSON line.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import csv
import json
import os
import resource
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from tests.bench.bench_engine import (  # noqa: E402
    address,
    arguments,
    measure,
    reexec_in_netns,
    round_period,
    serve,
)
from tests.servers import stop_process  # noqa: E402

TESTERS = ("tcp", "http", "https")
TICK = os.sysconf("SC_CLK_TCK")


def tcp_counters() -> dict[str, int]:
    """The ``Tcp:`` counters of this network namespace (``/proc/net`` is the reader's)."""
    lines = [line.split() for line in Path("/proc/net/snmp").read_text().splitlines()
             if line.startswith("Tcp:")]
    names, values = lines[0][1:], lines[1][1:]
    return {name: int(value) for name, value in zip(names, values, strict=True)}


def cpu_ticks(pid: int) -> int:
    """utime + stime of a process, in clock ticks."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return int(fields[11]) + int(fields[12])  # fields 14 and 15 of proc(5)


def namespace_pids(comm: str) -> list[int]:
    """The processes called ``comm`` in this network namespace (others' nginx run outside)."""
    own = os.readlink("/proc/self/ns/net")
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            if ((entry / "comm").read_text().strip() == comm
                    and os.readlink(entry / "ns" / "net") == own):
                pids.append(int(entry.name))
    return pids


@dataclass(frozen=True)
class Sample:
    at: float
    tcp: dict[str, int]
    checker: int
    nginx: int


def sample(checker: int, nginx: list[int]) -> Sample:
    return Sample(time.monotonic(), tcp_counters(), cpu_ticks(checker),
                  sum(cpu_ticks(pid) for pid in nginx))


def figures(before: Sample, after: Sample) -> dict[str, float | int | None]:
    """One checker's figures over a window, from the two samples around it."""
    elapsed = after.at - before.at
    checks = after.tcp["ActiveOpens"] - before.tcp["ActiveOpens"]
    accepted = after.tcp["PassiveOpens"] - before.tcp["PassiveOpens"]

    def per_check(ticks: int) -> float | None:
        return round(ticks / TICK / checks * 1e6, 1) if checks else None

    return {
        "checks_per_s": round(checks / elapsed),
        "cpu_us_per_check": per_check(after.checker - before.checker),
        "cpu_percent": round((after.checker - before.checker) / TICK / elapsed * 100, 1),
        "nginx_cpu_us_per_check": per_check(after.nginx - before.nginx),
        "nginx_handshakes_per_check": round(accepted / checks, 3) if checks else None,
    }


async def engine_side(args: argparse.Namespace, ports: list[int], nginx: list[int]
                      ) -> tuple[dict[str, float | int | None], dict[str, object]]:
    """surealived's engine through ``measure()``, sampled over its window (warmup, seconds)."""
    async def window() -> tuple[Sample, Sample]:
        await asyncio.sleep(args.warmup)
        before = sample(os.getpid(), nginx)
        await asyncio.sleep(args.seconds)
        return before, sample(os.getpid(), nginx)

    sampled = asyncio.create_task(window())  # before measure(): its window ends after this one
    engine = await measure(args, ports)
    return figures(*await sampled), engine


def haproxy_config(args: argparse.Namespace, ports: list[int], inter_ms: int, sock: Path) -> str:
    """Health checks only: backends of ``--per-virtual`` servers, one per real, nothing else."""
    http = args.tester in ("http", "https")
    host = "real1.example.test" if args.tester == "https" else "bench.example.test"
    tls = " check-ssl verify none check-sni real1.example.test" if args.tester == "https" else ""
    if tls and not args.ssl_reuse:
        tls += " no-ssl-reuse"
    timeout = int(args.timeout * 1000)
    lines = ["global", "    nbthread 1", f"    stats socket {sock} mode 600 level admin",
             "defaults", f"    mode {'http' if http else 'tcp'}",
             f"    timeout connect {timeout}ms", f"    timeout check {timeout}ms",
             "    timeout client 30s", "    timeout server 30s"]
    for v, first in enumerate(range(0, args.reals, args.per_virtual)):
        lines.append(f"backend v{v}")
        if http:
            lines += ["    option httpchk GET /health HTTP/1.0",
                      f"    http-check send hdr Host {host}", "    http-check expect status 200"]
        for i in range(first, min(first + args.per_virtual, args.reals)):
            lines.append(f"    server r{i} {address(i)}:{ports[i % len(ports)]} "
                         f"check inter {inter_ms}{tls}")
    return "\n".join(lines) + "\n"


def haproxy_command(sock: Path, command: str) -> str:
    """One command on haproxy's stats socket, its whole answer."""
    with socket.socket(socket.AF_UNIX) as conn:
        conn.settimeout(10)
        conn.connect(str(sock))
        conn.sendall(command.encode() + b"\n")
        chunks = []
        while chunk := conn.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks).decode()


def haproxy_stat(sock: Path) -> dict[str, int]:
    """Servers, servers up and failed checks (``show stat``), and the full TLS handshakes of the
    last second (``show info``: ``SslBackendKeyRate``, resumed sessions left out)."""
    rows = list(csv.DictReader(haproxy_command(sock, "show stat").lstrip("# ").splitlines()))
    servers = [row for row in rows if row["svname"] not in ("FRONTEND", "BACKEND")]
    info = dict(line.split(": ", 1) for line in haproxy_command(sock, "show info").splitlines()
                if ": " in line)
    return {"servers": len(servers),
            "servers_up": sum(row["status"].startswith("UP") for row in servers),
            "failed_checks": sum(int(row["chkfail"] or 0) for row in servers),
            "full_tls_handshakes_per_s": int(info.get("SslBackendKeyRate", 0))}


@contextlib.contextmanager
def haproxy(binary: str, config: Callable[[Path], str]
            ) -> Iterator[tuple[subprocess.Popen[bytes], Path]]:
    """haproxy in the foreground with ``config(stats socket)``: the process and its socket."""
    base = Path(tempfile.mkdtemp(prefix="sd-bench-haproxy-"))
    sock = base / "admin.sock"
    (base / "haproxy.cfg").write_text(config(sock))
    log = open(base / "stderr.log", "wb")  # noqa: SIM115 - closed below
    proc = subprocess.Popen([binary, "-db", "-f", str(base / "haproxy.cfg")],
                            stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 10
        while not sock.exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        if proc.poll() is not None or not sock.exists():
            sys.exit(f"haproxy did not start: {(base / 'stderr.log').read_text()}")
        yield proc, sock
    finally:
        stop_process(proc)
        log.close()
        shutil.rmtree(base)


def haproxy_side(args: argparse.Namespace, ports: list[int], nginx: list[int], inter_ms: int
                 ) -> dict[str, float | int | None]:
    with haproxy(args.haproxy, lambda sock: haproxy_config(args, ports, inter_ms, sock)
                 ) as (proc, sock):
        time.sleep(args.warmup)  # longer than inter: every server has had its first check
        before = sample(proc.pid, nginx)
        time.sleep(args.seconds)
        result = figures(before, sample(proc.pid, nginx))
        stat = haproxy_stat(sock)
    full = stat.pop("full_tls_handshakes_per_s")
    result.update(stat)
    rate = float(str(result["checks_per_s"]))
    if args.tester == "https" and rate:  # 0: haproxy resumed every session; 1: --no-ssl-reuse
        result["full_tls_handshakes_per_check"] = round(full / rate, 2)
    return result


def main() -> None:
    parser = arguments()
    parser.description = __doc__.split("\n\n")[0]
    parser.add_argument("--haproxy", default=shutil.which("haproxy") or "/usr/sbin/haproxy",
                        help="the haproxy binary (Debian package haproxy)")
    parser.add_argument("--no-ssl-reuse", dest="ssl_reuse", action="store_false",
                        help="https: haproxy's no-ssl-reuse, a full TLS handshake every check "
                             "as surealived does (by default haproxy resumes its last session)")
    args = parser.parse_args()
    if args.tester not in TESTERS:
        parser.error(f"--tester {args.tester}: this bench compares {', '.join(TESTERS)}")
    if not os.access(args.haproxy, os.X_OK):
        sys.exit(f"--haproxy {args.haproxy}: not found (apt-get install haproxy)")
    reexec_in_netns()
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(args.maxfd, hard), hard))
    with serve(args.deferred_accept, args.nginx_workers, args.pin, args.tester) as ports:
        nginx = namespace_pids("nginx")
        if args.loop == "uvloop":
            import uvloop

            ours, engine = uvloop.run(engine_side(args, ports, nginx))
        else:
            ours, engine = asyncio.run(engine_side(args, ports, nginx))
        period = round_period(args)
        theirs = haproxy_side(args, ports, nginx, round(period * 1000))
    a, b = ours["cpu_us_per_check"], theirs["cpu_us_per_check"]
    result: dict[str, object] = {
        "tester": args.tester, "reals": args.reals, "period_ms": round(period * 1000),
        "scheduled_checks_per_s": engine["scheduled_checks_per_s"],
        **{f"surealived_{k}": v for k, v in ours.items()},
        "surealived_engine_cpu_us_per_check": engine["cpu_us_per_check"],
        "surealived_failed_checks": engine["failed_checks"],
        **{f"haproxy_{k}": v for k, v in theirs.items()},
        "ratio": round(a / b, 2) if a and b else None,
        "haproxy_ssl_reuse": args.ssl_reuse if args.tester == "https" else None,
        "pinned": args.pin and len(os.sched_getaffinity(0)) > 1,
    }
    for key, value in result.items():
        print(f"{key:>38}: {value}")
    rates = float(str(ours["checks_per_s"])), float(str(theirs["checks_per_s"]))
    if min(rates) < 0.95 * max(rates) or engine["failed_checks"] or theirs["failed_checks"]:
        print("note: not the same rate, or checks failed: a checker (or nginx) ran out of CPU; "
              "fewer --reals compare at the same rate", file=sys.stderr)
    print(json.dumps(result))


if __name__ == "__main__":
    try:
        main()
    except subprocess.CalledProcessError as exc:
        sys.exit(str(exc))
