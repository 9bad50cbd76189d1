"""The shipped Lua testers as declarative cases (Test::Nginx style): the script and its params,
what the server says and expects, and the verdict. ``test_cases.py`` runs each against a
loopback dialogue server; each case is also a ``surealived probe`` example."""

from __future__ import annotations

from dataclasses import dataclass

from .helpers import Step

CRLF = b"\r\n"


@dataclass(frozen=True)
class Case:
    name: str
    script: str  # a file of lua_testers/
    server: tuple[Step, ...]
    ok: bool
    reason: str = ""  # the verdict's reason starts with this
    params: str = ""
    sent: bytes | None = None  # what the script must have sent first, when given


def line(text: str) -> Step:
    return ("send", text.encode() + CRLF)


EXPECT = ("expect", CRLF)

CASES = [
    Case("redis ping", "redis.lua", (EXPECT, EXPECT, EXPECT, line("+PONG")), True,
         sent=b"*1\r\n$4\r\nPING\r\n"),
    Case("redis auth refused", "redis.lua",
         (EXPECT, EXPECT, EXPECT, EXPECT, EXPECT, line("-WRONGPASS invalid password")), False,
         "AUTH: WRONGPASS invalid password", params="password=x"),
    Case("redis loading", "redis.lua", (EXPECT, EXPECT, EXPECT, line("-LOADING loading")), False,
         "PING: LOADING loading"),
    Case("redis wrong role", "redis.lua",
         (EXPECT, EXPECT, EXPECT, line("+PONG"), EXPECT, EXPECT, EXPECT, EXPECT, EXPECT,
          ("send", b"$25\r\n# Replication\r\nrole:slave\r\n")), False,
         "role is slave, expected master", params="role=master"),
    Case("memcached version", "memcached.lua", (EXPECT, line("VERSION 1.6.18")), True, "1.6.18",
         sent=b"version\r\n"),
    Case("memcached missing key", "memcached.lua",
         (EXPECT, line("VERSION 1.6.18"), EXPECT, line("END")), False, "key k1 not found",
         params="key=k1"),
    Case("ftp anonymous", "ftp.lua",
         (line("220-Welcome"), line("220 ready"), EXPECT, line("331 Password required"),
          EXPECT, line("230 Login successful.")), True,
         sent=b"USER anonymous\r\nPASS surealived@\r\n"),
    Case("ftp bad password", "ftp.lua",
         (line("220 ready"), EXPECT, line("331 Password required"), EXPECT,
          line("530 Login incorrect.")), False, "login: 530 Login incorrect.",
         params="user=bob; password=nope"),
    Case("ftp busy", "ftp.lua", (line("421 Too many users"),), False,
         "banner: 421 Too many users"),
    Case("smtp", "smtp.lua",
         (line("220 mx ESMTP"), EXPECT, line("250-mx"), line("250 PIPELINING"), EXPECT,
          line("221 bye")), True, sent=b"EHLO probe.example\r\n", params="helo=probe.example"),
    Case("smtp refused", "smtp.lua", (line("554 no service"),), False, "banner: 554 no service"),
    Case("smtp no starttls", "smtp.lua",
         (line("220 mx"), EXPECT, line("250 mx"), EXPECT, line("454 TLS not available")), False,
         "STARTTLS: 454 TLS not available", params="starttls=1"),
    Case("pop3", "pop3.lua", (line("+OK POP3 ready"), EXPECT, line("+OK bye")), True),
    Case("pop3 login refused", "pop3.lua",
         (line("+OK ready"), EXPECT, line("+OK"), EXPECT, line("-ERR auth failed")), False,
         "PASS: -ERR auth failed", params="user=u password=p"),
    Case("imap login", "imap.lua",
         (line("* OK IMAP ready"), EXPECT, line("* CAPABILITY IMAP4rev1"),
          line("a1 OK LOGIN completed"), EXPECT, line("* BYE"), line("a2 OK")), True,
         params="user=u password=p", sent=b'a1 LOGIN "u" "p"\r\na2 LOGOUT\r\n'),
    Case("imap login refused", "imap.lua",
         (line("* OK IMAP ready"), EXPECT, line("a1 NO [AUTHENTICATIONFAILED] nope")), False,
         "LOGIN: a1 NO", params="user=u password=p"),
    Case("mysql greeting", "mysql.lua",
         (("send", bytes([46, 0, 0, 0, 10]) + b"10.11.6-MariaDB\0" + b"\1" * 30),), True,
         "10.11.6-MariaDB"),
    Case("mysql version mismatch", "mysql.lua",
         (("send", bytes([46, 0, 0, 0, 10]) + b"8.0.36\0" + b"\1" * 38),), False,
         "version 8.0.36, expected 10.", params="version=10."),
    Case("mysql too many connections", "mysql.lua",
         (("send", bytes([23, 0, 0, 0, 255, 0x10, 0x04]) + b"Too many connections"),), False,
         "server error 1040: Too many connections"),
    Case("rtsp options", "rtsp.lua",
         (("expect", CRLF + CRLF), line("RTSP/1.0 200 OK"), line("CSeq: 1")), True),
    Case("rtsp describe 404", "rtsp.lua",
         (("expect", CRLF + CRLF), line("RTSP/1.0 404 Not Found")), False, "status 404",
         params="method=DESCRIBE path=/live"),
    Case("http pattern", "http.lua",
         (("expect", CRLF + CRLF), ("send", b"HTTP/1.0 200 OK\r\n\r\nall ok here"), ("close",)),
         True, params="path=/health pattern=ok%shere",
         sent=b"GET /health HTTP/1.0\r\nHost: 127.0.0.1\r\nUser-Agent: SureAliveD\r\n\r\n"),
    Case("http pattern missing", "http.lua",
         (("expect", CRLF + CRLF), ("send", b"HTTP/1.0 200 OK\r\n\r\nmaintenance"), ("close",)),
         False, "status 200, but the body does not contain healthy", params="pattern=healthy"),
    Case("http status", "http.lua",
         (("expect", CRLF + CRLF), ("send", b"HTTP/1.1 503 Unavailable\r\n\r\n"), ("close",)),
         False, "status 503, expected 200"),
    Case("http naive", "http.lua",
         (("expect", CRLF + CRLF), ("send", b"HTTP/1.0 200 OK\r\n")), True, params="naive=1"),
    Case("resty redis ping", "resty_redis.lua", (EXPECT, EXPECT, EXPECT, line("+PONG")), True,
         sent=b"*1\r\n$4\r\nPING\r\n"),
    Case("resty redis missing key", "resty_redis.lua",
         (EXPECT, EXPECT, EXPECT, line("+PONG"), EXPECT, EXPECT, EXPECT, EXPECT, EXPECT,
          line("$-1")), False, "key ready not found", params="key=ready"),
    Case("resty mysql too many connections", "resty_mysql.lua",
         (("send", bytes([29, 0, 0, 0, 255, 0x10, 0x04]) + b"#08004Too many connections"),),
         False, "login: Too many connections (1040)", params="user=health"),
    Case("resty dns without a name", "resty_dns.lua", (), False,
         "params: name=NAME is missing"),
]
