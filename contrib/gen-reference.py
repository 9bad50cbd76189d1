#!/usr/bin/env python3
"""Regenerate the README's reference tables and the man pages from the declarations.

    .venv/bin/python contrib/gen-reference.py          # rewrite README.md and contrib/man/*
    .venv/bin/python contrib/gen-reference.py --check  # exit 1 when either is out of date

The tables sit between <!-- BEGIN name --> and <!-- END name --> markers in README.md. The man
pages (surealived(8), ipvssync(8), surealived.cfg(5), surealived.xml(5)) are written to
contrib/man/ and committed, so the Debian package installs them without running this. Flags come
from the click commands, keys from ``KEYS`` and ``MainConfig``, XML attributes from the model and
the testers' declarations, control commands from ``COMMANDS``; only the prose around them lives
here.
"""

from __future__ import annotations

import dataclasses
import os
import re
import sys
from collections.abc import Callable, Iterable

import click

from surealived import __version__
from surealived.cli import main as surealived_cli
from surealived.config.main import DEFAULT_PATH, KEYS, LOG_LEVELS, Key, MainConfig
from surealived.config.model import REAL_ATTRS, TESTER_ATTRS, VIRTUAL_ATTRS
from surealived.control.protocol import COMMANDS
from surealived.instance import lock_paths
from surealived.ipvssync.cli import main as ipvssync_cli
from surealived.ipvssync.files import SyncPaths
from surealived.ipvssync.instance import instance_lock_path
from surealived.probe_cli import probe as probe_cli
from surealived.registry import load_testers
from surealived.tester_api import Attr

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
README = os.path.join(ROOT, "README.md")
MAN_DIR = os.path.join(ROOT, "contrib", "man")
XML_PATH = "/etc/surealived/surealived.xml"  # the systemd unit's SUREALIVED_XML


# --- values as text, shared by the README tables and the man pages -------------------------

def _default(attr: Attr) -> str:
    """An attribute's default as text; "mandatory" when it has none; "-" when absent is fine."""
    if attr.mandatory:
        return "mandatory"
    value = attr.default
    if value is None or value == "":
        return "-"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, tuple) and len(value) == 2 and isinstance(value[1], bool):
        return f"{value[0]}{'%' if value[1] else ''}"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _type(attr: Attr, either: str = "|") -> str:
    if attr.choices:
        return either.join(attr.choices)
    if attr.kind in ("int", "uint") and attr.limit is not None:
        return f"integer {int(attr.minimum)}..{attr.limit}"
    if attr.kind == "str" and attr.limit:
        return f"text ≤ {attr.limit}"
    return {"port": "port 0..65535", "addr": "IPv4/IPv6 address", "bool": "boolean",
            "seconds": "seconds (decimals ok)", "exec": "executable path", "path": "file path",
            "threshold": "N or N%", "regex": "regular expression",
            "statuslist": "codes/ranges, e.g. 200,301-302", "name": "name ≤ 31 [A-Za-z0-9_.-]",
            "uint": "integer ≥ 0", "int": "integer"}.get(attr.kind, attr.kind)


_CFG_DEFAULTS = {f.name: f.default for f in dataclasses.fields(MainConfig)}


def _cfg_default(key: Key) -> str:
    value = _CFG_DEFAULTS[key.name]
    if key.kind == "mode":
        return f"{value:04o}"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, tuple):
        return ",".join(str(v) for v in value) or "-"
    if value in (None, ""):
        return "-"
    return str(value)


def _tester_sections() -> list[tuple[str, tuple[Attr, ...]]]:
    """(tester name, its own attributes) for every installed tester that has some."""
    registry = load_testers()
    return [(name, registry.testers[name].attributes) for name in registry.names
            if registry.testers[name].attributes]


# --- README tables ------------------------------------------------------------------------

