"""Soak: a running surealived under flapping and misbehaving backends and steady control-port
traffic, for --minutes. Run by hand:

    .venv/bin/python tests/bench/soak.py --minutes 10 [--reals 400] [--interval 10]

Every --interval seconds it prints one line: elapsed time, checks done, open fds, RSS, event
loop lag (last and recent worst, from /metrics), schedule lag p99, control commands answered and
the slowest control answer. At the end one JSON line with the first and last samples and the
growth of fds and RSS. Exit status 1 if the daemon died or fds grew by more than 16.
"""

from __future__ import annotations

import argparse
import json
import random
import signal
import socket
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from tests.reliability.harness import Daemon, exchange, wait_until  # noqa: E402
from tests.reliability.targets import serve_targets  # noqa: E402
from tests.servers import free_port  # noqa: E402

MODES = ("good", "silent", "reset", "drip", "endless", "tls_garbage")


def xml(addresses: dict[str, list[str]], port: int, flap_port: int, per_mode: int) -> str:
    out = ["<surealived>"]
    for i, mode in enumerate(MODES):
        ssl = ' SSL="1"' if mode == "tls_garbage" else ""
        out.append(f'  <virtual name="{mode}" addr="192.0.2.{i + 1}" port="80" proto="tcp" '
                   'sched="wrr" rt="dr">')
        out.append(f'    <tester proto="http" url="/" host="soak" testport="{port}" '
                   f'loopdelay="2" timeout="1" retries2fail="2"{ssl}/>')
        out += [f'    <real name="r{n}" addr="{a}" port="80" weight="{1 + n % 9}"/>'
                for n, a in enumerate(addresses[mode][:per_mode])]
        out.append("  </virtual>")
    out.append('  <virtual name="flap" addr="192.0.2.100" port="80" proto="tcp" sched="wrr" '
               'rt="dr">')
    out.append(f'    <tester proto="tcp" testport="{flap_port}" loopdelay="1" timeout="1"/>')
    out += [f'    <real name="f{n}" addr="127.0.0.1" port="{8000 + n}" weight="5"/>'
            for n in range(20)]
    out.append("  </virtual>\n</surealived>")
    return "\n".join(out) + "\n"


class Flapper(threading.Thread):
    def __init__(self, port: int) -> None:
        super().__init__(daemon=True)
        self.port = port
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            s = socket.socket()
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind(("127.0.0.1", self.port))
            s.listen(64)
            self.stop.wait(random.uniform(0.5, 3))
            s.close()
            self.stop.wait(random.uniform(0.5, 3))


class Control(threading.Thread):
    """A client sending commands (and rset now and then) without pause."""

    def __init__(self, port: int) -> None:
        super().__init__(daemon=True)
        self.port = port
        self.stop = threading.Event()
        self.answered = 0
        self.slowest = 0.0
        self.errors = 0

    def run(self) -> None:
        commands = ["vlist", "rlist vproto=tcp vaddr=192.0.2.100 vport=80", "stats",
                    "connstats format=json", "rlist vproto=tcp vaddr=192.0.2.1 vport=80 "
                    "format=json", "bogus command", "x" * 9000]
        while not self.stop.is_set():
            n = random.randrange(20)
            line = (f"rset vproto=tcp vaddr=192.0.2.100 vport=80 raddr=127.0.0.1 "
                    f"rport={8000 + n} rstate={random.choice(('ONLINE', 'OFFLINE'))}"
                    if random.random() < 0.1 else random.choice(commands))
            started = time.monotonic()
            try:
                exchange(self.port, line, timeout=10)
                self.answered += 1
            except OSError:
                self.errors += 1
            self.slowest = max(self.slowest, time.monotonic() - started)
            self.stop.wait(0.05)


