"""The native helpers behind ``ngx.lua`` and ``libs.lua`` (digests, base64, CRC-32, URI
unescaping, the clock and RE2 regexes): plain functions of bytes and numbers that Lua calls.

``Natives()`` is one runtime's set: ``table()`` is what ``runtime.py`` hands to the Lua
files as ``lib.native``. ``ngx.lua`` keeps each function in an upvalue of a Lua function of its
own, which checks the arguments first (types, sizes, the budget), so that only strings and
numbers ever reach these functions and no script can reach a Python object. Nothing here raises
on what Lua passes: an error comes back as a value (``None`` or ``(False, message)``).

Regexes: RE2 (the ``google-re2`` binding), which runs in time linear in the subject, so a
hostile reply cannot make a match backtrack. ``ngx.lua`` turns OpenResty's option letters into
the canonical ``flags`` given here (``a`` anchored, ``d`` longest match, ``i``, ``m``, ``s``,
``u`` UTF-8, ``x`` extended) and refuses the ones RE2 cannot honour. Compiled regexes are kept
in a bounded LRU per runtime.
"""

from __future__ import annotations

import binascii
import hashlib
import hmac
import os
import re
import time
import zlib
from collections import OrderedDict
from collections.abc import Callable
from itertools import chain
from typing import Any

import re2
from re2 import _re2

REGEX_CACHE = 128  # compiled regexes kept per runtime (their memory is outside the Lua cap)
REGEX_MEMORY = 1 << 20  # bytes RE2 may use for one regex (its program and its DFA cache)
MAX_GROUPS = 1000  # capture groups of a regex (their spans come back as one Lua call's values)

_UNANCHORED = _re2.RE2.Anchor.UNANCHORED
_ANCHOR_START = _re2.RE2.Anchor.ANCHOR_START

DIGESTS: dict[bytes, Callable[[bytes], Any]] = {
    b"md5": hashlib.md5, b"sha1": hashlib.sha1, b"sha224": hashlib.sha224,
    b"sha256": hashlib.sha256, b"sha384": hashlib.sha384, b"sha512": hashlib.sha512,
}

_B64 = re.compile(rb"[A-Za-z0-9+/]*")
_SPACE = frozenset(b" \t\n\r\f\v")
_UNESCAPE = re.compile(rb"%([0-9a-fA-F]{2})|%[0-9a-fA-F](?:.|$)|%(.?)|\+", re.DOTALL)


def digest(name: bytes, data: bytes) -> bytes | None:
    """The binary digest of ``data`` by the algorithm ``name`` (md5, sha1, sha224...)."""
    new = DIGESTS.get(name)
    return None if new is None else bytes(new(data).digest())


def hmac_sha1(key: bytes, data: bytes) -> bytes:
    return hmac.digest(key, data, "sha1")


def crc32(data: bytes) -> int:
    return zlib.crc32(data)


def encode_base64(data: bytes, no_padding: bool) -> bytes:
    out = binascii.b2a_base64(data, newline=False)
    return out.rstrip(b"=") if no_padding else out


def decode_base64(text: bytes) -> bytes | None:
    """nginx's decoding: the text up to the first ``=`` (what follows is ignored), only
    base64 letters before it, and not one letter too many (a length of 4n + 1); None when the
    text is not base64."""
    end = text.find(b"=")
    if end >= 0:
        text = text[:end]
    if len(text) % 4 == 1 or _B64.fullmatch(text) is None:
        return None
    return binascii.a2b_base64(text + b"=" * (-len(text) % 4))


def _unescaped(m: re.Match[bytes]) -> bytes:
    hexa = m.group(1)
    if hexa is not None:
        return bytes((int(hexa, 16),))
    if m.group(0) == b"+":
        return b" "
    rest = m.group(2)
    return rest if rest is not None else b""  # "%X" then a non-hex byte: both dropped


def unescape_uri(text: bytes) -> bytes:
    """nginx's URI-component unescaping: ``%XX`` is the byte, ``+`` a space, a ``%`` not followed
    by a hex digit is dropped (the byte after it kept), ``%X`` not followed by one is dropped with
    the byte after it."""
    if b"%" not in text and b"+" not in text:
        return text
    return _UNESCAPE.sub(_unescaped, text)


def now() -> float:
    """Wall-clock seconds with milliseconds, as ``ngx.now()`` gives them."""
    return round(time.time(), 3)


def getpid() -> int:
    return os.getpid()


