"""What the Lua files and Python agree on: the request codes and the sockets per check.

A check thread yields a request whose first value is a code: the position of its name in
``NAMES``. ``runtime.Runtime`` hands ``CODES`` (name -> code), ``MAX_SOCKETS``,
``REASON_MAX`` and ``LOG_MAX`` to the Lua files as they load (``lib.codes``,
``lib.MAX_SOCKETS``... there), so the numbers are written here only.
"""

from __future__ import annotations

NAMES = (
    "DONE",  # a check ended: DONE, status, reason, weight
    "CONNECT", "TLS", "SEND", "CLOSE", "BIND", "PEER",
    "RECV_EXACTLY", "RECV_LINE", "RECV_ALL", "RECV_ANY", "RECV_UNTIL", "RECV_DGRAM",
    "SLEEP", "NOW", "LOG", "KEEPALIVE", "REUSED", "OPTION",
    "REQUIRE",  # a module's file: REQUIRE, name (modules.lua; served by scripts.Script)
)
CODES = {name: code for code, name in enumerate(NAMES)}

DONE = CODES["DONE"]
CONNECT = CODES["CONNECT"]
TLS = CODES["TLS"]
SEND = CODES["SEND"]
CLOSE = CODES["CLOSE"]
BIND = CODES["BIND"]
PEER = CODES["PEER"]
RECV_EXACTLY = CODES["RECV_EXACTLY"]
RECV_LINE = CODES["RECV_LINE"]
RECV_ALL = CODES["RECV_ALL"]
RECV_ANY = CODES["RECV_ANY"]
RECV_UNTIL = CODES["RECV_UNTIL"]
RECV_DGRAM = CODES["RECV_DGRAM"]
SLEEP = CODES["SLEEP"]
NOW = CODES["NOW"]
LOG = CODES["LOG"]
KEEPALIVE = CODES["KEEPALIVE"]
REUSED = CODES["REUSED"]
OPTION = CODES["OPTION"]
REQUIRE = CODES["REQUIRE"]

MAX_SOCKETS = 16  # sockets a check may have open at once (connect refuses more)
REASON_MAX = 512  # bytes of a check's reason that cross into Python (verdict.lua, crossing.py)
LOG_MAX = 1024  # bytes of an sd.log/print line (sandbox.lua, crossing.py)