def attr_table(attrs: tuple[Attr, ...], per_real_column: bool = False) -> str:
    head = "| attribute | type | default | meaning |\n|---|---|---|---|\n"
    if per_real_column:
        head = ("| attribute | type | default | per real | meaning |\n"
                "|---|---|---|---|---|\n")
    rows = []
    for a in attrs:
        default = "**mandatory**" if a.mandatory else _default(a)
        cells = [f"`{a.name}`", _type(a, " \\| "), default]
        if per_real_column:
            cells.append("yes" if a.per_real else "no")
        cells.append(a.help)
        rows.append("| " + " | ".join(cells) + " |")
    return head + "\n".join(rows) + "\n"


def xml_reference() -> str:
    parts = ["#### `<virtual>`\n\n" + attr_table(VIRTUAL_ATTRS),
             "#### `<tester>` (every tester)\n\n" + attr_table(TESTER_ATTRS),
             "#### `<real>`\n\n" + attr_table(REAL_ATTRS)]
    for name, attrs in _tester_sections():
        parts.append(f"#### `<tester proto=\"{name}\">` attributes (also on `<real>` when "
                     f"marked)\n\n" + attr_table(attrs, per_real_column=True))
    return "\n".join(parts)


def cfg_reference() -> str:
    rows = ["| key | type | default | meaning |", "|---|---|---|---|"]
    rows += [f"| `{key.name}` | {key.kind} | `{_cfg_default(key)}` | {key.help} |"
             for key in KEYS]
    return "\n".join(rows) + "\n"


# --- man pages (roff, man macros) -------------------------------------------------------

def esc(text: str) -> str:
    """Text for a roff text line: backslashes and minus signs escaped (so options and paths
    copy as typed), non-ASCII as \\[uXXXX] (groff reads its input as Latin-1), and a leading
    dot or quote neutralised so it is not taken for a request."""
    out = []
    for ch in text.replace("\\", "\\e").replace("-", "\\-"):
        out.append(ch if ord(ch) < 128 else f"\\[u{ord(ch):04X}]")
    line = "".join(out)
    return "\\&" + line if line[:1] in (".", "'") else line


def bold(text: str) -> str:
    return f"\\fB{esc(text)}\\fR"


def italic(text: str) -> str:
    return f"\\fI{esc(text)}\\fR"


def item(tag: str, *body: str) -> list[str]:
    """One tagged paragraph: ``tag`` is roff already, ``body`` is plain text."""
    return [".TP", tag, *(esc(line) for line in body if line)]


def _paragraphs(help_text: str) -> list[str]:
    """A click help text's paragraphs, each on one line (the ``\\b`` markers dropped)."""
    paras = []
    for block in help_text.split("\n\n"):
        lines = [line.strip() for line in block.splitlines() if line.strip() != "\b"]
        if any(lines):
            paras.append(" ".join(line for line in lines if line))
    return paras


def _option_items(command: click.Command) -> list[str]:
    """Every option of ``command`` (help and version included) as a tagged paragraph."""
    ctx = click.Context(command, **command.context_settings)
    lines: list[str] = []
    for param in command.get_params(ctx):
        if not isinstance(param, click.Option):
            continue
        names = ", ".join(bold(opt) for opt in param.opts + param.secondary_opts)
        if isinstance(param.type, click.Choice):
            names += " " + italic("|".join(str(c) for c in param.type.choices))
        elif not param.is_flag and not param.count:
            names += " " + italic(param.metavar or (param.name or "value").upper())
        notes = []
        if param.count:
            notes.append("Repeatable.")
        if param.show_default and param.default not in (None, False):
            notes.append(f"Default: {param.default}.")
        lines += item(names, " ".join([param.help or "", *notes]))
    return lines


def _files(entries: Iterable[tuple[str, str]]) -> list[str]:
    lines: list[str] = []
    for path, what in entries:
        lines += item(italic(path), what)
    return lines


def _key_file(name: str) -> tuple[str, str]:
    """A path key's default path and what it is, named by its key."""
    key = next(k for k in KEYS if k.name == name)
    return str(_CFG_DEFAULTS[name]), f"{key.help} ({name})."


