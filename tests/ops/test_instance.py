"""One daemon per state folder, and start-up failures in one line: a second surealived on the
same files (in the foreground, no pid_file: as the units run it) exits 1 naming the lock and
the holder's pid and writes nothing; the first keeps its diff chain. A burst of reloads costs
one or two snapshots, not one each."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
from pathlib import Path

from tests.daemon_harness import Client, free_port, stop, wait_until

from .conftest import Project

SEL = "vproto=tcp vaddr=192.0.2.1 vport=80 raddr=127.0.0.1 rport=80"


def files_of(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() if p.is_file() else b"<dir>"
            for p in sorted(folder.rglob("*"))}


def start(project: Project, port: int) -> subprocess.Popen[str]:
    text = project.cfg.read_text().replace("listen_port 0", f"listen_port {port}")
    project.cfg.write_text(text)
    log = open(project.root / "first.log", "w")  # noqa: SIM115 - closed with the process
    proc = project.start(stderr=log)
    wait_until(lambda: (project.state / "ipvsfull.reload").exists()
               and "Started:" in (project.root / "first.log").read_text(), "the first daemon")
    return proc


def test_a_second_instance_on_the_same_state_folder_writes_nothing(project: Project):
    port = free_port()
    first = start(project, port)
    try:
        # settled: the real is up and the round that saw it wrote offline.dump
        wait_until(lambda: (project.state / "offline.dump").exists(), "the first round's dump")
        before = files_of(project.state)
        holder = first.pid
        # the same files, its own control port (else the port would fail it, later)
        project.cfg.write_text(project.cfg.read_text().replace(f"listen_port {port}",
                                                               f"listen_port {free_port()}"))
        second = project.run()
        assert second.returncode == 1
        lines = [x for x in second.stderr.splitlines() if "] error : " in x]
        assert len(lines) == 1, second.stderr  # one error line (after "Initializing...")
        assert (f"another surealived (pid {holder}) holds the instance lock "
                f"{project.state}/surealived.lock"
                in lines[0])
        assert "Traceback" not in second.stderr
        assert files_of(project.state) == before
        # the first one still appends to the diff its snapshot names
        client = Client(port)
        assert client.ask(f"rset {SEL} rstate=DOWN reason=test")[0].startswith("Set:")
        client.close()
        snapshot = (project.state / "ipvsfull.cfg").read_text()
        diff = next(line.split("file=", 1)[1] for line in snapshot.splitlines()
                    if line.startswith("DIFF"))
        wait_until(lambda: "delreal" in Path(diff).read_text(), "the rset's line in the diff")
    finally:
        assert stop(first) == 0


def test_a_port_in_use_is_one_line_without_a_traceback(project: Project):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        busy = taken.getsockname()[1]
        project.cfg.write_text(project.cfg.read_text().replace("listen_port 0",
                                                               f"listen_port {busy}"))
        done = project.run()
    assert done.returncode == 1
    assert "Traceback" not in done.stderr
    [line] = [x for x in done.stderr.splitlines() if "] error : " in x]
    assert f"unable to bind the control port to [127.0.0.1]:{busy}" in line


def test_a_burst_of_reloads_is_merged(project: Project):
    port = free_port()
    proc = start(project, port)
    log = project.root / "first.log"
    try:
        client = Client(port)
        client.send("reload\n" * 300)
        for _ in range(300):
            assert client.response() == ["Reload requested"]
        client.close()
        for _ in range(300):
            os.kill(proc.pid, signal.SIGHUP)
        wait_until(lambda: "Configuration reloaded" in log.read_text(), "a reload")
        # quiet: the last reload done and nothing queued behind it
        client = Client(port)
        client.ask("vlist")
        client.close()

        def settled() -> bool:
            text = log.read_text()
            return text.count("Reloading configuration") == text.count("Configuration reloaded")
        wait_until(settled, "the reloads to finish")
        snapshots = log.read_text().count("Reload - full ipvs config forced")
        assert 1 <= snapshots <= 6, snapshots  # 600 requests; a few, never one each
    finally:
        assert stop(proc) == 0
