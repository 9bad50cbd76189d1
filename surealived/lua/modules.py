"""Lua modules on disk: the search path of ``require``, finding and reading a module's file.

The search path of a script is the folder of the script, then surealived.cfg ``lua_path``:
templates in ``package.path`` syntax (``/opt/lua/?.lua;/opt/lua/?/init.lua``; ``?`` is the
module name with its dots turned into ``/``), or plain folders, which mean ``F/?.lua`` and
``F/?/init.lua``. A module's chunk name is its path under the folder of its template
(``resty/redis.lua``), so errors read as OpenResty's do; ``-t`` and the status output get the
whole path back (``Script``). Only what a template makes of a valid name is ever opened: the
name is letters, digits, ``_`` and ``-`` in parts separated by dots (no ``..``, no ``/``, no
NUL), the file a regular one of at most ``MAX_SCRIPT_BYTES``. Reading is all ``require`` does.
"""

from __future__ import annotations

import os
import re
import stat
from dataclasses import dataclass

from ..config.main import folder_templates

MAX_SCRIPT_BYTES = 1 << 20  # bytes of a script or of a module
NAME = re.compile(rb"[A-Za-z0-9_-]+(?:\.[A-Za-z0-9_-]+)*")
NAME_MAX = 255

Signature = tuple[int, int, int]  # st_mtime_ns, st_size, st_ino


def search_path(script_path: str, lua_path: tuple[str, ...]) -> tuple[str, ...]:
    """Where a script's ``require`` looks, in order: its own folder, then ``lua_path``."""
    own = folder_templates(os.path.dirname(os.path.abspath(script_path)))
    return tuple(dict.fromkeys((*own, *lua_path)))


def valid_name(name: bytes) -> bool:
    return len(name) <= NAME_MAX and NAME.fullmatch(name) is not None


@dataclass(frozen=True)
class ModuleFile:
    """A module's file as read: where it is, how errors name it, its text and stat."""

    path: str
    chunk: str  # the path under its template's folder: resty/redis.lua
    source: bytes
    signature: Signature


class ModuleError(Exception):
    """A module that cannot be loaded; ``missing``: no template found a file."""

    def __init__(self, message: str, missing: bool = False) -> None:
        super().__init__(message)
        self.missing = missing


def signature_of(path: str) -> Signature | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_mtime_ns, st.st_size, st.st_ino


def find_module(name: bytes, templates: tuple[str, ...]) -> ModuleFile:
    """The first file the templates make of ``name`` (raises ModuleError)."""
    text = name.decode("utf-8", "replace")
    if not valid_name(name):
        raise ModuleError(f"bad module name {text!r}")
    relative = text.replace(".", "/")
    tried = []
    for template in templates:
        path = template.replace("?", relative)
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | os.O_NOCTTY)
        except (FileNotFoundError, NotADirectoryError):
            tried.append(path)
            continue
        except OSError as exc:
            raise ModuleError(f"{path}: cannot read: {os.strerror(exc.errno or 0).lower()}"
                              ) from None
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                raise ModuleError(f"{path}: not a regular file")
            if st.st_size > MAX_SCRIPT_BYTES:
                raise ModuleError(f"{path}: larger than {MAX_SCRIPT_BYTES} bytes")
            source = os.read(fd, MAX_SCRIPT_BYTES + 1)
        except OSError as exc:
            raise ModuleError(f"{path}: cannot read: {os.strerror(exc.errno or 0).lower()}"
                              ) from None
        finally:
            os.close(fd)
        if len(source) > MAX_SCRIPT_BYTES:
            raise ModuleError(f"{path}: larger than {MAX_SCRIPT_BYTES} bytes")
        folder = os.path.dirname(template.split("?", 1)[0])
        return ModuleFile(path, os.path.relpath(path, folder), source,
                          (st.st_mtime_ns, st.st_size, st.st_ino))
    raise ModuleError(f"module '{text}' not found (no file {', '.join(tried)})", missing=True)


# ``require "x"``, ``require("x")``, ``require 'x'`` and ``require [[x]]`` outside comments
_REQUIRE = re.compile(rb"""(?<![\w.:])require\s*(?:\(\s*)?"""
                      rb"""(?:"([^"\\\n]*)"|'([^'\\\n]*)'|\[\[([^\]\n]*)\]\])""")
_LONG_COMMENT = re.compile(rb"--\[(=*)\[.*?\]\1\]", re.S)
_LINE_COMMENT = re.compile(rb"--[^\n]*")


def required_names(source: bytes) -> list[tuple[bytes, int]]:
    """The string-literal ``require`` calls of a Lua text: ``(name, line)`` in order (comments
    left out; a computed name is not seen)."""

    def blank(match: re.Match[bytes]) -> bytes:  # keep the line numbers
        return b"\n" * match.group(0).count(b"\n")

    text = _LINE_COMMENT.sub(b"", _LONG_COMMENT.sub(blank, source))
    found = []
    for match in _REQUIRE.finditer(text):
        name = match.group(1) or match.group(2) or match.group(3) or b""
        found.append((name, text.count(b"\n", 0, match.start()) + 1))
    return found
