"""Crash safety of the whole daemon: kill -9 of surealived at random moments (during start-up,
while testing, right after an ``rset``), many times, with state changes flowing (a backend that
flaps). After each kill the files are consistent: the snapshot parses completely (by ipvssync's
reader, the one production runs), names only reals of the XML and a DIFF file that exists; every
complete diff line parses; the dumps parse without a problem. After each restart the daemon holds
exactly the overrides override.dump held at the moment of the kill.

(The sync writer alone under kill -9 is in tests/sync/test_crash.py; ipvssync under kill -9 against
a real kernel is in tests/kernel/inside/test_reliability_kernel.py.)"""

from __future__ import annotations

import random
import socket
import threading
import time
from pathlib import Path

import pytest

from surealived.errors import ConfigErrors
from surealived.ipvssync.reader import Link, parse_diff_line, parse_snapshot
from surealived.persist.dumps import parse_notify, parse_offline, parse_override, parse_stats
from tests.sync.helpers import reals_by_virtual, virtual_names

from .figures import Row, scale, timeout
from .harness import Daemon, MakeDaemon

VIRTUALS = 6
REALS = 5


def xml(flap_port: int, steady_port: int) -> str:
    out = ["<surealived>"]
    for v in range(VIRTUALS):
        rof = ' remove_on_fail="1"' if v % 2 else ""
        out.append(f'  <virtual name="v{v}" addr="192.0.2.{v + 1}" port="80" proto="tcp" '
                   f'sched="wrr" rt="dr">')
        out.append(f'    <tester proto="tcp" testport="{steady_port}" loopdelay="1" '
                   f'timeout="1"{rof}/>')
        for r in range(REALS):
            # real 0 of every virtual flaps; the rest is steady
            port = f' testport="{flap_port}"' if r == 0 else ""
            out.append(f'    <real name="r{r}" addr="127.0.{v}.{r + 1}" port="8{r}" '
                       f'weight="{r + 1}"{port}/>')
        out.append("  </virtual>")
    out.append("</surealived>")
    return "\n".join(out) + "\n"


class Flapper:
    """A listener on every 127.0.v.1 (the flapping reals) that comes and goes every 0.4 s."""

    def __init__(self) -> None:
        self.stop = threading.Event()
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self.thread = threading.Thread(target=self.run, daemon=True)

    def run(self) -> None:
        while not self.stop.is_set():
            socks = []
            for v in range(VIRTUALS):
                s = socket.socket()
                s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                try:
                    s.bind((f"127.0.{v}.1", self.port))
                    s.listen(64)
                except OSError:
                    s.close()
                    continue
                socks.append(s)
            self.stop.wait(0.4)
            for s in socks:
                s.close()
            self.stop.wait(0.4)


