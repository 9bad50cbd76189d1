"""Reading the XML test definition into the immutable model, collecting every error at once.

Strategy: ``parse_config(path, registry)`` reads the file with lxml (no network, no DTD, no
entity expansion), walks ``<surealived>`` > ``<virtual>`` > ``<tester>`` then ``<real>``s, converts
each attribute through its ``Attr`` declaration and returns a ``Config``; or raises ``ConfigErrors``
holding one ``ConfigError`` per problem, each naming the file, line, element and attribute.

Unlike the original, unknown (misspelled) attributes and duplicated virtuals or reals are errors,
IPv6 addresses are accepted, and absent timing attributes take their documented defaults.
Line numbers are lxml's: the line where the start tag ends.
"""

from __future__ import annotations

import io
import os
from collections.abc import Iterator, Mapping
from types import MappingProxyType
from typing import Any

from lxml import etree

from ..engine import heap
from ..errors import ConfigError, ConfigErrors, closest_names, did_you_mean
from ..registry import Registry
from ..tester_api import Attr
from .attrs import BadValue, convert, default_of
from .model import (
    REAL_ATTRS,
    TESTER_ATTRS,
    VIRTUAL_ATTRS,
    Config,
    FrozenOptions,
    RealConfig,
    TesterConfig,
    VirtualConfig,
)

_VIRTUAL_BY_NAME = {a.name: a for a in VIRTUAL_ATTRS}
_TESTER_BY_NAME = {a.name: a for a in TESTER_ATTRS}
_REAL_BY_NAME = {a.name: a for a in REAL_ATTRS}
_EMPTY: Mapping[str, Any] = MappingProxyType({})


