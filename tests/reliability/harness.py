"""A surealived daemon as an operator runs it, for the reliability suite: a project folder with
surealived.cfg (every path inside it), an XML, the real ``surealived`` process, a control-port
client, and the daemon's open fds and RSS read from /proc."""

from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.servers import free_port

BIN = Path(sys.executable).parent
MakeDaemon = Callable[..., "Daemon"]  # the make_daemon fixture: (xml, **options) -> Daemon
END = b"_SD_CMD_END_\n"

CFG = """\
log log/surealived.log
logging {level}
{listen_addr}listen_port {control_port}
stats_dir log/stats
debug_comm_path log/comm
lock_sync_file state/ipvsfull.lock
full_sync_file state/ipvsfull.cfg
full_reload_file state/ipvsfull.reload
diff_sync_dir state/diffs
offline_dump state/offline.dump
override_dump state/override.dump
stats_dump state/stats.dump
stats_dump_savesec 1
notify_dump state/notify.dump
modules_path testers
startup_delay_ms 100
loop_interval_ms 20
{extra}
"""


def wait_until(predicate: Callable[[], Any], what: str, seconds: float = 30.0,
               step: float = 0.05) -> Any:
    """Poll ``predicate`` until it returns something true; that value, or AssertionError."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(step)
    raise AssertionError(f"timed out after {seconds}s waiting for {what}")


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


def exchange(port: int, line: str | bytes, timeout: float = 10.0) -> list[str]:
    """Send one command line to the control port; the response lines, terminator included."""
    data = line if isinstance(line, bytes) else line.encode()
    with socket.create_connection(("127.0.0.1", port), timeout) as sock:
        sock.sendall(data if data.endswith(b"\n") else data + b"\n")
        received = b""
        while not received.endswith(END):
            chunk = sock.recv(65536)
            if not chunk:
                break
            received += chunk
    return received.decode("utf-8", "replace").splitlines()


class Daemon:
    """A project folder and, once ``start``-ed, a running surealived in it."""

    def __init__(self, root: Path, xml: str, *, level: str = "info", extra: str = "",
                 listen_addr: str | None = "127.0.0.1") -> None:
        self.root = root
        for sub in ("log", "log/comm", "state", "testers"):
            (root / sub).mkdir(parents=True, exist_ok=True)
        self.control_port = free_port()
        listen = f"listen_addr {listen_addr}\n" if listen_addr else ""  # None: the default
        self.cfg.write_text(CFG.format(level=level, control_port=self.control_port,
                                       listen_addr=listen, extra=extra))
        self.xml.write_text(xml)
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0

    @property
    def cfg(self) -> Path:
        return self.root / "surealived.cfg"

    @property
    def xml(self) -> Path:
        return self.root / "surealived.xml"

    @property
    def state_dir(self) -> Path:
        return self.root / "state"

    @property
    def stderr_path(self) -> Path:
        return self.root / "log" / "stderr.log"

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def start(self, wait: bool = True) -> Daemon:
        self.starts += 1
        with open(self.stderr_path, "ab") as err:
            err.write(f"=== start {self.starts}\n".encode())
            err.flush()
            self.proc = subprocess.Popen(
                [str(BIN / "surealived"), "-c", str(self.cfg), str(self.xml)], cwd=self.root,
                stdin=subprocess.DEVNULL, stdout=err, stderr=err,
                env={k: v for k, v in os.environ.items() if k != "NOTIFY_SOCKET"})
        if wait:
            wait_until(self.answers, "the control port of surealived")
        return self

    def answers(self) -> bool:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise AssertionError(f"surealived exited with status {self.proc.returncode}:\n"
                                 f"{self.stderr_tail()}")
        with contextlib.suppress(OSError):
            return exchange(self.control_port, "vlist", 2.0)[-1:] == ["_SD_CMD_END_"]
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
        assert lines[-1] == "_SD_CMD_END_", lines
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
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else 0
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
            raise AssertionError("surealived did not stop within 20 s of SIGTERM") from None
