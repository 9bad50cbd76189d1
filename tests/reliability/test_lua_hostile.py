"""Lua hostility at the daemon level: a running surealived with hostile Lua testers (sandbox
escapes, file and process access, bytecode, memory bombs, endless loops, deep recursion) beside
normal tcp and http testers against nginx. Each hostile check fails with a clear reason, and the
normal reals keep being tested on schedule (their last check keeps advancing, read from the
control port). The catalogue of escapes itself is tests/lua/test_sandbox.py; this part shows the
daemon holding with them all at once.

The second test is the scripts that froze or bloated the daemon before the C library was
bounded (lua/bounded.lua) and what crosses into Python was cut (lua/crossing.py): work inside
one C call, megabyte reasons and errors, log floods, NaN timeouts. The healthy reals keep their
schedule, the control port and the status server answer, and RSS, fds and the log stay bounded
over hundreds of hostile checks."""

from __future__ import annotations

import contextlib
import itertools
import socket
import threading
import time
import urllib.request
from pathlib import Path

import pytest

from tests.daemon_harness import exchange, free_port
from tests.servers import nginx

from .figures import Row, scale, timeout
from .harness import END, Daemon, MakeDaemon, wait_until

CPU = "CPU time limit"  # whichever budget runs out first, on a loaded machine
# (name, body of check(t), what the reason must say: one of these)
HOSTILE: list[tuple[str, str, str | tuple[str, ...]]] = [
    ("python", "return python.eval('1')", "global 'python'"),
    ("io_open", "local f = io.open('/etc/passwd') return f ~= nil", "global 'io'"),
    ("os_execute", "return os.execute('touch /tmp/surealived-pwned')", "execute"),
    ("require", "local m = require('io') return m ~= nil", "module 'io' not found"),
    ("dofile", "return dofile('/etc/passwd')", "global 'dofile'"),
    ("loadfile", "return loadfile('/etc/passwd')", "global 'loadfile'"),
    ("bytecode", r"local f, err = loadstring('\27Lua\81\0\1\4\8\4\8\0') "
                 "if not f then error(err, 0) end return true", "binary"),
    ("string_dump", "return string.dump(check)", "dump"),
    ("debug", "return debug.getinfo(1)", "global 'debug'"),
    ("metatable", "setmetatable(string, {})", "protected metatable"),
    ("collectgarbage", "collectgarbage('stop')", "collectgarbage"),
    ("elsewhere", "local s = sd.tcp() local ok, err = s:connect('127.0.0.2', t.port) "
                  "return ok, err", "only the real under test"),
    ("memory_bomb", "local t = {} for i = 1, 1e8 do t[i] = ('x'):rep(4096) .. i end",
     ("memory limit", CPU)),
    ("endless_loop", "while true do end", ("instruction budget", CPU)),
    ("deep_recursion", "local function f(n) return 1 + f(n + 1) end return f(1)",
     ("stack overflow", CPU)),
]
NORMAL = ("tcp", "http")


def said(reason: str, expected: str | tuple[str, ...]) -> bool:
    return any(e in reason for e in ((expected,) if isinstance(expected, str) else expected))


def xml(scripts: Path, port: int) -> str:
    out = ["<surealived>"]
    for i, (name, body, _) in enumerate(HOSTILE):
        script = scripts / f"{name}.lua"
        script.write_text(f"function check(t)\n{body}\nend\n")
        out.append(f'  <virtual name="{name}" addr="192.0.2.{i + 1}" port="80" proto="tcp" '
                   'sched="wrr" rt="dr">')
        out.append(f'    <tester proto="lua" script="{script}" testport="{port}" loopdelay="1" '
                   'timeout="3"/>')
        out.append('    <real name="r" addr="127.0.0.1" port="80" weight="1"/>\n  </virtual>')
    out.append(f"""  <virtual name="tcp" addr="192.0.2.100" port="80" proto="tcp" sched="wrr"
           rt="dr">
    <tester proto="tcp" testport="{port}" loopdelay="1" timeout="2"/>
    <real name="r" addr="127.0.0.1" port="80" weight="1"/>
  </virtual>
  <virtual name="http" addr="192.0.2.101" port="80" proto="tcp" sched="wrr" rt="dr">
    <tester proto="http" url="/health" host="t" testport="{port}" loopdelay="1" timeout="2"/>
    <real name="r" addr="127.0.0.1" port="80" weight="1"/>
  </virtual>
</surealived>""")
    return "\n".join(out) + "\n"