class _Reader:
    """One pass over one document; errors accumulate in ``self.errors``."""

    def __init__(self, path: str, registry: Registry) -> None:
        self.path = path
        self.base_dir = os.path.dirname(os.path.abspath(path))
        self.registry = registry
        self.errors: list[ConfigError] = []
        self.meant: set[str] = set()  # names the last attributes() call's typos resemble
        self.last_values: dict[str, Any] = {}  # the last <real>'s converted attributes
        # (name, line) and (key, line) of every <virtual>, erroneous ones too, so a duplicate
        # shows in the same run as its other faults
        self.virtual_names: list[tuple[str, int]] = []
        self.virtual_keys: list[tuple[Any, str, int]] = []

    def error(self, el: Any, message: str, attribute: str | None = None,
              valid: str | None = None) -> None:
        self.errors.append(ConfigError(self.path, el.sourceline or 0, message,
                                       element=_label(el), attribute=attribute, valid=valid))

    def attributes(self, el: Any, table: Mapping[str, Attr], *, defaults: bool = True,
                   extra: Mapping[str, Attr] = _EMPTY, unknown_ok: bool = False
                   ) -> dict[str, Any]:
        """Convert the attributes of ``el`` declared in ``table`` (or ``extra``).

        One error per fault: a value that does not convert is not also "missing", and a
        misspelled name is reported once, with the name it resembles ("did you mean"), not again
        as that attribute being missing. ``unknown_ok`` skips undeclared names (the tester is
        unknown, so its own attributes cannot be told from typos).
        """
        values: dict[str, Any] = {}
        attrib = el.attrib
        known = {*table, *extra}
        meant: set[str] = set()
        for name, text in attrib.items():
            attr = table.get(name) or extra.get(name)
            if attr is None:
                close = closest_names(name, known - set(attrib))
                if unknown_ok and not close:
                    continue
                if close:
                    meant.update(close)
                    hint = did_you_mean(name, close)
                    self.error(el, f"unknown attribute {name!r}, {hint}", name)
                else:
                    self.error(el, f"unknown attribute {name!r}", name,
                               ", ".join(sorted(known)))
                continue
            try:
                values[name] = convert(attr, text, self.base_dir)
            except BadValue as exc:
                self.error(el, exc.message, name, exc.valid)
        self.meant = meant
        if defaults:
            for name, attr in table.items():
                if name in values or name in attrib:
                    continue
                if attr.mandatory:
                    if name not in meant:
                        self.error(el, "is mandatory but missing", name, _describe(attr))
                else:
                    values[name] = default_of(attr, self.base_dir)
        return values

    def virtual(self, el: Any) -> VirtualConfig | None:
        before = len(self.errors)
        v = self.attributes(el, _VIRTUAL_BY_NAME)
        self.note_identity(el, v)
        proto = v.get("proto")
        if proto == "fwmark":
            if "fwmark" not in el.attrib or v.get("fwmark") == 0:
                self.error(el, "is mandatory with proto=\"fwmark\"", "fwmark", "1..4294967295")
            for name in ("addr", "port"):
                if name in el.attrib:
                    self.error(el, "is not used with proto=\"fwmark\"", name,
                               "leave it out; the fwmark selects the traffic")
        elif proto in ("tcp", "udp"):
            for name in ("addr", "port"):
                if name not in el.attrib and name not in self.meant:
                    self.error(el, f"is mandatory with proto=\"{proto}\"", name,
                               _describe(_VIRTUAL_BY_NAME[name]))
            if "fwmark" in el.attrib:
                self.error(el, "needs proto=\"fwmark\"", "fwmark")
            if "af" in el.attrib:
                self.error(el, "applies to fwmark virtuals only", "af")
        if v.get("ops") and proto != "udp":
            self.error(el, "one-packet scheduling applies to udp virtuals only", "ops")
        children = list(_elements(el))
        tester: TesterConfig | None = None
        cls_attrs: dict[str, Attr] = {}
        tester_known = True
        reals: list[RealConfig] = []
        real_names: list[tuple[str, int]] = []
        real_keys: list[tuple[Any, str, int]] = []
        if not children:
            self.error(el, "has no <tester>", valid="<tester> then <real> elements")
        elif children[0].tag != "tester":
            self.error(children[0], "the first element inside <virtual> must be <tester>",
                       valid="<tester> then <real> elements")
        seen_tester = False
        for child in children:
            if child.tag == "tester":
                if seen_tester:
                    self.error(child, "only one <tester> per <virtual>")
                    continue
                seen_tester = True
                tester, cls_attrs = self.tester(child)
                proto_text = child.attrib.get("proto")
                tester_known = bool(proto_text) and self.registry.get(proto_text) is not None
            elif child.tag == "real":
                if not seen_tester:
                    continue
                real = self.real(child, tester, cls_attrs, v.get("rt") or "dr", tester_known)
                if real:
                    reals.append(real)
                r = self.last_values
                line = child.sourceline or 0
                if "name" in r:
                    real_names.append((r["name"], line))
                if "addr" in r and "port" in r:
                    real_keys.append(((r["addr"], r["port"]), r.get("name", "?"), line))
            else:
                self.error(child, f"<{child.tag}> is not allowed inside <virtual>",
                           valid=_tag_hint(child.tag, ("tester", "real"))
                           or "<tester> then <real> elements")
        self.check_real_duplicates(real_names, real_keys)
        if len(self.errors) > before or tester is None:
            return None
        fwmark = v["fwmark"] or 0
        addr = v.get("addr") or ("::" if v["af"] == "inet6" else "0.0.0.0")
        return VirtualConfig(name=v["name"], proto=proto or "tcp", addr=addr,
                             port=v.get("port") or 0, fwmark=fwmark, sched=v["sched"],
                             rt=v["rt"], pers=v["pers"], ops=v["ops"], tester=tester,
                             reals=tuple(reals), line=el.sourceline or 0, af=v["af"])

    def tester(self, el: Any) -> tuple[TesterConfig | None, dict[str, Attr]]:
        proto_text = el.attrib.get("proto")
        cls = self.registry.get(proto_text) if proto_text else None
        if proto_text and cls is None:
            hint = did_you_mean(proto_text, self.registry.testers)
            self.error(el, f"no tester named {proto_text!r}" + (f", {hint}" if hint else ""),
                       "proto", None if hint else ", ".join(sorted(self.registry.testers)))
        own = {a.name: a for a in cls.attributes} if cls else {}
        before = len(self.errors)
        common = self.attributes(el, _TESTER_BY_NAME, extra=own, unknown_ok=cls is None)
        if cls is None:
            return None, {}
        options = {name: common.pop(name) for name in own if name in common}
        for name, attr in own.items():
            if name in options or name in el.attrib:
                continue  # given, converted or already reported as a bad value
            if name in self.meant:
                continue  # reported as the misspelling of it
            if attr.mandatory:
                self.error(el, f"is mandatory for proto=\"{cls.name}\"", name, _describe(attr))
            else:
                options[name] = default_of(attr, self.base_dir)
        if (cls.transport != "none" and common.get("testport") is None
                and "testport" not in el.attrib and "testport" not in self.meant):
            self.error(el, f"is mandatory for proto=\"{cls.name}\"", "testport", "0..65535")
        if len(self.errors) == before:
            for attribute, problem in cls.validate(options):
                self.error(el, problem, attribute)
        if len(self.errors) > before:
            return None, own
        return TesterConfig(proto=cls.name, testport=common.get("testport") or 0,
                            loopdelay=common["loopdelay"], interval=common["interval"],
                            timeout=common["timeout"],
                            retries2ok=common["retries2ok"], retries2fail=common["retries2fail"],
                            remove_on_fail=common["remove_on_fail"],
                            debugcomm=common["debugcomm"], logmicro=common["logmicro"],
                            stats_samples=common["stats_samples"], ssl=common["SSL"],
                            sni=common["sni"], ssl_verify=common["ssl_verify"],
                            ssl_ca=common["ssl_ca"], bindaddr=common["bindaddr"],
                            notify_up=common["notify_up"], notify_down=common["notify_down"],
                            notify_min_reals=common["notify_min_reals"],
                            notify_min_weight=common["notify_min_weight"],
                            real_notify_up=common["real_notify_up"],
                            real_notify_down=common["real_notify_down"],
                            options=FrozenOptions(options), init_state=common["init_state"],
                            line=el.sourceline or 0), own

    def real(self, el: Any, tester: TesterConfig | None, own: dict[str, Attr],
             virtual_rt: str, tester_known: bool = True) -> RealConfig | None:
        before = len(self.errors)
        overridable = {name: a for name, a in own.items() if a.per_real}
        r = self.attributes(el, _REAL_BY_NAME, extra=overridable, unknown_ok=not tester_known)
        self.last_values = r
        if r.get("lthresh") and r.get("lthresh", 0) > (r.get("uthresh") or 0):
            self.error(el, "must not exceed uthresh (the kernel refuses it)", "lthresh",
                       f"0..{r.get('uthresh') or 0}, or set uthresh")
        if len(self.errors) > before or tester is None:
            return None
        overrides = {name: r.pop(name) for name in overridable if name in r}
        options = tester.options
        if overrides:
            options = FrozenOptions({**tester.options, **overrides})
        testport = r["testport"]
        return RealConfig(name=r["name"], addr=r["addr"], port=r["port"], weight=r["weight"],
                          testport=tester.testport if testport is None else testport,
                          uthresh=r["uthresh"], lthresh=r["lthresh"],
                          bindaddr=r["bindaddr"] or tester.bindaddr, rt=r["rt"] or virtual_rt,
                          options=options, line=el.sourceline or 0)

    def note_identity(self, el: Any, v: Mapping[str, Any]) -> None:
        """Remember a <virtual>'s name and service (when they converted) for the duplicate check."""
        line = el.sourceline or 0
        if "name" in v:
            self.virtual_names.append((v["name"], line))
        proto = v.get("proto") or "tcp"
        needed = ("fwmark",) if proto == "fwmark" else ("addr", "port")
        if all(name in v for name in needed):
            addr = v.get("addr") or ("::" if v.get("af") == "inet6" else "0.0.0.0")
            key = (addr, v.get("port") or 0, proto, v.get("fwmark") or 0)
            self.virtual_keys.append((key, v.get("name", "?"), line))

    def check_duplicates(self) -> None:
        self.report_repeats("virtual", "duplicates the service of line {}", "service",
                            self.virtual_names, self.virtual_keys,
                            "one <virtual> per address, port and protocol (or fwmark)")

    def check_real_duplicates(self, names: list[tuple[str, int]],
                              keys: list[tuple[Any, str, int]]) -> None:
        self.report_repeats("real", "duplicates the real of line {} (same address and port)",
                            "address and port", names, keys,
                            "one <real> per address and port in a <virtual>")

    def report_repeats(self, tag: str, duplicate: str, what: str, names: list[tuple[str, int]],
                       keys: list[tuple[Any, str, int]], valid: str) -> None:
        """One error per repeated element: a copy of an earlier one (same name and same
        service) is one fault, not two."""
        same_key = {line: first for _, line, first in _repeats(keys)}
        same_name = {line: (name, first)
                     for name, line, first in _repeats((n, n, line) for n, line in names)}
        for name, line, first in _repeats(keys):
            if same_name.get(line, ("", 0))[1] == first:
                message = f"repeats the <{tag}> of line {first} (same name and {what})"
            else:
                message = duplicate.format(first)
            self.errors.append(ConfigError(self.path, line, message,
                                           element=f'<{tag} name="{name}">', valid=valid))
        for line, (name, first) in same_name.items():
            if same_key.get(line) != first:
                self.errors.append(ConfigError(
                    self.path, line, f"name {name!r} is already used on line {first}",
                    element=f'<{tag} name="{name}">', attribute="name"))


