"""Mutations of XML test definitions and surealived.cfg text, driven by a ``random.Random`` so
hypothesis (``st.randoms()``) and plain batches (the CLI runs) share one implementation.

Pure: bytes or text in, bytes or text out; nothing is parsed by the daemon here."""

from __future__ import annotations

import copy
import random
from pathlib import Path

from lxml import etree

from surealived.config.main import KEYS

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"

# Every attribute name the schema knows, plus some it does not.
ATTRIBUTE_NAMES = (
    "name", "addr", "port", "proto", "sched", "rt", "pers", "ops", "af", "fwmark", "testport",
    "loopdelay", "timeout", "retries2ok", "retries2fail", "remove_on_fail", "debugcomm",
    "logmicro", "stats_samples", "SSL", "ssl", "sni", "ssl_verify", "ssl_ca", "bindaddr",
    "notify_up", "notify_down", "notify_virtual", "weight", "uthresh", "lthresh", "url", "host",
    "naive", "retcode", "method", "http11", "body_match", "max_body", "request", "qtype",
    "expect", "exec", "params", "script", "xmlns", "bogus", "_", "a-b.c",
)
ELEMENT_NAMES = ("surealived", "virtual", "tester", "real", "include", "x")
INTERESTING = (
    "", " ", "0", "-1", "-0", "1", "65535", "65536", "4294967296", "9" * 400, "1e400", "nan",
    "inf", "-inf", "0x50", "0.5", "1.0", "+1", "١٢٣", "٣", "true", "yes", "tcp", "udp", "fwmark",
    "none", "http", "lua", "exec", "dns", "wrr", "dr", "masq", "tun", "127.0.0.1", "::1",
    "[::1]", "2001:db8::1", "256.1.1.1", "1.2.3.4/24", "fe80::1%eth0", "/etc/passwd",
    "../../../etc/shadow", "/dev/zero", "/proc/self/mem", "a/b", "..", ".", "50%", "%",
    "a" * 31, "a" * 32, "\u202e\u0301", "😀" * 40, "$(id)", "`id`", ";reboot", "&amp;",
    "x" * 70_000,
)
_XML_CHARS = [chr(c) for c in (*range(0x20, 0xD800), 0x9, 0xA, 0xD) if c != 0x7F][::97]


def seeds() -> list[tuple[str, bytes]]:
    """Valid XML files shipped with the project: (path, bytes); relative paths in them resolve
    against their folder."""
    files = [*sorted(EXAMPLES.glob("testers/*.xml")), EXAMPLES / "onetwp.xml"]
    return [(str(f), f.read_bytes()) for f in files]


def value(rng: random.Random) -> str:
    """An attribute value: interesting, a number of any shape, huge, or random unicode."""
    kind = rng.randrange(6)
    if kind == 0:
        return rng.choice(INTERESTING)
    if kind == 1:
        return str(rng.randint(-2**70, 2**70))
    if kind == 2:
        return repr(rng.uniform(-1e6, 1e6))
    if kind == 3:
        return rng.choice("09a%:.") * rng.choice((1, 31, 32, 255, 256, 8193, 100_000))
    length = rng.randrange(40)
    return "".join(rng.choice(_XML_CHARS) for _ in range(length))


def mutate_tree(data: bytes, rng: random.Random, steps: int) -> bytes:
    """Structural mutations on the element tree: set/delete attributes, duplicate, delete,
    rename or nest elements, add text."""
    root = etree.fromstring(data, etree.XMLParser(remove_comments=True))
    for _ in range(steps):
        elements = list(root.iter())
        el = rng.choice(elements)
        op = rng.randrange(9)
        if op <= 2:
            el.set(rng.choice([*el.attrib, *ATTRIBUTE_NAMES]), value(rng))
        elif op == 3 and el.attrib:
            del el.attrib[rng.choice(list(el.attrib))]
        elif op == 4 and el is not root:
            el.addnext(copy.deepcopy(el))
        elif op == 5 and el is not root:
            parent = el.getparent()
            assert parent is not None
            parent.remove(el)
        elif op == 6:
            el.tag = rng.choice(ELEMENT_NAMES)
        elif op == 7:
            el.text = value(rng)
        else:
            el.append(copy.deepcopy(rng.choice(elements)))
    return etree.tostring(root, xml_declaration=rng.random() < 0.5, encoding="UTF-8")


def mutate_bytes(data: bytes, rng: random.Random, steps: int) -> bytes:
    """Byte-level damage: insert NUL-free binary, delete a span, flip a byte, duplicate a span
    (which duplicates attributes and tags), cut."""
    buf = bytearray(data)
    for _ in range(steps):
        at = rng.randrange(len(buf) + 1)
        op = rng.randrange(5)
        if op == 0:
            buf[at:at] = bytes(rng.randrange(1, 256) for _ in range(rng.randrange(1, 16)))
        elif op == 1:
            del buf[at:at + rng.randrange(1, 40)]
        elif op == 2 and at < len(buf):
            buf[at] = rng.randrange(1, 256)
        elif op == 3:
            end = min(len(buf), at + rng.randrange(1, 80))
            buf[end:end] = buf[at:end]
        else:
            del buf[at:]
    return bytes(buf)


def mutate_xml(data: bytes, rng: random.Random) -> bytes:
    kind = rng.randrange(4)
    if kind <= 1:
        return mutate_tree(data, rng, rng.randrange(1, 6))
    if kind == 2:
        return mutate_bytes(data, rng, rng.randrange(1, 4))
    return mutate_bytes(mutate_tree(data, rng, rng.randrange(1, 4)), rng, 1)


def generate_xml(rng: random.Random) -> bytes:
    """A document from nothing: elements and attributes drawn from the schema's names."""
    root = etree.Element("surealived")
    for _ in range(rng.randrange(4)):
        virtual = etree.SubElement(root, rng.choice(("virtual", "virtual", "real")))
        for name in rng.sample(ATTRIBUTE_NAMES[:10], rng.randrange(11)):
            virtual.set(name, value(rng))
        for child in rng.sample(("tester", "real", "real", "tester"), rng.randrange(5)):
            el = etree.SubElement(virtual, child)
            for name in rng.sample(ATTRIBUTE_NAMES, rng.randrange(8)):
                el.set(name, value(rng))
    return etree.tostring(root)


def cfg_value(rng: random.Random) -> str:
    return rng.choice((value(rng).replace("\n", " "), rng.choice(INTERESTING[:30]),
                       rng.choice(("true", "off", "debug", "127.0.0.1:0", "off", "all",
                                   "tcp,http", "::1", "[::1]:9", "log/x", "stderr"))))


def generate_cfg(rng: random.Random) -> str:
    """surealived.cfg text: real keys with random values, unknown keys, comments, blank and
    duplicate lines, missing values, stray blanks."""
    lines = []
    for _ in range(rng.randrange(12)):
        kind = rng.randrange(8)
        key = rng.choice(KEYS).name
        if kind <= 3:
            lines.append(f"{key} {cfg_value(rng)}")
        elif kind == 4:
            lines.append(key)
        elif kind == 5:
            lines.append(rng.choice(("# comment", "", "   ", "\t#x", f"{key}  {key}",
                                     f"{key.upper()} 1", "bogus_key 1")))
        elif kind == 6 and lines:
            lines.append(rng.choice(lines))
        else:
            lines.append("".join(rng.choice([*_XML_CHARS[:40], " ", "\t", "#", "="])
                                 for _ in range(rng.randrange(30))))
    return rng.choice(("\n", "\r\n")).join(lines)
