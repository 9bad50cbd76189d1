"""The control port and the HTTP status of a running ``surealived`` (a real process, real
sockets, a live real and a dead one on loopback)."""

from __future__ import annotations

import contextlib
import json
import socket
import subprocess
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.daemon_harness import Client, Project, free_port, stop, wait_until

SEL_A = "vproto=tcp vaddr=192.0.2.1 vport=80 raddr=127.0.0.1 rport=80"
SEL_B = "vproto=tcp vaddr=192.0.2.1 vport=80 raddr=127.0.0.2 rport=80"


def wait(predicate: Callable[[], object], what: str) -> None:
    wait_until(predicate, what, seconds=30.0, step=0.1)


def http(port: int, path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


@pytest.fixture
def daemon(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[str], int, int, Path]]:
    live = socket.socket()
    live.bind(("127.0.0.1", 0))
    live.listen(128)
    dead = free_port()  # nothing listens there: connection refused
    control, status = free_port(), free_port()
    project = Project(tmp_path, dirs=("log", "state", "state/diffs"))
    project.write_cfg(logging=None, modules_path=None, listen_port=str(control),
                      status_listen=f"127.0.0.1:{status}", stats_dir="log",
                      debug_comm_path="log", control_max_clients="4")
    project.xml.write_text(f"""<surealived>
  <virtual name="web" addr="192.0.2.1" port="80" proto="tcp" sched="wrr" rt="dr">
    <tester proto="tcp" testport="{live.getsockname()[1]}" loopdelay="1" timeout="2"/>
    <real name="a" addr="127.0.0.1" port="80" weight="10"/>
    <real name="b" addr="127.0.0.2" port="80" weight="20" testport="{dead}"/>
  </virtual>
</surealived>
""")
    proc = project.start()

    def answering() -> bool:
        assert proc.poll() is None, proc.communicate()
        try:
            socket.create_connection(("127.0.0.1", control), timeout=1).close()
        except OSError:
            return False
        return True

    try:
        wait(answering, "the control port")
        yield proc, control, status, tmp_path
    finally:
        with contextlib.suppress(AssertionError):  # killed if still there after 30 s
            stop(proc, seconds=30)
        proc.communicate()
        live.close()


def test_operator_session_against_a_running_daemon(
        daemon: tuple[subprocess.Popen[str], int, int, Path]) -> None:
    proc, control, status, root = daemon
    wait(lambda: http(status, "/ready")[0] == 200, "/ready")
    client = Client(control)
    assert client.ask("vlist") == [
        "v:0 vname=web vproto=tcp vaddr=192.0.2.1 vport=80 vfwmark=0 vrt=dr vsched=wrr"]
    assert client.ask("rlist vproto=tcp vaddr=192.0.2.1 vport=80") == [
        "vname=web vproto=tcp vaddr=192.0.2.1 vport=80 vfwmark=0 vrt=dr vsched=wrr",
        "r:0 rname=a raddr=127.0.0.1 rport=80 currwgt=10 confwgt=10 ronline=TRUE rstate=ONLINE",
        "r:1 rname=b raddr=127.0.0.2 rport=80 currwgt=0 confwgt=20 ronline=FALSE rstate=ONLINE",
    ]
    # pipelined: a drain with a reason, a bad value, a listing, all in one write
    client.send(f"rset {SEL_A} rstate=OFFLINE reason=kernel upgrade\n"
                f"rset {SEL_A} rweight=-5\nrlist vproto=tcp vaddr=192.0.2.1 vport=80\n")
    assert client.response() == ["Set: rstate=OFFLINE, weight=10, inpercent=FALSE"]
    assert client.response() == [
        "cmd_rset: rweight invalid [-5] (valid: 0..65535, or 0%..100%)"]
    assert client.response()[1] == ("r:0 rname=a raddr=127.0.0.1 rport=80 currwgt=0 confwgt=10 "
                                    "ronline=TRUE rstate=OFFLINE reason=kernel upgrade")
    # the persistence and sync components saw the change
    override = root / "state" / "override.dump"
    wait(lambda: override.exists() and "rstate=OFFLINE" in override.read_text(),
         "override.dump")
    assert "192.0.2.1:80:0:0 - 127.0.0.1:80 - weight=10  rstate=OFFLINE" in override.read_text()

    def diff_says_drained() -> bool:
        return any("rname=a" in line and "rweight=0" in line
                   for f in (root / "state" / "diffs").iterdir()
                   for line in f.read_text().splitlines())

    wait(diff_says_drained, "a diff line draining a")
    data = json.loads(client.ask("rlist vproto=tcp vaddr=192.0.2.1 vport=80 format=json")[0])
    assert [(r["name"], r["state"]) for r in data["reals"]] == [("a", "drained"), ("b", "down")]
    stats = "\n".join(client.ask("stats"))
    assert f"tester_pid     : {proc.pid}\n" in stats and "roffline       : 1\n" in stats
    assert client.ask(f"rset {SEL_A} rstate=ONLINE") == [
        "Set: rstate=ONLINE, weight=10, inpercent=FALSE"]
    wait(lambda: "rstate=OFFLINE" not in override.read_text(), "override entry deleted")
    xml = root / "surealived.xml"
    xml.write_text(xml.read_text().replace(
        '  </virtual>', '    <real name="c" addr="127.0.0.3" port="80" weight="5"/>\n  </virtual>'))
    assert client.ask("reload") == ["Reload requested"]
    wait(lambda: len(client.ask("rlist vproto=tcp vaddr=192.0.2.1 vport=80")) == 4,
         "the reload to add real c")
    assert len(client.ask("connstats")) > 5
    client.close()

    # HTTP: the same facts (the reload changed the virtual, so its reals are tested afresh)
    wait(lambda: http(status, "/ready")[0] == 200, "/ready after the reload")
    code, text = http(status, "/metrics")
    assert code == 200
    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value
               for f in text_string_to_metric_families(text) for s in f.samples}
    labels_b = (("real", "127.0.0.2:80"), ("virtual", "tcp:192.0.2.1:80"))
    assert samples[("surealived_real_up", labels_b)] == 0
    assert samples[("surealived_real_check_duration_seconds_count", labels_b)] >= 1
    assert samples[("surealived_checks_in_flight", ())] >= 0
    assert ("surealived_loop_lag_seconds", ()) in samples
    code, page = http(status, "/")
    assert code == 200 and '<tr class="r down" id="web/b">' in page
    assert json.loads(http(status, "/status")[1])["ready"] is True


def test_too_many_clients_and_a_long_line_do_not_hurt_a_running_daemon(
        daemon: tuple[subprocess.Popen[str], int, int, Path]) -> None:
    proc, control, _, _ = daemon
    clients = [Client(control) for _ in range(4)]  # control_max_clients 4
    for c in clients:
        assert len(c.ask("vlist")) == 1
    extra = Client(control)
    assert extra.response()[0].startswith("cmd_connect: too many clients (limit 4)")
    extra.close()
    clients[0].send("x" * 10_000)
    assert clients[0].response() == ["Invalid request! line longer than 8192 bytes; closing"]
    for c in clients[1:]:
        assert c.ask("help")[0].startswith("vlist")
    for c in clients:
        c.close()
    assert proc.poll() is None
