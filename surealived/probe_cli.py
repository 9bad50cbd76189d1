"""``surealived probe``: run one tester once against one address and print the whole conversation.

Attributes are given as in the XML (``KEY=VALUE`` arguments or ``--attr KEY=VALUE``), checked by
the same declarations (``surealived.config.attrs``), so an error names the attribute and what is
valid. The common tester attributes that shape a single check (``timeout``, ``SSL``, ``sni``,
``ssl_verify``, ``ssl_ca``, ``bindaddr``) are accepted too. Exit status: 0 when the real is up,
1 when it is down, 2 for a usage or attribute error.
"""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Mapping
from typing import Any

import click

from .config.attrs import BadValue, convert, default_of
from .config.main import load_maincfg
from .config.model import TESTER_ATTRS, FrozenOptions
from .engine.flight import run_check
from .engine.state import CheckTiming
from .engine.transcript import Transcript
from .logsetup import setup_logging
from .registry import load_testers
from .services import Services
from .tester_api import Attr, Result, Target, Tester

# Common <tester> attributes that matter for one check.
_COMMON = {a.name: a for a in TESTER_ATTRS
           if a.name in ("timeout", "SSL", "sni", "ssl_verify", "ssl_ca", "bindaddr")}

_EXAMPLES = """

\b
Examples:
  surealived probe lua --addr 127.0.0.1 --port 6379 script=lua_testers/redis.lua \\
      params="password=x role=master"
  surealived probe http --addr 192.0.2.10 --port 443 url=/health host=www.example.test SSL=1
  surealived probe tcp --addr ::1 --port 22 timeout=1
"""


class AttributeProblem(click.UsageError):
    pass


def _describe(attr: Attr) -> str:
    if attr.choices:
        return ", ".join(attr.choices)
    return attr.help or attr.kind


def _pairs(items: tuple[str, ...]) -> list[tuple[str, str]]:
    pairs = []
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise AttributeProblem(f"{item!r} is not KEY=VALUE (such as script=redis.lua)")
        pairs.append((key, value))
    return pairs


def build_options(cls: type[Tester], pairs: list[tuple[str, str]],
                  base_dir: str) -> tuple[FrozenOptions, dict[str, Any]]:
    """The tester's options and the common attributes, converted as the XML reader does."""
    own = {a.name: a for a in cls.attributes}
    known = {**own, **_COMMON}
    errors: list[str] = []
    given: dict[str, Any] = {}
    seen = {key for key, _ in pairs}
    for key, text in pairs:
        attr = known.get(key)
        if attr is None:
            errors.append(f"unknown attribute {key!r} for tester {cls.name} "
                          f"(valid: {', '.join(sorted(known))})")
            continue
        try:
            given[key] = convert(attr, text, base_dir)
        except BadValue as exc:
            valid = f" (valid: {exc.valid})" if exc.valid else ""
            errors.append(f"attribute {key!r}: {exc.message}{valid}")
    for name, attr in own.items():
        if name not in seen:
            if attr.mandatory:
                errors.append(f"attribute {name!r} is mandatory for tester {cls.name} "
                              f"(valid: {_describe(attr)})")
            else:
                given[name] = default_of(attr, base_dir)
    if not errors:
        options = {name: given[name] for name in own}
        for attribute, problem in cls.validate(options):
            errors.append(f"attribute {attribute!r}: {problem}")
    if errors:
        raise AttributeProblem("\n".join(errors))
    common = {name: given.get(name, default_of(attr, base_dir)) for name, attr in _COMMON.items()}
    return FrozenOptions({name: given[name] for name in own}), common


def _ms(us: int) -> str:
    return f"{us / 1000:.3f} ms"


_CONTROL = {code: f"\\x{code:02x}" for code in (*range(0x20), 0x7F) if code not in (9, 10)}
_CONTROL |= {0x0D: "\\r", 0x5C: "\\\\"}
_CONTROL |= {code: f"\\x{code:02x}" for code in range(0x80, 0xA0)}  # C1: ESC-like on terminals


def printable(data: bytes) -> str:
    """A real's bytes as safe terminal text: UTF-8 kept, invalid bytes as ``\\xNN``, control
    characters (escape sequences, BEL, NUL, CR, C1) escaped, so a hostile or binary answer
    cannot move the cursor, retitle the terminal or hide lines; a backslash shows as two."""
    marked = data.decode("utf-8", "surrogateescape")  # invalid bytes as lone surrogates
    out = []
    for char in marked:
        code = ord(char)
        if 0xDC80 <= code <= 0xDCFF:  # an undecodable byte
            out.append(f"\\x{code - 0xDC00:02x}")
        else:
            out.append(_CONTROL.get(code, char))
    return "".join(out)


