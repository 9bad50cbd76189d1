"""Who may change what, against a running surealived: rset over the control socket as root and
as ``nobody`` (each logged with its uid, command and reason), a uid outside the socket's group
refused by the file mode, the read-only TCP port answering listings but refusing rset and
reload; ``-t`` warning about listeners beyond loopback."""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.daemon_harness import Client, Project, free_port, stop, wait_until

SEL = "vproto=tcp vaddr=192.0.2.1 vport=80 raddr=127.0.0.1 rport=80"
# A client in another process, as another user: only the standard library of the system python.
ASK = """
import socket, sys
s = socket.socket(socket.AF_UNIX)
try:
    s.connect(sys.argv[1])
except OSError as exc:
    print("connect:", exc.strerror); sys.exit(3)
s.sendall(sys.argv[2].encode() + b"\\n")
data = b""
while not data.endswith(b"_SD_CMD_END_\\n"):
    chunk = s.recv(4096)
    if not chunk:
        break
    data += chunk
print(data.decode(), end="")
"""


def ask_as(user: str, group: str, path: Path, line: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["/usr/bin/python3", "-c", ASK, str(path), line], user=user,
                          group=group, extra_groups=[], capture_output=True, text=True,
                          timeout=30)


@pytest.fixture
def daemon(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[str], int, Path, Path]]:
    sockdir = Path(tempfile.mkdtemp(prefix="sd-access-"))
    sockdir.chmod(0o755)  # pytest's tmp_path is 0700: another uid could not reach a socket there
    live = socket.socket()
    live.bind(("127.0.0.1", 0))
    live.listen(64)
    port = free_port()
    project = Project(tmp_path)
    project.write_cfg(listen_port=str(port), control_socket=str(sockdir / "control.sock"),
                      control_socket_mode="0660", control_socket_group="nogroup",
                      control_tcp_readonly="true")
    project.xml.write_text(f"""<surealived>
  <virtual name="web" addr="192.0.2.1" port="80" proto="tcp" sched="wrr" rt="dr">
    <tester proto="tcp" testport="{live.getsockname()[1]}" loopdelay="1" timeout="2"/>
    <real name="a" addr="127.0.0.1" port="80" weight="10"/>
  </virtual>
</surealived>
""")
    log = tmp_path / "daemon.log"
    with open(log, "w") as out:
        proc = project.start(stderr=out)
    try:
        wait_until(lambda: "Started:" in log.read_text(), "the daemon")
        yield proc, port, sockdir / "control.sock", log
    finally:
        assert stop(proc) == 0
        live.close()
        shutil.rmtree(sockdir)


def test_rset_over_the_socket_as_two_uids_is_logged_with_each(daemon):
    _proc, port, path, log = daemon
    mode = path.stat()
    assert oct(mode.st_mode & 0o777) == "0o660" and mode.st_gid == 65534
    root = ask_as("root", "root", path, f"rset {SEL} rstate=OFFLINE reason=root drains")
    assert root.stdout.startswith("Set: rstate=OFFLINE"), root
    nobody = ask_as("nobody", "nogroup", path, f"rset {SEL} rstate=DOWN reason=nobody removes")
    assert nobody.stdout.startswith("Set: rstate=DOWN"), nobody
    outsider = ask_as("daemon", "daemon", path, f"rset {SEL} rstate=ONLINE")
    assert outsider.returncode == 3 and "Permission denied" in outsider.stdout
    text = log.read_text()
    assert ("Control rset by uid 0 pid " in text
            and "(socket): web:a - 192.0.2.1:80:tcp 127.0.0.1:80 rstate=OFFLINE weight=10 "
                "reason=root drains" in text)
    assert ("Control rset by uid 65534 pid " in text
            and "rstate=DOWN weight=10 reason=nobody removes" in text)
    client = Client(port)
    assert client.ask(f"rlist {SEL.rsplit(' raddr', 1)[0]}")[1].endswith(
        "rstate=DOWN reason=nobody removes")
    client.close()


def test_the_read_only_tcp_port_lists_but_refuses_changes(daemon):
    _proc, port, _path, log = daemon
    client = Client(port)
    assert client.ask("vlist")[0].startswith("v:0 vname=web")
    refused = client.ask(f"rset {SEL} rstate=DOWN reason=from tcp")
    assert refused == ["cmd_rset: read-only connection (control_tcp_readonly); state changes "
                       "go through the control socket"]
    assert client.ask("reload")[0].startswith("cmd_reload: read-only connection")
    local = client.sock.getsockname()
    assert client.ask(f"rlist {SEL.rsplit(' raddr', 1)[0]}")[1].endswith("rstate=ONLINE")
    client.close()
    text = log.read_text()
    assert f"Control rset by 127.0.0.1:{local[1]} refused: read-only connection" in text
    assert "Reloading configuration" not in text


def test_t_warns_about_listeners_beyond_loopback(tmp_path: Path):
    project = Project(tmp_path)
    project.write_cfg(listen_addr="0.0.0.0", status_listen="[::]:9337")
    project.xml.write_text("<surealived/>")
    done = project.run("-t")
    assert done.returncode == 0, done.stderr
    warnings = [x for x in done.stderr.splitlines() if x.startswith("warning: ")]
    assert len(warnings) == 2
    assert "listen_addr 0.0.0.0: the control port listens beyond loopback with full rights" in (
        warnings[0])
    assert "status_listen ::: the status server shows every virtual and real beyond loopback" in (
        warnings[1])
    project.write_cfg(control_socket_group="no-such-group-here")
    done = project.run("-t")
    assert done.returncode == 1
    assert "control_socket_group 'no-such-group-here': no such group" in done.stderr
