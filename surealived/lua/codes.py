"""The request codes of a check thread: the first value of every yield from Lua to Python.

One list, read by both languages: Python takes the constants below, and the runtime hands the
same names and numbers to the sandbox's Lua files.
"""

from __future__ import annotations

NAMES = ("DONE", "CONNECT", "TLS", "SEND", "CLOSE", "BIND", "PEER", "RECV_EXACTLY", "RECV_LINE",
         "RECV_ALL", "RECV_ANY", "RECV_UNTIL", "RECV_DGRAM", "SLEEP", "NOW", "LOG")
CODES = {name: number for number, name in enumerate(NAMES)}
MAX_SOCKETS = 16  # sockets a check may open

(DONE, CONNECT, TLS, SEND, CLOSE, BIND, PEER, RECV_EXACTLY, RECV_LINE, RECV_ALL, RECV_ANY,
 RECV_UNTIL, RECV_DGRAM, SLEEP, NOW, LOG) = range(len(NAMES))
