"""Misbehaving targets at scale: 10,000 checks (more with RELIABILITY_SCALE) by a running daemon
against servers that stall, reset, drip bytes, send endless bodies and speak garbage TLS, each
real on its own 127.x.y.z. Every verdict is right, and afterwards the daemon's open fds are back
to their baseline (RSS reported, bounded generously).

The baseline is taken with a one-real configuration; the big one is loaded by SIGHUP, run, and
replaced by the small one again, so before and after compare the same daemon doing the same."""

from __future__ import annotations

import signal
import socket
import time
from collections import Counter
from collections.abc import Callable

import pytest

from .figures import Row, scale, timeout
from .harness import Daemon, MakeDaemon, wait_until
from .targets import serve_targets

SMALL = """<surealived>
  <virtual name="idle" addr="192.0.2.1" port="80" proto="tcp" sched="wrr" rt="dr">
    <tester proto="tcp" testport="{port}" loopdelay="1" timeout="1"/>
    <real name="one" addr="127.0.0.1" port="80" weight="1"/>
  </virtual>
</surealived>
"""
# virtual: (mode of its targets, tester attributes, expected online, words the reason holds)
CASES: dict[str, tuple[str, str, bool, tuple[str, ...]]] = {
    "good": ("good", 'proto="http" url="/" host="t"', True, ()),
    "stall": ("silent", 'proto="http" url="/" host="t"', False, ("timeout", "timed out")),
    "stall_tcp": ("silent", 'proto="tcp"', True, ()),
    "reset": ("reset", 'proto="http" url="/" host="t"', False, ()),
    "drip": ("drip", 'proto="http" url="/" host="t"', False, ("timeout", "timed out")),
    "endless": ("endless", 'proto="http" url="/" host="t"', True, ()),
    "endless_body": ("endless", 'proto="http" url="/" host="t" naive="0" body_match="zzz"',
                     False, ()),
    "tls_garbage": ("tls_garbage", 'proto="http" url="/" host="t" SSL="1"', False, ()),
}


def big_xml(addresses: dict[str, list[str]], port: int, per_virtual: int) -> str:
    out = ["<surealived>"]
    used: Counter[str] = Counter()
    for i, (name, (mode, tester, _, _)) in enumerate(CASES.items()):
        out.append(f'  <virtual name="{name}" addr="192.0.2.{10 + i}" port="80" proto="tcp" '
                   'sched="wrr" rt="dr">')
        out.append(f'    <tester {tester} testport="{port}" loopdelay="1" timeout="1"/>')
        for n in range(per_virtual):
            addr = addresses[mode][used[mode]]
            used[mode] += 1
            out.append(f'    <real name="r{n}" addr="{addr}" port="80" weight="5"/>')
        out.append("  </virtual>")
    out.append("</surealived>")
    return "\n".join(out) + "\n"


def checks_done(daemon: Daemon) -> int:
    tests = daemon.json("stats")["tests_stats"]
    return int(tests["t_success"]) + int(tests["t_failed"])


def settle(measure: Callable[[], int], baseline: int, margin: int, seconds: float) -> int:
    """The value once it is within ``margin`` of ``baseline`` (or the last seen)."""
    deadline = time.monotonic() + seconds
    value = measure()
    while value > baseline + margin and time.monotonic() < deadline:
        time.sleep(0.2)
        value = measure()
    return value


@pytest.mark.timeout(timeout(120))
def test_ten_thousand_checks_against_misbehaving_targets(make_daemon: MakeDaemon) -> None:
    per_virtual = 125 * min(scale(), 4)  # fds: up to 4,000 reals, then more rounds
    wanted_checks = 10_000 * scale()
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)
    modes: Counter[str] = Counter(mode for mode, _, _, _ in CASES.values())
    per_mode = {mode: n * per_virtual for mode, n in modes.items()}
    row = Row(f"misbehaving targets ({per_virtual * len(CASES)} reals)")
    with serve_targets(per_mode) as targets:
        daemon = make_daemon(SMALL.format(port=listener.getsockname()[1]),
                             extra="maxfd 16384\nlog_stats false\n")
        daemon.start()
        wait_until(lambda: all(r["tested"] for r in daemon.reals()), "the one real tested")
        time.sleep(1.0)
        row.fds_before, row.rss_before_kb = daemon.fds(), daemon.rss()

        daemon.xml.write_text(big_xml(targets.addresses, targets.port, per_virtual))
        start_checks = checks_done(daemon)
        daemon.signal(signal.SIGHUP)
        wait_until(lambda: len(daemon.json("vlist")["virtuals"]) == len(CASES), "the reload")
        done = wait_until(lambda: (n if (n := checks_done(daemon) - start_checks)
                                   >= wanted_checks else 0),
                          f"{wanted_checks} checks", seconds=90 * scale(), step=0.5)
        row.cases = done
        peak_fds, peak_rss = daemon.fds(), daemon.rss()
        wrong = []
        for real in daemon.reals():
            _, _, online, words = CASES[real["virtual"]]
            reason = real["last_reason"] or ""
            if not real["tested"] or real["online"] != online or (
                    words and not any(w in reason.lower() for w in words)):
                wrong.append(f"{real['virtual']}/{real['name']} {real['addr']}: "
                             f"online={real['online']} reason={reason!r}")
        row.failures = len(wrong)

        daemon.xml.write_text(SMALL.format(port=listener.getsockname()[1]))
        daemon.signal(signal.SIGHUP)
        wait_until(lambda: len(daemon.json("vlist")["virtuals"]) == 1, "the reload back")
        row.fds_after = settle(daemon.fds, row.fds_before, 3, 20)
        row.rss_after_kb = daemon.rss()
        accepted = sum(targets.accepted.values())
    listener.close()
    row.note = (f"peak {peak_fds} fds, {peak_rss} kB; {accepted} connections accepted by "
                "the targets")
    row.done()
    assert not wrong, f"{len(wrong)} wrong verdicts, e.g.\n" + "\n".join(wrong[:10])
    assert daemon.alive(), daemon.stderr_tail()
    assert row.fds_after <= row.fds_before + 3, (row.fds_before, row.fds_after)
    assert row.rss_after_kb < max(3 * row.rss_before_kb, row.rss_before_kb + 200_000)
    assert "Traceback" not in daemon.stderr_path.read_text(), daemon.stderr_tail(60)
