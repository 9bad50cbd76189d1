"""Sockets to a real, and the words for what goes wrong with them: written once for every check.

Opening: non-blocking sockets of the C type (``_socket.socket``: the Python layer costs more than
it gives on this path). TCP sockets close with an RST (``SO_LINGER`` 0) as the original's did, so
no TIME_WAIT piles up on the checker; a source address (``bindaddr``) is bound with
``IP_BIND_ADDRESS_NO_PORT`` so that it does not reserve an ephemeral port per check.

Wording: every failed request becomes one ``IOFailure``, a ``ProbeError`` whose message is the
reason an operator reads ("connect: connection refused", "connection closed by the real after 12
bytes while waiting for the status line") and whose ``word`` is the short lowercase error a Lua
script gets, as OpenResty's cosockets give it ("connection refused", "closed", "timeout").

Problems, as the original counted them: ``conn`` when the deadline passed before any connection
was made, ``rst`` when a connect failed within a second, ``arp`` when it failed later.
"""

from __future__ import annotations

import _socket
import os
import socket
import ssl
import struct

from ..tester_api import ProbeError, Target

IP_BIND_ADDRESS_NO_PORT = getattr(socket, "IP_BIND_ADDRESS_NO_PORT", 24)
LINGER_RST = struct.pack("ii", 1, 0)
TCP_QUICKACK = getattr(socket, "TCP_QUICKACK", 12)
_STREAM = socket.SOCK_STREAM | socket.SOCK_NONBLOCK
_DGRAM = socket.SOCK_DGRAM | socket.SOCK_NONBLOCK


class IOFailure(ProbeError):
    """A request that failed: ``str()`` is the operator's reason, ``word`` the script's error.

    ``partial``: what had arrived when a read found the end of the stream. ``keep``: the socket
    is still usable (a read that ran into its own socket timeout)."""

    def __init__(self, reason: str, word: str, partial: bytes | None = None,
                 keep: bool = False) -> None:
        super().__init__(reason)
        self.word = word
        self.partial = partial
        self.keep = keep


def family_of(addr: str) -> int:
    return socket.AF_INET6 if ":" in addr else socket.AF_INET


def strerror(exc: OSError) -> str:
    """An OSError in a few lowercase words ("connection refused"); TLS errors in OpenSSL's."""
    if isinstance(exc, ssl.SSLCertVerificationError):
        return f"certificate verify failed: {exc.verify_message}"
    if isinstance(exc, ssl.SSLError):
        return str(exc.reason or exc.strerror or exc).lower().replace("_", " ")
    text = (os.strerror(exc.errno) if exc.errno else "") or exc.strerror or str(exc) or repr(exc)
    return f"{text[:1].lower()}{text[1:]}"


def describe_oserror(step: str, exc: OSError) -> str:
    """``connect: connection refused``; TLS verification errors keep OpenSSL's words."""
    return f"{step}: {strerror(exc)}"


def os_failure(step: str, exc: OSError) -> IOFailure:
    return IOFailure(describe_oserror(step, exc), strerror(exc))


def errno_failure(step: str, err: int) -> IOFailure:
    return os_failure(step, OSError(err, os.strerror(err)))


def closed_failure(received: int, what: str, partial: bytes | None = None) -> IOFailure:
    got = f" after {received} bytes" if received else ""
    return IOFailure(f"connection closed by the real{got} while waiting for {what}", "closed",
                     partial)


def too_large_failure(limit: int, what: str) -> IOFailure:
    return IOFailure(f"more than {limit} bytes while waiting for {what}", "size too large")


def timeout_reason(timeout: float, step: str) -> str:
    """The reason of a check that ran out of time: ``timeout after 5s waiting for X``."""
    return f"timeout after {timeout:g}s {step}"


def connect_problem(elapsed: float) -> str:
    """The problem a failed connect counts as: an error within a second is ``rst``."""
    return "rst" if elapsed < 1.0 else "arp"


def source_of(target: Target, bind: str | None) -> str | None:
    """The source address of a socket to ``target`` (``bind`` or the target's ``bindaddr``);
    IOFailure when its family is not the real's."""
    source = bind or target.bindaddr or None
    if source and family_of(source) != family_of(target.addr):
        reason = f"bindaddr {source} and real {target.addr} are of different address families"
        raise IOFailure(reason, reason)
    return source


def open_stream(family: int, address: tuple[str, int], source: str | None,
                hold_ack: bool = False) -> tuple[_socket.socket, int]:
    """A non-blocking TCP socket to ``address``, connecting: the socket and ``connect_ex``'s
    errno (0, EINPROGRESS or the error). ``hold_ack``: the handshake's last ACK is delayed
    (quick ACKs off), so it rides on the first data sent, or a close before any becomes the
    reset that answers the real's SYN-ACK: its application never sees the connection."""
    sock = _socket.socket(family, _STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, LINGER_RST)
        if hold_ack:
            sock.setsockopt(socket.IPPROTO_TCP, TCP_QUICKACK, 0)
        if source:
            if family == socket.AF_INET:
                sock.setsockopt(socket.SOL_IP, IP_BIND_ADDRESS_NO_PORT, 1)
            sock.bind((source, 0))
        return sock, sock.connect_ex(address)
    except BaseException:
        sock.close()
        raise


def open_datagram(family: int, address: tuple[str, int], source: str | None
                  ) -> _socket.socket:
    """A non-blocking UDP socket connected to ``address``."""
    sock = _socket.socket(family, _DGRAM)
    try:
        if source:
            sock.bind((source, 0))
        sock.connect(address)
    except BaseException:
        sock.close()
        raise
    return sock
