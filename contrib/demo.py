#!/usr/bin/env python3
"""The README's demo: three loopback backends, surealived, the control port, ipvssync --plan.

Runs without root and without IPVS; everything it writes stays in examples/demo/state.
Every wait is bounded; all processes it starts are stopped when it ends.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEMO = os.path.join(ROOT, "examples", "demo")
STATE = os.path.join(DEMO, "state")
BIN = os.path.dirname(sys.executable)
CONTROL = ("127.0.0.1", 13370)
BACKENDS = {"b1": ("18081", "127.0.0.1", "::1"), "b2": ("18082", "127.0.0.2"),
            "b3": ("18083", "127.0.0.3")}


def banner(text: str) -> None:
    print(f"\n\033[1m=== {text}\033[0m", flush=True)


def control(command: str) -> str:
    with socket.create_connection(CONTROL, timeout=5) as conn:
        conn.sendall(command.encode() + b"\n")
        data = b""
        while not data.endswith(b"_SD_CMD_END_\n"):
            chunk = conn.recv(65536)
            if not chunk:
                break
            data += chunk
    return data.decode()


def wait_for(what: str, predicate, seconds: float = 20.0) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            if predicate():
                return
        except OSError:
            pass
        time.sleep(0.2)
    raise SystemExit(f"demo: gave up waiting for {what}")


def start_backend(name: str) -> subprocess.Popen[bytes]:
    port, *addrs = BACKENDS[name]
    return subprocess.Popen([sys.executable, os.path.join(DEMO, "backend.py"), name, port,
                             *addrs])


def show(command: list[str]) -> None:
    print("$ " + " ".join(os.path.relpath(c, ROOT) if c.startswith(ROOT) else c
                          for c in command), flush=True)
    subprocess.run(command, check=False, timeout=60)


def main() -> int:
    shutil.rmtree(STATE, ignore_errors=True)
    os.makedirs(os.path.join(STATE, "diffs"))
    procs: dict[str, subprocess.Popen[bytes]] = {}
    try:
        banner("Three HTTP backends on 127.0.0.1, .2, .3 (b1 also on ::1)")
        for name in BACKENDS:
            procs[name] = start_backend(name)
        cfg, xml = os.path.join(DEMO, "surealived.cfg"), os.path.join(DEMO, "demo.xml")
        banner("surealived -t (what an operator runs before every restart)")
        show([os.path.join(BIN, "surealived"), "-t", "-c", cfg, xml])
        banner("surealived (log on stderr)")
        procs["surealived"] = subprocess.Popen([os.path.join(BIN, "surealived"), "-c", cfg, xml])
        wait_for("the control port", lambda: "_SD_CMD_END_" in control("vlist"))
        wait_for("every real tested", lambda: "ronline=" in control(
            "rlist vproto=tcp vaddr=192.0.2.80 vport=80") and _all_up())
        banner("Control port: vlist and rlist (printf 'rlist ...\\n' | nc -q 1 127.0.0.1 13370)")
        print(control("vlist"), control("rlist vproto=tcp vaddr=192.0.2.80 vport=80"), sep="")
        banner("The snapshot surealived wrote for ipvssync (state/ipvsfull.cfg)")
        with open(os.path.join(STATE, "ipvsfull.cfg")) as snapshot:
            print(snapshot.read())
        banner("ipvssync --plan: what it would apply to an empty IPVS table")
        show([os.path.join(BIN, "ipvssync"), "--dir", STATE, "--plan", "--ipvsadm"])

        banner("Backend b2 dies")
        procs.pop("b2").send_signal(signal.SIGTERM)
        wait_for("b2 to be detected down", lambda: "rname=b2 raddr=127.0.0.2 rport=18082 "
                 "currwgt=0" in control("rlist vproto=tcp vaddr=192.0.2.80 vport=80"))
        print(control("rlist vproto=tcp vaddr=192.0.2.80 vport=80"))
        banner("The diff lines surealived appended at once (state/diffs/)")
        for line in _diff_lines()[-4:]:
            print(line)
        banner("ipvssync --plan now: b2 at weight 0 in 'web', removed from 'tcp'")
        show([os.path.join(BIN, "ipvssync"), "--dir", STATE, "--plan", "--ipvsadm"])

        banner("Backend b2 comes back")
        procs["b2"] = start_backend("b2")
        wait_for("b2 back up", _all_up)
        print(control("rlist vproto=tcp vaddr=192.0.2.80 vport=80"))

        banner("Drain b1 by hand: rset rstate=OFFLINE reason=maintenance, then ONLINE again")
        print(control("rset vproto=tcp vaddr=192.0.2.80 vport=80 raddr=127.0.0.1 rport=18081 "
                      "rstate=OFFLINE reason=maintenance"))
        print(control("rlist vproto=tcp vaddr=192.0.2.80 vport=80"))
        print(control("rset vproto=tcp vaddr=192.0.2.80 vport=80 raddr=127.0.0.1 rport=18081 "
                      "rstate=ONLINE"))
        banner("The same as JSON, and the HTTP status (http://127.0.0.1:19337/ is the page)")
        print(control("rlist vproto=tcp vaddr=192.0.2.80 vport=80 format=json"))
        show(["curl", "-s", "http://127.0.0.1:19337/ready"] if shutil.which("curl") else
             [sys.executable, "-c", "import urllib.request as u;print(u.urlopen("
              "'http://127.0.0.1:19337/ready').read().decode())"])
        banner("Done: stopping surealived (SIGTERM saves its dumps) and the backends")
        return 0
    finally:
        for proc in procs.values():
            proc.send_signal(signal.SIGTERM)
        for proc in procs.values():
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()


def _all_up() -> bool:
    text = control("rlist vproto=tcp vaddr=192.0.2.80 vport=80")
    return text.count("ronline=TRUE") == 3


def _diff_lines() -> list[str]:
    folder = os.path.join(STATE, "diffs")
    lines: list[str] = []
    for name in sorted(os.listdir(folder)):
        with open(os.path.join(folder, name)) as f:
            lines.extend(line.rstrip("\n") for line in f if line.strip())
    return lines


if __name__ == "__main__":
    sys.exit(main())
