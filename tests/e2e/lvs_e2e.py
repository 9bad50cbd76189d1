#!/usr/bin/env python3
"""End to end in a real kernel: a backend dies, traffic moves; a drained backend gets nothing.

Run inside a throw-away VM (it rebuilds the machine's network), as root:

    contrib/e2e/run.sh                       # from the host: boots the VM, runs this, prints
    contrib/vm/run-in-vm.sh 'python3 tests/e2e/lvs_e2e.py'            # the same, by hand

Topology (the director is the guest's root namespace)::

    cli 10.0.2.2 --veth-- d-cli 10.0.2.1 [director: dummy0 10.0.0.100 (NAT), 10.0.0.101 (DR)]
                          br-real 10.0.1.1 --bridge-- rs1 10.0.1.2, rs2 10.0.1.3, rs3 10.0.1.4

Each real runs ``backend.py`` on port 80. ``surealived`` tests them (http tester) for two
virtuals: ``nat`` (10.0.0.100:80, masq, failed reals kept at weight 0) and ``dr``
(10.0.0.101:80, direct routing, ``remove_on_fail``). ``ipvssync`` programs the kernel from
surealived's files; nothing here touches the IPVS table. ``client.py`` in ``cli`` sends one
request per TCP connection to both VIPs in turn, all along. The story:

1. baseline: every backend answers on both VIPs;
2. ``kill -9`` rs2's server: the table drops it (weight 0 in nat, removed from dr) within
   retries2fail rounds (a round every timeout + loopdelay) + ipvssync's poll; after that every
   request succeeds;
3. rs2's server starts again: after retries2ok good checks it is back and gets requests;
4. ``rset ... rstate=OFFLINE`` on the control port drains rs1 in nat (weight 0, no new
   requests; dr still uses it); ``rstate=ONLINE`` restores it.

It prints the timeline and writes the results (named checks, timeline, settings) to
``--results`` and to one ``E2E_RESULTS_JSON {...}`` line on stdout (a VM's files do not reach
the host). Exit status 0 when every check passed.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from analysis import (
    Checks,
    Request,
    between,
    first_after,
    first_served_by,
    format_timeline,
    last_where,
    tally_text,
    timeline_rows,
)

HERE = os.path.dirname(os.path.abspath(__file__))
PY = sys.executable


def program(name: str) -> str:
    """surealived / ipvssync: next to this Python (a venv), else on PATH."""
    beside = os.path.join(os.path.dirname(PY), name)
    return beside if os.access(beside, os.X_OK) else shutil.which(name) or name


NAT_VIP, DR_VIP, PORT = "10.0.0.100", "10.0.0.101", 80
NAT, DR = f"{NAT_VIP}:{PORT}", f"{DR_VIP}:{PORT}"
CLIENT_ADDR = "10.0.2.2"
CLIENT_TIMEOUT = 1.0  # seconds the client waits to connect, and then for the reply
REALS = {"rs1": "10.0.1.2", "rs2": "10.0.1.3", "rs3": "10.0.1.4"}
WEIGHT = 10
SAMPLE = 0.1  # seconds between looks at the kernel table and the control port
# The hung case's bound is a worst case with no room for the VM's own delays (TCG runs a whole
# machine on one host core); it gets this much more. The killed case keeps the bound.
HANG_ALLOWANCE = 1.0
SPREAD = 0.2  # startup_delay_ms of the director's surealived.cfg, in seconds


@dataclass(frozen=True)
class Settings:
    loopdelay: int = 1
    timeout: int = 1
    retries2fail: int = 2
    retries2ok: int = 2
    poll_ms: int = 100
    gap: float = 0.1
    observe: float = 4.0  # seconds of traffic looked at in each steady phase

    @property
    def period(self) -> float:
        """A round every timeout + loopdelay, as the original's (plus the start spread)."""
        return self.timeout + self.loopdelay + SPREAD

    @property
    def fail_window(self) -> float:
        """A dead real: retries2fail rounds, plus ipvssync's poll."""
        return self.retries2fail * self.period + self.poll_ms / 1000

    @property
    def hang_window(self) -> float:
        """A hung real: the same rounds (each failed check lasts its timeout, within the
        round's period)."""
        return self.retries2fail * self.period + self.poll_ms / 1000

    @property
    def ok_window(self) -> float:
        return self.retries2ok * self.period + self.poll_ms / 1000


START = time.monotonic()


