"""``surealived.cfg``: the daemons' main settings, one frozen ``MainConfig``.

Strategy: ``parse_maincfg(text, path)`` is pure: lines in, a ``MainConfig`` (or every error found)
out. ``load_maincfg(path)`` adds the file read. Each key is declared once in ``KEYS`` with its type,
default and meaning; the README table and ``surealived -t`` both come from that declaration.

Syntax is the original's: one ``key value`` per line, ``#`` starts a comment line. Unlike the
original, an unknown key, a duplicate key, a missing value or a bad value is an error naming the
file and line, and booleans are ``true/false/yes/no/on/off/1/0`` (the original took anything
starting with ``t`` as true and everything else, ``1`` included, as false). Relative paths are
relative to the folder of the file, so a whole setup can live in one project folder.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ..errors import ConfigError, ConfigErrors, did_you_mean

DEFAULT_PATH = "/etc/surealived/surealived.cfg"
LOG_LEVELS = ("error", "warn", "info", "debug", "dbdet")
_TRUE = {"true", "yes", "on", "1", "t"}
_FALSE = {"false", "no", "off", "0", "f"}


@dataclass(frozen=True)
class Key:
    """One surealived.cfg key: how its text becomes a value (its default is on ``MainConfig``)."""

    name: str
    kind: str  # bool | int | path | level | modules | addr | listen | str | mode | luapath
    help: str
    minimum: int = 0
    maximum: int = 2**31 - 1


KEYS: tuple[Key, ...] = (
    Key("maxfd", "int", "raise the open-file limit (soft, and hard if lower) to this", 64),
    Key("log", "path", "log file, or 'stderr'"),
    Key("use_log", "bool", "write log lines to 'log' (the original defaulted to false)"),
    Key("logging", "level", "log threshold"),
    Key("use_syslog", "bool", "also log to syslog (facility user)"),
    Key("use_tm_in_syslog", "bool", "put the timestamp into syslog lines too"),
    Key("modules_path", "path", "folder of extra Python testers"),
    Key("modules", "modules", "'all' or a comma list of testers to load"),
    Key("listen_addr", "addr", "control port address (IPv4 or IPv6)"),
    Key("listen_port", "int", "control port", 0, 65535),
    Key("memlimit", "int", "exit cleanly when RSS exceeds this many kB (0: no limit)"),
    Key("loop_interval_ms", "int", "granularity of the scheduler in ms", 1, 60_000),
    Key("epoll_interval_ms", "int", "accepted for compatibility; the event loop needs no poll"),
    Key("startup_delay_ms", "int", "window over which test starts are spread, ms"),
    Key("debug_comm", "int", "1 enables conversation dumps for testers with debugcomm", 0, 1),
    Key("debug_comm_path", "path", "folder of conversation dumps"),
    Key("stats_dir", "path", "folder of the per-test stats logs"),
    Key("log_stats", "bool", "write one stats file per virtual per round"),
    Key("log_stats_combined", "bool", "append every round to sd_fullstats.log"),
    Key("no_sync", "bool", "write no files for ipvssync (same as -n)"),
    Key("lock_sync_file", "path", "flock shared with ipvssync"),
    Key("full_sync_file", "path", "full snapshot"),
    Key("full_reload_file", "path", "reload flag"),
    Key("diff_sync_dir", "path", "folder of diff_sync.<epoch>"),
    Key("offline_dump", "path", "reals failing at exit"),
    Key("use_offline_dump", "bool", "read and write offline_dump"),
    Key("override_dump", "path", "rset overrides"),
    Key("gather_stats", "bool", "keep statistics, stats.dump and connstats"),
    Key("stats_dump", "path", "saved statistics"),
    Key("stats_dump_savesec", "int", "seconds between stats.dump saves", 1),
    Key("notify_dump", "path", "virtual notifier states"),
    Key("epoll_size", "int", "accepted for compatibility; unused"),
    Key("ipvssync_log", "path", "ipvssync log, or 'stderr'"),
    Key("ipvssync_logging", "level", "ipvssync log threshold"),
    # Beyond the original.
    Key("snapshot_interval", "int", "seconds between full snapshots once all are tested", 1),
    Key("status_listen", "listen", "HTTP status ADDR:PORT (metrics, JSON, page); off"),
    Key("control_max_clients", "int", "simultaneous control-port clients", 1, 10_000),
    Key("control_idle_timeout", "int", "seconds before an idle control client is closed", 1),
    Key("control_socket", "path", "Unix socket for the control port, beside TCP ('' for none)"),
    Key("control_socket_mode", "mode", "file mode of control_socket (octal)"),
    Key("control_socket_group", "str", "group of control_socket (default: the daemon's)"),
    Key("control_tcp_readonly", "bool", "the TCP port refuses rset and reload (use the socket)"),
    Key("status_max_clients", "int", "simultaneous HTTP status connections", 1, 10_000),
    Key("status_header_timeout", "int", "seconds a status client has to send its request", 1),
    Key("status_idle_timeout", "int", "seconds an idle keep-alive status client is kept", 1),
    Key("max_inflight", "int", "checks in flight at once (0: derived from maxfd)"),
    Key("lua_memory_kb", "int", "memory cap of each Lua runtime, kB", 1024),
    Key("lua_instructions", "int", "Lua instruction budget per check", 1000),
    Key("lua_path", "luapath",
        "where Lua require() looks after the script's own folder: folders or templates "
        "('/opt/lua/?.lua'), ';'-separated"),
    Key("notify_timeout", "int", "seconds a notify script may run before it is killed", 1),
    Key("pid_file", "path", "pid file written in -d mode ('' for none)"),
    Key("ipvssync_pid_file", "path", "pid file ipvssync writes in -d mode ('' for none)"),
    Key("ipvssync_interval", "int", "seconds between ipvssync's full kernel comparisons", 1),
    Key("ipvssync_poll_ms", "int", "how often ipvssync looks for new diff lines, ms", 10),
    Key("ipvssync_metrics_file", "path",
        "ipvssync's metrics as a node exporter textfile (NAME.prom; '' for none)"),
)
KEYS_BY_NAME = {k.name: k for k in KEYS}


@dataclass(frozen=True)
class MainConfig:
    """Every surealived.cfg key as a typed attribute (see ``KEYS`` for meaning)."""

    maxfd: int = 1024
    log: str = "/var/log/surealived/surealived.log"
    use_log: bool = True
    logging: str = "info"
    use_syslog: bool = False
    use_tm_in_syslog: bool = False
    modules_path: str = "/usr/lib/surealived/modules"
    modules: tuple[str, ...] = ("all",)
    listen_addr: str = "127.0.0.1"
    listen_port: int = 1337
    memlimit: int = 0
    loop_interval_ms: int = 100
    epoll_interval_ms: int = 10
    startup_delay_ms: int = 1000
    debug_comm: int = 0
    debug_comm_path: str = "/var/log/surealived/comm"
    stats_dir: str = "/var/log/surealived/stats"
    log_stats: bool = False
    log_stats_combined: bool = False
    no_sync: bool = False
    lock_sync_file: str = "/var/lib/surealived/ipvsfull.lock"
    full_sync_file: str = "/var/lib/surealived/ipvsfull.cfg"
    full_reload_file: str = "/var/lib/surealived/ipvsfull.reload"
    diff_sync_dir: str = "/var/lib/surealived/diffs"
    offline_dump: str = "/var/lib/surealived/offline.dump"
    use_offline_dump: bool = True
    override_dump: str = "/var/lib/surealived/override.dump"
    gather_stats: bool = True
    stats_dump: str = "/var/lib/surealived/stats.dump"
    stats_dump_savesec: int = 60
    notify_dump: str = "/var/lib/surealived/notify.dump"
    epoll_size: int = 256
    ipvssync_log: str = "/var/log/surealived/ipvssync.log"
    ipvssync_logging: str = "info"
    snapshot_interval: int = 60
    status_listen: tuple[str, int] | None = None
    control_max_clients: int = 16
    control_idle_timeout: int = 300
    control_socket: str = ""
    control_socket_mode: int = 0o660
    control_socket_group: str = ""
    control_tcp_readonly: bool = False
    status_max_clients: int = 32
    status_header_timeout: int = 5
    status_idle_timeout: int = 15
    max_inflight: int = 0
    lua_memory_kb: int = 65536
    lua_instructions: int = 10_000_000
    lua_path: tuple[str, ...] = ()
    notify_timeout: int = 30
    pid_file: str = ""
    ipvssync_pid_file: str = ""
    ipvssync_interval: int = 10
    ipvssync_poll_ms: int = 100
    ipvssync_metrics_file: str = ""
    source: str = field(default="(defaults)", compare=False)

    def replace(self, **changes: Any) -> MainConfig:
        return dataclasses.replace(self, **changes)


def _parse_bool(text: str) -> bool:
    low = text.lower()
    if low in _TRUE:
        return True
    if low in _FALSE:
        return False
    raise ValueError("true, false, yes, no, on, off, 1, 0")


def _parse_listen(text: str) -> tuple[str, int] | None:
    if text.lower() in ("off", "none", "no", "false"):
        return None
    host, sep, port = text.rpartition(":")
    if not sep:
        raise ValueError("ADDR:PORT such as 127.0.0.1:9337 or [::1]:9337, or off")
    host = host.strip("[]")
    ipaddress.ip_address(host)
    number = int(port)
    if not 0 <= number <= 65535:
        raise ValueError("a port 0..65535")
    return host, number


def folder_templates(folder: str) -> tuple[str, str]:
    """What a folder of Lua modules means as ``package.path`` templates."""
    return os.path.join(folder, "?.lua"), os.path.join(folder, "?", "init.lua")


def parse_lua_path(text: str, base_dir: str) -> tuple[str, ...]:
    """``lua_path``: ``;``-separated ``package.path`` templates (``/opt/lua/?.lua``, ``?`` the
    module name with dots turned into ``/``) or folders (``F/?.lua`` and ``F/?/init.lua``),
    relative ones under ``base_dir``. Empty entries (``;;``, Lua's "the default": for a script,
    its own folder, which is always searched first) add nothing."""
    templates: list[str] = []
    for entry in text.split(";"):
        if not entry:
            continue
        path = entry if os.path.isabs(entry) else os.path.join(base_dir, entry)
        if "?" in path:
            templates.append(path)
        else:
            templates.extend(folder_templates(os.path.normpath(path)))
    return tuple(dict.fromkeys(templates))


def _converter(key: Key, base_dir: str) -> Callable[[str], Any]:
    def path(text: str) -> str:
        if text in ("stderr", "") or os.path.isabs(text):
            return text
        return os.path.normpath(os.path.join(base_dir, text))

    def integer(text: str) -> int:
        value = int(text)
        if not key.minimum <= value <= key.maximum:
            raise ValueError(f"an integer {key.minimum}..{key.maximum}")
        return value

    def level(text: str) -> str:
        if text not in LOG_LEVELS:
            raise ValueError(", ".join(LOG_LEVELS))
        return text

    def modules(text: str) -> tuple[str, ...]:
        names = tuple(n.strip() for n in text.split(","))
        if not all(names):
            raise ValueError("'all' or a comma list of tester names without blanks")
        return names

    def addr(text: str) -> str:
        return str(ipaddress.ip_address(text or "127.0.0.1"))

    def mode(text: str) -> int:
        value = int(text, 8)
        if not 0 <= value <= 0o777:
            raise ValueError("an octal file mode 0000..0777")
        return value

    table: dict[str, Callable[[str], Any]] = {
        "bool": _parse_bool,
        "int": integer,
        "path": path,
        "level": level,
        "modules": modules,
        "addr": addr,
        "listen": _parse_listen,
        "str": str,
        "mode": mode,
        "luapath": lambda text: parse_lua_path(text, base_dir),
    }
    return table[key.kind]


_VALID_HINT = {
    "bool": "true, false, yes, no, on, off, 1, 0",
    "level": ", ".join(LOG_LEVELS),
    "addr": "an IPv4 or IPv6 address",
    "listen": "ADDR:PORT or off",
    "mode": "an octal file mode such as 0660",
    "modules": "'all' or a comma list of tester names",
    "luapath": "folders or templates such as /opt/lua/?.lua, separated by ';'",
}


def parse_maincfg(text: str, path: str) -> MainConfig:
    """Parse surealived.cfg text; raise ``ConfigErrors`` listing every bad line."""
    base_dir = os.path.dirname(os.path.abspath(path))
    values: dict[str, Any] = {}
    seen: dict[str, int] = {}
    errors: list[ConfigError] = []
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        parts = line.split(None, 1)
        name = parts[0]
        key = KEYS_BY_NAME.get(name)
        if key is None:
            hint = did_you_mean(name, KEYS_BY_NAME)
            errors.append(ConfigError(path, number, f"unknown key {name!r}"
                                      + (f", {hint}" if hint else ""),
                                      valid=None if hint else _ALL_KEYS))
            continue
        if name in seen:
            errors.append(ConfigError(path, number,
                                      f"{name}: duplicate key (first set on line {seen[name]})"))
            continue
        seen[name] = number
        value_text = parts[1].strip() if len(parts) > 1 else ""
        if " " in value_text or "\t" in value_text:
            value_text, _, rest = value_text.partition(" ")
            if not rest.strip().startswith("#"):
                errors.append(ConfigError(path, number, f"{name}: value must not contain blanks",
                                          valid=_VALID_HINT.get(key.kind)))
                continue
        if not value_text and key.kind not in ("path", "addr"):
            errors.append(ConfigError(path, number, f"{name}: missing value",
                                      valid=_VALID_HINT.get(key.kind, key.kind)))
            continue
        try:
            values[name] = _converter(key, base_dir)(value_text)
        except ValueError as exc:
            hint = _VALID_HINT.get(key.kind) or str(exc)
            if key.kind == "int":
                hint = f"an integer {key.minimum}..{key.maximum}"
            errors.append(ConfigError(path, number, f"{name}: bad value {value_text!r}",
                                      valid=hint))
    if errors:
        raise ConfigErrors(errors)
    return MainConfig(source=path, **values)


_ALL_KEYS = "see the surealived.cfg reference in the README"


def load_maincfg(path: str | None) -> MainConfig:
    """Read surealived.cfg. ``None`` means the default path, which may be absent (defaults)."""
    if path is None:
        if not os.path.exists(DEFAULT_PATH):
            return MainConfig()
        path = DEFAULT_PATH
    try:
        with open(path, encoding="utf-8") as handle:
            text = handle.read()
    except OSError as exc:
        raise ConfigErrors([ConfigError(path, 0, f"cannot read: {exc.strerror}")]) from exc
    except UnicodeDecodeError as exc:
        raise ConfigErrors([ConfigError(path, 0, "not UTF-8 text")]) from exc
    return parse_maincfg(text, path)
