"""Command line of ``ipvssync``: options in, a ``Syncer`` run (or a check, or a plan) out.

``ipvssync [-v...] [-u] [-d] [-k] [-c MAINCFG] [-t] [--once] [--plan] [--dir DIR]``: the
original's flags (``-c`` is honoured, unlike the original), plus a one-shot sync, a dry run that
prints the operations, and a folder of files for trying it without a surealived.cfg.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
from types import FrameType
from typing import NoReturn

import click

from .. import __version__, sdnotify
from ..config.main import DEFAULT_PATH, MainConfig, load_maincfg
from ..errors import ConfigErrors
from ..logsetup import reopen, setup_logging, verbosity_level
from .files import SyncLock, SyncPaths, Wanted, load_wanted
from .instance import InstanceLocked, instance_lock_path, take_instance_lock, write_pid
from .kernel import UNAVAILABLE, IPVSUnavailable, Kernel, KernelError, open_kernel
from .metrics import MetricsFile
from .planner import plan, summary
from .syncer import Settings, Syncer
from .table import Table

_HELP = f"""Keep the kernel's IPVS table equal to the table surealived wants: read the
snapshot (full_sync_file) and follow its diffs, apply the differences over netlink, and
compare the whole table again every ipvssync_interval seconds to repair drift.

