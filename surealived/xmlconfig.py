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

import os
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

from lxml import etree

from .attrs import BadValue, convert, default_of
from .errors import ConfigError, ConfigErrors
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
from .registry import Registry
from .tester_api import Attr

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

    def error(self, el: Any, message: str, attribute: str | None = None,
              valid: str | None = None) -> None:
        self.errors.append(ConfigError(self.path, el.sourceline or 0, message,
                                       element=_label(el), attribute=attribute, valid=valid))

    def attributes(self, el: Any, table: Mapping[str, Attr], *, defaults: bool = True,
                   extra: Mapping[str, Attr] = _EMPTY) -> dict[str, Any]:
        """Convert the attributes of ``el`` declared in ``table`` (or ``extra``)."""
        values: dict[str, Any] = {}
        attrib = el.attrib
        for name, text in attrib.items():
            attr = table.get(name) or extra.get(name)
            if attr is None:
                valid = ", ".join(sorted({*table, *extra}))
                self.error(el, f"unknown attribute {name!r}", name, valid)
                continue
            try:
                values[name] = convert(attr, text, self.base_dir)
            except BadValue as exc:
                self.error(el, exc.message, name, exc.valid)
        if defaults:
            for name, attr in table.items():
                if name in values or name in attrib:
                    continue
                if attr.mandatory:
                    self.error(el, "is mandatory but missing", name, _describe(attr))
                else:
                    values[name] = default_of(attr, self.base_dir)
        return values

    def document(self, root: Any) -> tuple[VirtualConfig, ...]:
        if root.tag == "virtual":
            virtual = self.virtual(root)
            return (virtual,) if virtual else ()
        if root.tag != "surealived":
            self.error(root, "root element must be <surealived> or <virtual>")
            return ()
        if root.attrib:
            self.error(root, "takes no attributes", next(iter(root.attrib)))
        virtuals = []
        for child in _elements(root):
            if child.tag != "virtual":
                self.error(child, f"<{child.tag}> is not allowed inside <surealived>",
                           valid="<virtual> elements")
                continue
            virtual = self.virtual(child)
            if virtual:
                virtuals.append(virtual)
        self.check_duplicates(virtuals)
        return tuple(virtuals)

    def virtual(self, el: Any) -> VirtualConfig | None:
        before = len(self.errors)
        v = self.attributes(el, _VIRTUAL_BY_NAME)
        proto = v.get("proto")
        if proto == "fwmark":
            if not v.get("fwmark"):
                self.error(el, "is mandatory with proto=\"fwmark\"", "fwmark", "1..4294967295")
            for name in ("addr", "port"):
                if name in el.attrib:
                    self.error(el, "is not used with proto=\"fwmark\"", name,
                               "leave it out; the fwmark selects the traffic")
        elif proto in ("tcp", "udp"):
            for name in ("addr", "port"):
                if name not in el.attrib:
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
        reals: list[RealConfig] = []
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
            elif child.tag == "real":
                if not seen_tester:
                    continue
                real = self.real(child, tester, cls_attrs, v.get("rt") or "dr")
                if real:
                    reals.append(real)
            else:
                self.error(child, f"<{child.tag}> is not allowed inside <virtual>",
                           valid="<tester> then <real> elements")
        self.check_real_duplicates(el, reals)
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
            self.error(el, f"no tester named {proto_text!r}", "proto",
                       ", ".join(sorted(self.registry.testers)))
        own = {a.name: a for a in cls.attributes} if cls else {}
        before = len(self.errors)
        common = self.attributes(el, _TESTER_BY_NAME, extra=own)
        if cls is None:
            return None, {}
        options = {name: common.pop(name) for name in own if name in common}
        for name, attr in own.items():
            if name in options:
                continue
            if attr.mandatory:
                self.error(el, f"is mandatory for proto=\"{cls.name}\"", name, _describe(attr))
            else:
                options[name] = default_of(attr, self.base_dir)
        if cls.transport != "none" and common.get("testport") is None:
            self.error(el, f"is mandatory for proto=\"{cls.name}\"", "testport", "0..65535")
        if len(self.errors) == before:
            for attribute, problem in cls.validate(options):
                self.error(el, problem, attribute)
        if len(self.errors) > before:
            return None, own
        return TesterConfig(proto=cls.name, testport=common.get("testport") or 0,
                            loopdelay=common["loopdelay"], timeout=common["timeout"],
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
             virtual_rt: str) -> RealConfig | None:
        before = len(self.errors)
        overridable = {name: a for name, a in own.items() if a.per_real}
        r = self.attributes(el, _REAL_BY_NAME, extra=overridable)
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

    def check_duplicates(self, virtuals: list[VirtualConfig]) -> None:
        by_key: dict[Any, VirtualConfig] = {}
        by_name: dict[str, VirtualConfig] = {}
        for v in virtuals:
            first = by_key.setdefault(v.key, v)
            if first is not v:
                self.errors.append(ConfigError(
                    self.path, v.line, f"duplicates the service of line {first.line}",
                    element=f'<virtual name="{v.name}">',
                    valid="one <virtual> per address, port and protocol (or fwmark)"))
            first = by_name.setdefault(v.name, v)
            if first is not v:
                self.errors.append(ConfigError(
                    self.path, v.line, f"name {v.name!r} is already used on line {first.line}",
                    element=f'<virtual name="{v.name}">', attribute="name"))

    def check_real_duplicates(self, el: Any, reals: list[RealConfig]) -> None:
        by_key: dict[Any, RealConfig] = {}
        by_name: dict[str, RealConfig] = {}
        for r in reals:
            first = by_key.setdefault(r.key, r)
            if first is not r:
                self.errors.append(ConfigError(
                    self.path, r.line, f"duplicates the real of line {first.line} "
                    f"(same address and port)", element=f'<real name="{r.name}">'))
            first = by_name.setdefault(r.name, r)
            if first is not r:
                self.errors.append(ConfigError(
                    self.path, r.line, f"name {r.name!r} is already used on line {first.line}",
                    element=f'<real name="{r.name}">', attribute="name"))


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
    """Parse XML bytes as if read from ``path``; raise ``ConfigErrors`` with every problem."""
    parser = etree.XMLParser(**_PARSER_OPTIONS)  # type: ignore[arg-type]
    try:
        root = etree.fromstring(data, parser=parser, base_url=path)
    except etree.XMLSyntaxError as exc:
        # libxml2 quotes the document in some messages: keep the error on one output line
        message = exc.msg.replace("\r", "\\r").replace("\n", "\\n")
        raise ConfigErrors([ConfigError(path, exc.lineno or 1, f"malformed XML: {message}")]
                           ) from None
    reader = _Reader(path, registry)
    virtuals = reader.document(root)
    if reader.errors:
        raise ConfigErrors(reader.errors)
    return Config(path=path, virtuals=virtuals)


def parse_config(path: str, registry: Registry) -> Config:
    """Read and parse the XML file at ``path``."""
    try:
        with open(path, "rb") as handle:
            data = handle.read()
    except OSError as exc:
        raise ConfigErrors([ConfigError(path, 0, f"cannot read: {exc.strerror}")]) from None
    return parse_config_bytes(data, path, registry)