def _repeats(items: Any) -> list[tuple[str, int, int]]:
    """(label, line, first line) of each (key, label, line) whose key was seen before."""
    first: dict[Any, int] = {}
    found = []
    for key, label, line in items:
        seen = first.setdefault(key, line)
        if seen != line:
            found.append((label, line, seen))
    return found


def _tag_hint(tag: str, allowed: tuple[str, ...]) -> str:
    hint = did_you_mean(tag, allowed)
    return hint.replace("'", "") if hint else ", ".join(f"<{t}>" for t in allowed)


def _elements(el: Any) -> Any:
    return (child for child in el if isinstance(child.tag, str))


def _label(el: Any) -> str:
    name = el.attrib.get("name") if el.tag != "tester" else el.attrib.get("proto")
    key = "proto" if el.tag == "tester" else "name"
    return f'<{el.tag} {key}="{name}">' if name is not None else f"<{el.tag}>"


def _describe(attr: Attr) -> str:
    if attr.choices:
        return ", ".join(attr.choices)
    return {"port": "0..65535", "addr": "an IPv4 or IPv6 address", "name":
            "1..31 characters of A-Z a-z 0-9 _ . -", "bool": "true or false",
            "exec": "a path to an executable file", "path": "a path to a readable file",
            "int": f"an integer {int(attr.minimum)}..{attr.limit}"}.get(attr.kind, attr.kind)


