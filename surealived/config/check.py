"""``surealived -t``: validate surealived.cfg, the testers and the XML; report every error at once.

Needs no root, no IPVS and no network. Warnings (``exposure_warnings``) do not fail the check:
a control port or status server listening beyond loopback is allowed, but said.
"""

from __future__ import annotations

import grp
import ipaddress
from collections import Counter
from dataclasses import dataclass, field

from ..errors import ConfigErrors
from ..registry import Registry, load_testers
from ..services import Services
from .main import DEFAULT_PATH, MainConfig, load_maincfg
from .model import Config
from .xml import parse_config


@dataclass
class CheckReport:
    """What ``-t`` found, kept per file so each is summarised as itself."""

    cfg_errors: list[str] = field(default_factory=list)
    tester_errors: list[str] = field(default_factory=list)
    xml_errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    config: Config | None = None
    maincfg: MainConfig | None = None
    registry: Registry | None = None

    @property
    def errors(self) -> list[str]:
        return [*self.cfg_errors, *self.tester_errors, *self.xml_errors]

    @property
    def ok(self) -> bool:
        return not self.errors

    def summary(self) -> str:
        if self.config is None:
            return "no virtuals loaded"
        testers = Counter(v.tester.proto for v in self.config.virtuals)
        used = ", ".join(f"{name} x{count}" for name, count in sorted(testers.items()))
        return (f"{_count(len(self.config.virtuals), 'virtual')}, "
                f"{_count(self.config.real_count, 'real')}, testers: {used or 'none'}")

    def summary_lines(self, xml_path: str) -> list[str]:
        """One line per file checked: the cfg (when one was read), the testers, the XML last."""
        lines = []
        source = self.maincfg.source if self.maincfg else "(defaults)"
        if self.cfg_errors:
            lines.append(f"Main configuration file [{source}] ERROR "
                         f"({_count(len(self.cfg_errors), 'error')})")
        elif source != "(defaults)":
            lines.append(f"Main configuration file [{source}] OK")
        if self.tester_errors:
            lines.append(f"Testers ERROR ({_count(len(self.tester_errors), 'error')})")
        state = "ERROR" if self.xml_errors else "OK"
        suffix = f" ({_count(len(self.xml_errors), 'error')})" if self.xml_errors else ""
        lines.append(f"XML configuration file [{xml_path}] {state}: {self.summary()}{suffix}")
        return lines


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def _loopback(host: str) -> bool:
    return ipaddress.ip_address(host).is_loopback


def exposure_warnings(cfg: MainConfig) -> list[str]:
    """One line per listener reachable from beyond this host."""
    found = []
    if not _loopback(cfg.listen_addr):
        rights = "read-only" if cfg.control_tcp_readonly else "with full rights (rset, reload)"
        found.append(f"{cfg.source}: listen_addr {cfg.listen_addr}: the control port listens "
                     f"beyond loopback {rights}, without authentication")
    if cfg.status_listen is not None and not _loopback(cfg.status_listen[0]):
        found.append(f"{cfg.source}: status_listen {cfg.status_listen[0]}: the status server "
                     "shows every virtual and real beyond loopback")
    return found


def check_files(xml_path: str, maincfg_path: str | None) -> CheckReport:
    """Validate everything ``surealived`` would load at start."""
    report = CheckReport()
    try:
        report.maincfg = load_maincfg(maincfg_path)
        report.warnings = exposure_warnings(report.maincfg)
        group = report.maincfg.control_socket_group
        if group:
            try:
                grp.getgrnam(group)
            except KeyError:
                report.cfg_errors.append(
                    f"{report.maincfg.source}: control_socket_group {group!r}: no such group "
                    "(valid: a group name of this host)")
    except ConfigErrors as exc:
        report.cfg_errors.extend(str(e) for e in exc.errors)
        report.maincfg = MainConfig(source=maincfg_path or DEFAULT_PATH)
    registry = load_testers(report.maincfg.modules, report.maincfg.modules_path,
                            Services.from_maincfg(report.maincfg))
    report.registry = registry
    report.tester_errors.extend(str(e) for e in registry.errors)
    try:
        report.config = parse_config(xml_path, registry)
    except ConfigErrors as exc:
        report.xml_errors.extend(str(e) for e in exc.errors)
    return report