def say(text: str) -> None:
    print(f"[{time.monotonic() - START:7.2f}] {text}", flush=True)


def sh(*args: str, timeout: float = 20, check: bool = True) -> str:
    done = subprocess.run(args, capture_output=True, text=True, timeout=timeout)
    if check and done.returncode != 0:
        raise RuntimeError(f"{' '.join(args)}: exit {done.returncode}: {done.stderr.strip()}")
    return done.stdout


def sysctl(name: str, value: str) -> None:
    with open(f"/proc/sys/{name.replace('.', '/')}", "w") as f:
        f.write(value)


# --- the machine -----------------------------------------------------------------------------

def build_network() -> None:
    sh("modprobe", "-a", "veth", "dummy", "bridge")
    # Before the namespaces exist, so they inherit it; NAT replies are forwarded back.
    sysctl("net.ipv4.ip_forward", "1")
    sysctl("net.ipv4.vs.expire_nodest_conn", "1")  # connections of removed reals end at once
    # One `ip -batch` per namespace (None: the director): a few processes instead of fifty.
    batches: dict[str | None, list[str]] = {None: [
        "link add dummy0 type dummy", f"addr add {NAT_VIP}/32 dev dummy0",
        f"addr add {DR_VIP}/32 dev dummy0", "link set dummy0 up",
        "netns add cli", "link add d-cli type veth peer name eth0 netns cli",
        "addr add 10.0.2.1/24 dev d-cli", "link set d-cli up",
        "link add br-real type bridge", "addr add 10.0.1.1/24 dev br-real",
        "link set br-real up",
    ]}
    batches["cli"] = ["link set lo up", f"addr add {CLIENT_ADDR}/24 dev eth0",
                      "link set eth0 up", "route add default via 10.0.2.1"]
    for name, addr in REALS.items():
        batches[None] += [
            f"netns add {name}", f"link add d-{name} type veth peer name eth0 netns {name}",
            f"link set d-{name} master br-real", f"link set d-{name} up",
        ]
        batches[name] = [
            "link set lo up", f"addr add {addr}/24 dev eth0", "link set eth0 up",
            "route add default via 10.0.1.1",
            # DR: the real owns the DR VIP on lo but never answers ARP for it.
            f"addr add {DR_VIP}/32 dev lo",
        ]
    for netns, lines in batches.items():
        with tempfile.NamedTemporaryFile("w", suffix=".ip", delete=False) as f:
            f.write("\n".join(lines) + "\n")
        sh("ip", *(("-n", netns) if netns else ()), "-batch", f.name)
    for name in REALS:
        sh("ip", "netns", "exec", name, "sh", "-c",
           "echo 1 >/proc/sys/net/ipv4/conf/all/arp_ignore;"
           "echo 2 >/proc/sys/net/ipv4/conf/all/arp_announce")
    # DR replies come back through the director with the VIP (one of its own addresses) as source.
    sysctl("net.ipv4.conf.br-real.accept_local", "1")


class Processes:
    """Every process the test started, so that each one is stopped at the end."""

    def __init__(self, logdir: str) -> None:
        self.logdir = logdir
        self.procs: dict[str, subprocess.Popen[bytes]] = {}

    def start(self, key: str, args: list[str]) -> subprocess.Popen[bytes]:
        with open(os.path.join(self.logdir, f"{key}.log"), "ab") as log:
            proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=log, stderr=log)
        self.procs[key] = proc
        return proc

    def kill(self, key: str, sig: int = signal.SIGKILL) -> None:
        proc = self.procs[key]
        proc.send_signal(sig)
        proc.wait(10)

    def log_tail(self, key: str, lines: int = 15) -> str:
        try:
            with open(os.path.join(self.logdir, f"{key}.log"), errors="replace") as f:
                return "".join(f.readlines()[-lines:])
        except OSError:
            return ""

    def log_lines(self, key: str, needles: tuple[str, ...]) -> list[str]:
        try:
            with open(os.path.join(self.logdir, f"{key}.log"), errors="replace") as f:
                return [line.rstrip() for line in f if any(n in line for n in needles)]
        except OSError:
            return []

    def stop_all(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.terminate()
        for proc in self.procs.values():
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)


def start_backend(procs: Processes, name: str) -> None:
    procs.start(name, ["ip", "netns", "exec", name, PY, os.path.join(HERE, "backend.py"), name])


