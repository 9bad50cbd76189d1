"""Lua scripts by path: compiled once per file version, reloaded on edit, broken edits kept out.

Strategy: each script file has its own sandboxed runtime (its memory cap is the script's). Before
every check the file and the files of the modules it required are ``stat``-ed (mtime, size,
inode); when one changed, a new version is loaded: the script is read, compiled and its main
chunk run once without I/O (``worker.inspect``), which learns the API it offers (``check(t)`` or
the original's ``prepare``/``process_event``) and requires its modules; the changed modules are
loaded again, the others kept. A ``check(t)`` version keeps the environment its main chunk ran
in for all its checks; an original's script runs its main chunk again in a fresh environment for
every check. A version that fails (the script or any of its modules) keeps the last good one
running; the error is logged once per edit and stays readable through ``errors()`` (the status
output) and ``Script.error`` until a good version arrives. A script that never compiled fails
its checks with the compile error as the reason.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .codes import REQUIRE
from .crossing import ERROR_MAX, clean, first_line
from .modules import (
    MAX_SCRIPT_BYTES,
    ModuleError,
    Signature,
    find_module,
    required_names,
    search_path,
    signature_of,
    valid_name,
)
from .runtime import (
    DEFAULT_INSTRUCTIONS,
    DEFAULT_MEMORY,
    MEMORY,
    LuaError,
    LuaMemoryError,
    Runtime,
)

log = logging.getLogger("surealived")

SHARED_LOOK = 0.01  # seconds: overlapping checks share a look at the file this recent
LOG_RATE = 10  # sd.log/print lines a second a script may log, over all its reals...
LOG_BURST = 100  # ...in bursts of this many
REPORTED = 100  # distinct runtime errors logged once each (each at most ERROR_MAX bytes)


@dataclass(frozen=True)
class ScriptProblem:
    """Why the current file of a script is not the version that runs."""

    path: str
    message: str
    since: float  # wall clock, seconds
    running_old: bool  # an earlier good version still runs


def _text(value: Any) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return str(value)


class Script:
    """One script file: its runtime, the good version that runs, and what is wrong, if anything."""

    def __init__(self, path: str, registry: ScriptRegistry, *, quiet: bool = False) -> None:
        self.path = path
        self.quiet = quiet  # a copy made to validate a configuration: its errors are not logged
        self.name = os.path.basename(path)
        self.registry = registry
        self.limits = registry.limits
        self.runtime = Runtime(self.limits.memory)
        self.search = search_path(path, registry.lua_path)  # templates of its require()
        # the last good version (a Lua table made by worker.inspect: its check function and
        # environment, or its main chunk; its modules), or None
        self.version: Any = None
        self.api = ""  # "check" or "legacy" for the good version
        self.seen: Signature | None = None  # stat of the last version looked at
        # modules loaded from files, by name: path and stat (of the last version looked at);
        # ``loading`` collects those of a version being loaded
        self.modules: dict[bytes, tuple[str, Signature | None]] = {}
        self.loading: dict[bytes, tuple[str, Signature | None]] | None = None
        self.chunks: dict[str, str] = {}  # a module's chunk name -> its path (for messages)
        self.checked: tuple[Any, list[str]] | None = None  # check_requires() of a version
        self.problem: ScriptProblem | None = None
        self.reported: set[str] = set()  # errors logged, cut to ERROR_MAX (crossing.py)
        # the bridge's Results, by reply (64 at most, each reason at most REASON_MAX + 1 bytes)
        self.verdicts: dict[tuple[Any, ...], Any] = {}
        self.log_tokens = float(LOG_BURST)  # sd.log lines it may log now (a token bucket)
        self.log_at = time.monotonic()
        self.log_dropped = 0
        self.running = 0  # checks in flight (the driver counts them)
        self.pooled = False  # a check of it put a connection in the keepalive pool (bridge.py)
        self.tls_sessions: dict[tuple[Any, ...], Any] = {}  # the last TLS session per server
        self.looked = 0.0  # time.monotonic() of the last look at the file
        self.refresh()

    @property
    def error(self) -> str | None:
        return self.problem.message if self.problem else None

    def refresh_for_check(self) -> None:
        """``refresh()`` for a check about to start. A check that starts while others of the
        script run, less than SHARED_LOOK after the last look at the file, shares that look:
        a daemon starts thousands of checks a second and a ``stat`` each is most of the cost
        of a hot edit. A check that starts alone always looks."""
        now = time.monotonic()
        if self.running and now - self.looked < SHARED_LOOK:
            return
        self.looked = now
        self.refresh()

    def refresh(self) -> None:
        """Look at the file and at its modules' files; load a new version when one changed."""
        try:
            st = os.stat(self.path)
        except OSError as exc:
            signature = None
            reason = f"{self.path}: cannot read: {os.strerror(exc.errno or 0).lower()}"
        else:
            signature = (st.st_mtime_ns, st.st_size, st.st_ino)
            reason = ""
        if signature is None:
            if self.problem is None or self.problem.message != reason:
                self._fail(reason)
            return
        changed = {}
        for name, (path, seen) in self.modules.items():
            now = signature_of(path)
            if now != seen:
                changed[name] = (path, now)
        if signature == self.seen and not changed:
            return
        self.seen = signature
        # seen as they are now: a broken module is not tried again until it changes again
        self.modules.update(changed)
        problem = self._load(list(changed))
        if problem:
            self._fail(problem)

    def _load(self, changed: list[bytes]) -> str | None:
        """Load the script as it is on disk, with the ``changed`` modules loaded again."""
        try:
            with open(self.path, "rb") as handle:
                source = handle.read(MAX_SCRIPT_BYTES + 1)
        except OSError as exc:
            return f"{self.path}: cannot read: {os.strerror(exc.errno or 0).lower()}"
        if len(source) > MAX_SCRIPT_BYTES:
            return f"{self.path}: larger than {MAX_SCRIPT_BYTES} bytes"
        runtime = self.runtime
        self.loading = dict(self.modules)
        try:
            # Lua cuts chunk names at 60 bytes: the file name keeps run-time errors short, and
            # errors shown by -t and the status output get the whole path back.
            main, error = runtime.compile(source, b"@" + self.name.encode())
            if not main:
                return self._full_path(_text(error))
            old = self.version[b"loaded"] if self.version is not None else None
            api, detail = self._inspect(main, old, changed)
        except LuaError as exc:  # a budget or the memory cap broken while loading
            with contextlib.suppress(LuaError):
                runtime.drain()
            runtime.recover()
            if isinstance(exc, LuaMemoryError):  # its own text may be empty
                return f"{self.path}: {MEMORY}"
            return self._full_path(first_line(str(exc)))
        finally:
            loaded, self.loading = self.loading, None
        if api == b"error":
            return self._full_path(_text(detail))
        was_broken = self.problem is not None and self.version is not None
        self.version, self.api = detail, _text(api)
        self.modules = loaded
        self.problem = None
        if was_broken:
            log.info("Lua script %s: fixed, the new version runs", self.path)
        return None

    def _inspect(self, main: Any, old: Any, changed: list[bytes]) -> tuple[Any, Any]:
        """Run the main chunk once (worker.inspect), serving its ``require`` requests; returns
        the API and the version, or ``"error"`` and why."""
        stale = self.runtime.lua.table_from(changed)
        co = self.runtime.inspect.coroutine(main, self.limits.instructions, old, stale)
        reply: Any = None
        while True:
            out = co.send(reply)
            if type(out) is not tuple or type(out[0]) is not int:
                return out
            # a request: a module's file, or a line printed while loading (not logged)
            reply = self.find_module(out[1]) if out[0] == REQUIRE else None

    def find_module(self, name: bytes) -> tuple[Any, ...]:
        """The reply to a ``require`` request: ``source, chunk name``, or ``nil, error,
        missing``. Every module file read is recorded with its stat, for the next look."""
        try:
            found = find_module(name, self.search)
        except ModuleError as exc:
            return None, str(exc).encode(), exc.missing
        into = self.loading if self.loading is not None else self.modules
        into[name] = (found.path, found.signature)
        self.chunks[found.chunk] = found.path
        return found.source, b"@" + found.chunk.encode()

    def check_requires(self) -> list[str]:
        """For ``-t``: the modules named by the string-literal ``require`` calls of the script
        and, recursively, of its modules that loading the script did not run (required inside
        a function), each found and compiled; the files that do not compile, as ``file:line:
        ...``. A name that finds no file is left to run time: an optional module is no error,
        and the daemon checks its configuration this way too. Once per version (the
        configuration names a script once per tester that uses it)."""
        if self.checked is not None and self.checked[0] is self.version:
            return self.checked[1]
        problems = self._check_requires()
        self.checked = (self.version, problems)
        return problems

    def _check_requires(self) -> list[str]:
        try:
            with open(self.path, "rb") as handle:
                source = handle.read(MAX_SCRIPT_BYTES + 1)
        except OSError:
            return []  # refresh() said so already
        files = [(self.path, source)]
        for name, (path, _) in self.modules.items():
            with contextlib.suppress(ModuleError):
                files.append((path, find_module(name, self.search).source))
        known = set(self.modules)
        problems = []
        while files:
            path, source = files.pop()
            for name, line in required_names(source):
                if name in known or self.runtime.is_builtin(name):
                    continue
                known.add(name)
                try:
                    found = find_module(name, self.search)
                except ModuleError as exc:
                    if not exc.missing and valid_name(name):  # a file, but not a module's
                        problems.append(f"{path}:{line}: {exc}")
                    continue
                self.chunks[found.chunk] = found.path
                _, error = self.runtime.compile(found.source, b"@" + found.chunk.encode())
                if error:
                    problems.append(clean(self._full_path(_text(error)), ERROR_MAX))
                else:
                    files.append((found.path, found.source))
        return problems

    def _full_path(self, message: str) -> str:
        """A message of the script or of one of its modules, the file named by its whole path
        (Lua names it by its chunk name)."""
        if message.startswith(self.name + ":"):
            return os.path.join(os.path.dirname(self.path), message)
        chunk, sep, rest = message.partition(":")
        if sep and chunk in self.chunks:
            return f"{self.chunks[chunk]}:{rest}"
        return f"{self.path}: {message}"

    def _fail(self, message: str) -> None:
        message = clean(message, ERROR_MAX)  # a compile error quotes the script's own text
        running_old = self.version is not None
        self.problem = ScriptProblem(self.path, message, time.time(), running_old)
        if self.quiet:
            return
        if running_old:
            log.error("Lua script %s: %s (the previous version keeps running)", self.path, message)
        else:
            log.error("Lua script %s: %s", self.path, message)

    def report_once(self, reason: str) -> None:
        """Log a script's runtime error the first time it is seen (checks go on failing); at
        most REPORTED of them, each cut to ERROR_MAX bytes."""
        if reason in self.reported or len(self.reported) >= REPORTED:
            return
        reason = clean(reason, ERROR_MAX)
        self.reported.add(reason)
        log.warning("Lua script %s: %s (logged once)", self.path, reason)

    def may_log(self) -> bool:
        """Whether one more sd.log/print line fits the script's rate (LOG_RATE a second, in
        bursts of LOG_BURST); the first line let through after some were dropped says how
        many."""
        now = time.monotonic()
        tokens = min(float(LOG_BURST), self.log_tokens + (now - self.log_at) * LOG_RATE)
        self.log_at = now
        if tokens < 1:
            self.log_tokens = tokens
            self.log_dropped += 1
            return False
        self.log_tokens = tokens - 1
        if self.log_dropped:
            log.warning("Lua script %s: %d log lines dropped (at most %d a second, in bursts "
                        "of %d)", self.path, self.log_dropped, LOG_RATE, LOG_BURST)
            self.log_dropped = 0
        return True


