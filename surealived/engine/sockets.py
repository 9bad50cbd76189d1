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
from typing import Any

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


HOST_MISMATCH = "certificate host mismatch"
_MISMATCH_CODES = (62, 64)  # X509_V_ERR_HOSTNAME_MISMATCH, X509_V_ERR_IP_ADDRESS_MISMATCH


def verify_word(exc: ssl.SSLCertVerificationError) -> str:
    """A failed certificate check in OpenResty's words: ``certificate host mismatch``, or
    OpenSSL's code and text (``18: self-signed certificate``)."""
    if exc.verify_code in _MISMATCH_CODES:
        return HOST_MISMATCH
    return f"{exc.verify_code}: {exc.verify_message}"


def handshake_word(word: str) -> str:
    """The error of a failed ``sslhandshake`` as OpenResty's: a timeout and a certificate
    check's words as they are, anything else ``handshake failed``."""
    if word == "timeout" or word == HOST_MISMATCH or word.split(":", 1)[0].isdigit():
        return word
    return "handshake failed"


def os_failure(step: str, exc: OSError) -> IOFailure:
    if isinstance(exc, ssl.SSLCertVerificationError):
        return IOFailure(describe_oserror(step, exc), verify_word(exc))
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


# the options of OpenResty's tcpsock:setoption: (level, option, a flag?)
OPTIONS = {
    "keepalive": (socket.SOL_SOCKET, socket.SO_KEEPALIVE, True),
    "reuseaddr": (socket.SOL_SOCKET, socket.SO_REUSEADDR, True),
    "tcp-nodelay": (socket.IPPROTO_TCP, socket.TCP_NODELAY, True),
    "sndbuf": (socket.SOL_SOCKET, socket.SO_SNDBUF, False),
    "rcvbuf": (socket.SOL_SOCKET, socket.SO_RCVBUF, False),
}
BUFFER_MAX = 1 << 30


def _option(name: str) -> tuple[int, int, bool]:
    option = OPTIONS.get(name)
    if option is None:
        raise ValueError(f"unsupported option {name[:40]!r} (valid: {', '.join(OPTIONS)})")
    return option


def set_option(sock: _socket.socket, name: str, value: Any) -> None:
    """``setsockopt`` of one of ``OPTIONS``: a flag takes 0 or 1, a buffer size 1..2^30 bytes;
    ValueError with the error for a script otherwise."""
    level, option, flag = _option(name)
    if type(value) is float and value.is_integer():
        value = int(value)
    if type(value) is not int or not (0 <= value <= 1 if flag else 1 <= value <= BUFFER_MAX):
        valid = "true, false, 0 or 1" if flag else f"a byte count 1..{BUFFER_MAX}"
        raise ValueError(f"bad option value for {name} (valid: {valid})")
    try:
        sock.setsockopt(level, option, value)
    except OSError as exc:
        raise ValueError(strerror(exc)) from None


def get_option(sock: _socket.socket, name: str) -> bool | int:
    """``getsockopt`` of one of ``OPTIONS``: a flag as a boolean, a buffer size in bytes."""
    level, option, flag = _option(name)
    value = sock.getsockopt(level, option)
    if flag:  # not one expression: its type would be int, and compiled, True would be 1
        return value != 0
    return value
