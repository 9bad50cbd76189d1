"""A real ``surealived`` process in a project folder, for every test that runs the daemon:
the folder (surealived.cfg with every path inside it, an XML, the folders the cfg names), the
process started with a clean environment and stopped by SIGTERM within a bounded wait, a
control-port client, bounded polling, and a free port.

The cfg is a table of keys: ``PROJECT_KEYS`` is the usual project, and each test states only
where its own daemon differs (``{"pid_file": "state/surealived.pid", "modules_path": None}``:
one key added, one left out)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import IO, Any

from tests.servers import free_port

__all__ = ["BIN", "END", "PROJECT_KEYS", "Client", "Project", "cfg_text", "clean_env",
           "exchange", "free_port", "stop", "wait_until"]

BIN = Path(sys.executable).parent
END = "_SD_CMD_END_"
# Variables that would make the daemon under test talk to the systemd running the test suite.
SYSTEMD_VARS = ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID", "JOURNAL_STREAM")

PROJECT_KEYS: dict[str, str | None] = {
    "log": "log/surealived.log",
    "logging": "info",
    "listen_port": "0",
    "stats_dir": "log/stats",
    "debug_comm_path": "log/comm",
    "lock_sync_file": "state/ipvsfull.lock",
    "full_sync_file": "state/ipvsfull.cfg",
    "full_reload_file": "state/ipvsfull.reload",
    "diff_sync_dir": "state/diffs",
    "offline_dump": "state/offline.dump",
    "override_dump": "state/override.dump",
    "stats_dump": "state/stats.dump",
    "notify_dump": "state/notify.dump",
    "modules_path": "testers",
    "startup_delay_ms": "100",
}


def cfg_text(keys: Mapping[str, str | None], extra: str = "") -> str:
    """surealived.cfg text: one ``key value`` line per key (None: the key is left out), then
    ``extra`` verbatim."""
    lines = [f"{key} {value}\n" for key, value in keys.items() if value is not None]
    return "".join(lines) + (extra + "\n" if extra else "")


def clean_env(**extra: str) -> dict[str, str]:
    """This process's environment without the systemd variables, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if k not in SYSTEMD_VARS}
    env.update(extra)
    return env


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


def exchange(port: int, line: str | bytes, timeout: float = 10.0) -> list[str]:
    """Send one command line to the control port on a new connection; the response lines,
    terminator included (absent if the daemon closed first)."""
    data = line if isinstance(line, bytes) else line.encode()
    terminator = END.encode() + b"\n"
    with socket.create_connection(("127.0.0.1", port), timeout) as sock:
        sock.sendall(data if data.endswith(b"\n") else data + b"\n")
        received = b""
        while not received.endswith(terminator):
            chunk = sock.recv(65536)
            if not chunk:
                break
            received += chunk
    return received.decode("utf-8", "replace").splitlines()


class Client:
    """One kept-open control connection: ``ask`` a line, or ``send`` raw text (pipelining) and
    read each ``response`` (its lines, without the terminator)."""

    def __init__(self, port: int, timeout: float = 10.0) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.file = self.sock.makefile("r", encoding="utf-8")

    def send(self, text: str) -> None:
        self.sock.sendall(text.encode())

    def response(self) -> list[str]:
        lines: list[str] = []
        for raw in self.file:
            line = raw.rstrip("\n")
            if line == END:
                return lines
            lines.append(line)
        raise AssertionError(f"connection closed after {lines}")

    def ask(self, line: str) -> list[str]:
        self.send(line + "\n")
        return self.response()

    def close(self) -> None:
        self.file.close()
        self.sock.close()


def stop(proc: subprocess.Popen[Any], seconds: float = 20.0) -> int:
    """SIGTERM and wait; the exit status. A daemon still running after ``seconds`` is killed
    and the test fails."""
    if proc.poll() is not None:
        return proc.returncode
    proc.send_signal(signal.SIGTERM)
    try:
        return proc.wait(seconds)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)
        raise AssertionError(f"surealived did not stop within {seconds} s of SIGTERM") from None


Stream = int | IO[Any] | None


class Project:
    """A folder holding surealived.cfg (``cfg_name``), the XML (``xml_name``) and ``dirs``;
    ``start`` runs surealived on them with the folder as its working directory."""

    def __init__(self, root: Path, *, dirs: tuple[str, ...] = ("log", "state", "testers"),
                 cfg_name: str = "surealived.cfg", xml_name: str = "surealived.xml") -> None:
        self.root = root
        self.cfg = root / cfg_name
        self.xml = root / xml_name
        for sub in dirs:
            (root / sub).mkdir(parents=True, exist_ok=True)

    @property
    def log(self) -> Path:
        return self.root / "log" / "surealived.log"

    @property
    def state(self) -> Path:
        return self.root / "state"

    @property
    def pid_file(self) -> Path:
        return self.state / "surealived.pid"

    def write_cfg(self, keys: Mapping[str, str | None] | None = None, extra: str = "",
                  **changes: str | None) -> None:
        """``keys`` (PROJECT_KEYS by default) with ``changes`` (None: left out), then
        ``extra`` lines."""
        self.cfg.write_text(cfg_text({**(PROJECT_KEYS if keys is None else keys), **changes},
                                     extra))

    def argv(self, *args: str) -> list[str]:
        return [str(BIN / "surealived"), "-c", str(self.cfg), *args, str(self.xml)]

    def start(self, *args: str, stdout: Stream = subprocess.PIPE,
              stderr: Stream = subprocess.PIPE, **env: str) -> subprocess.Popen[str]:
        """surealived ``args`` in the background (text streams); ``env`` added to a clean
        environment."""
        return subprocess.Popen(self.argv(*args), cwd=self.root, env=clean_env(**env),
                                stdin=subprocess.DEVNULL, stdout=stdout, stderr=stderr,
                                text=True)

    def run(self, *args: str, timeout: float = 60,
            **env: str) -> subprocess.CompletedProcess[str]:
        """surealived ``args`` to its end, output captured."""
        return subprocess.run(self.argv(*args), cwd=self.root, env=clean_env(**env),
                              stdin=subprocess.DEVNULL, capture_output=True, text=True,
                              timeout=timeout)
