"""Command line of ``surealived``: parse options, then hand over to the daemon or to ``-t``.

``surealived [-t] [-v...] [-d] [-n] [-k] [-c MAINCFG] CONFIG.xml`` as the original, plus
``surealived probe ...`` to run one tester once against one address.
"""

from __future__ import annotations

import sys

import click

from . import __version__
from .maincfg import DEFAULT_PATH

_HELP = f"""Test every real server of every virtual service in CONFIG.xml and write the wanted
IPVS table for ipvssync.

\b
Exit status: 0 on a clean stop (SIGTERM, SIGINT) or a valid -t check; 1 when the
configuration is invalid or the daemon cannot start.
\b
Signals: SIGHUP reloads CONFIG.xml in place (reals that did not change keep their
state); SIGUSR1 reopens the log file; SIGTERM/SIGINT save the dumps and exit.
\b
Run one check by hand:  surealived probe --help
Main configuration: -c, default {DEFAULT_PATH}."""


@click.command(help=_HELP, context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("config_xml", metavar="CONFIG.xml", type=click.Path(dir_okay=False))
@click.option("-t", "--test-config", is_flag=True,
              help="Check surealived.cfg, the testers and CONFIG.xml, print every error, exit.")
@click.option("-v", "--verbose", count=True,
              help="Log level by count, overriding 'logging': -v error, -vv warn, -vvv info, "
                   "-vvvv debug, -vvvvv dbdet.")
@click.option("-d", "--daemonize", is_flag=True,
              help="Detach into the background (writes pid_file if set); without systemd.")
@click.option("-c", "--config", "maincfg", metavar="MAINCFG", type=click.Path(dir_okay=False),
              help=f"Main configuration file [default: {DEFAULT_PATH}].")
@click.option("-n", "--no-sync", is_flag=True, help="Write no files for ipvssync (no_sync).")
@click.option("-k", "--no-dumpfile", is_flag=True, help="Neither read nor write offline.dump.")
@click.option("--loop", type=click.Choice(["auto", "asyncio", "uvloop"]), default="auto",
              show_default=True, help="Event loop implementation.")
@click.version_option(__version__, "-V", "--version", prog_name="surealived")
def main(config_xml: str, test_config: bool, verbose: int, daemonize: bool,
         maincfg: str | None, no_sync: bool, no_dumpfile: bool, loop: str) -> None:
    if test_config:
        from .check import check_files
        from .logsetup import setup_logging

        setup_logging("surealived", enabled=False)  # -t reports its findings itself
        report = check_files(config_xml, maincfg)
        for line in report.errors:
            click.echo(line, err=True)
        for line in report.summary_lines(config_xml):
            click.echo(line)
        sys.exit(0 if report.ok else 1)
    from .daemon import Options, run

    sys.exit(run(Options(config_xml=config_xml, maincfg_path=maincfg, verbose=verbose,
                         daemonize=daemonize, no_sync=no_sync, no_dumpfile=no_dumpfile,
                         loop=loop)))


def surealived_main() -> None:
    """Console entry point: ``surealived probe ...`` or the daemon."""
    if sys.argv[1:2] == ["probe"]:
        from .probe_cli import probe

        probe(args=sys.argv[2:], prog_name="surealived probe")
    else:
        main(prog_name="surealived")
