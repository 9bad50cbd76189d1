"""A surealived daemon as an operator runs it, for the reliability suite: the shared project
(tests/daemon_harness.py) with its stderr kept in log/stderr.log, JSON views of the control
port, and the daemon's open fds, listening sockets and RSS read from /proc."""

from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import signal
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.daemon_harness import (
    BIN,
    END,
    PROJECT_KEYS,
    Project,
    exchange,
    free_port,
    stop,
    wait_until,
)

__all__ = ["BIN", "END", "Daemon", "MakeDaemon", "exchange", "listening_sockets", "wait_until"]

MakeDaemon = Callable[..., "Daemon"]  # the make_daemon fixture: (xml, **options) -> Daemon

# The shared project, plus a stats dump every second and a fast main loop.
KEYS = {**PROJECT_KEYS, "stats_dump_savesec": "1", "loop_interval_ms": "20"}


def open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def listening_sockets(pid: int) -> list[tuple[str, int]]:
    """(address, port) of every TCP socket the process listens on, from /proc/net/tcp{,6}."""
    inodes = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        with contextlib.suppress(OSError):
            link = os.readlink(f"/proc/{pid}/fd/{fd}")
            if link.startswith("socket:["):
                inodes.add(link[8:-1])
    found = []
    for table, size in (("/proc/net/tcp", 4), ("/proc/net/tcp6", 16)):
        with open(table, encoding="ascii") as lines:
            next(lines)
            for line in lines:
                fields = line.split()
                if fields[3] != "0A" or fields[9] not in inodes:  # 0A: LISTEN
                    continue
                hex_addr, hex_port = fields[1].split(":")
                raw = bytes.fromhex(hex_addr)
                # the kernel prints each 32-bit word in host (little-endian) order
                raw = b"".join(raw[i:i + 4][::-1] for i in range(0, size, 4))
                found.append((str(ipaddress.ip_address(raw)), int(hex_port, 16)))
    return found


def rss_kb(pid: int) -> int:
    with open(f"/proc/{pid}/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


class Daemon(Project):
    """A project folder and, once ``start``-ed, a running surealived in it."""

    def __init__(self, root: Path, xml: str, *, level: str = "info", extra: str = "",
                 listen_addr: str | None = "127.0.0.1") -> None:
        super().__init__(root, dirs=("log", "log/comm", "state", "testers"))
        self.control_port = free_port()
        # listen_addr None: the daemon's default
        self.write_cfg({"listen_addr": listen_addr, **KEYS}, extra, logging=level,
                       listen_port=str(self.control_port))
        self.xml.write_text(xml)
        self.proc: subprocess.Popen[str] | None = None
        self.starts = 0

    @property
    def state_dir(self) -> Path:
        return self.state

    @property
    def stderr_path(self) -> Path:
        return self.root / "log" / "stderr.log"

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def start(self, wait: bool = True) -> Daemon:  # type: ignore[override]
        self.starts += 1
        with open(self.stderr_path, "ab") as err:
            err.write(f"=== start {self.starts}\n".encode())
            err.flush()
            self.proc = super().start(stdout=err, stderr=err)
        if wait:
            wait_until(self.answers, "the control port of surealived")
        return self

    def answers(self) -> bool:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise AssertionError(f"surealived exited with status {self.proc.returncode}:\n"
                                 f"{self.stderr_tail()}")
        with contextlib.suppress(OSError):
            return exchange(self.control_port, "vlist", 2.0)[-1:] == [END]
        return False

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stderr_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.stderr_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def command(self, line: str | bytes) -> list[str]:
        return exchange(self.control_port, line)

    def json(self, line: str) -> Any:
        lines = self.command(line + " format=json")
        assert lines[-1] == END, lines
        return json.loads(lines[0])

    def reals(self) -> list[dict[str, Any]]:
        """Every real of every virtual, as ``rlist format=json`` shows them."""
        out = []
        for v in self.json("vlist")["virtuals"]:
            query = (f"rlist vproto=fwmark vfwmark={v['fwmark']}" if v["fwmark"] else
                     f"rlist vproto={v['proto']} vaddr={v['addr']} vport={v['port']}")
            for r in self.json(query)["reals"]:
                r["virtual"] = v["name"]
                out.append(r)
        return out

    def fds(self) -> int:
        return open_fds(self.pid)

    def rss(self) -> int:
        return rss_kb(self.pid)

    def signal(self, signum: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(signum)

    def kill9(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> int:
        """SIGTERM and wait; the exit status."""
        return stop(self.proc) if self.proc else 0
