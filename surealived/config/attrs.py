"""Attribute values: text from the XML into typed values, with errors that say what is valid.

Strategy: ``convert(attr, text, base_dir)`` is pure but for ``path``/``exec`` kinds, which look at
the file system. It returns the value or raises ``BadValue(message, valid)``; the XML reader adds
the file, line and element. Every attribute of every element, core or tester-specific, goes
through here, so a new tester never touches the parser.
"""

from __future__ import annotations

import ipaddress
import os
import re
from collections.abc import Callable
from typing import Any

from ..tester_api import Attr

NAME_RE = re.compile(r"[A-Za-z0-9_.-]{1,31}\Z")
SCHEDULERS = ("rr", "wrr", "lc", "wlc", "lblc", "lblcr", "dh", "sh", "sed", "nq", "mh", "fo",
              "ovf", "twos")
_TRUE = ("true", "on", "yes", "1")
_FALSE = ("false", "off", "no", "0")


class BadValue(ValueError):
    def __init__(self, message: str, valid: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.valid = valid


def _int_range(attr: Attr, text: str, default_max: int) -> int:
    high = attr.limit if attr.limit is not None else default_max
    low = int(attr.minimum)
    valid = f"an integer {low}..{high}"
    try:
        value = int(text, 10)
    except ValueError:
        raise BadValue(f"{text!r} is not an integer", valid) from None
    if not low <= value <= high:
        raise BadValue(f"{value} is out of range", valid)
    return value


def _str(attr: Attr, text: str, base_dir: str) -> str:
    if attr.limit is not None and len(text) > attr.limit:
        raise BadValue(f"{len(text)} characters is too long", f"at most {attr.limit} characters")
    if attr.mandatory and not text:
        raise BadValue("must not be empty", f"a text of 1..{attr.limit or 'any'} characters")
    return text


def _name(attr: Attr, text: str, base_dir: str) -> str:
    if not NAME_RE.match(text):
        raise BadValue(f"{text!r} is not a valid name",
                       "1..31 characters of A-Z a-z 0-9 _ . -")
    return text


def _addr(attr: Attr, text: str, base_dir: str) -> str:
    valid = "an IPv4 or IPv6 address such as 192.0.2.1 or 2001:db8::1"
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        raise BadValue(f"{text!r} is not an IP address", valid) from None
    if address.is_multicast:
        raise BadValue(f"multicast address {text!r} is not supported", valid)
    if address.is_unspecified:
        raise BadValue(f"unspecified address {text!r} cannot be used", valid)
    return address.compressed


def _port(attr: Attr, text: str, base_dir: str) -> int:
    try:
        value = int(text, 10)
    except ValueError:
        raise BadValue(f"{text!r} is not a port", "0..65535") from None
    if not 0 <= value <= 65535:
        raise BadValue(f"{text!r} is not a port", "0..65535")
    return value


def _int(attr: Attr, text: str, base_dir: str) -> int:
    return _int_range(attr, text, 2**31 - 1)


def _uint(attr: Attr, text: str, base_dir: str) -> int:
    return _int_range(attr, text, 2**32 - 1)


def _bool(attr: Attr, text: str, base_dir: str) -> bool:
    low = text.lower()
    if low in _TRUE:
        return True
    if low in _FALSE:
        return False
    raise BadValue(f"{text!r} is not a boolean", "true, false, on, off, yes, no, 1, 0")


def _seconds(attr: Attr, text: str, base_dir: str) -> float:
    high = attr.limit if attr.limit is not None else 86400
    valid = f"seconds, {attr.minimum}..{high} (decimals allowed)"
    try:
        value = float(text)
    except ValueError:
        raise BadValue(f"{text!r} is not a number of seconds", valid) from None
    if not (attr.minimum <= value <= high) or value != value:
        raise BadValue(f"{text!r} is out of range", valid)
    return value


def _choice(attr: Attr, text: str, base_dir: str) -> str:
    low = text.lower()
    if low not in attr.choices:
        raise BadValue(f"{text!r} is not allowed", ", ".join(attr.choices))
    return low


def _resolve(text: str, base_dir: str) -> str:
    return text if os.path.isabs(text) else os.path.normpath(os.path.join(base_dir, text))


def _path(attr: Attr, text: str, base_dir: str) -> str:
    path = _resolve(text, base_dir)
    if not os.path.isfile(path):
        raise BadValue(f"file {path!r} does not exist", "a path to a readable file")
    if not os.access(path, os.R_OK):
        raise BadValue(f"file {path!r} is not readable", "a path to a readable file")
    return path


def _exec(attr: Attr, text: str, base_dir: str) -> str:
    path = _resolve(text, base_dir)
    if not os.path.isfile(path):
        raise BadValue(f"program {path!r} does not exist", "a path to an executable file")
    if not os.access(path, os.X_OK):
        raise BadValue(f"program {path!r} is not executable", "a path to an executable file")
    return path


def _threshold(attr: Attr, text: str, base_dir: str) -> tuple[int, bool]:
    valid = "N or N% with N a non-negative integer (N% at most 100%)"
    percent = text.endswith("%")
    digits = text[:-1] if percent else text
    if not digits.isdigit():
        raise BadValue(f"{text!r} is not a count or a percentage", valid)
    value = int(digits)
    if percent and value > 100:
        raise BadValue(f"{text!r} is over 100%", valid)
    return value, percent


def _regex(attr: Attr, text: str, base_dir: str) -> str:
    try:
        re.compile(text.encode())
    except re.error as exc:
        raise BadValue(f"{text!r} is not a regular expression: {exc}",
                       "a Python regular expression") from None
    return text


def _statuslist(attr: Attr, text: str, base_dir: str) -> tuple[tuple[int, int], ...]:
    valid = "status codes and ranges 100..599, such as 200 or 200,301-302"
    ranges = []
    for part in text.split(","):
        low_text, _, high_text = part.strip().partition("-")
        try:
            low = int(low_text)
            high = int(high_text) if high_text else low
        except ValueError:
            raise BadValue(f"{text!r} is not a status list", valid) from None
        if not 100 <= low <= high <= 599:
            raise BadValue(f"{part.strip()!r} is not a status code or range", valid)
        ranges.append((low, high))
    return tuple(ranges)


CONVERTERS: dict[str, Callable[[Attr, str, str], Any]] = {
    "str": _str,
    "name": _name,
    "addr": _addr,
    "port": _port,
    "int": _int,
    "uint": _uint,
    "bool": _bool,
    "seconds": _seconds,
    "choice": _choice,
    "path": _path,
    "exec": _exec,
    "threshold": _threshold,
    "regex": _regex,
    "statuslist": _statuslist,
}


def convert(attr: Attr, text: str, base_dir: str) -> Any:
    """Turn one attribute's text into its value, or raise ``BadValue``."""
    return CONVERTERS[attr.kind](attr, text, base_dir)


def default_of(attr: Attr, base_dir: str = ".") -> Any:
    """The value an absent attribute takes (defaults given as text are converted)."""
    if isinstance(attr.default, str) and attr.kind not in ("str", "name", "choice"):
        return convert(attr, attr.default, base_dir)
    return attr.default
