"""Reliability cases for the kernel side (run in the same VM boot as the ipvssync cases):

* kill -9 of ipvssync at random moments, many times, while the wanted table keeps changing
  (diff lines appended, snapshots replaced with a reload flag): after each restart the kernel
  converges to the wanted table; a truncated snapshot left by a crashed writer is never applied
  (not even with -u, which would delete every service it does not name);
* ipvssync as user nobody with CAP_NET_ADMIN only (setpriv) works against the real table, and
  without the capability fails with a one-line reason.

The wanted table is modelled here independently of ipvssync's reader and compared with
``ipvsadm -Ln``. Each case prints one ``RELIABILITY {json}`` line with its figures."""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest

from .conftest import ipvsadm, listing

VIRTUALS = [("10.0.0.1", "wrr"), ("10.0.0.2", "rr")]
REALS = [f"10.1.0.{n}" for n in range(1, 7)]


class Wanted:
    """The table surealived would want, written as surealived writes it: snapshots replaced
    atomically (with a reload flag), diff lines appended whole, one write per line."""

    def __init__(self, root: Path, rng: random.Random) -> None:
        self.root = root
        self.rng = rng
        (root / "diffs").mkdir(parents=True, exist_ok=True)
        (root / "ipvsfull.lock").write_text("")
        self.table = {(v, r): 10 for v, _ in VIRTUALS for r in REALS[:4]}
        self.lock = threading.Lock()
        self.epoch = 1_700_000_000
        self.current = ""
        self.changes = 0
        self.snapshot()

    @staticmethod
    def vfields(vaddr: str) -> str:
        sched = dict(VIRTUALS)[vaddr]
        return (f"vname=v{vaddr[-1]} vproto=tcp vaddr={vaddr} vport=80 vfwmark=0 vrt=dr "
                f"vsched={sched}")

    def body(self) -> str:
        out = []
        for vaddr, _ in VIRTUALS:
            out.append(f"virtual {self.vfields(vaddr)}")
            out += [f"real rname=r{r[-1]} raddr={r} rport=80 rweight={w}"
                    for (v, r), w in sorted(self.table.items()) if v == vaddr]
            out.append("")
        return "\n".join(out) + "\n"

    def snapshot(self, text: str | None = None) -> None:
        self.epoch += 1
        diff = self.root / "diffs" / f"diff_sync.{self.epoch}"
        diff.write_text("")
        if self.current:
            with open(self.current, "a") as handle:
                handle.write(f"DIFF file={diff}\n")
        self.current = str(diff)
        full = (f"meta version=1.0 mdate=2024-01-15 mtime=10:00:00\n\nDIFF file={diff}\n\n"
                f"{self.body()}")
        tmp = self.root / "ipvsfull.cfg.tmp"
        tmp.write_text(full if text is None else text)
        os.replace(tmp, self.root / "ipvsfull.cfg")
        (self.root / "ipvsfull.reload").write_text("")

    def change(self) -> None:
        with self.lock:
            self.changes += 1
            if self.rng.random() < 0.1:
                self.snapshot()
                return
            vaddr = self.rng.choice(VIRTUALS)[0]
            real = self.rng.choice(REALS)
            if (vaddr, real) in self.table and self.rng.random() < 0.3:
                del self.table[(vaddr, real)]
                cmd, weight = "delreal", 0
            else:
                weight = self.rng.choice((0, 1, 5, 10, 20))
                cmd = "addreal" if (vaddr, real) not in self.table else "chgreal"
                self.table[(vaddr, real)] = weight
            line = (f"cmd={cmd} {self.vfields(vaddr)} rname=r{real[-1]} raddr={real} "
                    f"rport=80 rweight={weight}\n")
            with open(self.current, "a") as handle:
                handle.write(line)

    def listing(self) -> dict[str, list[str]]:
        return {f"TCP {vaddr}:80 {sched}": sorted(f"-> {r}:80 Route {w}"
                                                  for (v, r), w in self.table.items()
                                                  if v == vaddr)
                for vaddr, sched in VIRTUALS}


class Flow:
    """Changes at random intervals from a thread, paused while the test compares."""

    def __init__(self, wanted: Wanted) -> None:
        self.wanted = wanted
        self.running = threading.Event()
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def run(self) -> None:
        while not self.stop.is_set():
            if self.running.wait(0.1):
                self.wanted.change()
                time.sleep(self.wanted.rng.uniform(0.01, 0.1))


def wait_for(check, seconds: float = 30.0) -> bool:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.1)
    return False


def start_ipvssync(root: Path, cfg: Path, log: Path, *extra: str,
                   prefix: tuple[str, ...] = ()) -> subprocess.Popen[bytes]:
    with open(log, "ab") as out:
        return subprocess.Popen([*prefix, sys.executable, "-m", "surealived.ipvssync", "-c",
                                 str(cfg), "--dir", str(root), *extra], stdout=out, stderr=out)


