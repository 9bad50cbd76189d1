"""Command line of ``surealived``: parse options, then hand over to the daemon or to ``-t``.

``surealived [-t] [-v...] [-d] [-n] [-k] [-c MAINCFG] CONFIG.xml`` as the original, plus
``surealived probe ...`` to run one tester once against one address: one click group, so shell
completion knows the subcommand.
"""

from __future__ import annotations

import sys

import click

from . import __version__
from .config.main import DEFAULT_PATH
from .probe_cli import probe

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


class _Surealived(click.Group):
    """``surealived [OPTIONS] CONFIG.xml`` runs the daemon (or ``-t``); ``surealived probe ...``
    runs the subcommand. One click group, so shell completion knows both."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        # After a subcommand's name everything is the subcommand's; otherwise options may come
        # before or after CONFIG.xml, as with the original's getopt.
        ctx.allow_interspersed_args = not (args and args[0] in self.commands)
        return super().parse_args(ctx, args)

    def resolve_command(self, ctx: click.Context, args: list[str]
                        ) -> tuple[str | None, click.Command | None, list[str]]:
        if args and args[0] not in self.commands:
            return "CONFIG.xml", _daemon, args  # not a subcommand: the XML file
        return super().resolve_command(ctx, args)

    def collect_usage_pieces(self, ctx: click.Context) -> list[str]:
        return ["[OPTIONS] CONFIG.xml", "|", "probe TESTER --addr A [KEY=VALUE]..."]


@click.group(cls=_Surealived, help=_HELP, invoke_without_command=True, no_args_is_help=False,
             context_settings={"help_option_names": ["-h", "--help"]})
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
@click.pass_context
def main(ctx: click.Context, **_options: object) -> None:
    if ctx.invoked_subcommand is None and not ctx.resilient_parsing:
        raise click.UsageError("Missing argument 'CONFIG.xml'.")


@click.command(hidden=True)
@click.argument("config_xml", metavar="CONFIG.xml", type=click.Path(dir_okay=False))
@click.pass_context
def _daemon(ctx: click.Context, config_xml: str) -> None:
    """The daemon (or ``-t``) with the options given to ``surealived``."""
    assert ctx.parent is not None
    o = ctx.parent.params
    if o["test_config"]:
        from .config.check import check_files
        from .logsetup import setup_logging

        setup_logging("surealived", enabled=False)  # -t reports its findings itself
        report = check_files(config_xml, o["maincfg"])
        for line in report.warnings:
            click.echo(f"warning: {line}", err=True)
        for line in report.errors:
            click.echo(line, err=True)
        for line in report.summary_lines(config_xml):
            click.echo(line)
        sys.exit(0 if report.ok else 1)
    from .daemon import Options, run

    sys.exit(run(Options(config_xml=config_xml, maincfg_path=o["maincfg"],
                         verbose=o["verbose"], daemonize=o["daemonize"], no_sync=o["no_sync"],
                         no_dumpfile=o["no_dumpfile"], loop=o["loop"])))


main.add_command(probe, "probe")


def surealived_main() -> None:
    """Console entry point."""
    main(prog_name="surealived")