def steady_listeners() -> tuple[int, list[socket.socket]]:
    """One port on which every 127.0.v.r (r > 1) answers: a listener per address."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    socks = []
    for v in range(VIRTUALS):
        for r in range(1, REALS):
            s = socket.socket()
            s.bind((f"127.0.{v}.{r + 1}", port))
            s.listen(64)
            socks.append(s)
    return port, socks


def check_files(state: Path, reals: dict[str, set[tuple[str, str]]]) -> list[str]:
    """What a reader would take as complete, checked; the problems found."""
    problems = []
    full = state / "ipvsfull.cfg"
    if full.exists():
        text = full.read_text()
        try:
            snap = parse_snapshot(text, str(full))
        except ConfigErrors as exc:
            return [f"ipvsfull.cfg: {exc}"]
        names = virtual_names(snap)
        if names != sorted(reals, key=lambda n: int(n[1:])):
            problems.append(f"ipvsfull.cfg: virtuals {names}")
        for vname, dests in reals_by_virtual(snap).items():
            for real in dests:
                if (real.addr, str(real.port)) not in reals[vname]:
                    problems.append(f"ipvsfull.cfg: unknown real {real}")
        if not Path(snap.diff_file).exists():
            problems.append(f"ipvsfull.cfg names {snap.diff_file}, which does not exist")
    for diff in sorted((state / "diffs").glob("diff_sync.*")):
        lines = diff.read_text().split("\n")
        for number, line in enumerate(lines[:-1], start=1):  # the last one may be cut
            try:
                parsed = parse_diff_line(line)
            except ValueError as exc:
                problems.append(f"{diff.name}:{number}: {exc}")
                continue
            if isinstance(parsed, Link) and not Path(parsed.path).exists():
                problems.append(f"{diff.name}:{number}: dangling link {parsed.path}")
    for name, parse in (("override.dump", parse_override), ("offline.dump", parse_offline),
                        ("stats.dump", parse_stats), ("notify.dump", parse_notify)):
        path = state / name
        if path.exists():
            _, trouble = parse(path.read_text())
            problems += [f"{name}:{line}: {message}" for line, message in trouble]
    return problems


def overrides_in_dump(state: Path) -> set[tuple[str, int, str, int, str]]:
    path = state / "override.dump"
    if not path.exists():
        return set()
    entries, _ = parse_override(path.read_text())
    return {(e.real.addr, e.real.port, e.rstate, e.weight, str(e.percent)) for e in entries}


def overrides_held(daemon: Daemon) -> set[tuple[str, int, str, int, str]]:
    held = set()
    for r in daemon.reals():
        if r["override"] is not None or r["rstate"] != "ONLINE":
            override = r["override"] or str(r["confwgt"])
            held.add((r["addr"], r["port"], r["rstate"], int(override.rstrip("%")),
                      str(override.endswith("%"))))
    return held


@pytest.mark.timeout(timeout(120))
def test_kill_9_at_random_moments(make_daemon: MakeDaemon) -> None:
    kills = 12 * scale()
    rng = random.Random(1337)
    flapper = Flapper()
    flapper.thread.start()
    steady_port, steady = steady_listeners()
    daemon = make_daemon(xml(flapper.port, steady_port))
    reals = {f"v{v}": {(f"127.0.{v}.{r + 1}", str(80 + r)) for r in range(REALS)}
             for v in range(VIRTUALS)}
    row = Row("kill -9 of surealived", note="with a flapping backend and rset overrides")
    problems: list[str] = []
    startup_kills = restored = with_overrides = 0
    try:
        for n in range(kills):
            early = n % 4 == 3
            daemon.start(wait=not early)
            if early:  # during start-up, before the control port answers
                time.sleep(rng.uniform(0.0, 0.6))
                startup_kills += 1
            else:
                expected = overrides_in_dump(daemon.state_dir)
                held = overrides_held(daemon)
                if held != expected:
                    problems.append(f"restart {n}: holds {sorted(held)}, "
                                    f"override.dump had {sorted(expected)}")
                restored += 1
                with_overrides += bool(expected)
                v, r = rng.randrange(VIRTUALS), rng.randrange(1, REALS)
                rstate = rng.choice(("ONLINE", "OFFLINE", "DOWN"))
                weight = rng.choice(("0", "3", "50%", "100%", str(r + 1)))
                daemon.command(f"rset vproto=tcp vaddr=192.0.2.{v + 1} vport=80 "
                               f"raddr=127.0.{v}.{r + 1} rport={80 + r} rstate={rstate} "
                               f"rweight={weight}")
                time.sleep(rng.uniform(0.0, 1.5))
            daemon.kill9()
            row.cases += 1
            problems += [f"after kill {n}: {p}" for p in check_files(daemon.state_dir, reals)]
        # and a last start: it must come up from whatever the last kill left
        daemon.start()
        assert (daemon.state_dir / "ipvsfull.reload").exists()
        assert overrides_held(daemon) == overrides_in_dump(daemon.state_dir)
        assert daemon.stop() == 0
    finally:
        flapper.stop.set()
        flapper.thread.join(5)
        for s in steady:
            s.close()
    changes = sum(len(p.read_text().splitlines())
                  for p in (daemon.state_dir / "diffs").glob("diff_sync.*"))
    row.failures = len(problems)
    row.note = (f"{startup_kills} during start-up; {restored} restarts checked ({with_overrides} "
                f"with overrides to restore); {changes} diff lines written")
    row.done()
    assert not problems, "\n".join(problems[:20])
    assert with_overrides and changes > kills, "the loop did not exercise what it should"
    assert "Traceback" not in daemon.stderr_path.read_text(), daemon.stderr_tail(60)