_PARSER_OPTIONS = dict(resolve_entities=False, no_network=True, load_dtd=False,
                       remove_comments=True, huge_tree=True)


def parse_config_bytes(data: bytes, path: str, registry: Registry) -> Config:
    """Parse XML bytes as if read from ``path``; raise ``ConfigErrors`` with every problem.

    The document is read as a stream, each ``<virtual>`` read and then dropped: a whole tree
    of 20,000 reals would take libxml2 about 1.5 kB a real at its peak, the daemon's largest
    allocation."""
    reader = _Reader(path, registry)
    virtuals: list[VirtualConfig] = []
    try:
        for el in _virtual_elements(data, path, reader):
            virtual = reader.virtual(el)
            if virtual:
                virtuals.append(virtual)
    except etree.XMLSyntaxError as exc:
        # libxml2 quotes the document in some messages: keep the error on one output line
        message = exc.msg.replace("\r", "\\r").replace("\n", "\\n")
        raise ConfigErrors([ConfigError(path, exc.lineno or 1, f"malformed XML: {message}")]
                           ) from None
    heap.trim()  # the parse tree's pages, before the state takes memory of its own
    reader.check_duplicates()
    if reader.errors:
        # in file order, so each error sits with its element however it was found
        raise ConfigErrors(sorted(reader.errors, key=lambda e: e.line))
    return Config(path=path, virtuals=tuple(virtuals))


def _virtual_elements(data: bytes, path: str, reader: _Reader) -> Iterator[Any]:
    """The ``<virtual>`` elements of the document, each complete, and dropped once the next is
    asked for; wrong elements are reported to ``reader``. A document may be one ``<virtual>``
    or ``<surealived>`` holding them."""
    events = etree.iterparse(io.BytesIO(data), events=("start", "end"),
                             **_PARSER_OPTIONS)
    root: Any = None
    for event, el in events:
        if root is None:  # the start of the root element
            root = el
            if el.tag == "surealived":
                if el.attrib:
                    reader.error(el, "takes no attributes", next(iter(el.attrib)))
            elif el.tag != "virtual":
                reader.error(el, "root element must be <surealived> or <virtual>",
                             valid=_tag_hint(el.tag, ("surealived", "virtual")))
            continue
        if event != "end":
            continue
        if el is root:
            if el.tag == "virtual":
                yield el
            return
        if el.getparent() is not root or root.tag != "surealived":
            continue  # inside a virtual (read with it), or below a wrong root
        if el.tag != "virtual":
            reader.error(el, f"<{el.tag}> is not allowed inside <surealived>",
                         valid=_tag_hint(el.tag, ("virtual",)))
        else:
            yield el
        el.clear()  # what it held; then it and the elements before it leave the tree
        while el.getprevious() is not None:
            del root[0]


def parse_config(path: str, registry: Registry) -> Config:
    """Read and parse the XML file at ``path``."""
    try:
        with open(path, "rb") as handle:
            data = handle.read()
    except OSError as exc:
        raise ConfigErrors([ConfigError(path, 0, f"cannot read: {exc.strerror}")]) from None
    return parse_config_bytes(data, path, registry)
