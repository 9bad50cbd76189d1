"""The kernel's IPVS table over generic netlink: read it, apply planned operations in batches.

``open_kernel()`` resolves the ``IPVS`` generic-netlink family with pyroute2 (which also tells us
when the kernel has no IPVS: ``IPVSUnavailable``), then talks to the family on its own netlink
socket with the ``netlink`` codec. Writes are pipelined: up to ``BATCH`` requests go out in one
``sendmsg`` and their acks are collected afterwards, so a full sync of 10,000 reals costs tens of
system calls rather than 10,000 round trips. Each operation still gets its own ack, so a failure
is reported for that operation with the kernel's reason and does not stop the others.

Blocking and single-threaded: ipvssync's loop is a plain poll loop, so no event loop is needed
(pyroute2's blocking classes are used only before any other work, outside an event loop).
"""

from __future__ import annotations

import contextlib
import errno
import os
import socket
from collections.abc import Iterable

from . import netlink as nl
from .planner import (
    ADD_DEST,
    ADD_SERVICE,
    DEL_DEST,
    DEL_SERVICE,
    EDIT_DEST,
    EDIT_SERVICE,
    Op,
)
from .table import Service, ServiceKey, Table

BATCH = 256
_RCVBUF = 8 * 1024 * 1024
_TIMEOUT = 10.0

UNAVAILABLE = "IPVS not available in this kernel: load the ip_vs module (modprobe ip_vs)"

_COMMAND = {
    ADD_SERVICE: (nl.CMD_NEW_SERVICE, True, False),
    EDIT_SERVICE: (nl.CMD_SET_SERVICE, True, False),
    DEL_SERVICE: (nl.CMD_DEL_SERVICE, False, False),
    ADD_DEST: (nl.CMD_NEW_DEST, False, True),
    EDIT_DEST: (nl.CMD_SET_DEST, False, True),
    DEL_DEST: (nl.CMD_DEL_DEST, False, False),
}

# What an errno means for an IPVS operation (after libipvs's ipvs_strerror).
_MEANING = {
    (ADD_SERVICE, errno.EEXIST): "service already exists",
    (ADD_SERVICE, errno.ENOENT): "scheduler not found (no ip_vs_<sched> module?)",
    (EDIT_SERVICE, errno.ENOENT): "scheduler not found (no ip_vs_<sched> module?)",
    (EDIT_SERVICE, errno.ESRCH): "no such service",
    (DEL_SERVICE, errno.ESRCH): "no such service",
    (ADD_DEST, errno.ESRCH): "service not defined",
    (EDIT_DEST, errno.ESRCH): "service not defined",
    (DEL_DEST, errno.ESRCH): "service not defined",
    (ADD_DEST, errno.EEXIST): "destination already exists",
    (EDIT_DEST, errno.ENOENT): "no such destination",
    (DEL_DEST, errno.ENOENT): "no such destination",
    (ADD_DEST, errno.ERANGE): "weight below 0 or lower threshold above upper threshold",
    (EDIT_DEST, errno.ERANGE): "weight below 0 or lower threshold above upper threshold",
}


class IPVSUnavailable(Exception):
    """The kernel has no IPVS (module not loaded or not built)."""


class KernelError(Exception):
    """A netlink request the kernel refused; ``code`` is the errno."""

    def __init__(self, code: int, what: str, text: str = "") -> None:
        self.code = code
        self.what = what
        self.text = text
        super().__init__(f"{what}: {reason(code, text=text)}")


def reason(code: int, kind: str = "", text: str = "") -> str:
    """``ENOENT (No such file or directory: scheduler not found ...)``."""
    name = errno.errorcode.get(code, f"errno {code}")
    detail = os.strerror(code)
    meaning = _MEANING.get((kind, code))
    if code == errno.EPERM:
        meaning = "ipvssync needs CAP_NET_ADMIN (run it as root)"
    if meaning:
        detail += f": {meaning}"
    if text:
        detail += f"; kernel says: {text}"
    return f"{name} ({detail})"


def open_family() -> int:
    """The IPVS generic-netlink family id, resolved through pyroute2."""
    from pyroute2 import IPVS
    from pyroute2.netlink.exceptions import NetlinkError

    try:
        ipvs = IPVS()
    except NetlinkError as exc:
        if exc.code == errno.ENOENT:
            raise IPVSUnavailable(UNAVAILABLE) from exc
        raise KernelError(exc.code, "resolving the IPVS netlink family") from exc
    try:
        return int(ipvs.prid)
    finally:
        ipvs.close()


