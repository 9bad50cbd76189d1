"""Privilege and exposure: what the daemon listens on by default, that exec testers and notify
scripts never go through a shell, and that names from the configuration cannot make a file path
leave its folder. (Lua's lack of file access is in test_lua_hostile.py; ipvssync as a non-root
user with CAP_NET_ADMIN only is in tests/kernel/inside/test_reliability_kernel.py.)"""

from __future__ import annotations

import ipaddress
import json
import os
import socket
import sys
from pathlib import Path
from xml.sax.saxutils import quoteattr

from hypothesis import given, settings
from hypothesis import strategies as st

from surealived.config.xml import parse_config_bytes
from surealived.errors import ConfigErrors
from surealived.registry import load_testers

from .figures import Row
from .harness import MakeDaemon, listening_sockets, wait_until

TCP_XML = """<surealived>
  <virtual name="web" addr="192.0.2.1" port="80" proto="tcp" sched="wrr" rt="dr">
    <tester proto="tcp" testport="{port}" loopdelay="1" timeout="1"/>
    <real name="a" addr="127.0.0.1" port="80" weight="1"/>
  </virtual>
</surealived>
"""
HOSTILE = ("a;touch INJ1", "$(touch INJ2)", "`touch INJ3`", "|touch INJ4", "&&touch INJ5",
           ">INJ6", "'\"", "*", "~root", "${HOME}", "\\n")
RECORDER = """#!{python}
import json, os, sys
with open(os.path.join(os.path.dirname(os.path.abspath(__file__)), "argv.jsonl"), "a") as f:
    f.write(json.dumps(sys.argv[1:]) + "\\n")
"""


def listener() -> socket.socket:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen(64)
    return s


def test_listens_on_loopback_only_by_default(make_daemon: MakeDaemon) -> None:
    """No listen_addr in surealived.cfg: the control port is on 127.0.0.1 and nothing else
    listens; the HTTP status server is off unless named, and the shipped configurations name a
    loopback address for it."""
    with listener() as target:
        daemon = make_daemon(TCP_XML.format(port=target.getsockname()[1]), listen_addr=None)
        daemon.start()
        found = listening_sockets(daemon.pid)
        daemon.stop()
        assert found == [("127.0.0.1", daemon.control_port)]

        status = make_daemon(TCP_XML.format(port=target.getsockname()[1]),
                             extra="status_listen 127.0.0.1:0\n")
        status.start()
        wait_until(lambda: len(listening_sockets(status.pid)) == 2, "the status server")
        found_status = listening_sockets(status.pid)
        status.stop()
    assert all(ipaddress.ip_address(a).is_loopback for a, _ in found_status), found_status
    root = Path(__file__).resolve().parents[2]
    shipped = [*root.glob("examples/**/*.cfg"), *root.glob("contrib/**/*.cfg")]
    for cfg in shipped:
        for line in cfg.read_text().splitlines():
            words = line.lstrip("# ").split()
            if len(words) == 2 and words[0] in ("listen_addr", "status_listen"):
                addr = words[1].rpartition(":")[0].strip("[]") if ":" in words[1] and \
                    words[0] == "status_listen" else words[1]
                assert ipaddress.ip_address(addr).is_loopback, f"{cfg}: {line}"
    Row("exposure: listening sockets", cases=2 + len(shipped),
        note=f"default: {found}; with status: {found_status}").done()