@pytest.mark.timeout(timeout(120))
def test_hostile_lua_beside_normal_testers(make_daemon: MakeDaemon, tmp_path: Path) -> None:
    scripts = tmp_path / "lua"
    scripts.mkdir()
    seconds = 12 * scale()
    with nginx(tmp_path / "nginx") as web:
        daemon = make_daemon(xml(scripts, web.port))
        daemon.start()
        wait_until(lambda: all(r["tested"] for r in daemon.reals()), "every real tested")
        row = Row("Lua hostility in a running daemon", fds_before=daemon.fds(),
                  rss_before_kb=daemon.rss())
        checks: dict[str, set[float]] = {name: set() for name in NORMAL}
        hostile_checks: dict[str, set[float]] = {name: set() for name, _, _ in HOSTILE}
        reasons: dict[str, str] = {}
        states: dict[str, bool] = {}
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            for real in daemon.reals():
                seen = checks.get(real["virtual"], hostile_checks.get(real["virtual"]))
                assert seen is not None
                seen.add(real["last_check"])
                if real["virtual"] in hostile_checks:
                    reasons[real["virtual"]] = real["last_reason"] or ""
                    states[real["virtual"]] = real["online"]
                else:
                    assert real["online"], real
            time.sleep(0.25)
        row.fds_after, row.rss_after_kb = daemon.fds(), daemon.rss()
        assert daemon.alive(), daemon.stderr_tail()
        assert daemon.stop() == 0
    assert not Path("/tmp/surealived-pwned").exists()
    wrong = [f"{name}: online={states.get(name)} reason={reasons.get(name)!r} "
             f"(expected {expected!r})"
             for name, _, expected in HOSTILE
             if states.get(name) or not said(reasons.get(name, ""), expected)
             # a script's own "return false, err" is its reason; errors say "lua: ..."
             or not (name == "elsewhere" or reasons.get(name, "").startswith("lua: "))]
    # on schedule: loopdelay 1 s, so about one check a second; allow for a loaded machine
    rounds = {name: len(seen) for name, seen in checks.items()}
    late = {name: n for name, n in rounds.items() if n < seconds // 3}
    hostile_rounds = min(len(seen) for seen in hostile_checks.values())
    row.cases = sum(rounds.values()) + sum(len(s) for s in hostile_checks.values())
    row.failures = len(wrong) + len(late)
    row.note = (f"{len(HOSTILE)} hostile scripts, {hostile_rounds}+ checks each; normal reals: "
                f"{rounds} checks in {seconds} s")
    row.done()
    assert not wrong, "\n".join(wrong)
    assert not late, f"normal reals fell behind: {late}"
    assert hostile_rounds >= 2, "the hostile checks were not repeated"
    assert "Traceback" not in daemon.stderr_path.read_text(), daemon.stderr_tail(60)


# (name, body of check(t)): each froze every check or grew the daemon without bound before
FREEZERS: list[tuple[str, str]] = [
    ("lazy_pattern", "return ('a'):rep(300):find(('.-'):rep(4) .. 'x')"),
    ("c_call_loop", "local s = ('a'):rep(1000) for i = 1, 1e6 do s:find('.-.-b') end"),
    ("empty_rep", "local s = ('').rep('', '2e9') return ('x'):rep('1e9')"),
    ("plain_find_loop", "local s, p = ('a'):rep(2^20), ('a'):rep(2^10) .. 'b'"
                        " for i = 1, 1e6 do s:find(p, 1, true) end"),
    ("front_insert", "local t = {} for i = 1, 2^20 + 10 do t[i] = i end"
                     " for i = 1, 1e4 do table.insert(t, 1, i) end"),
    ("huge_reason", "return false, ('r'):rep(4 * 2^20) .. math.random()"),
    ("huge_error", "error(('e'):rep(4 * 2^20) .. math.random(), 0)"),
    ("log_flood", "for i = 1, 1e5 do sd.log('warn', ('f'):rep(4096), i,"
                  " '\\nsurealived: forged line') end return true"),
    ("nan_sleep", "sd.sleep(0/0)"),
    ("nan_timeout", "local s = sd.tcp() s:settimeout(0/0) return s:connect(t.addr, t.port)"),
]


class Recorder:
    """A healthy real: a loopback TCP server, in a thread, that notes the time of every
    connection (a check of the tcp or http tester: the schedule, measured where the checks
    arrive) and answers an HTTP request with 200."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0), backlog=64)
        self.sock.settimeout(0.1)
        self.port = self.sock.getsockname()[1]
        self.arrivals: list[float] = []
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self.serve, daemon=True)
        self.thread.start()

    def serve(self) -> None:
        while not self.stopping.is_set():
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            self.arrivals.append(time.monotonic())
            with conn:
                conn.settimeout(1.0)
                with contextlib.suppress(OSError):
                    if conn.recv(4096):
                        conn.sendall(b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok")

    def longest_gap(self, since: float) -> float:
        seen = [t for t in self.arrivals if t >= since]
        return max((b - a for a, b in itertools.pairwise(seen)), default=float("inf"))

    def close(self) -> None:
        self.stopping.set()
        self.thread.join(5)
        self.sock.close()


def freezers_xml(scripts: Path, port: int, tcp_port: int, http_port: int) -> str:
    out = ["<surealived>"]
    for i, (name, body) in enumerate(FREEZERS):
        script = scripts / f"{name}.lua"
        script.write_text(f"function check(t)\n{body}\nend\n")
        out.append(f'  <virtual name="{name}" addr="192.0.2.{i + 1}" port="80" proto="tcp" '
                   'sched="wrr" rt="dr">')
        out.append(f'    <tester proto="lua" script="{script}" testport="{port}" loopdelay="1" '
                   'timeout="3"/>')
        out.append('    <real name="r" addr="127.0.0.1" port="80" weight="1"/>\n  </virtual>')
    out.append(f"""  <virtual name="tcp" addr="192.0.2.100" port="80" proto="tcp" sched="wrr"
           rt="dr">
    <tester proto="tcp" testport="{tcp_port}" loopdelay="1" timeout="2"
            half_open="0"/>
    <real name="r" addr="127.0.0.1" port="80" weight="1"/>
  </virtual>
  <virtual name="http" addr="192.0.2.101" port="80" proto="tcp" sched="wrr" rt="dr">
    <tester proto="http" url="/health" host="t" testport="{http_port}" loopdelay="1"
            timeout="2"/>
    <real name="r" addr="127.0.0.1" port="80" weight="1"/>
  </virtual>
</surealived>""")
    return "\n".join(out) + "\n"


def log_bytes(daemon: Daemon) -> int:
    return sum(p.stat().st_size for p in (daemon.root / "log").glob("*.log"))


@pytest.mark.timeout(timeout(150))
def test_hostile_lua_cannot_freeze_or_grow_the_daemon(make_daemon: MakeDaemon,
                                                      tmp_path: Path) -> None:
    scripts = tmp_path / "lua"
    scripts.mkdir()
    seconds = 20 * scale()
    status_port = free_port()
    healthy = {"tcp": Recorder(), "http": Recorder()}
    try:
        with nginx(tmp_path / "nginx") as web:
            daemon = make_daemon(
                freezers_xml(scripts, web.port, healthy["tcp"].port, healthy["http"].port),
                extra=f"status_listen 127.0.0.1:{status_port}\nlua_memory_kb 32768\n")
            daemon.start()
            wait_until(lambda: all(r["tested"] for r in daemon.reals()), "every real tested")
            since = time.monotonic()
            row = Row("Lua work in C, floods and NaNs in a running daemon",
                      fds_before=daemon.fds(), rss_before_kb=daemon.rss())
            log_before = log_bytes(daemon)
            hostile: dict[str, set[float]] = {name: set() for name, _ in FREEZERS}
            reasons: dict[str, str] = {}
            slowest_control = slowest_status = 0.0
            end = time.monotonic() + seconds
            while time.monotonic() < end:
                started = time.monotonic()
                assert exchange(daemon.control_port, "vlist", 5.0)[-1] == END
                slowest_control = max(slowest_control, time.monotonic() - started)
                started = time.monotonic()
                with urllib.request.urlopen(f"http://127.0.0.1:{status_port}/",
                                            timeout=5) as page:
                    assert page.status == 200
                slowest_status = max(slowest_status, time.monotonic() - started)
                for real in daemon.reals():
                    name = real["virtual"]
                    if name in hostile:
                        hostile[name].add(real["last_check"])
                        reasons[name] = real["last_reason"] or ""
                    else:
                        assert real["online"], real
                time.sleep(0.25)
            row.fds_after, row.rss_after_kb = daemon.fds(), daemon.rss()
            grown_log = log_bytes(daemon) - log_before
            assert daemon.alive(), daemon.stderr_tail()
            assert daemon.stop() == 0
    finally:
        for recorder in healthy.values():
            recorder.close()
    # loopdelay 1: a healthy real is checked every second or so, whatever the hostile ones do
    gaps = {name: recorder.longest_gap(since) for name, recorder in healthy.items()}
    hostile_checks = sum(len(s) for s in hostile.values())
    row.cases = sum(len(r.arrivals) for r in healthy.values()) + hostile_checks
    late = {name: gap for name, gap in gaps.items() if gap > 3 + 1 * scale()}  # rounds: 2 + 1 s
    long_reasons = {name: len(r) for name, r in reasons.items() if len(r) > 4 * 512 + 16}
    row.failures = len(late) + len(long_reasons)
    row.note = (f"{len(FREEZERS)} scripts, {hostile_checks} hostile checks; healthy reals' "
                f"longest gap {max(gaps.values()):.2f} s; slowest answer: control "
                f"{slowest_control:.2f} s, status page {slowest_status:.2f} s; "
                f"log +{grown_log} B")
    row.done()
    assert not late, f"healthy reals missed their schedule: {gaps}"
    assert not long_reasons, long_reasons
    assert min(len(s) for s in hostile.values()) >= 5, {n: len(s) for n, s in hostile.items()}
    assert grown_log < 2 << 20, grown_log  # per-script log rate and once-only errors
    assert row.rss_after_kb - row.rss_before_kb < 64 << 10  # type: ignore[operator]
    text = daemon.log.read_text(errors="replace") if daemon.log.exists() else ""
    text += daemon.stderr_path.read_text(errors="replace")
    assert "Traceback" not in text and "tester error" not in text, daemon.stderr_tail(60)
    assert "\nsurealived: forged line" not in text
