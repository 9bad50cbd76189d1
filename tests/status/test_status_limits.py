"""The status server cannot starve the checks: 2,000 idle connections to it while the daemon
runs under a descriptor limit of 256, and every real stays up; idle clients are dropped after
the request timeout and the server answers again."""

from __future__ import annotations

import resource
import socket
import subprocess
import urllib.request
from pathlib import Path

from tests.daemon_harness import Client, Project, clean_env, free_port, stop, wait_until

REALS = 20


def test_2000_idle_status_connections_under_a_low_fd_limit(tmp_path: Path):
    live = socket.socket()
    live.bind(("127.0.0.1", 0))
    live.listen(1024)
    control, status = free_port(), free_port()
    project = Project(tmp_path)
    project.write_cfg(listen_port=str(control), status_listen=f"127.0.0.1:{status}",
                      maxfd="256", status_header_timeout="2", status_idle_timeout="2")
    reals = "".join(f'<real name="r{i}" addr="127.0.0.1" port="{80 + i}" weight="5"/>'
                    for i in range(REALS))
    project.xml.write_text(f"""<surealived>
  <virtual name="web" addr="192.0.2.1" port="80" proto="tcp" sched="wrr" rt="dr">
    <tester proto="tcp" testport="{live.getsockname()[1]}" loopdelay="0.2" timeout="1"/>
    {reals}
  </virtual>
</surealived>
""")
    log = tmp_path / "daemon.log"

    def low_limit() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (256, 256))

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, 8192)), hard))
    with open(log, "w") as out:
        proc = subprocess.Popen(project.argv(), cwd=tmp_path, env=clean_env(),
                                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                stderr=out, text=True, preexec_fn=low_limit)
    idle: list[socket.socket] = []
    try:
        def all_up() -> bool:
            assert proc.poll() is None, log.read_text()
            try:
                client = Client(control)
            except OSError:
                return False
            lines = client.ask("rlist vproto=tcp vaddr=192.0.2.1 vport=80")
            client.close()
            return sum("ronline=TRUE" in x for x in lines) == REALS
        wait_until(all_up, "every real up")
        for _ in range(2000):
            sock = socket.socket()
            sock.setblocking(False)
            sock.connect_ex(("127.0.0.1", status))
            idle.append(sock)
        # while they hang there, rounds go on (every real checked again) and all stay up
        def successes() -> int:
            client = Client(control)
            lines = client.ask("stats")
            client.close()
            return int(next(x for x in lines if x.startswith("t_success")).split(":")[1])
        before = successes()
        wait_until(lambda: successes() >= before + 3 * REALS, "three more rounds of checks")
        assert all_up()
        text = log.read_text()
        assert "Too many open files" not in text and "OFFLINE" not in text, text[-3000:]
        assert "Status client refused" in text
        assert "Status server: at most 16 clients, not status_max_clients 32" in text
        # the ones it took are dropped within the request timeout; then it answers again
        def answers() -> bool:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{status}/ready", timeout=2) as r:
                    return r.status == 200
            except OSError:
                return False
        wait_until(answers, "the status server answering after the idle ones were dropped",
                   seconds=30)
    finally:
        for sock in idle:
            sock.close()
        assert stop(proc) == 0
        live.close()