def test_exec_and_notify_never_use_a_shell(make_daemon: MakeDaemon, tmp_path: Path) -> None:
    """Hostile arguments arrive literally and a script path full of shell syntax runs as it is:
    nothing is ever interpreted by a shell."""
    folder = tmp_path / "sc ripts;$(touch INJ0)"
    folder.mkdir()
    script = folder / "check `id`;x.py"
    script.write_text(RECORDER.format(python=sys.executable))
    script.chmod(0o755)
    params = " ".join(HOSTILE)
    run = quoteattr(str(script))
    xml = f"""<surealived>
  <virtual name="web" addr="192.0.2.1" port="80" proto="tcp" sched="wrr" rt="dr">
    <tester proto="exec" exec={run} params={quoteattr(params)} testport="9" loopdelay="1"
            timeout="5" notify_up={run} notify_down={run} real_notify_up={run}
            real_notify_down={run}/>
    <real name="a" addr="127.0.0.1" port="80" weight="1"/>
  </virtual>
</surealived>
"""
    daemon = make_daemon(xml)
    daemon.start()
    log = folder / "argv.jsonl"

    def seen() -> list[list[str]]:
        if not log.exists():
            return []
        calls = [json.loads(line) for line in log.read_text().splitlines()]
        has_exec = any(c[:2] == ["127.0.0.1", "9"] for c in calls)
        has_notify = any(c and c[0].startswith("notify=") for c in calls)
        return calls if has_exec and has_notify else []

    calls = wait_until(seen, "the exec tester and the notify script to run")
    daemon.stop()
    checks = [c for c in calls if c[:2] == ["127.0.0.1", "9"]]
    assert all(c == ["127.0.0.1", "9", *params.split()] for c in checks), checks[:2]
    notifies = [c for c in calls if c and c[0].startswith("notify=")]
    assert all(c[0] in ("notify=UP", "notify=DOWN") for c in notifies), notifies
    injected = [p for p in tmp_path.rglob("INJ*")] + [p for p in Path.cwd().glob("INJ*")]
    injected += [p for p in daemon.root.rglob("INJ*")]
    assert not injected, injected
    Row("exposure: exec and notify without a shell", cases=len(calls),
        note=f"{len(checks)} exec checks, {len(notifies)} notify runs, hostile argv literal"
        ).done()


REGISTRY = load_testers()
NAMES = st.one_of(st.sampled_from(["..", ".", "...", "../x", "a/b", "/etc", "a\\b", "-", "_",
                                   ".hidden", "x" * 31, "a\x00b", "~", "$HOME"]),
                  st.text(st.characters(codec="utf-8", exclude_characters="\"&<"), max_size=40))


@settings(max_examples=500, deadline=None, database=None)
@given(NAMES, NAMES)
def test_accepted_names_cannot_leave_their_folder(vname: str, rname: str) -> None:
    """Virtual and real names end up in file names (comm dumps ``VNAME_RNAME``, stats logs
    ``sd_virtstats_VNAME:PORT.T``): every name the parser accepts is a plain file-name part."""
    xml = (f'<surealived><virtual name="{vname}" addr="192.0.2.1" port="80" proto="tcp" '
           f'sched="wrr" rt="dr"><tester proto="tcp" debugcomm="1"/>'
           f'<real name="{rname}" addr="127.0.0.1" port="80" weight="1"/></virtual>'
           f'</surealived>').encode("utf-8", "surrogatepass")
    try:
        config = parse_config_bytes(xml, "/etc/surealived/t.xml", REGISTRY)
    except ConfigErrors:
        return
    for name in (config.virtuals[0].name, config.virtuals[0].reals[0].name):
        base = "/var/log/surealived/comm"
        path = os.path.normpath(os.path.join(base, f"{name}_{name}"))
        assert os.path.dirname(path) == base, name
        assert "/" not in name and "\0" not in name, name


def test_dot_names_stay_in_their_folders(make_daemon: MakeDaemon) -> None:
    """A virtual and a real named ``..`` with conversation dumps and stats logs on: every file
    the daemon writes is inside its project folder's log/ and state/."""
    with listener() as target:
        xml = f"""<surealived>
  <virtual name=".." addr="192.0.2.1" port="80" proto="tcp" sched="wrr" rt="dr">
    <tester proto="tcp" testport="{target.getsockname()[1]}" loopdelay="1" timeout="1"
            debugcomm="1"/>
    <real name=".." addr="127.0.0.1" port="80" weight="1"/>
    <real name="." addr="127.0.0.2" port="80" weight="1"/>
  </virtual>
</surealived>
"""
        daemon = make_daemon(xml, extra="debug_comm 1\nlog_stats true\nlog_stats_combined true\n")
        outside_before = set(os.listdir(daemon.root.parent))
        daemon.start()
        wait_until(lambda: list((daemon.root / "log" / "stats").glob("sd_virtstats_*")),
                   "a stats log")
        wait_until(lambda: {p.name for p in (daemon.root / "log" / "comm").iterdir()}
                   == {".._..", ".._."}, "the conversation dumps")
        daemon.stop()
    written = [p for p in daemon.root.rglob("*") if p.is_file()]
    allowed = (daemon.root / "log", daemon.root / "state")
    stray = [p for p in written if not any(a in p.parents for a in allowed)
             and p not in (daemon.cfg, daemon.xml)]
    assert not stray, stray
    assert set(os.listdir(daemon.root.parent)) == outside_before
    Row("exposure: names '..' and '.' in file names", cases=len(written),
        note="every file written stays in log/ and state/").done()
