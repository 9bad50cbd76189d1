"""Real servers on loopback for tests: nginx (HTTP, HTTPS with trustme certificates, IPv6),
dnsmasq (an authoritative zone), redis-server, memcached, MariaDB (a user with a password), and
asyncio servers that misbehave on purpose.

Every server binds to a port chosen at run time (other test runs share the machine) and is a
context manager that stops it. Use from any test::

    from tests.servers import nginx, dnsmasq, bad_tcp_server

    with nginx(tmp_path) as web:            # web.port, web.tls_port, web.ca, web.root
        ...
    with dnsmasq() as dns:                  # dns.port; zone example.test
        ...
    with redis("s3cret") as port, memcached() as mc_port, mariadb() as db:
        ...                                 # db.port, db.user, db.password
    async with bad_tcp_server("silent") as port:
        ...

A missing binary skips the test with the reason (CI installs them all).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

NGINX_CANDIDATES = ("/usr/sbin/nginx", "nginx")
DNSMASQ_CANDIDATES = ("/usr/sbin/dnsmasq", "dnsmasq")


def find_binary(candidates: tuple[str, ...], package: str) -> str:
    for name in candidates:
        path = shutil.which(name) or (name if os.access(name, os.X_OK) else None)
        if path:
            return path
    pytest.skip(f"{candidates[-1]} is not installed (Debian package {package})")


def free_port(host: str = "127.0.0.1", kind: int = socket.SOCK_STREAM) -> int:
    """A port nobody listens on right now (small race, acceptable for tests)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, kind) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def free_ports(count: int, host: str = "127.0.0.1") -> list[int]:
    """``count`` different ports nobody listens on right now (each held until all are found,
    so none comes twice)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with contextlib.ExitStack() as stack:
        ports = []
        for _ in range(count):
            sock = stack.enter_context(socket.socket(family, socket.SOCK_STREAM))
            sock.bind((host, 0))
            ports.append(int(sock.getsockname()[1]))
        return ports


def wait_for_tcp(host: str, port: int, proc: subprocess.Popen[bytes] | None = None,
                 timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"server exited with status {proc.returncode}")
        with contextlib.suppress(OSError), socket.create_connection((host, port), 0.2):
            return
        time.sleep(0.02)
    raise RuntimeError(f"nothing listens on {host}:{port} after {timeout}s")


def stop_process(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


# -- nginx ------------------------------------------------------------------------------------

INDEX = b"<html><body>hello from surealived tests</body></html>\n"


@dataclass
class Nginx:
    """A running nginx. ``port``: HTTP on 127.0.0.1 and ::1; ``tls_port``: HTTPS on both, with
    ``real1.example.test`` (default, also valid for 127.0.0.1 and ::1) and ``real2.example.test``
    chosen by SNI; ``ca``: the trustme CA (``ca_file`` its PEM); ``root``: the document root."""

    port: int
    tls_port: int
    root: Path
    ca_file: Path
    ca: object = None
    proc: subprocess.Popen[bytes] | None = None
    extra: dict[str, str] = field(default_factory=dict)


NGINX_CONF = """
daemon off;
master_process {master};
worker_processes {workers};
{user}
pid {dir}/nginx.pid;
error_log {dir}/error.log warn;
worker_rlimit_nofile {nofile};
events {{ worker_connections {connections}; multi_accept on; }}
http {{
    access_log off;
    client_body_temp_path {dir}/tmp;
    proxy_temp_path {dir}/tmp;
    fastcgi_temp_path {dir}/tmp;
    uwsgi_temp_path {dir}/tmp;
    scgi_temp_path {dir}/tmp;
    default_type text/plain;
    keepalive_timeout 0;
    server {{
        listen {listen}:{port} default_server reuseport backlog=4096{deferred};
        listen [::1]:{port} default_server;
{extra_listen}
        listen {listen}:{tls_port} ssl default_server;
        listen [::1]:{tls_port} ssl default_server;
        server_name real1.example.test;
        ssl_certificate {dir}/real1.pem;
        ssl_certificate_key {dir}/real1.key;
        root {root};
        location = /health {{ return 200 "ok healthy\\n"; }}
        location = /down {{ return 503 "maintenance\\n"; }}
        location = /moved {{ return 301 /health; }}
        location = /missing {{ return 404; }}
        location = /chunked {{ chunked_transfer_encoding on; gzip off; ssi on;
                               default_type text/html; }}
    }}
    server {{
        listen {listen}:{tls_port} ssl;
        listen [::1]:{tls_port} ssl;
        server_name real2.example.test;
        ssl_certificate {dir}/real2.pem;
        ssl_certificate_key {dir}/real2.key;
        location / {{ return 200 "this is real2\\n"; }}
    }}
}}
"""


@contextlib.contextmanager
def nginx(directory: Path | str | None = None, *, listen: str = "127.0.0.1",
          connections: int = 1024, extra_ports: int = 0, workers: int = 1,
          deferred: bool = False) -> Iterator[Nginx]:
    """Start nginx (foreground, one process unless ``workers`` > 1) serving HTTP and HTTPS;
    ``extra_ports`` more HTTP ports (each with its own accept queue) are in ``.extra``."""
    binary = find_binary(NGINX_CANDIDATES, "nginx-light")
    import trustme

    with contextlib.ExitStack() as stack:
        if directory is None:
            directory = stack.enter_context(tempfile.TemporaryDirectory(prefix="sd-nginx-"))
        base = Path(directory)
        (base / "tmp").mkdir(parents=True, exist_ok=True)
        root = base / "www"
        root.mkdir(exist_ok=True)
        (root / "index.html").write_bytes(INDEX)
        (root / "big.bin").write_bytes(b"x" * (4 << 20))
        # SSI output has no known length: HTTP/1.1 replies to it come chunked
        (root / "chunked").write_bytes(b'part one <!--# echo var="uri" --> part two\n' * 50)
        ca = trustme.CA()
        ca.cert_pem.write_to_path(str(base / "ca.pem"))
        for name, hosts in (("real1", ("real1.example.test", "127.0.0.1", "::1")),
                            ("real2", ("real2.example.test",))):
            cert = ca.issue_cert(*hosts)
            cert.private_key_pem.write_to_path(str(base / f"{name}.key"))
            cert.cert_chain_pems[0].write_to_path(str(base / f"{name}.pem"))
            for extra in cert.cert_chain_pems[1:]:
                extra.write_to_path(str(base / f"{name}.pem"), append=True)
        port, tls_port, *extra = free_ports(2 + extra_ports, listen)
        conf = base / "nginx.conf"
        conf.write_text(NGINX_CONF.format(
            dir=base, root=root, port=port, tls_port=tls_port, listen=listen,
            connections=connections, nofile=connections * 2 + 64,
            master="on" if workers > 1 else "off", workers=workers,
            user="user root root;" if workers > 1 and os.geteuid() == 0 else "",
            deferred=" deferred" if deferred else "",
            extra_listen="\n".join(f"        listen {listen}:{p} reuseport backlog=4096"
                                    f"{' deferred' if deferred else ''};" for p in extra)))
        log = open(base / "stderr.log", "wb")  # noqa: SIM115 - closed by the stack
        stack.callback(log.close)
        proc = subprocess.Popen([binary, "-p", str(base), "-c", str(conf)],
                                stdout=log, stderr=subprocess.STDOUT)
        stack.callback(stop_process, proc)
        try:
            wait_for_tcp(listen, port, proc)
            wait_for_tcp(listen, tls_port, proc)
        except RuntimeError as exc:
            raise RuntimeError(f"nginx: {exc}: {(base / 'stderr.log').read_text()}") from None
        yield Nginx(port, tls_port, root, base / "ca.pem", ca, proc,
                    {f"port{i}": str(p) for i, p in enumerate(extra)})


# -- dnsmasq ----------------------------------------------------------------------------------

@dataclass
class Dnsmasq:
    """A running dnsmasq, authoritative for ``example.test`` (SOA, NS, www A 192.0.2.10,
    ``txt.example.test`` TXT), on 127.0.0.1:``port`` UDP and TCP."""

    port: int
    proc: subprocess.Popen[bytes]


@contextlib.contextmanager
def dnsmasq(listen: str = "127.0.0.1") -> Iterator[Dnsmasq]:
    binary = find_binary(DNSMASQ_CANDIDATES, "dnsmasq-base")
    port = free_port(listen, socket.SOCK_DGRAM)
    # 0.0.0.0: every address of the loopback interface (a benchmark's own namespace)
    where = (["--interface=lo"] if listen == "0.0.0.0"
             else ["--bind-interfaces", f"--listen-address={listen}"])
    proc = subprocess.Popen(
        [binary, "-k", "--conf-file=/dev/null", "--no-resolv", "--no-hosts", "--pid-file=",
         *where, "-p", str(port),
         f"--auth-server=ns1.example.test,{'lo' if listen == '0.0.0.0' else listen}",
         "--auth-zone=example.test",
         "--auth-soa=2026112401,hostmaster.example.test",
         "--host-record=www.example.test,192.0.2.10",
         "--txt-record=txt.example.test,surealived-check-ok"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        wait_for_tcp(listen, port, proc)  # dnsmasq answers TCP too: ready for both
        yield Dnsmasq(port, proc)
    finally:
        stop_process(proc)


# -- redis, memcached ------------------------------------------------------------------------

@contextlib.contextmanager
def serving(argv: list[str], port: int) -> Iterator[int]:
    """Run ``argv`` (a server in the foreground) until the block ends; yields ``port`` once it
    accepts connections."""
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for_tcp("127.0.0.1", port, proc)
        yield port
    finally:
        stop_process(proc)


@contextlib.contextmanager
def redis(password: str | None = None, listen: str = "127.0.0.1") -> Iterator[int]:
    """A redis-server on ``listen`` (0.0.0.0: every address of a benchmark's namespace) without
    persistence (``requirepass`` when ``password``); yields its port."""
    binary = find_binary(("/usr/bin/redis-server", "redis-server"), "redis-server")
    port = free_port()
    # bound to every address without a password, protected mode takes 127.0.0.1 and ::1 only
    argv = [binary, "--bind", listen, "--port", str(port), "--protected-mode", "no", "--save", "",
            "--appendonly", "no", "--daemonize", "no", "--dir", "/tmp", "--logfile", ""]
    if password:
        argv += ["--requirepass", password]
    with serving(argv, port) as p:
        yield p


@contextlib.contextmanager
def memcached() -> Iterator[int]:
    """A memcached on 127.0.0.1 (TCP only, 16 MB); yields its port."""
    binary = find_binary(("/usr/bin/memcached", "memcached"), "memcached")
    port = free_port()
    with serving([binary, "-l", "127.0.0.1", "-p", str(port), "-U", "0", "-m", "16",
                  "-u", "nobody"], port) as p:
        yield p


# -- MariaDB ----------------------------------------------------------------------------------

MARIADB_CANDIDATES = ("/usr/sbin/mariadbd", "mariadbd")
MARIADB_INSTALL_CANDIDATES = ("/usr/bin/mariadb-install-db", "mariadb-install-db")


@dataclass
class Mariadb:
    """A running MariaDB on 127.0.0.1:``port`` (TCP only), in a datadir of its own, with
    ``user``@127.0.0.1 logging in by ``password`` (mysql_native_password, no privileges)."""

    port: int
    user: str
    password: str
    proc: subprocess.Popen[bytes]


@contextlib.contextmanager
def mariadb(user: str = "checker", password: str = "s3cret") -> Iterator[Mariadb]:
    """A private MariaDB: a fresh datadir in a temporary folder, no defaults files read,
    its user created by an init file; stopped and removed at the end of the block."""
    server = find_binary(MARIADB_CANDIDATES, "mariadb-server")
    install = find_binary(MARIADB_INSTALL_CANDIDATES, "mariadb-server")
    # mariadbd refuses to run as root unless told to; as another user it runs as itself
    run_as = ["--user=root"] if os.geteuid() == 0 else []
    with tempfile.TemporaryDirectory(prefix="sd-mariadb-") as directory:
        base = Path(directory)
        data = base / "data"
        subprocess.run([install, "--no-defaults", f"--datadir={data}", *run_as,
                        "--auth-root-authentication-method=normal", "--skip-test-db"],
                       stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, check=True,
                       timeout=60)
        (base / "init.sql").write_text(
            f"CREATE USER '{user}'@'127.0.0.1' IDENTIFIED VIA mysql_native_password "
            f"USING PASSWORD('{password}');\n")
        port = free_port()
        proc = subprocess.Popen(
            [server, "--no-defaults", f"--datadir={data}", f"--socket={base}/mysqld.sock",
             f"--port={port}", "--bind-address=127.0.0.1", *run_as, "--skip-log-bin",
             "--skip-name-resolve", f"--pid-file={base}/mysqld.pid",
             f"--init-file={base}/init.sql", f"--log-error={base}/error.log",
             "--innodb-buffer-pool-size=16M", "--max-connections=50"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            try:
                wait_for_tcp("127.0.0.1", port, proc, timeout=30)
            except RuntimeError as exc:
                log = (base / "error.log").read_text(errors="replace")[-2000:]
                raise RuntimeError(f"mariadbd: {exc}: {log}") from None
            yield Mariadb(port, user, password, proc)
        finally:
            stop_process(proc)


# -- misbehaving servers ----------------------------------------------------------------------

BAD_TCP_MODES = ("silent", "reset", "close", "close_mid", "garbage", "drip", "endless",
                 "tls_garbage", "http")


@contextlib.asynccontextmanager
async def bad_tcp_server(mode: str, host: str = "127.0.0.1", *,
                         reply: bytes = b"") -> AsyncIterator[int]:
    """A TCP server on ``host`` that misbehaves; yields its port.

    silent: accept, read, never answer. reset: accept and reset (RST). close: accept and close.
    close_mid: send half a status line and close. garbage: send binary junk and close.
    drip: send ``HTTP/1.0 200 OK`` one byte every 0.5 s. endless: a 200 status, headers, then an
    endless body. tls_garbage: answer a TLS ClientHello with junk. http: send ``reply`` and
    close (a scripted server)."""
    if mode not in BAD_TCP_MODES:
        raise ValueError(f"mode {mode!r} not in {BAD_TCP_MODES}")
    handlers: set[asyncio.Task[None]] = set()

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        handlers.add(task)
        try:
            await misbehave(mode, reply, reader, writer)
            writer.close()  # a FIN (the request was read: no RST for unread data)
        except (ConnectionError, asyncio.CancelledError):
            writer.transport.abort()
        finally:
            handlers.discard(task)

    server = await asyncio.start_server(serve, host, 0)
    try:
        yield int(server.sockets[0].getsockname()[1])
    finally:
        server.close()
        for task in list(handlers):
            task.cancel()
        await asyncio.sleep(0)
        await server.wait_closed()


async def misbehave(mode: str, reply: bytes, reader: asyncio.StreamReader,
                    writer: asyncio.StreamWriter) -> None:
    """Serve one connection the way ``mode`` says (see ``bad_tcp_server``)."""
    if mode == "silent":
        while await reader.read(65536):
            pass
        return
    if mode == "reset":
        sock = writer.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\0\0\0\0\0\0\0")
        writer.transport.abort()
        return
    await reader.read(65536)  # the request (or the ClientHello)
    if mode == "close":
        return
    if mode == "http":
        writer.write(reply)
    elif mode == "close_mid":
        writer.write(b"HTTP/1.0 2")
    elif mode in ("garbage", "tls_garbage"):
        writer.write(bytes(range(256)) * 4)
    elif mode == "drip":
        for byte in b"HTTP/1.0 200 OK\r\n\r\n":
            writer.write(bytes([byte]))
            await writer.drain()
            await asyncio.sleep(0.5)
    elif mode == "endless":
        writer.write(b"HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\n")
        while True:
            writer.write(b"y" * 65536)
            await writer.drain()
    await writer.drain()


@contextlib.asynccontextmanager
async def bad_udp_server(mode: str, host: str = "127.0.0.1", *,
                         reply: Callable[[bytes], bytes] | None = None) -> AsyncIterator[int]:
    """A UDP server that answers DNS queries wrongly; yields its port.

    silent: never answers. garbage: the query's ID, then junk. wrong_id: a reply with another
    ID (and no right one). truncated_header: a reply of 5 bytes. scripted: ``reply(query)``."""

    class Protocol(asyncio.DatagramProtocol):
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            self.transport: asyncio.DatagramTransport = transport  # type: ignore[assignment]

        def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
            if mode == "garbage":
                self.transport.sendto(data[:2] + b"\xff" * 40, addr)
            elif mode == "wrong_id":
                wrong = bytes([data[0] ^ 0xFF, data[1]]) + b"\x84\x00\0\x01\0\0\0\0\0\0"
                self.transport.sendto(wrong + data[12:], addr)
            elif mode == "truncated_header":
                self.transport.sendto(data[:2] + b"\x84\x00\x00", addr)
            elif mode == "scripted" and reply is not None:
                self.transport.sendto(reply(data), addr)

    loop = asyncio.get_running_loop()
    transport, _ = await loop.create_datagram_endpoint(Protocol, local_addr=(host, 0))
    try:
        yield int(transport.get_extra_info("sockname")[1])
    finally:
        transport.close()