def page(name: str, section: int, summary: str, body: list[tuple[str, list[str]]]) -> str:
    title = f".TH {name.upper()} {section} \"\" \"surealived {__version__}\" " + (
        '"System Manager\'s Manual"' if section == 8 else '"File Formats Manual"')
    lines = [".\\\" Generated by contrib/gen-reference.py from the declarations; do not edit.",
             title, ".SH NAME", f"{esc(name)} \\- {esc(summary)}"]
    for heading, content in body:
        lines += [f".SH {heading}", *content]
    return "\n".join(lines) + "\n"


def _text(*paragraphs: str) -> list[str]:
    lines: list[str] = []
    for para in paragraphs:
        lines += [".PP", esc(para)]
    return lines[1:]  # a section starts a paragraph by itself


def _see_also(*pages: str) -> list[str]:
    return [",\n".join(f"\\fB{esc(p.split('(')[0])}\\fR({p.split('(')[1]}" for p in pages)]


def surealived_8() -> str:
    probe_help = _paragraphs(probe_cli.help or "")
    probe = [".SS \"surealived probe\"", esc(probe_help[0]),
             esc("Exit status: 0 when the real is up, 1 when it is down, 2 for a usage or "
                 "attribute error."), *_option_items(probe_cli)]
    control = [esc(f"The control port (listen_addr:listen_port, default "
                   f"{_CFG_DEFAULTS['listen_addr']}:{_CFG_DEFAULTS['listen_port']}; and "
                   "control_socket if set) takes one command per line; every reply ends with "
                   "the line _SD_CMD_END_. With format=json the reply is one JSON line."), ".PP"]
    control += [line for c in COMMANDS.values() for line in item(bold(c.usage), c.summary + ".")]
    return page("surealived", 8, "IPVS real server health checker", [
        ("SYNOPSIS", [f"{bold('surealived')} [{italic('OPTIONS')}] {italic('CONFIG.xml')}",
                      ".br",
                      f"{bold('surealived probe')} {italic('TESTER')} {bold('--addr')} "
                      f"{italic('A')} [{italic('OPTIONS')}] [{italic('KEY=VALUE')}]..."]),
        ("DESCRIPTION", _text(
            _paragraphs(surealived_cli.help or "")[0],
            "Checks run as configured in CONFIG.xml (see surealived.xml(5)); the daemon's own "
            "settings are in the main configuration (see surealived.cfg(5)). ipvssync(8) applies "
            "the written table to the kernel.")),
        ("OPTIONS", _option_items(surealived_cli) + probe),
        ("CONTROL COMMANDS", control),
        ("SIGNALS", [*item(bold("SIGHUP"), "Reload CONFIG.xml in place: a configuration with "
                           "errors is refused and the running one stays; reals whose definition "
                           "did not change keep their state."),
                     *item(bold("SIGUSR1"), "Reopen the log file."),
                     *item(f"{bold('SIGTERM')}, {bold('SIGINT')}",
                           "Finish writing, save the dumps and exit 0.")]),
        ("EXIT STATUS", [*item(bold("0"), "A clean stop, or a valid -t check."),
                         *item(bold("1"), "An invalid configuration, or the daemon cannot start "
                                          "(another surealived holds the instance lock, say)."),
                         *item(bold("3"), "The resident memory exceeded memlimit.")]),
        ("FILES", [*_files([
            (DEFAULT_PATH, "The main configuration (-c)."),
            (XML_PATH, "CONFIG.xml as the systemd unit names it (SUREALIVED_XML)."),
            *((path, "Instance lock, holding the running daemon's pid.")
              for path in lock_paths(MainConfig())),
            *(_key_file(k) for k in ("full_sync_file", "diff_sync_dir", "lock_sync_file",
                                     "full_reload_file", "offline_dump", "override_dump",
                                     "stats_dump", "notify_dump")),
        ]), ".PP", esc("The paths shown are the defaults of the surealived.cfg(5) keys named.")]),
        ("SEE ALSO", _see_also("ipvssync(8)", "surealived.cfg(5)", "surealived.xml(5)",
                               "ipvsadm(8)")),
    ])


