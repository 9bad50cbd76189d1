"""The ``surealived`` daemon: start-up, the running engine, signals, reload and clean shutdown.

Lifecycle (``run(options)``): read surealived.cfg, set up logging, load the testers and the XML
(any error: logged, exit status 1), detach with ``-d``, raise the fd limit, then inside the event
loop build the state, start the components (``build_components``) in order, start the engine and
wait for a signal:

* SIGHUP: reload CONFIG.xml in place. A configuration with errors is refused (errors logged) and
  the running one stays; otherwise reals whose definition did not change keep their state.
  Requests (SIGHUP, ``reload``) arriving while one waits to be applied join it: a burst of them
  costs one reload (one snapshot for ipvssync), not one each.
* SIGTERM, SIGINT: stop scheduling, cancel checks in flight, stop the components in reverse
  order (they save their dumps), exit 0.
* SIGUSR1: reopen the log file.

The components own everything else (sync files, dumps, control port, notifiers, status page);
this module lists, starts, reloads and stops them. They see it through ``components.DaemonView``
and never import it.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
from collections.abc import Callable
from dataclasses import dataclass

from . import compiled, logsetup, sdnotify
from .components import Component
from .config.main import MainConfig, load_maincfg
from .config.model import Config
from .config.xml import parse_config
from .control.server import ControlServer
from .daemonize import daemonize, report_failure, report_ready
from .engine import heap
from .engine.scheduler import Engine
from .engine.state import DaemonState
from .errors import ConfigErrors
from .instance import InstanceLock, InstanceLocked, lock_paths
from .limits import MemoryLimit, raise_fd_limit
from .lua.component import LuaComponent
from .notify import NotifyComponent
from .persist.component import PersistComponent
from .registry import Registry, load_testers
from .sdnotify import SystemdNotifier
from .services import Services
from .statslog import StatsLogComponent
from .status.server import StatusServer
from .sync.component import SyncComponent

EXIT_OK = 0
EXIT_FAILED = 1


@dataclass(frozen=True)
class Options:
    """The command line, as ``cli.py`` parsed it."""

    config_xml: str
    maincfg_path: str | None = None
    verbose: int = 0
    daemonize: bool = False
    no_sync: bool = False
    no_dumpfile: bool = False
    loop: str = "auto"  # auto | asyncio | uvloop


class StartupError(Exception):
    """The daemon cannot start; the message says why (it has been logged)."""


def loop_factory(choice: str) -> tuple[Callable[[], asyncio.AbstractEventLoop] | None, str]:
    """The event loop factory for ``--loop`` and its name (uvloop when installed, for auto)."""
    if choice in ("auto", "uvloop"):
        try:
            import uvloop
        except ImportError:
            if choice == "uvloop":
                raise StartupError("--loop uvloop: uvloop is not installed") from None
        else:
            return uvloop.new_event_loop, "uvloop"
    return None, "asyncio"


def build_components() -> list[Component]:
    """Every component of the daemon, in start order (they stop in reverse order)."""
    return [
        MemoryLimit(),
        LuaComponent(),  # Lua limits from surealived.cfg, lua_errors counter
        PersistComponent(),  # restores override, offline, stats dumps
        NotifyComponent(),  # restores notify.dump
        SyncComponent(),  # forced snapshot + reload flag, after the restores
        StatsLogComponent(),
        ControlServer(),
        StatusServer(),  # only listens when status_listen is set
        SystemdNotifier(),  # keep last: READY=1 once the others are up
    ]


class Daemon:
    """One running surealived: configuration, state, engine and components."""

    def __init__(self, options: Options, maincfg: MainConfig, registry: Registry,
                 config: Config, logger: logging.Logger, loop_name: str = "asyncio") -> None:
        self.options = options
        self.maincfg = maincfg
        self.registry = registry
        self.config = config
        self.logger = logger
        self.loop_name = loop_name
        self.exit_code = EXIT_OK
        self.state = DaemonState(config)
        self.engine: Engine | None = None
        self.components: list[Component] = []
        self._started: list[Component] = []
        self._stop = asyncio.Event()
        self._reload_lock = asyncio.Lock()
        self._reload_waiting = False  # a reload is queued and has not started reading the XML
        self._tasks: set[asyncio.Task[object]] = set()

    @property
    def services(self) -> Services:
        return self.registry.services

    # -- requests (signal handlers, the control port, components) --------------------------
    def request_stop(self) -> None:
        self._stop.set()

    def request_reload(self) -> None:
        if self._reload_waiting:  # the queued one will read the XML as it is by then
            return
        self._reload_waiting = True
        task: asyncio.Task[object] = asyncio.get_running_loop().create_task(self._queued())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _queued(self) -> list[str]:
        async with self._reload_lock:
            self._reload_waiting = False
            with sdnotify.reload_notice():
                return await self._reload()

    async def reload(self) -> list[str]:
        """Re-read CONFIG.xml; on success install it in place. Returns the errors (empty: ok)."""
        async with self._reload_lock:
            with sdnotify.reload_notice():  # RELOADING=1 ... READY=1 under systemd
                return await self._reload()

    async def _reload(self) -> list[str]:
        self.logger.info("Reloading configuration %s", self.options.config_xml)
        try:
            config = await asyncio.to_thread(parse_config, self.options.config_xml,
                                             self.registry)
        except ConfigErrors as exc:
            errors = [str(e) for e in exc.errors]
        except OSError as exc:
            errors = [f"{self.options.config_xml}: {exc.strerror or exc}"]
        else:
            errors = []
        if errors:
            for error in errors:
                self.logger.error("%s", error)
            self.logger.error("Configuration refused (%d errors); the running one stays",
                              len(errors))
            return errors
        heap.unsettle()
        self.state.load(config, keep=True)
        self.config = config
        if self.engine is not None:
            self.engine.reschedule()
        for component in self._started:
            try:
                await component.reloaded(self)
            except Exception:
                self.logger.exception("Component %s failed to reload",
                                      type(component).__name__)
        heap.settle()
        self.logger.info("Configuration reloaded: %d virtuals, %d reals",
                         len(config.virtuals), config.real_count)
        return []

    # -- lifecycle -------------------------------------------------------------------------
    async def main(self) -> int:
        loop = asyncio.get_running_loop()
        self.engine = Engine(self.state, self.registry, self.maincfg)
        self.components = build_components()
        try:
            for component in self.components:
                await component.start(self)
                self._started.append(component)
        except Exception as exc:
            # An expected failure (a port in use, a folder not writable) is one line; anything
            # else is a bug and keeps its traceback.
            if isinstance(exc, OSError):
                why = exc.strerror or str(exc)
                self.logger.error("Cannot start %s: %s", type(component).__name__, why)
            else:
                why = str(exc)
                self.logger.exception("Cannot start %s: %s", type(component).__name__, why)
            report_failure(f"cannot start {type(component).__name__}: {why}")
            await self._stop_components()
            return EXIT_FAILED
        for signum, handler in ((signal.SIGHUP, self.request_reload),
                                (signal.SIGTERM, self._on_stop_signal(signal.SIGTERM)),
                                (signal.SIGINT, self._on_stop_signal(signal.SIGINT)),
                                (signal.SIGUSR1, lambda: logsetup.reopen(self.logger))):
            loop.add_signal_handler(signum, handler)
        self.engine.start()
        heap.settle()
        self.logger.info("Started: %d virtuals, %d reals, %s loop, %s check path, at most %d "
                         "checks in flight", len(self.config.virtuals), self.config.real_count,
                         self.loop_name, compiled.check_path(), self.engine.max_inflight)
        report_ready()
        try:
            await self._stop.wait()
        finally:
            for signum in (signal.SIGHUP, signal.SIGTERM, signal.SIGINT, signal.SIGUSR1):
                loop.remove_signal_handler(signum)
            await self.engine.stop()
            for task in list(self._tasks):
                task.cancel()
            await self._stop_components()
            self.services.close()
        self.logger.info("Stopped (exit status %d)", self.exit_code)
        return self.exit_code

    def _on_stop_signal(self, signum: signal.Signals) -> Callable[[], None]:
        def handler() -> None:
            self.logger.info("surealived: received signal %s - stopping", signum.name)
            self.request_stop()
        return handler

    async def _stop_components(self) -> None:
        while self._started:
            component = self._started.pop()
            try:
                await component.stop(self)
            except Exception:
                self.logger.exception("Component %s failed to stop", type(component).__name__)



def run(options: Options) -> int:
    """Run the daemon until it is stopped; returns the exit status."""
    try:
        maincfg = load_maincfg(options.maincfg_path)
    except ConfigErrors as exc:
        for error in exc.errors:
            print(error, file=sys.stderr)
        return EXIT_FAILED
    if options.no_sync:
        maincfg = maincfg.replace(no_sync=True)
    if options.no_dumpfile:
        maincfg = maincfg.replace(use_offline_dump=False)
    level = logsetup.verbosity_level(options.verbose, maincfg.logging)
    try:  # in the foreground the log goes to stderr, as the original's
        logger = logsetup.setup_logging(
            "surealived", level=level,
            destination=maincfg.log if options.daemonize else "stderr",
            enabled=maincfg.use_log or not options.daemonize, use_syslog=maincfg.use_syslog,
            syslog_timestamp=maincfg.use_tm_in_syslog)
        factory, loop_name = loop_factory(options.loop)
    except (OSError, StartupError) as exc:
        print(f"surealived: {exc}", file=sys.stderr)
        return EXIT_FAILED
    logger.info("Initializing... (surealived.cfg: %s)", maincfg.source)
    registry = load_testers(maincfg.modules, maincfg.modules_path,
                            Services.from_maincfg(maincfg))
    errors = [str(e) for e in registry.errors]
    config = None
    try:
        config = parse_config(options.config_xml, registry)
    except ConfigErrors as exc:
        errors.extend(str(e) for e in exc.errors)
    except OSError as exc:
        errors.append(f"{options.config_xml}: {exc.strerror or exc}")
    if errors or config is None:
        for line in errors:
            logger.error("%s", line)
            if options.daemonize:
                print(line, file=sys.stderr)
        logger.error("Configuration file is broken!")
        return EXIT_FAILED
    lock = InstanceLock()
    try:  # before anything is written: a second daemon must not touch the first one's files
        lock.acquire(lock_paths(maincfg))
    except (InstanceLocked, OSError) as exc:
        line = (str(exc) if isinstance(exc, InstanceLocked)
                else f"cannot take the instance lock {exc.filename}: {exc.strerror}")
        logger.error("%s", line)
        if options.daemonize:
            print(f"surealived: {line}", file=sys.stderr)
        return EXIT_FAILED
    if options.daemonize:
        daemonize(maincfg.pid_file or None)
        lock.record_pid()
    raise_fd_limit(maincfg.maxfd, logger)
    if maincfg.debug_comm == 1:
        try:
            os.makedirs(maincfg.debug_comm_path, exist_ok=True)
        except OSError as exc:
            logger.error("Can't create debug_comm_path %s: %s", maincfg.debug_comm_path,
                         exc.strerror)

    async def main() -> int:
        daemon = Daemon(options, maincfg, registry, config, logger, loop_name)
        return await daemon.main()

    with asyncio.Runner(loop_factory=factory) as runner:
        return runner.run(main())
