"""Talking to systemd (``Type=notify``): readiness, status, reload notices and the watchdog.

``sd_notify(*fields)`` is the whole protocol: one datagram of ``KEY=VALUE`` lines to the socket
named by ``NOTIFY_SOCKET`` (a path, or ``@name`` for the abstract namespace). Outside systemd it
does nothing and returns False, so callers never need to ask whether they run under it.

``SystemdNotifier`` is the daemon's component: ``READY=1`` once every virtual has finished its
first round (the control port is bound before this component starts, see ``components.build``),
``STATUS=`` with the counts whenever they change, ``WATCHDOG=1`` from an asyncio task that skips
the ping while the event loop lags (so a stuck or starved loop gets the daemon restarted), and
a fresh ``STATUS=`` after a reload. The daemon wraps its reload in ``reload_notice()``
(``RELOADING=1`` ... ``READY=1``).

``child_environ()`` is the environment for exec testers and notify scripts: without the
variables that would let a child speak for the service.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager, suppress
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .components import DaemonView

log = logging.getLogger("surealived")

SERVICE_VARIABLES = ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID")
# How often the readiness and status are looked at, seconds.
STATUS_PERIOD = 1.0


def sd_notify(*fields: str) -> bool:
    """Send ``KEY=VALUE`` fields to systemd. False when not under systemd or not delivered."""
    address = os.environ.get("NOTIFY_SOCKET", "")
    if not address or address[0] not in "/@":  # unset, or vsock (not handled)
        return False
    if address[0] == "@":
        address = "\0" + address[1:]
    kind = socket.SOCK_DGRAM | socket.SOCK_CLOEXEC | socket.SOCK_NONBLOCK
    with socket.socket(socket.AF_UNIX, kind) as sock:
        try:
            sock.sendto("\n".join(fields).encode(), address)
        except OSError as exc:
            log.debug("sd_notify to %s failed: %s", os.environ["NOTIFY_SOCKET"], exc)
            return False
    return True


def monotonic_usec() -> int:
    return time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000


def reloading() -> bool:
    """Announce a reload; ``READY=1`` must follow when it is over (``reload_notice`` does)."""
    return sd_notify("RELOADING=1", f"MONOTONIC_USEC={monotonic_usec()}")


@contextmanager
def reload_notice() -> Iterator[None]:
    """Wrap a reload: ``RELOADING=1`` before, ``READY=1`` after, whether it worked or not (a
    failed reload keeps the old configuration running, and the unit must leave "reloading")."""
    reloading()
    try:
        yield
    finally:
        sd_notify("READY=1")


def stopping(status: str = "") -> bool:
    fields = ["STOPPING=1"]
    if status:
        fields.append(f"STATUS={status}")
    return sd_notify(*fields)


def child_environ(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """A copy of ``environ`` (default ``os.environ``) for a child process, without systemd's
    notification variables (``sd_notify(3)``'s unset_environment)."""
    source = os.environ if environ is None else environ
    return {k: v for k, v in source.items() if k not in SERVICE_VARIABLES}


def watchdog_interval(environ: Mapping[str, str] | None = None) -> float | None:
    """The watchdog timeout systemd asks this process to honour, in seconds, or None."""
    env = os.environ if environ is None else environ
    try:
        usec = int(env.get("WATCHDOG_USEC", ""))
    except ValueError:
        return None
    pid = env.get("WATCHDOG_PID", "")
    if usec <= 0 or (pid and pid != str(os.getpid())):
        return None
    return usec / 1e6


async def feed_watchdog(timeout: float, *, tick: float | None = None,
                        lag_limit: float | None = None,
                        on_lag: Callable[[float], None] | None = None) -> None:
    """Send ``WATCHDOG=1`` every ``timeout / 2`` seconds while the loop keeps time.

    A tick every ``tick`` seconds measures how late the loop wakes it. While any lag since the
    last ping exceeds ``lag_limit`` (default ``timeout / 4``) the ping is skipped; a loop that
    stays that late, or is stuck, lets the watchdog fire. ``on_lag`` is told each measured lag.
    """
    tick = tick if tick is not None else min(1.0, timeout / 8)
    lag_limit = lag_limit if lag_limit is not None else timeout / 4
    loop = asyncio.get_running_loop()
    worst = 0.0
    last_ping = loop.time()
    sd_notify("WATCHDOG=1")
    while True:
        planned = loop.time() + tick
        await asyncio.sleep(tick)
        lag = max(0.0, loop.time() - planned)
        worst = max(worst, lag)
        if on_lag is not None:
            on_lag(lag)
        if loop.time() - last_ping < timeout / 2:
            continue
        if worst <= lag_limit:
            sd_notify("WATCHDOG=1")
        else:
            log.warning("event loop lagged %.1f s (limit %.1f s): watchdog not fed", worst,
                        lag_limit)
        worst = 0.0
        last_ping = loop.time()


class WatchdogPinger:
    """The watchdog for a synchronous main loop (ipvssync): call ``tick()`` once per pass;
    it sends ``WATCHDOG=1`` at most every ``timeout / 2``, so a pass that hangs is restarted."""

    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        self.timeout = watchdog_interval(environ)
        self.last = float("-inf")

    def tick(self) -> bool:
        """True when a ping was sent."""
        if self.timeout is None:
            return False
        now = time.monotonic()
        if now - self.last < self.timeout / 2:
            return False
        self.last = now
        return sd_notify("WATCHDOG=1")


def status_text(daemon: DaemonView) -> str:
    """``STATUS=``: virtuals, reals up of all, and how many are still untested."""
    state = daemon.state
    virtuals = len(state.virtuals)
    reals = up = untested = 0
    for real in state.reals():
        reals += 1
        up += real.online
        untested += not real.tested
    text = f"{virtuals} virtuals, {up}/{reals} reals up"
    if untested:
        text += f", {untested} not tested yet"
    return text


class SystemdNotifier:
    """Readiness, status and watchdog for systemd."""

    def __init__(self) -> None:
        self.ready = False
        self.last_status = ""
        self.lag = 0.0
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self, daemon: DaemonView) -> None:
        self._tasks.append(asyncio.create_task(self._status_loop(daemon),
                                               name="sdnotify-status"))
        timeout = watchdog_interval()
        if timeout is not None:
            log.info("systemd watchdog: %.1f s, fed every %.1f s", timeout, timeout / 2)
            self._tasks.append(asyncio.create_task(feed_watchdog(timeout, on_lag=self._lag),
                                                   name="sdnotify-watchdog"))

    def _lag(self, lag: float) -> None:
        self.lag = lag

    async def _status_loop(self, daemon: DaemonView) -> None:
        while True:
            self.update(daemon)
            await asyncio.sleep(STATUS_PERIOD)

    def update(self, daemon: DaemonView) -> None:
        """Send READY=1 the first time every virtual is tested; send STATUS= when it changed."""
        status = status_text(daemon)
        fields = []
        if not self.ready and daemon.state.all_tested:
            self.ready = True
            fields.append("READY=1")
            fields.append(f"MAINPID={os.getpid()}")
            log.info("ready: first round done (%s)", status)
        if status != self.last_status:
            fields.append(f"STATUS={status}")
            self.last_status = status
        if fields:
            sd_notify(*fields)

    async def reloaded(self, daemon: DaemonView) -> None:
        self.update(daemon)

    async def stop(self, daemon: DaemonView) -> None:
        stopping("stopping")
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()