def ipvssync_8() -> str:
    paths = SyncPaths.from_maincfg(MainConfig())
    return page("ipvssync", 8, "keep the kernel's IPVS table equal to surealived's", [
        ("SYNOPSIS", [f"{bold('ipvssync')} [{italic('OPTIONS')}]"]),
        ("DESCRIPTION", _text(
            _paragraphs(ipvssync_cli.help or "")[0],
            "Each operation is logged at info with its reason. It needs CAP_NET_ADMIN (root, "
            "or the capability alone), and IPVS in the kernel (modprobe ip_vs).")),
        ("OPTIONS", _option_items(ipvssync_cli)),
        ("SIGNALS", [*item(bold("SIGHUP"), "Re-read the snapshot, as the reload flag does."),
                     *item(bold("SIGUSR1"), "Reopen the log file."),
                     *item(f"{bold('SIGTERM')}, {bold('SIGINT')}", "Stop.")]),
        ("EXIT STATUS", [
            *item(bold("0"), "A clean stop, a valid -t check, a --plan, or a --once that left the "
                             "kernel equal to the wanted table."),
            *item(bold("1"), "Otherwise: no IPVS in the kernel, a refused snapshot, failed "
                             "operations with --once, a bad configuration, or another ipvssync "
                             "holding the instance lock.")]),
        ("FILES", _files([
            (DEFAULT_PATH, "The main configuration (-c)."),
            *(_key_file(k) for k in ("full_sync_file", "diff_sync_dir", "lock_sync_file",
                                     "full_reload_file")),
            (instance_lock_path(paths), "Instance lock, in the folder of lock_sync_file, "
                                        "holding the running ipvssync's pid."),
            _key_file("ipvssync_log"),
        ])),
        ("SEE ALSO", _see_also("surealived(8)", "surealived.cfg(5)", "ipvsadm(8)")),
    ])


_KEY_TYPES = {"bool": "boolean", "path": "path", "str": "text", "addr": "IPv4/IPv6 address",
              "level": "|".join(LOG_LEVELS), "listen": "ADDR:PORT|off",
              "modules": "all|NAME,NAME...", "mode": "octal file mode",
              "luapath": "DIR|TEMPLATE;..."}


def _key_type(key: Key) -> str:
    if key.kind != "int":
        return _KEY_TYPES.get(key.kind, key.kind)
    if key.maximum != Key.maximum:
        return f"integer {key.minimum}..{key.maximum}"
    return f"integer ≥ {key.minimum}"


def surealived_cfg_5() -> str:
    new_from = next(i for i, k in enumerate(KEYS) if k.name == "ipvssync_logging") + 1
    keys: list[str] = []
    for key in KEYS:
        default = _cfg_default(key)
        keys += item(f"{bold(key.name)} {italic(_key_type(key))}",
                     f"{key.help}. Default: {'none' if default == '-' else default}.")
    return page("surealived.cfg", 5, "main configuration of surealived and ipvssync", [
        ("SYNOPSIS", [esc(DEFAULT_PATH)]),
        ("DESCRIPTION", _text(
            "One key and its value per line, separated by blanks; a line starting with # is a "
            "comment. Unknown keys, keys given twice and bad values are errors naming the file "
            "and line; surealived -t checks the file. Booleans are true, false, yes, no, on, off, "
            "1 or 0. A relative path is relative to the file's folder. A missing file at the "
            "default path means the defaults below.",
            f"Keys from {KEYS[new_from].name} on are new in this implementation; the earlier "
            "ones are the original SureAliveD's.")),
        ("KEYS", keys),
        ("SEE ALSO", _see_also("surealived(8)", "ipvssync(8)", "surealived.xml(5)")),
    ])


