"""sd_notify against real datagram sockets (a path and an abstract address), the watchdog
feeder on a live event loop, and the environment given to children."""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
import uuid

import pytest

from surealived import sdnotify


def _listener(address: str) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind("\0" + address[1:] if address.startswith("@") else address)
    sock.settimeout(5)
    return sock


def test_sends_fields_to_a_path_socket(tmp_path, monkeypatch):
    path = str(tmp_path / "notify")
    with _listener(path) as sock:
        monkeypatch.setenv("NOTIFY_SOCKET", path)
        assert sdnotify.sd_notify("READY=1", "STATUS=3 virtuals") is True
        assert sock.recv(4096) == b"READY=1\nSTATUS=3 virtuals"


def test_sends_to_an_abstract_socket(monkeypatch):
    address = f"@surealived-test-{uuid.uuid4().hex}"
    with _listener(address) as sock:
        monkeypatch.setenv("NOTIFY_SOCKET", address)
        assert sdnotify.reloading() is True
        fields = sock.recv(4096).decode().split("\n")
    assert fields[0] == "RELOADING=1"
    assert fields[1].startswith("MONOTONIC_USEC=")
    assert int(fields[1].split("=")[1]) > 0


def test_reload_notice_sends_ready_even_when_the_reload_fails(tmp_path, monkeypatch):
    path = str(tmp_path / "notify")
    with _listener(path) as sock:
        monkeypatch.setenv("NOTIFY_SOCKET", path)
        with pytest.raises(ValueError), sdnotify.reload_notice():
            raise ValueError("bad XML")
        assert sock.recv(4096).startswith(b"RELOADING=1\n")
        assert sock.recv(4096) == b"READY=1"


def test_without_systemd_nothing_is_sent(monkeypatch, tmp_path):
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    assert sdnotify.sd_notify("READY=1") is False
    monkeypatch.setenv("NOTIFY_SOCKET", str(tmp_path / "nobody-listens"))
    assert sdnotify.sd_notify("READY=1") is False
    monkeypatch.setenv("NOTIFY_SOCKET", "vsock:2:1234")
    assert sdnotify.sd_notify("READY=1") is False


def test_children_do_not_get_the_service_variables():
    env = {"PATH": "/usr/bin", "NOTIFY_SOCKET": "/run/systemd/notify", "WATCHDOG_USEC": "30000000",
           "WATCHDOG_PID": "42", "LANG": "C"}
    assert sdnotify.child_environ(env) == {"PATH": "/usr/bin", "LANG": "C"}


def test_watchdog_interval_is_only_ours_when_the_pid_matches():
    assert sdnotify.watchdog_interval({"WATCHDOG_USEC": "30000000"}) == 30.0
    mine = {"WATCHDOG_USEC": "4000000", "WATCHDOG_PID": str(os.getpid())}
    assert sdnotify.watchdog_interval(mine) == 4.0
    assert sdnotify.watchdog_interval({"WATCHDOG_USEC": "4000000", "WATCHDOG_PID": "1"}) is None
    assert sdnotify.watchdog_interval({}) is None
    assert sdnotify.watchdog_interval({"WATCHDOG_USEC": "junk"}) is None


async def _pings(sock: socket.socket, count: int) -> int:
    """Wait (bounded) until ``count`` WATCHDOG=1 datagrams arrived; return how many did."""
    got = 0
    sock.setblocking(False)
    for _ in range(200):
        try:
            while True:
                if sock.recv(4096) == b"WATCHDOG=1":
                    got += 1
        except BlockingIOError:
            pass
        if got >= count:
            break
        await asyncio.sleep(0.05)
    return got


@pytest.mark.asyncio
async def test_watchdog_is_fed_while_the_loop_runs(tmp_path, monkeypatch):
    path = str(tmp_path / "notify")
    with _listener(path) as sock:
        monkeypatch.setenv("NOTIFY_SOCKET", path)
        task = asyncio.create_task(sdnotify.feed_watchdog(0.2, tick=0.02))
        try:
            assert await _pings(sock, 4) >= 4
        finally:
            task.cancel()


@pytest.mark.asyncio
async def test_a_blocked_loop_starves_the_watchdog(tmp_path, monkeypatch, caplog):
    path = str(tmp_path / "notify")
    with _listener(path) as sock, caplog.at_level(logging.WARNING, logger="surealived"):
        monkeypatch.setenv("NOTIFY_SOCKET", path)
        lags: list[float] = []
        task = asyncio.create_task(sdnotify.feed_watchdog(0.4, tick=0.02, lag_limit=0.1,
                                                          on_lag=lags.append))
        try:
            assert await _pings(sock, 1) == 1  # the first ping is sent at once
            time.sleep(0.6)  # the whole loop is stuck: no task runs, nothing is sent
            assert await _pings(sock, 0) == 0
            # the first tick after the stall sees the lag and withholds the ping
            for _ in range(100):
                if "watchdog not fed" in caplog.text:
                    break
                await asyncio.sleep(0.02)
            assert "watchdog not fed" in caplog.text
            assert max(lags) >= 0.5
            # once the loop keeps time again the pings resume
            assert await _pings(sock, 1) == 1
        finally:
            task.cancel()


def test_sync_loop_watchdog_pings_at_most_every_half_timeout(tmp_path, monkeypatch):
    path = str(tmp_path / "notify")
    with _listener(path) as sock:
        monkeypatch.setenv("NOTIFY_SOCKET", path)
        pinger = sdnotify.WatchdogPinger({"WATCHDOG_USEC": "60000000"})
        assert pinger.tick() is True
        assert sock.recv(4096) == b"WATCHDOG=1"
        assert pinger.tick() is False  # 30 s have not passed
        pinger.last -= 31
        assert pinger.tick() is True
        assert sock.recv(4096) == b"WATCHDOG=1"
    assert sdnotify.WatchdogPinger({}).tick() is False  # no watchdog asked for