def http_get(addr: str, port: int, timeout: float = 1.0) -> str | None:
    """The first word of the body (the backend's name), or None."""
    try:
        with socket.create_connection((addr, port), timeout=timeout) as sock:
            sock.sendall(b"GET / HTTP/1.0\r\n\r\n")
            data = b""
            while chunk := sock.recv(4096):
                data += chunk
    except OSError:
        return None
    words = data.partition(b"\r\n\r\n")[2].split()
    return words[0].decode() if words else None


def answers(addr: str) -> Callable[[], bool]:
    return lambda: http_get(addr, PORT) is not None


def wait_for(what: str, predicate: Callable[[], bool], seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    say(f"gave up waiting for {what} after {seconds:.0f} s")
    return False


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def write_config(folder: str, settings: Settings, control_port: int) -> tuple[str, str]:
    os.makedirs(os.path.join(folder, "state", "diffs"), exist_ok=True)
    os.makedirs(os.path.join(folder, "modules"), exist_ok=True)
    cfg = os.path.join(folder, "surealived.cfg")
    with open(cfg, "w") as f:
        f.write(f"""# written by tests/e2e/lvs_e2e.py
log stderr
logging info
listen_addr 127.0.0.1
listen_port {control_port}
loop_interval_ms 50
startup_delay_ms 200
modules_path modules
lock_sync_file state/ipvsfull.lock
full_sync_file state/ipvsfull.cfg
full_reload_file state/ipvsfull.reload
diff_sync_dir state/diffs
offline_dump state/offline.dump
override_dump state/override.dump
stats_dump state/stats.dump
notify_dump state/notify.dump
stats_dir state/stats
debug_comm_path state/comm
snapshot_interval 30
ipvssync_poll_ms {settings.poll_ms}
ipvssync_interval 5
""")
    tester = (f'proto="http" testport="{PORT}" url="/health" host="e2e.test" '
              f'loopdelay="{settings.loopdelay}" timeout="{settings.timeout}" '
              f'retries2ok="{settings.retries2ok}" retries2fail="{settings.retries2fail}"')
    reals = "\n".join(f'    <real name="{n}" addr="{a}" port="{PORT}" weight="{WEIGHT}"/>'
                      for n, a in REALS.items())
    xml = os.path.join(folder, "e2e.xml")
    with open(xml, "w") as f:
        f.write(f"""<?xml version="1.0"?>
<surealived>
  <virtual name="nat" addr="{NAT_VIP}" port="{PORT}" proto="tcp" sched="wrr" rt="masq">
    <tester {tester}/>
{reals}
  </virtual>
  <virtual name="dr" addr="{DR_VIP}" port="{PORT}" proto="tcp" sched="rr" rt="dr">
    <tester {tester} remove_on_fail="1"/>
{reals}
  </virtual>
</surealived>
""")
    return cfg, xml


# --- what the test watches -------------------------------------------------------------------

def _hex_endpoint(text: str) -> str:
    addr, port = text.split(":")
    return f"{socket.inet_ntoa(bytes.fromhex(addr))}:{int(port, 16)}"


def read_ipvs() -> dict[str, dict[str, tuple[str, int]]]:
    """The kernel's table from /proc/net/ip_vs: {"vip:port": {"rip:port": (forward, weight)}}."""
    table: dict[str, dict[str, tuple[str, int]]] = {}
    current: dict[str, tuple[str, int]] = {}
    with open("/proc/net/ip_vs") as f:
        for line in f.readlines()[3:]:
            fields = line.split()
            if fields[0] in ("TCP", "UDP"):
                current = table.setdefault(_hex_endpoint(fields[1]), {})
            elif fields[0] == "->" and current is not None:
                current[_hex_endpoint(fields[1])] = (fields[2], int(fields[3]))
    return table


def control(port: int, line: str) -> dict[str, Any]:
    with socket.create_connection(("127.0.0.1", port), timeout=2) as sock:
        sock.sendall(line.encode() + b"\n")
        sock.shutdown(socket.SHUT_WR)
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    for text in data.decode().splitlines():
        if text.startswith("{"):
            result: dict[str, Any] = json.loads(text)
            return result
    raise RuntimeError(f"control port: no JSON in reply to {line!r}: {data[:200]!r}")


@dataclass(frozen=True)
class Sample:
    t: float
    table: dict[str, dict[str, tuple[str, int]]]
    online: dict[tuple[str, str], bool]  # (virtual name, real name) -> surealived's verdict


class Monitor(threading.Thread):
    """Looks at the kernel table and surealived's reals every SAMPLE seconds, keeps it all."""

    def __init__(self, control_port: int) -> None:
        super().__init__(daemon=True)
        self.control_port = control_port
        self.samples: list[Sample] = []
        self.stopping = threading.Event()
        self.lock = threading.Lock()

    def look(self) -> Sample:
        online: dict[tuple[str, str], bool] = {}
        for name, vip in (("nat", NAT_VIP),):  # dr's changes show in the table
            try:
                reply = control(self.control_port,
                                f"rlist vproto=tcp vaddr={vip} vport={PORT} format=json")
            except (OSError, RuntimeError):
                continue
            for real in reply.get("reals", []):
                online[(name, real["name"])] = bool(real["online"])
        return Sample(time.monotonic(), read_ipvs(), online)

    def run(self) -> None:
        while not self.stopping.is_set():
            sample = self.look()
            with self.lock:
                self.samples.append(sample)
            self.stopping.wait(SAMPLE)

    def first(self, predicate: Callable[[Sample], bool], after: float) -> float | None:
        with self.lock:
            samples = list(self.samples)
        for sample in samples:
            if sample.t >= after and predicate(sample):
                return sample.t
        return None

    def wait(self, what: str, predicate: Callable[[Sample], bool], after: float,
             seconds: float) -> float | None:
        found: list[float | None] = [None]

        def seen() -> bool:
            found[0] = self.first(predicate, after)
            return found[0] is not None

        wait_for(what, seen, seconds)
        return found[0]


def weight_is(vip: str, real: str, weight: int | None) -> Callable[[Sample], bool]:
    """The real has this weight in the service (None: is not in it)."""
    endpoint = f"{REALS[real]}:{PORT}"

    def predicate(sample: Sample) -> bool:
        dests = sample.table.get(vip, {})
        if weight is None:
            return vip in sample.table and endpoint not in dests
        return endpoint in dests and dests[endpoint][1] == weight
    return predicate


def online_is(virtual: str, real: str, value: bool) -> Callable[[Sample], bool]:
    return lambda sample: sample.online.get((virtual, real)) is value


def read_requests(path: str) -> list[Request]:
    requests = []
    with open(path) as f:
        for line in f:
            if line.endswith("\n"):
                requests.append(Request.from_json(json.loads(line)))
    return requests


def ipvsadm_listing() -> str:
    return sh("ipvsadm", "-Ln", check=False).rstrip()


# --- the story -------------------------------------------------------------------------------

class Story:
    def __init__(self, settings: Settings, workdir: str) -> None:
        self.s = settings
        self.workdir = workdir
        self.procs = Processes(workdir)
        self.checks = Checks()
        self.timelines: dict[str, list[dict[str, Any]]] = {}
        self.figures: dict[str, Any] = {}
        self.client_log = os.path.join(workdir, "client.jsonl")
        self.control_port = free_port()
        self.monitor = Monitor(self.control_port)
        self.t_base = self.t_end = 0.0
        self.fail_spans: list[tuple[float, float]] = []

    def requests(self) -> list[Request]:
        if not os.path.exists(self.client_log):
            return []
        return read_requests(self.client_log)

    def pause(self, seconds: float) -> None:
        time.sleep(seconds)

    def run(self) -> None:
        s = self.s
        say(f"kernel {os.uname().release}; building the network")
        build_network()
        for name in REALS:
            start_backend(self.procs, name)
        for name, addr in REALS.items():
            up = wait_for(f"{name} to answer", answers(addr), 30)
            if not self.checks.add(f"backend_{name}_answers", up, f"{name} at {addr}:{PORT}"):
                return
        # The client first: its start-up (seconds of CPU under TCG) must not starve the first
        # checks. Until ipvssync has programmed the table its requests are refused.
        say("backends answer directly; starting the client, surealived and ipvssync")
        self.procs.start("client", ["ip", "netns", "exec", "cli", PY,
                                    os.path.join(HERE, "client.py"), self.client_log,
                                    f"{NAT},{DR}", "--gap", str(s.gap),
                                    "--timeout", str(CLIENT_TIMEOUT), "--max-seconds", "400"])
        if not self.checks.add("client_runs", wait_for(
                "the client's first requests", lambda: len(self.requests()) >= 2, 60),
                "the client in its namespace sends requests to both VIPs"):
            return
        cfg, xml = write_config(self.workdir, s, self.control_port)
        self.procs.start("surealived", [program("surealived"), "-c", cfg, xml])
        self.procs.start("ipvssync", [program("ipvssync"), "-c", cfg, "-vvv"])
        self.monitor.start()
        programmed = self.monitor.wait(
            "the table", lambda x: all(weight_is(v, r, WEIGHT)(x) for v in (NAT, DR)
                                       for r in REALS), START, 90)
        table = read_ipvs()
        forwards = {v: sorted({f for f, _ in table.get(v, {}).values()}) for v in (NAT, DR)}
        self.checks.add("table_programmed_by_ipvssync",
                        programmed is not None and forwards == {NAT: ["Masq"], DR: ["Route"]},
                        f"both services with 3 reals at weight {WEIGHT}, forwarding {forwards}")
        print(ipvsadm_listing(), flush=True)
        if programmed is None:
            return
        self.figures["table_ready_after_start_s"] = round(programmed - START, 2)
        self.pause(1.0)  # let the first round settle
        t_base = self.t_base = time.monotonic()
        self.pause(s.observe)
        self.baseline(t_base, time.monotonic())
        t_back = self.kill_and_detect("rs2")
        if t_back is None:
            return
        self.come_back("rs2", t_back)
        self.hang_and_detect("rs3")
        self.drain("rs1")
        self.no_stray_failures()

    def baseline(self, start: float, end: float) -> None:
        reqs = between(self.requests(), start, end)
        served = {(r.vip, r.result) for r in reqs}
        everyone = all((v, n) in served for v in (NAT, DR) for n in REALS)
        self.checks.add("baseline_every_backend_serves_both_vips",
                        everyone and all(r.ok for r in reqs),
                        f"{len(reqs)} requests in {end - start:.1f} s: {tally_text(reqs)}")
        nat = [r for r in reqs if r.vip == NAT and r.ok]
        dr = [r for r in reqs if r.vip == DR and r.ok]
        self.checks.add("nat_real_sees_client_address",
                        bool(nat) and all(f"client={CLIENT_ADDR}" in r.detail for r in nat),
                        f"NAT replies name the client {CLIENT_ADDR}: "
                        f"{nat[0].detail if nat else '-'}")
        self.checks.add("dr_real_answers_for_the_vip",
                        bool(dr) and all(f"local={DR_VIP}" in r.detail for r in dr),
                        f"DR requests reach the real addressed to the VIP: "
                        f"{dr[0].detail if dr else '-'}")
        say(f"baseline: {tally_text(reqs)}")

    def kill_and_detect(self, victim: str) -> float | None:
        """kill -9: connections are refused at once. Returns when the server answers again."""
        self.fail_and_detect(victim, "kill")
        say(f"restart {victim}'s HTTP server")
        start_backend(self.procs, victim)
        if not wait_for(f"{victim} to answer", answers(REALS[victim]),
                        30):
            self.checks.add("dead_real_restarts", False, "the backend did not start again")
            return None
        return time.monotonic()

    def hang_and_detect(self, victim: str) -> None:
        """SIGSTOP: the kernel still accepts, nothing answers; each check waits its timeout."""
        s = self.s
        self.fail_and_detect(victim, "hang")
        say(f"SIGCONT {victim}'s HTTP server")
        self.procs.procs[victim].send_signal(signal.SIGCONT)
        t_cont = time.monotonic()
        nat_back = self.monitor.wait(f"{victim} weight {WEIGHT} in nat",
                                     weight_is(NAT, victim, WEIGHT), t_cont, s.ok_window + 20)
        dr_back = self.monitor.wait(f"{victim} back in dr", weight_is(DR, victim, WEIGHT),
                                    t_cont, 5)
        self.checks.add("hung_real_back_after_sigcont",
                        nat_back is not None and dr_back is not None,
                        f"nat weight {WEIGHT} after {_after(nat_back, t_cont)}, dr re-added "
                        f"after {_after(dr_back, t_cont)}")
        self.pause(1.0)

    def fail_and_detect(self, victim: str, shape: str) -> None:
        s = self.s
        if shape == "kill":
            prefix, key, action, allowance = "dead", "backend_dies", "killed (kill -9)", 0.0
            window, formula = s.fail_window, (
                f"retries2fail {s.retries2fail} x (timeout {s.timeout} + loopdelay "
                f"{s.loopdelay} + spread {SPREAD}) + poll {s.poll_ms / 1000} = "
                f"{s.fail_window:.1f} s")
            say(f"kill -9 {victim}'s HTTP server")
            self.procs.kill(victim)
        else:
            prefix, key, action = "hung", "backend_hangs", "hangs (SIGSTOP)"
            allowance = HANG_ALLOWANCE
            window, formula = s.hang_window, (
                f"retries2fail {s.retries2fail} x (timeout {s.timeout} + loopdelay "
                f"{s.loopdelay} + spread {SPREAD}) + poll {s.poll_ms / 1000} = "
                f"{s.hang_window:.1f} s")
            say(f"SIGSTOP {victim}'s HTTP server")
            self.procs.procs[victim].send_signal(signal.SIGSTOP)
        t_fail = time.monotonic()
        nat_zero = self.monitor.wait(f"{victim} weight 0 in nat", weight_is(NAT, victim, 0),
                                     t_fail, window + 20)
        dr_gone = self.monitor.wait(f"{victim} removed from dr", weight_is(DR, victim, None),
                                    t_fail, 5)
        detected = self.monitor.first(online_is("nat", victim, False), t_fail)
        print(ipvsadm_listing(), flush=True)
        # Measurement granularity: the monitor looks every SAMPLE seconds.
        bound = window + SAMPLE + allowance
        self.checks.add(f"{prefix}_real_weight_0_in_nat_within_window",
                        nat_zero is not None and nat_zero - t_fail <= bound,
                        f"weight 0 after {_after(nat_zero, t_fail)}; window {formula} "
                        f"(+{SAMPLE} s sampling" + (f", +{allowance} s for the VM)" if allowance
                                                     else ")"))
        self.checks.add(f"{prefix}_real_removed_from_dr_within_window",
                        dr_gone is not None and dr_gone - t_fail <= bound,
                        f"removed (remove_on_fail) after {_after(dr_gone, t_fail)}")
        self.pause(s.observe)
        t_end = time.monotonic()
        reqs = self.requests()
        after_window = between(reqs, t_fail + window + allowance, t_end)
        self.checks.add(f"after_{prefix}_window_all_requests_succeed",
                        len(after_window) >= 6
                        and all(r.ok and r.result != victim for r in after_window),
                        f"{len(after_window)} requests from +{window + allowance:.1f} s until "
                        f"the backend is back, none answered by {victim}: "
                        f"{tally_text(after_window)}")
        during = between(reqs, t_fail, t_fail + window)
        failed = [r for r in reqs if r.t0 >= t_fail and not r.ok]
        changed = max((t for t in (nat_zero, dr_gone) if t is not None), default=t_end)
        first = first_after(reqs, changed, t_end)
        self.checks.add(f"{prefix}_first_request_after_table_change_succeeds",
                        first is not None and first.ok,
                        f"{first.result if first else 'no request'} at "
                        f"{_after(first.t0 if first else None, t_fail)}")
        self.timelines[key] = timeline_rows(t_fail, [
            (f"{victim} {action}", t_fail),
            ("first failed client request", failed[0].t0 if failed else None),
            ("surealived marks it down (control port)", detected),
            ("table: weight 0 in nat (masq)", nat_zero),
            ("table: removed from dr (remove_on_fail)", dr_gone),
            ("last failed client request", failed[-1].t0 if failed else None),
            ("first request after the table change (clean)", first.t0 if first else None),
            (f"bound: {formula.split(' = ')[0]}", t_fail + window),
        ])
        self.figures[f"{prefix}_failures_in_window"] = tally_text(r for r in during if not r.ok)
        self.figures[f"{prefix}_requests_in_window"] = len(during)
        self.figures[f"{prefix}_failed_requests"] = [
            {"after_s": round(r.t0 - t_fail, 2), "vip": r.vip, "result": r.result}
            for r in failed]
        # A request in flight when the backend failed may fail, and so may one that started
        # before the table changed: each lasts up to the client's timeout.
        self.fail_spans.append((t_fail - CLIENT_TIMEOUT, changed + CLIENT_TIMEOUT))

    def come_back(self, victim: str, t_back: float) -> None:
        s = self.s
        detected = self.monitor.wait(f"surealived to see {victim} up",
                                     online_is("nat", victim, True), t_back, s.ok_window + 20)
        nat_back = self.monitor.wait(f"{victim} weight {WEIGHT} in nat",
                                     weight_is(NAT, victim, WEIGHT), t_back, s.ok_window + 20)
        dr_back = self.monitor.wait(f"{victim} back in dr", weight_is(DR, victim, WEIGHT),
                                    t_back, 5)
        self.pause(s.observe)
        reqs = self.requests()
        end = time.monotonic()
        start = max(t for t in (nat_back, dr_back, t_back) if t is not None)
        nat_first = first_served_by(reqs, t_back, end, victim, NAT)
        dr_first = first_served_by(reqs, t_back, end, victim, DR)
        after = between(reqs, start, end)
        self.checks.add("back_real_restored_in_table",
                        nat_back is not None and dr_back is not None,
                        f"nat weight {WEIGHT} after {_after(nat_back, t_back)}, dr re-added "
                        f"after {_after(dr_back, t_back)} (retries2ok {s.retries2ok} x "
                        f"loopdelay {s.loopdelay})")
        self.checks.add("back_real_gets_traffic_again",
                        nat_first is not None and dr_first is not None
                        and all(r.ok for r in after),
                        f"after the table change: {tally_text(after)}")
        self.timelines["backend_returns"] = timeline_rows(t_back, [
            (f"{victim}'s server answers again", t_back),
            ("surealived marks it up (control port)", detected),
            (f"table: weight {WEIGHT} in nat", nat_back),
            ("table: back in dr", dr_back),
            (f"first nat request answered by {victim}", nat_first),
            (f"first dr request answered by {victim}", dr_first),
        ])


    def drain(self, victim: str) -> None:
        s = self.s
        where = f"vproto=tcp vaddr={NAT_VIP} vport={PORT} raddr={REALS[victim]} rport={PORT}"
        say(f"rset {where} rstate=OFFLINE")
        t_off = time.monotonic()
        reply = control(self.control_port, f"rset {where} rstate=OFFLINE format=json "
                                           "reason=e2e drain")
        drained = self.monitor.wait(f"{victim} weight 0 in nat", weight_is(NAT, victim, 0),
                                    t_off, 10)
        print(ipvsadm_listing(), flush=True)
        self.pause(s.observe)
        reqs = self.requests()
        t_on = time.monotonic()
        after = between(reqs, (drained or t_off) + SAMPLE, t_on)
        nat_after = [r for r in after if r.vip == NAT]
        dr_after = [r for r in after if r.vip == DR]
        self.checks.add("rset_offline_sets_weight_0",
                        reply.get("rstate") == "OFFLINE" and drained is not None
                        and weight_is(DR, victim, WEIGHT)(self.monitor.look()),
                        f"reply {reply.get('rstate')}; nat weight 0 after "
                        f"{_after(drained, t_off)}; dr untouched")
        self.checks.add("drained_real_gets_no_new_requests",
                        len(nat_after) >= 4 and all(r.ok and r.result != victim
                                                    for r in nat_after),
                        f"nat after the table change: {tally_text(nat_after)}")
        self.checks.add("drain_is_per_virtual",
                        any(r.result == victim for r in dr_after),
                        f"dr meanwhile: {tally_text(dr_after)}")
        last_to_victim = last_where(reqs, t_off - 5, t_on,
                                    lambda r: r.vip == NAT and r.result == victim)
        first_nat = first_after(reqs, drained or t_off, t_on, NAT)
        say(f"rset {where} rstate=ONLINE")
        reply = control(self.control_port, f"rset {where} rstate=ONLINE format=json")
        t_on = time.monotonic()
        restored = self.monitor.wait(f"{victim} weight {WEIGHT} in nat",
                                     weight_is(NAT, victim, WEIGHT), t_on, 10)
        self.pause(s.observe / 2)
        reqs = self.requests()
        end = time.monotonic()
        back = first_served_by(reqs, t_on, end, victim, NAT)
        self.checks.add("rset_online_restores",
                        reply.get("rstate") == "ONLINE" and restored is not None
                        and back is not None,
                        f"nat weight {WEIGHT} after {_after(restored, t_on)}, first nat request "
                        f"to {victim} after {_after(back, t_on)}")
        self.timelines["drain"] = timeline_rows(t_off, [
            (f"rset {victim} rstate=OFFLINE", t_off),
            ("table: weight 0 in nat", drained),
            (f"last nat request answered by {victim}", last_to_victim),
            ("first nat request after the table change", first_nat.t0 if first_nat else None),
            (f"rset {victim} rstate=ONLINE", t_on),
            (f"table: weight {WEIGHT} in nat", restored),
            (f"first nat request answered by {victim}", back),
        ])
        self.t_end = end

    def no_stray_failures(self) -> None:
        """Failures only between the kill and the table change: nowhere else, ever."""
        reqs = between(self.requests(), self.t_base, self.t_end)
        stray = [r for r in reqs if not r.ok
                 and not any(start <= r.t0 < end for start, end in self.fail_spans)]
        where = ", ".join(f"{r.result} to {r.vip} at +{r.t0 - self.t_base:.2f} s" for r in stray)
        self.checks.add("no_failures_outside_the_detection_window", not stray and len(reqs) > 50,
                        f"{len(reqs)} requests in all: {tally_text(reqs)}; "
                        f"{len(stray)} failed outside the windows {where}".rstrip())
        self.figures["requests_total"] = len(reqs)

    def finish(self) -> None:
        self.monitor.stopping.set()
        self.procs.stop_all()


def _after(t: float | None, origin: float) -> str:
    return "never" if t is None else f"{t - origin:.2f} s"


def main() -> int:
    parser = argparse.ArgumentParser(description="end-to-end LVS test; run it inside a VM")
    parser.add_argument("--results", help="write the JSON results here")
    parser.add_argument("--workdir", help="folder for configuration, state and logs")
    parser.add_argument("--yes-rebuild-this-machines-network", action="store_true",
                        help="run outside the VM (adds namespaces, devices, IPVS services)")
    args = parser.parse_args()
    if os.environ.get("SUREALIVED_IN_VM") != "1" and not args.yes_rebuild_this_machines_network:
        print("lvs_e2e.py changes the machine's network and IPVS table; run it in the VM "
              "(contrib/e2e/run.sh)", file=sys.stderr)
        return 2
    if not os.path.exists("/proc/net/ip_vs"):
        print("lvs_e2e.py: no IPVS in this kernel (/proc/net/ip_vs missing)", file=sys.stderr)
        return 2
    workdir = args.workdir or tempfile.mkdtemp(prefix="surealived-e2e.")
    story = Story(Settings(), workdir)
    error = ""
    try:
        story.run()
    except Exception as exc:  # reported as a failed check, with the logs
        error = f"{type(exc).__name__}: {exc}"
        story.checks.add("story_ran_to_the_end", False, error)
    finally:
        story.finish()
    return report(story, args.results or os.path.join(workdir, "results.json"))


def report(story: Story, path: str) -> int:
    print()
    for key, rows in story.timelines.items():
        print("\n".join(format_timeline(f"timeline: {key}", rows)))
    print("\nwhat surealived and ipvssync logged about the reals:")
    print("\n".join(story.procs.log_lines("surealived", ("changed its test state", "rset"))))
    print("\n".join(story.procs.log_lines("ipvssync", (": edit-dest", ": add-dest",
                                                      ": del-dest"))))
    print()
    for check in story.checks.items:
        print(f"{'PASS' if check.ok else 'FAIL'}: {check.name}: {check.detail}")
    if not story.checks.ok:
        for key in ("surealived", "ipvssync", "client"):
            print(f"--- {key} log (tail) ---\n{story.procs.log_tail(key, 25)}")
    s = story.s
    results = {
        "ok": story.checks.ok,
        "checks": [c.as_dict() for c in story.checks.items],
        "timelines": story.timelines,
        "figures": story.figures,
        "settings": {"loopdelay": s.loopdelay, "timeout": s.timeout,
                     "retries2fail": s.retries2fail, "retries2ok": s.retries2ok,
                     "ipvssync_poll_ms": s.poll_ms, "fail_window_s": s.fail_window,
                     "client_gap_s": s.gap, "sample_s": SAMPLE},
        "kernel": os.uname().release,
        "elapsed_s": round(time.monotonic() - START, 1),
    }
    with open(path, "w") as f:
        json.dump(results, f, indent=1)
    print(f"E2E_RESULTS_JSON {json.dumps(results, separators=(',', ':'))}", flush=True)
    print(f"E2E RESULT: {'PASS' if story.checks.ok else 'FAIL'} "
          f"({sum(c.ok for c in story.checks.items)}/{len(story.checks.items)} checks, "
          f"{results['elapsed_s']} s)")
    return 0 if story.checks.ok else 1


if __name__ == "__main__":
    sys.exit(main())
