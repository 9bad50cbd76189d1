"""surealived.cfg: every key typed, unknown/duplicate/bad lines rejected with file:line."""

from __future__ import annotations

import dataclasses

import pytest

from surealived.config.main import KEYS, KEYS_BY_NAME, MainConfig, load_maincfg, parse_maincfg
from surealived.errors import ConfigErrors

ORIGINAL_KEYS = [
    "maxfd", "log", "use_log", "logging", "use_syslog", "use_tm_in_syslog", "modules_path",
    "modules", "listen_addr", "listen_port", "memlimit", "loop_interval_ms", "epoll_interval_ms",
    "startup_delay_ms", "debug_comm", "debug_comm_path", "stats_dir", "log_stats",
    "log_stats_combined", "no_sync", "lock_sync_file", "full_sync_file", "full_reload_file",
    "diff_sync_dir", "offline_dump", "use_offline_dump", "override_dump", "gather_stats",
    "stats_dump", "stats_dump_savesec", "notify_dump", "epoll_size", "ipvssync_log",
    "ipvssync_logging",
]


def test_every_original_key_is_known_and_declared_once() -> None:
    assert set(ORIGINAL_KEYS) <= set(KEYS_BY_NAME)
    assert len(KEYS) == len(KEYS_BY_NAME)
    fields = {f.name for f in dataclasses.fields(MainConfig)} - {"source"}
    assert fields == set(KEYS_BY_NAME)


def test_shipped_original_file_parses() -> None:
    text = """# surealived.cfg as shipped by the original
maxfd 2048
log /var/log/surealived/surealived.log
use_log true
logging info
use_syslog false
modules_path /usr/lib/surealived/modules
modules all
listen_addr 127.0.0.1
listen_port 1337
memlimit 128000
loop_interval_ms 100
epoll_interval_ms 10
startup_delay_ms 1000
debug_comm 1
log_stats_combined true
epoll_size 1024
ipvssync_log /var/log/surealived/ipvssync.log
ipvssync_logging info
"""
    cfg = parse_maincfg(text, "/etc/surealived/surealived.cfg")
    assert cfg.maxfd == 2048 and cfg.memlimit == 128000 and cfg.debug_comm == 1
    assert cfg.log_stats_combined is True and cfg.modules == ("all",)
    assert cfg.full_sync_file == "/var/lib/surealived/ipvsfull.cfg"  # default kept


def test_relative_paths_are_relative_to_the_file() -> None:
    cfg = parse_maincfg("full_sync_file state/ipvsfull.cfg\nlog stderr\n", "/srv/lb/sd.cfg")
    assert cfg.full_sync_file == "/srv/lb/state/ipvsfull.cfg"
    assert cfg.log == "stderr"


def test_values_are_typed() -> None:
    cfg = parse_maincfg("use_log off\nmodules http,dns\nlisten_addr ::1\n"
                        "status_listen [::1]:9337\nno_sync yes\n", "x.cfg")
    assert cfg.use_log is False and cfg.no_sync is True
    assert cfg.modules == ("http", "dns") and cfg.listen_addr == "::1"
    assert cfg.status_listen == ("::1", 9337)


BAD_LINES = [
    ("maxfd lots", 1, "maxfd: bad value 'lots'"),
    ("maxfd 10", 1, "valid: an integer 64.."),
    ("listen_port 70000", 1, "listen_port: bad value '70000'"),
    ("logging verbose", 1, "valid: error, warn, info, debug, dbdet"),
    ("logging debdt", 1, "logging: bad value 'debdt'"),
    ("use_log maybe", 1, "use_log: bad value 'maybe'"),
    ("listen_addr localhost", 1, "listen_addr: bad value 'localhost'"),
    ("modules http, dns", 1, "modules: value must not contain blanks"),
    ("modules http,,dns", 1, "modules: bad value"),
    ("no_such_key 1", 1, "unknown key 'no_such_key'"),
    ("max_fd 100", 1, "did you mean 'maxfd'?"),
    ("debug_comm 2", 1, "debug_comm: bad value '2'"),
    ("status_listen 9000", 1, "status_listen: bad value '9000'"),
    ("# ok\nmaxfd 100\nmaxfd 200", 3, "maxfd: duplicate key (first set on line 2)"),
    ("logging", 1, "logging: missing value"),
]


@pytest.mark.parametrize(("text", "line", "fragment"), BAD_LINES)
def test_bad_lines_name_file_and_line(text: str, line: int, fragment: str) -> None:
    with pytest.raises(ConfigErrors) as caught:
        parse_maincfg(text + "\n", "/etc/sd.cfg")
    messages = [str(e) for e in caught.value.errors]
    assert any(m.startswith(f"/etc/sd.cfg:{line}:") and fragment in m for m in messages), messages


def test_missing_explicit_file_is_an_error(tmp_path) -> None:
    with pytest.raises(ConfigErrors) as caught:
        load_maincfg(str(tmp_path / "nope.cfg"))
    assert "cannot read" in str(caught.value)
