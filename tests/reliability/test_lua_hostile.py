"""Lua hostility at the daemon level: a running surealived with hostile Lua testers (sandbox
escapes, file and process access, bytecode, memory bombs, endless loops, deep recursion) beside
normal tcp and http testers against nginx. Each hostile check fails with a clear reason, and the
normal reals keep being tested on schedule (their last check keeps advancing, read from the
control port). The catalogue of escapes itself is tests/lua/test_sandbox.py; this part shows the
daemon holding with them all at once."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.servers import nginx

from .figures import Row, scale, timeout
from .harness import MakeDaemon, wait_until

CPU = "CPU time limit"  # whichever budget runs out first, on a loaded machine
# (name, body of check(t), what the reason must say: one of these)
HOSTILE: list[tuple[str, str, str | tuple[str, ...]]] = [
    ("python", "return python.eval('1')", "global 'python'"),
    ("io_open", "local f = io.open('/etc/passwd') return f ~= nil", "global 'io'"),
    ("os_execute", "return os.execute('touch /tmp/surealived-pwned')", "execute"),
    ("require", "local m = require('io') return m ~= nil", "global 'require'"),
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