class Kernel:
    """One netlink socket bound to the IPVS family."""

    def __init__(self, family: int) -> None:
        self.family = family
        self.sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, 16)  # NETLINK_GENERIC
        self.sock.bind((0, 0))
        self.sock.settimeout(_TIMEOUT)
        for option in (nl.NETLINK_CAP_ACK, nl.NETLINK_EXT_ACK):
            with contextlib.suppress(OSError):
                self.sock.setsockopt(nl.SOL_NETLINK, option, 1)
        # Acks of a whole batch wait in the receive buffer until the batch is sent.
        self.batch = BATCH
        try:
            self.sock.setsockopt(socket.SOL_SOCKET, 33, _RCVBUF)  # SO_RCVBUFFORCE
        except OSError:
            self.batch = 32
        self._seq = 0

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> Kernel:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _next_seq(self) -> int:
        self._seq = (self._seq + 1) & 0x7FFFFFFF
        return self._seq

    def _recv(self) -> list[nl.Reply]:
        return list(nl.parse_replies(self.sock.recv(1 << 20)))

    def _dump(self, cmd: int, payload: bytes, what: str) -> list[dict[int, bytes]]:
        seq = self._next_seq()
        self.sock.send(nl.message(self.family, cmd, payload, seq,
                                  nl.NLM_F_REQUEST | nl.NLM_F_DUMP))
        out: list[dict[int, bytes]] = []
        while True:
            for reply in self._recv():
                if reply.seq != seq:
                    continue
                if reply.kind == nl.NLMSG_DONE:
                    return out
                if reply.error is not None:
                    if reply.error:
                        raise KernelError(reply.error, what, reply.text)
                    return out
                if reply.attrs is not None:
                    out.append(reply.attrs)

    def _get(self, cmd: int, payload: bytes, what: str) -> dict[int, bytes] | None:
        """A single get; ``None`` when the kernel says the object does not exist."""
        seq = self._next_seq()
        self.sock.send(nl.message(self.family, cmd, payload, seq, nl.NLM_F_REQUEST))
        while True:
            for reply in self._recv():
                if reply.seq != seq:
                    continue
                if reply.error:
                    if reply.error in (errno.ESRCH, errno.ENOENT):
                        return None
                    raise KernelError(reply.error, what, reply.text)
                if reply.attrs is not None:
                    return reply.attrs

    def read_services(self) -> list[Service]:
        return [nl.decode_service(m[nl.ATTR_SERVICE])
                for m in self._dump(nl.CMD_GET_SERVICE, b"", "listing IPVS services")
                if nl.ATTR_SERVICE in m]

    def read_table(self, keys: Iterable[ServiceKey] | None = None) -> Table:
        """The kernel's table: every service, or only ``keys`` (those that exist)."""
        table = Table()
        if keys is None:
            services = self.read_services()
        else:
            services = []
            for key in keys:
                found = self._get(nl.CMD_GET_SERVICE,
                                  nl.service_attrs(Service(key), full=False),
                                  f"reading service {key.text}")
                if found is not None and nl.ATTR_SERVICE in found:
                    services.append(nl.decode_service(found[nl.ATTR_SERVICE]))
        for service in services:
            table.add_service(service)
            for m in self._dump(nl.CMD_GET_DEST, nl.service_attrs(service, full=False),
                                f"listing the reals of {service.key.text}"):
                if nl.ATTR_DEST in m:
                    table.set_dest(service.key, nl.decode_dest(m[nl.ATTR_DEST],
                                                               service.key.af))
        return table

    def encode(self, op: Op, seq: int) -> bytes:
        cmd, full_service, full_dest = _COMMAND[op.kind]
        payload = nl.service_attrs(op.service, full_service)
        if op.dest is not None:
            payload += nl.dest_attrs(op.dest, full_dest)
        return nl.message(self.family, cmd, payload, seq)

    def apply(self, ops: list[Op]) -> list[tuple[int, str]]:
        """Send ``ops`` in order; returns ``(errno, kernel text)`` per op, errno 0 on success."""
        results: list[tuple[int, str]] = [(0, "")] * len(ops)
        for start in range(0, len(ops), self.batch):
            chunk = ops[start:start + self.batch]
            pending: dict[int, int] = {}
            data = []
            for index, op in enumerate(chunk, start=start):
                seq = self._next_seq()
                pending[seq] = index
                data.append(self.encode(op, seq))
            try:
                self.sock.send(b"".join(data))
                while pending:
                    for reply in self._recv():
                        index_or_none = pending.pop(reply.seq, None)
                        if index_or_none is not None and reply.error is not None:
                            results[index_or_none] = (reply.error, reply.text)
            except OSError as exc:
                # Lost acks (receive buffer overrun) or a dead socket: the read-back after the
                # apply tells what really happened; report the ops as failed meanwhile.
                code = exc.errno or errno.EIO
                for index in pending.values():
                    results[index] = (code, f"no answer from the kernel ({exc})")
        return results

    def flush(self) -> None:
        """Delete every service (tests and benchmarks only; ipvssync never flushes)."""
        self.apply_raw(nl.CMD_FLUSH, b"")

    def apply_raw(self, cmd: int, payload: bytes) -> None:
        seq = self._next_seq()
        self.sock.send(nl.message(self.family, cmd, payload, seq))
        while True:
            for reply in self._recv():
                if reply.seq == seq and reply.error is not None:
                    if reply.error:
                        raise KernelError(reply.error, f"command {cmd}", reply.text)
                    return


def open_kernel() -> Kernel:
    """Open the kernel's IPVS; raises ``IPVSUnavailable`` or ``KernelError`` (e.g. EPERM)."""
    kernel = Kernel(open_family())
    try:
        kernel.read_services()  # fails here, with a clear reason, without CAP_NET_ADMIN
    except KernelError:
        kernel.close()
        raise
    return kernel