\b
Exit status: 0 on a clean stop, a valid -t check, a --plan, or a --once that left the
kernel equal to the wanted table; 1 otherwise (no IPVS in the kernel, refused snapshot,
failed operations with --once, bad configuration, another ipvssync holding ipvssync.lock
in the folder of lock_sync_file).
\b
Signals: SIGHUP re-reads the snapshot (as the reload flag); SIGUSR1 reopens the log file;
SIGTERM/SIGINT stop.
\b
Try it without surealived.cfg:  ipvssync --dir FOLDER --plan
(FOLDER holds ipvsfull.cfg, ipvsfull.lock, ipvsfull.reload and diffs/).
Main configuration: -c, default {DEFAULT_PATH}."""


def _fail(message: str) -> NoReturn:
    click.echo(message, err=True)
    sys.exit(1)


def _load_config(path: str | None) -> MainConfig:
    try:
        return load_maincfg(path)
    except ConfigErrors as exc:
        for error in exc.errors:
            click.echo(str(error), err=True)
        sys.exit(1)


def _load_locked(paths: SyncPaths) -> Wanted:
    """The wanted table, read under the lock when the lock file exists."""
    lock = SyncLock(paths.lock_sync_file)
    locked = lock.acquire()
    try:
        return load_wanted(paths)
    finally:
        if locked:
            lock.release()


def _check(paths: SyncPaths) -> int:
    """``-t``: parse the snapshot and its diffs without touching anything."""
    try:
        wanted = _load_locked(paths)
    except ConfigErrors as exc:
        for error in exc.errors:
            click.echo(str(error), err=True)
        click.echo(f"ipvssync config file [{paths.full_sync_file}] syntax ERROR", err=True)
        return 1
    for warning in wanted.snapshot.warnings:
        click.echo(f"warning: {warning}", err=True)
    for entry in wanted.problems:
        click.echo(f"warning: {entry.where}: {entry.error}: {entry.text}", err=True)
    if wanted.more_problems:
        click.echo(f"warning: {wanted.more_problems} more diff lines not applied", err=True)
    if wanted.tail.blocked:
        click.echo(f"warning: {wanted.tail.blocked_why}", err=True)
    click.echo(f"ipvssync config file [{paths.full_sync_file}] syntax OK: "
               f"{len(wanted.table.services)} virtuals, {wanted.table.count_dests()} reals, "
               f"{wanted.replayed} diff lines replayed")
    return 0


def _plan(paths: SyncPaths, manage_unmanaged: bool, as_ipvsadm: bool) -> int:
    """``--plan``: print what a full sync would do now; change nothing."""
    try:
        wanted = _load_locked(paths)
    except ConfigErrors as exc:
        for error in exc.errors:
            click.echo(f"snapshot refused: {error}", err=True)
        return 1
    kernel_table = Table()
    try:
        with open_kernel() as kernel:
            kernel_table = kernel.read_table()
    except IPVSUnavailable:
        click.echo(f"{UNAVAILABLE}; planning against an empty kernel table", err=True)
    except KernelError as exc:
        click.echo(f"cannot read the kernel table ({exc}); planning against an empty "
                   "kernel table", err=True)
    ops = plan(wanted.table, kernel_table, manage_unmanaged)
    for op in ops:
        click.echo(op.ipvsadm() if as_ipvsadm else op.describe())
    click.echo(f"# {summary(ops)}" if as_ipvsadm else summary(ops), err=as_ipvsadm)
    return 0


class _Stop:
    def __init__(self) -> None:
        self.event = threading.Event()

    def __call__(self, signum: int, frame: FrameType | None) -> None:
        self.event.set()


@click.command(help=_HELP, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("-v", "--verbose", count=True,
              help="Log level by count, overriding ipvssync_logging: -v error, -vv warn, "
                   "-vvv info, -vvvv debug, -vvvvv dbdet.")
@click.option("-u", "--del-unmanaged", "--del-umanaged", "manage_unmanaged", is_flag=True,
              help="Also delete kernel services that are not in the wanted table "
                   "(--del-umanaged: the original's spelling).")
@click.option("-d", "--daemonize", is_flag=True,
              help="Detach into the background and log to ipvssync_log.")
@click.option("-k", "--keep-diffs", is_flag=True, help="Never remove consumed diff files.")
@click.option("-c", "--config", "maincfg", metavar="MAINCFG", type=click.Path(dir_okay=False),
              help=f"Main configuration file [default: {DEFAULT_PATH}].")
@click.option("-t", "--test-config", is_flag=True,
              help="Check the snapshot and its diffs, print the result, exit 0 or 1.")
@click.option("--once", is_flag=True, help="One full sync, then exit.")
@click.option("--plan", "show_plan", is_flag=True,
              help="Print the operations a full sync would apply now; change nothing. "
                   "Without IPVS in the kernel, plans against an empty table.")
@click.option("--ipvsadm", "as_ipvsadm", is_flag=True,
              help="With --plan: print the operations as ipvsadm commands.")
@click.option("--dir", "folder", metavar="DIR", type=click.Path(file_okay=False),
              help="Use DIR/ipvsfull.cfg, DIR/ipvsfull.lock, DIR/ipvsfull.reload and "
                   "DIR/diffs instead of the paths in the main configuration.")
@click.version_option(__version__, "-V", "--version", prog_name="ipvssync")
def main(verbose: int, manage_unmanaged: bool, daemonize: bool, keep_diffs: bool,
         maincfg: str | None, test_config: bool, once: bool, show_plan: bool,
         as_ipvsadm: bool, folder: str | None) -> None:
    cfg = _load_config(maincfg)
    paths = SyncPaths.from_dir(folder) if folder else SyncPaths.from_maincfg(cfg)
    if test_config:
        sys.exit(_check(paths))
    if show_plan:
        sys.exit(_plan(paths, manage_unmanaged, as_ipvsadm))
    try:  # before anything is written: a second ipvssync leaves no trace
        lock_fd = take_instance_lock(instance_lock_path(paths))
    except InstanceLocked as exc:
        _fail(f"ipvssync: {exc}")
    level = verbosity_level(verbose, cfg.ipvssync_logging)
    if daemonize:
        from ..daemonize import daemonize as detach

        detach(cfg.ipvssync_pid_file or None, name="ipvssync")
        write_pid(lock_fd)  # the lock is inherited; the pid in it is the daemon's now
    destination = cfg.ipvssync_log if daemonize else "stderr"
    try:
        log = setup_logging("ipvssync", level=level, destination=destination,
                            use_syslog=cfg.use_syslog, syslog_timestamp=cfg.use_tm_in_syslog)
    except OSError as exc:
        _report_failure(daemonize, f"cannot open the log file {destination}: {exc.strerror}")
        return
    sys.exit(_run(paths, cfg, log, manage_unmanaged, keep_diffs, once, daemonize))


def _report_failure(daemonized: bool, message: str) -> None:
    """The failure on stderr; in -d mode through the waiting first process."""
    if daemonized:
        from ..daemonize import report_failure

        report_failure(message)
        sys.exit(1)
    _fail(message)


def _run(paths: SyncPaths, cfg: MainConfig, log: logging.Logger, manage_unmanaged: bool,
         keep_diffs: bool, once: bool, daemonized: bool) -> int:
    log.info("Starting ipvssync %s (%s, -u %s, -k %s)", __version__, paths.full_sync_file,
             "on" if manage_unmanaged else "off", "on" if keep_diffs else "off")
    try:
        kernel: Kernel = open_kernel()
    except (IPVSUnavailable, KernelError) as exc:
        log.error("%s", exc)
        if daemonized:
            _report_failure(daemonized, str(exc))
        return 1
    settings = Settings(paths, manage_unmanaged, keep_diffs, cfg.ipvssync_poll_ms / 1000,
                        float(cfg.ipvssync_interval))
    syncer = Syncer(settings, kernel, log)
    metrics_file = (MetricsFile(cfg.ipvssync_metrics_file, refresh=settings.interval)
                    if cfg.ipvssync_metrics_file else None)

    said: list[str] = []

    def write_metrics() -> None:
        if metrics_file is None:
            return
        try:
            metrics_file.maybe_write(syncer.figures)
        except OSError as exc:  # the metrics must never stop the syncing; said once
            text = f"cannot write {metrics_file.path}: {exc.strerror or exc}"
            if text not in said:
                said.append(text)
                log.warning("%s (retried at the next change)", text)

    with kernel:
        if once:
            done = syncer.once()
            write_metrics()
            return 0 if done else 1
        stop = _Stop()
        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)

        def hup(signum: int, frame: FrameType | None) -> None:
            syncer.hup = True

        signal.signal(signal.SIGHUP, hup)
        signal.signal(signal.SIGUSR1, lambda signum, frame: reopen(log))
        if daemonized:
            from ..daemonize import report_ready

            report_ready()
        sdnotify.sd_notify("READY=1", f"MAINPID={os.getpid()}")  # under systemd: Type=notify
        watchdog = sdnotify.WatchdogPinger()
        while not stop.event.is_set():
            watchdog.tick()
            try:
                syncer.step()
            except KernelError as exc:
                syncer.figures.kernel_errors += 1
                syncer.figures.in_sync = False
                syncer.figures.changed()
                write_metrics()
                log.error("%s; trying again in %s s", exc, settings.interval)
                stop.event.wait(settings.interval)
            write_metrics()
            stop.event.wait(settings.poll)
    sdnotify.sd_notify("STOPPING=1")
    log.info("ipvssync stopped")
    return 0