def metrics(port: int) -> dict[str, float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as reply:
        text = reply.read().decode()
    out = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            if "{" not in name:
                out[name] = float(value)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=5.0)
    parser.add_argument("--reals", type=int, default=600, help="misbehaving reals in all")
    parser.add_argument("--interval", type=float, default=10.0, help="seconds between samples")
    args = parser.parse_args()
    per_mode = max(1, args.reals // len(MODES))
    status_port = free_port()
    flapper = Flapper(free_port())
    samples: list[dict[str, float]] = []
    with tempfile.TemporaryDirectory(prefix="sd-soak-") as tmp, \
            serve_targets(dict.fromkeys(MODES, per_mode)) as targets:
        daemon = Daemon(Path(tmp), xml(targets.addresses, targets.port, flapper.port, per_mode),
                        extra=f"maxfd 16384\nstatus_listen 127.0.0.1:{status_port}\n"
                              "control_max_clients 64\n")
        flapper.start()
        daemon.start()
        control = Control(daemon.control_port)
        control.start()
        started = time.monotonic()
        end = started + args.minutes * 60
        print(f"soak: {per_mode * len(MODES) + 20} reals, {args.minutes} min, daemon pid "
              f"{daemon.pid}, folder {tmp}", flush=True)
        print(f"{'t s':>6} {'checks':>8} {'fds':>5} {'RSS kB':>8} {'lag ms':>7} "
              f"{'lag max':>8} {'sched p99':>9} {'ctl ok':>7} {'ctl max s':>9}")
        try:
            while time.monotonic() < end and daemon.alive():
                time.sleep(min(args.interval, max(0.0, end - time.monotonic())))
                if not daemon.alive():
                    break
                stats = daemon.json("stats")["tests_stats"]
                m = metrics(status_port)
                sample = {
                    "t": round(time.monotonic() - started, 1),
                    "checks": stats["t_success"] + stats["t_failed"],
                    "fds": daemon.fds(), "rss_kb": daemon.rss(),
                    "loop_lag_ms": round(m.get("surealived_loop_lag_seconds", -1) * 1000, 1),
                    "loop_lag_max_ms": round(m.get("surealived_loop_lag_max_seconds", -1)
                                             * 1000, 1),
                    "schedule_lag_p99_ms": round(m.get("surealived_schedule_lag_p99_seconds",
                                                       -1) * 1000, 1),
                    "control_answered": control.answered,
                    "control_slowest_s": round(control.slowest, 3),
                }
                samples.append(sample)
                print(f"{sample['t']:>6} {sample['checks']:>8} {sample['fds']:>5} "
                      f"{sample['rss_kb']:>8} {sample['loop_lag_ms']:>7} "
                      f"{sample['loop_lag_max_ms']:>8} {sample['schedule_lag_p99_ms']:>9} "
                      f"{sample['control_answered']:>7} {sample['control_slowest_s']:>9}",
                      flush=True)
        finally:
            control.stop.set()
            flapper.stop.set()
            alive = daemon.alive()
            if alive:
                daemon.signal(signal.SIGTERM)
                wait_until(lambda: not daemon.alive(), "the daemon to stop", 30)
    ok = alive and bool(samples)
    if samples:
        first, last = samples[0], samples[-1]
        # in-flight checks hold sockets: compare the quietest sample of each end of the run
        third = max(1, len(samples) // 3)
        fd_growth = (min(s["fds"] for s in samples[-third:])
                     - min(s["fds"] for s in samples[:third]))
        ok = ok and fd_growth <= 16
        print(json.dumps({
            "bench": "soak", "minutes": args.minutes, "reals": per_mode * len(MODES) + 20,
            "alive": alive, "checks": last["checks"], "first": first, "last": last,
            "fd_growth": fd_growth, "rss_growth_kb": last["rss_kb"] - first["rss_kb"],
            "loop_lag_max_ms": max(s["loop_lag_max_ms"] for s in samples),
            "control_answered": control.answered, "control_errors": control.errors,
            "ok": ok}))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