def report(result: Result, timing: CheckTiming, transcript: Transcript, quiet: bool) -> str:
    lines = []
    if not quiet:
        lines += ["--- conversation ---", printable(transcript.render())]
    verdict = "up" if result.ok else "down"
    if result.weight is not None:
        verdict += f", weight {result.weight}{'%' if result.percent else ''}"
    if result.reason:
        verdict += f": {printable(result.reason.encode('utf-8', 'surrogateescape'))}"
    lines.append(f"verdict: {verdict}")
    lines.append(f"timings: connect {_ms(timing.conn_us)}, response {_ms(timing.resp_us)}, "
                 f"total {_ms(timing.total_us)}; sent {timing.bytes_sent} bytes, "
                 f"received {timing.bytes_received} bytes"
                 + (f"; problem {timing.problem}" if timing.problem else ""))
    return "\n".join(lines)


async def _run(tester: Tester, target: Target, options: Mapping[str, Any],
               transcript: Transcript) -> tuple[Result, CheckTiming]:
    return await run_check(tester, target, options, transcript=transcript)


@click.command(help="Run one TESTER once against one address and print the verdict, the "
               "timings and the whole conversation. Attributes are given as in the XML: "
               "KEY=VALUE." + _EXAMPLES,
               context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("tester_name", metavar="TESTER")
@click.argument("attributes", nargs=-1, metavar="[KEY=VALUE]...")
@click.option("--addr", required=True, help="Address of the real (IPv4 or IPv6).")
@click.option("--port", type=click.IntRange(0, 65535), default=0,
              help="Port tested (testport).")
@click.option("--attr", "more", multiple=True, metavar="KEY=VALUE",
              help="An attribute (repeatable); the same as a KEY=VALUE argument.")
@click.option("--vname", default="probe", show_default=True,
              help="Virtual name given to the tester.")
@click.option("--vaddr", default="0.0.0.0", show_default=True, help="Virtual address.")
@click.option("--vport", type=click.IntRange(0, 65535), default=0, help="Virtual port.")
@click.option("--vproto", type=click.Choice(["tcp", "udp", "fwmark"]), default="tcp",
              show_default=True, help="Virtual protocol.")
@click.option("--vfwmark", type=click.IntRange(0, 2**32 - 1), default=0, help="Firewall mark.")
@click.option("--rname", default="probe", show_default=True, help="Real name.")
@click.option("--rport", type=click.IntRange(0, 65535), default=None,
              help="IPVS port of the real [default: --port].")
@click.option("-c", "--config", "maincfg", metavar="MAINCFG", type=click.Path(dir_okay=False),
              help="surealived.cfg, for modules, modules_path and the Lua limits.")
@click.option("-q", "--quiet", is_flag=True, help="Print the verdict and timings only.")
@click.option("-v", "--verbose", count=True, help="Log at info (-v) or debug (-vv).")
def probe(tester_name: str, attributes: tuple[str, ...], addr: str, port: int,
          more: tuple[str, ...], vname: str, vaddr: str, vport: int, vproto: str, vfwmark: int,
          rname: str, rport: int | None, maincfg: str | None, quiet: bool,
          verbose: int) -> None:
    setup_logging("surealived", level=("warn", "info", "debug")[min(verbose, 2)])
    try:
        cfg = load_maincfg(maincfg)
    except Exception as exc:
        raise click.UsageError(f"{maincfg}: {exc}") from None
    registry = load_testers(cfg.modules, cfg.modules_path, Services.from_maincfg(cfg))
    cls = registry.get(tester_name)
    if cls is None:
        raise click.UsageError(f"no tester named {tester_name!r} "
                               f"(valid: {', '.join(registry.names)})")
    try:
        address = convert(Attr("addr", "addr"), addr, ".")
    except BadValue as exc:
        raise click.UsageError(f"--addr: {exc.message} (valid: {exc.valid})") from None
    options, common = build_options(cls, _pairs(attributes + more), os.getcwd())
    if cls.transport in ("tcp", "udp") and not port:
        raise click.UsageError(f"--port is needed by tester {cls.name}")
    target = Target(addr=address, port=port, rname=rname, rport=port if rport is None else rport,
                    vname=vname, vaddr=vaddr, vport=vport, vproto=vproto, vfwmark=vfwmark,
                    timeout=common["timeout"], ssl=common["SSL"], sni=common["sni"],
                    ssl_verify=common["ssl_verify"], ssl_ca=common["ssl_ca"],
                    bindaddr=common["bindaddr"])
    transcript = Transcript()
    result, timing = asyncio.run(_run(cls(options), target, options, transcript))
    click.echo(report(result, timing, transcript, quiet))
    sys.exit(0 if result.ok else 1)
