"""Process figures shown by ``stats`` and ``/metrics``: resource usage, open fds, Vm* memory lines.

``read_process_info()`` does the reading (getrusage, /proc/self/status, /proc/self/fd); everything
that formats these figures takes the resulting ``ProcessInfo`` so it stays pure and testable.
"""

from __future__ import annotations

import os
import resource
from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class ProcessInfo:
    pid: int = 0
    user_time: float = 0.0
    system_time: float = 0.0
    block_in_ops: int = 0
    block_out_ops: int = 0
    messages_sent: int = 0
    messages_rcvd: int = 0
    signals_rcvd: int = 0
    voluntary_ctx: int = 0
    involunt_ctx: int = 0
    fd_used: int = 0
    # ("Peak", 48164, "kB") for every Vm* line of /proc/self/status, in file order
    memory: tuple[tuple[str, int, str], ...] = field(default_factory=tuple)

    def memory_kb(self, name: str) -> int:
        for key, value, _unit in self.memory:
            if key == name:
                return value
        return 0


def read_process_info() -> ProcessInfo:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    try:
        fd_used = len(os.listdir("/proc/self/fd"))
    except OSError:
        fd_used = 0
    memory: list[tuple[str, int, str]] = []
    try:
        with open("/proc/self/status", encoding="ascii", errors="replace") as handle:
            for line in handle:
                if not line.startswith("Vm"):
                    continue
                name, _, rest = line[2:].partition(":")
                parts = rest.split()
                if parts and parts[0].isdigit():
                    memory.append((name, int(parts[0]), parts[1] if len(parts) > 1 else ""))
    except OSError:
        pass
    return ProcessInfo(
        pid=os.getpid(),
        user_time=usage.ru_utime,
        system_time=usage.ru_stime,
        block_in_ops=usage.ru_inblock,
        block_out_ops=usage.ru_oublock,
        messages_sent=usage.ru_msgsnd,
        messages_rcvd=usage.ru_msgrcv,
        signals_rcvd=usage.ru_nsignals,
        voluntary_ctx=usage.ru_nvcsw,
        involunt_ctx=usage.ru_nivcsw,
        fd_used=fd_used,
        memory=tuple(memory),
    )