def extended(pattern: bytes) -> bytes:
    """``pattern`` in PCRE's extended syntax (option ``x``) written without it: whitespace and
    ``#`` comments outside character classes removed (escaped ones kept)."""
    out = bytearray()
    i, n = 0, len(pattern)
    in_class = False
    while i < n:
        c = pattern[i]
        if c == 0x5C:  # a backslash and the byte it escapes
            out += pattern[i:i + 2]
            i += 2
            continue
        if in_class:
            if c == 0x5D:  # ]
                in_class = False
        elif c == 0x5B:  # [, and a ] right after it (or after [^) is a member
            in_class = True
            out.append(c)
            i += 1
            if pattern[i:i + 1] == b"^":
                out.append(0x5E)
                i += 1
            if pattern[i:i + 1] == b"]":
                out.append(0x5D)
                i += 1
            continue
        elif c == 0x23:  # # to the end of the line
            end = pattern.find(b"\n", i)
            i = n if end < 0 else end + 1
            continue
        elif c in _SPACE:
            i += 1
            continue
        out.append(c)
        i += 1
    return bytes(out)


class Regex:
    """One compiled regex: RE2's object, how to anchor it, its size and group names."""

    __slots__ = ("anchor", "groups", "names", "rx", "size")

    def __init__(self, rx: Any, anchor: Any) -> None:
        self.rx = rx
        self.anchor = anchor
        self.size = int(rx.ProgramSize())
        self.groups = int(rx.NumberOfCapturingGroups())
        self.names = tuple(chain.from_iterable(rx.NamedCapturingGroups()))


def compile_regex(regex: bytes, flags: bytes) -> Regex | str:
    """``regex`` compiled with the canonical ``flags`` of ngx.lua, or RE2's error."""
    options = re2.Options()
    options.log_errors = False
    options.max_mem = REGEX_MEMORY
    options.encoding = (re2.Options.Encoding.UTF8 if b"u" in flags
                        else re2.Options.Encoding.LATIN1)
    options.case_sensitive = b"i" not in flags
    options.dot_nl = b"s" in flags
    options.longest_match = b"d" in flags
    if b"x" in flags:
        regex = extended(regex)
    if b"m" in flags:
        regex = b"(?m)" + regex
    rx = _re2.RE2(regex, options)
    if not rx.ok():
        return str(rx.error().decode("utf-8", "replace"))
    compiled = Regex(rx, _ANCHOR_START if b"a" in flags else _UNANCHORED)
    if compiled.groups > MAX_GROUPS:
        return f"too many capture groups (at most {MAX_GROUPS})"
    return compiled


class Natives:
    """The native functions of one runtime (its regex cache and its last subject are its own)."""

    def __init__(self) -> None:
        self.regexes: OrderedDict[tuple[bytes, bytes], Regex] = OrderedDict()
        self.subject = b""

    def regex(self, regex: bytes, flags: bytes) -> Regex | str:
        key = (regex, flags)
        found = self.regexes.get(key)
        if found is not None:
            self.regexes.move_to_end(key)
            return found
        compiled = compile_regex(regex, flags)
        if isinstance(compiled, Regex):
            self.regexes[key] = compiled
            if len(self.regexes) > REGEX_CACHE:
                self.regexes.popitem(last=False)
        return compiled

    def re_meta(self, regex: bytes, flags: bytes) -> tuple[Any, ...]:
        """``size, groups, name, index, ...`` of a regex, or ``false, error``."""
        compiled = self.regex(regex, flags)
        if isinstance(compiled, str):
            return False, compiled.encode()
        return (compiled.size, compiled.groups, *compiled.names)

    def re_exec(self, regex: bytes, flags: bytes, subject: bytes | bool, pos: int,
                nth: int) -> tuple[int, ...] | None:
        """The first match at or after byte offset ``pos`` of ``subject`` (``false``: the
        subject of the last call, which Lua knows is the same string, so a loop over the
        matches of a long subject copies it once): the ``start, end`` offsets of every group
        (-1 for one that did not match) when ``nth`` is -1, else ``end of the match, start, end
        of group nth``; None when there is no match (or the regex no longer compiles)."""
        if subject is False:
            subject = self.subject
        elif isinstance(subject, bytes):
            self.subject = subject
        else:
            return None
        compiled = self.regex(regex, flags)
        if isinstance(compiled, str):
            return None
        spans = compiled.rx.Match(compiled.anchor, subject, pos, len(subject))
        if spans[0][0] < 0:
            return None
        if nth < 0:
            return tuple(chain.from_iterable(spans))
        if nth >= len(spans):
            return spans[0][1], -1, -1
        return (spans[0][1], *spans[nth])

    def table(self) -> dict[bytes, Callable[..., Any]]:
        """What ``lib.native`` holds, by name."""
        return {
            b"digest": digest, b"hmac_sha1": hmac_sha1, b"crc32": crc32,
            b"encode_base64": encode_base64, b"decode_base64": decode_base64,
            b"unescape_uri": unescape_uri, b"now": now, b"getpid": getpid,
            b"re_meta": self.re_meta, b"re_exec": self.re_exec,
        }