def _attr_items(attrs: Iterable[Attr], per_real: bool = False) -> list[str]:
    lines: list[str] = []
    for a in attrs:
        default = _default(a)
        notes = [_type(a), "mandatory" if a.mandatory else
                 "optional" if default == "-" else f"default {default}"]
        if per_real and a.per_real:
            notes.append("also on <real>")
        lines += item(f"{bold(a.name)} ({esc('; '.join(notes))})", f"{a.help}.")
    return lines


def surealived_xml_5() -> str:
    example = ['<surealived>',
               '  <virtual name="www" addr="192.0.2.80" port="80" proto="tcp" sched="wrr" '
               'rt="dr">',
               '    <tester proto="http" testport="8080" url="/health" '
               'host="www.example.test"/>',
               '    <real name="web1" addr="198.51.100.11" port="80" weight="100"/>',
               '  </virtual>',
               '</surealived>']
    body: list[tuple[str, list[str]]] = [
        ("SYNOPSIS", [esc(XML_PATH)]),
        ("DESCRIPTION", [*_text(
            "<surealived> holds <virtual> elements (a single <virtual> as the root is accepted "
            "too). Each <virtual> holds exactly one <tester> first, then any number of <real>s. "
            "Every attribute is checked: an unknown attribute, a duplicated virtual or real, or "
            "a duplicated name is an error naming the file, line and attribute; surealived -t "
            "checks the file. A tester's own attributes marked \"also on <real>\" may be "
            "overridden on a <real>."), ".PP", ".nf", ".RS 4", *(esc(x) for x in example),
            ".RE", ".fi"]),
        ("VIRTUAL ATTRIBUTES", _attr_items(VIRTUAL_ATTRS)),
        ("TESTER ATTRIBUTES", _attr_items(TESTER_ATTRS)),
        ("REAL ATTRIBUTES", _attr_items(REAL_ATTRS)),
    ]
    testers: list[str] = []
    for name, attrs in _tester_sections():
        testers += [f".SS \"proto={name}\"", *_attr_items(attrs, per_real=True)]
    body.append(("TESTERS", testers))
    body.append(("SEE ALSO", _see_also("surealived(8)", "surealived.cfg(5)")))
    return page("surealived.xml", 5, "checks of surealived: virtuals, testers and reals", body)


PAGES: dict[str, Callable[[], str]] = {
    "surealived.8": surealived_8, "ipvssync.8": ipvssync_8,
    "surealived.cfg.5": surealived_cfg_5, "surealived.xml.5": surealived_xml_5}


def stale_pages(man_dir: str) -> list[str]:
    """The pages in ``man_dir`` that are missing or differ from what the declarations give."""
    stale = []
    for name, make in PAGES.items():
        try:
            with open(os.path.join(man_dir, name), encoding="utf-8") as f:
                current = f.read()
        except FileNotFoundError:
            current = None
        if current != make():
            stale.append(name)
    return stale


SECTIONS = {"xml-reference": xml_reference, "cfg-reference": cfg_reference}


def render(text: str) -> str:
    for name, make in SECTIONS.items():
        pattern = re.compile(rf"(<!-- BEGIN {name} -->\n).*?(<!-- END {name} -->)", re.S)
        text = pattern.sub(lambda m, make=make: m.group(1) + make() + m.group(2), text)
    return text


def main() -> int:
    with open(README, encoding="utf-8") as f:
        text = f.read()
    new = render(text)
    if "--check" in sys.argv:
        stale = stale_pages(MAN_DIR)
        if new != text:
            print("README.md reference tables are out of date: run contrib/gen-reference.py")
        if stale:
            print(f"contrib/man/ is out of date ({', '.join(stale)}): run "
                  "contrib/gen-reference.py")
        return 1 if new != text or stale else 0
    with open(README, "w", encoding="utf-8") as f:
        f.write(new)
    os.makedirs(MAN_DIR, exist_ok=True)
    for name, make in PAGES.items():
        with open(os.path.join(MAN_DIR, name), "w", encoding="utf-8") as f:
            f.write(make())
    return 0


if __name__ == "__main__":
    sys.exit(main())