@dataclass
class Limits:
    """Per-runtime memory cap (bytes) and per-check instruction budget."""

    memory: int = DEFAULT_MEMORY
    instructions: int = DEFAULT_INSTRUCTIONS


class ScriptRegistry:
    """Every script of one daemon (or of one ``surealived probe``, one ``-t``), by absolute
    path, with the limits they run under: the daemon makes it and hands it to the Lua tester
    (``Tester.uses``, registry.py), so two daemons in one process share no script."""

    def __init__(self, limits: Limits | None = None, lua_path: tuple[str, ...] = ()) -> None:
        self.limits = limits or Limits()
        self.lua_path = lua_path  # surealived.cfg lua_path: templates of require()
        self.scripts: dict[str, Script] = {}
        self.on_error: Callable[[], None] | None = None  # counts Lua errors (the daemon's)
        self.owner = threading.get_ident()  # the thread whose checks use these scripts
        self.copies: dict[str, Script] = {}  # look()'s quiet copies, for other threads

    def get(self, path: str) -> Script:
        path = os.path.abspath(path)
        script = self.scripts.get(path)
        if script is None:
            script = self.scripts[path] = Script(path, self)
        return script

    def look(self, path: str) -> Script:
        """The script at ``path`` as its file is now, to validate a configuration: the one
        checks run, refreshed; from another thread (the daemon reads a reloaded configuration
        in a worker thread), a quiet copy in a runtime of its own, so that the scripts and
        runtimes checks use are only ever touched by their own thread."""
        path = os.path.abspath(path)
        if threading.get_ident() == self.owner:
            script = self.get(path)
        else:  # one reload at a time (the daemon's reload lock): the copies are its alone
            script = self.copies.get(path) or self.copies.setdefault(
                path, Script(path, self, quiet=True))
        script.refresh()
        return script

    def set_limits(self, memory: int, instructions: int) -> None:
        self.limits.memory = memory
        self.limits.instructions = instructions
        for script in self.scripts.values():
            script.runtime.set_max_memory(memory)

    def errors(self) -> dict[str, ScriptProblem]:
        """Scripts whose file on disk is not the version that runs (for the status output)."""
        return {path: s.problem for path, s in self.scripts.items() if s.problem is not None}

    def count_error(self) -> None:
        if self.on_error is not None:
            self.on_error()

