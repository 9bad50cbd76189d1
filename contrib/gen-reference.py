#!/usr/bin/env python3
"""Regenerate the README's XML and surealived.cfg reference tables from the declarations.

    .venv/bin/python contrib/gen-reference.py          # rewrite README.md in place
    .venv/bin/python contrib/gen-reference.py --check  # exit 1 when README.md is out of date

The tables sit between <!-- BEGIN name --> and <!-- END name --> markers in README.md.
"""

from __future__ import annotations

import dataclasses
import os
import re
import sys

from surealived.config.main import KEYS, MainConfig
from surealived.config.model import REAL_ATTRS, TESTER_ATTRS, VIRTUAL_ATTRS
from surealived.registry import load_testers
from surealived.tester_api import Attr

README = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "README.md")


def _default(attr: Attr) -> str:
    if attr.mandatory:
        return "**mandatory**"
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


def _type(attr: Attr) -> str:
    if attr.choices:
        return " \\| ".join(attr.choices)
    if attr.kind in ("int", "uint") and attr.limit is not None:
        return f"integer {int(attr.minimum)}..{attr.limit}"
    if attr.kind == "str" and attr.limit:
        return f"text ≤ {attr.limit}"
    return {"port": "port 0..65535", "addr": "IPv4/IPv6 address", "bool": "boolean",
            "seconds": "seconds (decimals ok)", "exec": "executable path", "path": "file path",
            "threshold": "N or N%", "regex": "regular expression",
            "statuslist": "codes/ranges, e.g. 200,301-302", "name": "name ≤ 31 [A-Za-z0-9_.-]",
            "uint": "integer ≥ 0", "int": "integer"}.get(attr.kind, attr.kind)


def attr_table(attrs: tuple[Attr, ...], per_real_column: bool = False) -> str:
    head = "| attribute | type | default | meaning |\n|---|---|---|---|\n"
    if per_real_column:
        head = ("| attribute | type | default | per real | meaning |\n"
                "|---|---|---|---|---|\n")
    rows = []
    for a in attrs:
        cells = [f"`{a.name}`", _type(a), _default(a)]
        if per_real_column:
            cells.append("yes" if a.per_real else "no")
        cells.append(a.help)
        rows.append("| " + " | ".join(cells) + " |")
    return head + "\n".join(rows) + "\n"


def xml_reference() -> str:
    parts = ["#### `<virtual>`\n\n" + attr_table(VIRTUAL_ATTRS),
             "#### `<tester>` (every tester)\n\n" + attr_table(TESTER_ATTRS),
             "#### `<real>`\n\n" + attr_table(REAL_ATTRS)]
    registry = load_testers()
    for name in registry.names:
        cls = registry.testers[name]
        if cls.attributes:
            parts.append(f"#### `<tester proto=\"{name}\">` attributes (also on `<real>` when "
                         f"marked)\n\n" + attr_table(cls.attributes, per_real_column=True))
    return "\n".join(parts)


def cfg_reference() -> str:
    defaults = {f.name: f.default for f in dataclasses.fields(MainConfig)}
    rows = ["| key | type | default | meaning |", "|---|---|---|---|"]
    for key in KEYS:
        value = defaults[key.name]
        if key.kind == "mode":
            shown = f"{value:04o}"
        elif isinstance(value, bool):
            shown = "true" if value else "false"
        elif isinstance(value, tuple):
            shown = ",".join(str(v) for v in value)
        elif value in (None, ""):
            shown = "-"
        else:
            shown = str(value)
        rows.append(f"| `{key.name}` | {key.kind} | `{shown}` | {key.help} |")
    return "\n".join(rows) + "\n"


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
        if new != text:
            print("README.md reference tables are out of date: run contrib/gen-reference.py")
            return 1
        return 0
    with open(README, "w", encoding="utf-8") as f:
        f.write(new)
    return 0


if __name__ == "__main__":
    sys.exit(main())