@pytest.mark.timeout(300)
def test_kill_9_of_ipvssync_converges_and_never_applies_a_partial_snapshot(kernel, tmp_path):
    rng = random.Random(9)
    wanted = Wanted(tmp_path / "files", rng)
    cfg = tmp_path / "surealived.cfg"
    cfg.write_text("ipvssync_interval 1\nipvssync_poll_ms 50\n")
    log = tmp_path / "ipvssync.log"
    flow = Flow(wanted)
    kills, problems = int(os.environ.get("RELIABILITY_KILLS", "3")), []
    converge_s: list[float] = []
    proc = None
    try:
        for n in range(kills):
            proc = start_ipvssync(wanted.root, cfg, log, "-u")
            started = time.monotonic()
            if not wait_for(lambda: listing() == wanted.listing()):
                problems.append(f"restart {n}: kernel {listing()} != wanted {wanted.listing()}")
            converge_s.append(time.monotonic() - started)
            print(f"restart {n}: converged in {converge_s[-1]:.1f} s", flush=True)
            flow.running.set()
            time.sleep(rng.uniform(0.0, 1.5))
            proc.send_signal(signal.SIGKILL)
            proc.wait(10)
            time.sleep(rng.uniform(0.0, 0.5))  # changes go on while it is down
            flow.running.clear()
            time.sleep(0.2)  # the change in progress ends
        # a crashed non-atomic writer: a cut snapshot and a reload flag. Nothing from it is
        # applied, -u deletes nothing; the complete one that follows is.
        flow.stop.set()
        proc = start_ipvssync(wanted.root, cfg, log, "-u")
        assert wait_for(lambda: listing() == wanted.listing()), "no convergence before the cut"
        before = listing()
        with wanted.lock:
            good = (wanted.root / "ipvsfull.cfg").read_text()
            (wanted.root / "ipvsfull.cfg").write_text(good[:len(good) // 2].rstrip("\n"))
            (wanted.root / "ipvsfull.reload").write_text("")
        time.sleep(4)  # several full comparisons
        if listing() != before:
            problems.append(f"a cut snapshot changed the kernel: {listing()} != {before}")
        with wanted.lock:
            wanted.table.pop((VIRTUALS[0][0], REALS[0]), None)
            wanted.snapshot()
        if not wait_for(lambda: listing() == wanted.listing()):
            problems.append("no convergence after the complete snapshot")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
    finally:
        flow.stop.set()
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait()
    text = log.read_text()
    print("RELIABILITY " + json.dumps({
        "part": "kill -9 of ipvssync (VM)", "cases": kills + 1, "failures": len(problems),
        "changes": wanted.changes, "max_converge_s": round(max(converge_s), 2)}), flush=True)
    assert not problems, "\n".join(problems)
    assert "Traceback" not in text, text[-3000:]


def test_ipvssync_as_nobody_with_cap_net_admin_only(kernel):
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        pytest.skip("setpriv is not installed (Debian package util-linux)")
    # the guest's root is a throw-away overlay: let user nobody reach the interpreter
    for folder in Path(sys.executable).resolve().parents:
        if folder != Path("/"):
            os.chmod(folder, os.stat(folder).st_mode | 0o011)
    root = Path(tempfile.mkdtemp(prefix="nobody-", dir="/tmp"))
    wanted = Wanted(root / "files", random.Random(3))
    cfg = root / "surealived.cfg"
    cfg.write_text("ipvssync_interval 1\nipvssync_poll_ms 50\n")
    for path in (root, *root.rglob("*")):
        os.chown(path, 65534, 65534)
    user = ("--reuid=65534", "--regid=65534", "--clear-groups")
    without = subprocess.run([setpriv, *user, "--inh-caps=-all", sys.executable, "-m",
                              "surealived.ipvssync", "-c", str(cfg), "--dir",
                              str(wanted.root), "--once"], capture_output=True, text=True,
                             timeout=60)
    assert without.returncode == 1, without
    assert "Traceback" not in without.stderr + without.stdout
    assert listing() == {}
    with_cap = subprocess.run([setpriv, *user, "--inh-caps=+net_admin",
                               "--ambient-caps=+net_admin", sys.executable, "-m",
                               "surealived.ipvssync", "-c", str(cfg), "--dir", str(wanted.root),
                               "--once"], capture_output=True, text=True, timeout=60)
    assert with_cap.returncode == 0, with_cap
    assert listing() == wanted.listing()
    ipvsadm("-C")
    print("RELIABILITY " + json.dumps({
        "part": "ipvssync as nobody + CAP_NET_ADMIN (VM)", "cases": 2, "failures": 0,
        "without_cap": (without.stderr.strip().splitlines() or [""])[-1][:200]}), flush=True)
