"""The error family. Each boundary (``-t``, the control port, a tester run) turns these into output.

Errors a user can meet name the file, line and attribute (or the command and argument), say what
was wrong and, when it helps, what would be valid.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class SureAliveError(Exception):
    """Base of every error the daemon expects to report to a user."""


class ConfigError(SureAliveError):
    """A problem in surealived.cfg or the XML test definition.

    Rendered as ``FILE:LINE: <element name="x"> attribute: message (valid: ...)``; line 0 means
    the whole file (it could not be read) and is left out: ``FILE: cannot read: ...``.
    """

    def __init__(
        self,
        file: str,
        line: int,
        message: str,
        *,
        element: str | None = None,
        attribute: str | None = None,
        valid: str | None = None,
    ) -> None:
        self.file = file
        self.line = line
        self.message = message
        self.element = element
        self.attribute = attribute
        self.valid = valid
        super().__init__(str(self))

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}:" if self.line else f"{self.file}:"
        parts = [where]
        if self.element:
            parts.append(self.element)
        if self.attribute:
            parts.append(f"{self.attribute}:")
        parts.append(self.message)
        text = " ".join(parts)
        if self.valid:
            text += f" (valid: {self.valid})"
        return text


def closest_names(word: str, choices: Iterable[str]) -> list[str]:
    """The one or two ``choices`` a misspelled ``word`` most resembles (case aside), or none."""
    names = list(choices)
    close = difflib.get_close_matches(word, names, n=2, cutoff=0.7)
    if not close:
        lower = difflib.get_close_matches(word.lower(), [c.lower() for c in names], n=1)
        close = [c for c in names if c.lower() in lower][:1]
    return close


def did_you_mean(word: str, choices: Iterable[str]) -> str | None:
    """``did you mean 'x'?`` for the choices closest to a misspelled ``word``, else None."""
    close = closest_names(word, choices)
    return "did you mean " + " or ".join(repr(c) for c in close) + "?" if close else None


class ConfigErrors(SureAliveError):
    """Every error found in one configuration, reported together."""

    def __init__(self, errors: list[ConfigError]) -> None:
        self.errors = errors
        super().__init__("\n".join(str(e) for e in errors))


class ControlError(SureAliveError):
    """A control-port command that cannot be run; nothing was changed."""

    def __init__(self, command: str, message: str, usage: str | None = None) -> None:
        self.command = command
        self.message = message
        self.usage = usage
        super().__init__(str(self))

    def __str__(self) -> str:
        text = f"{self.command}: {self.message}" if self.command else self.message
        if self.usage:
            text += f" (usage: {self.usage})"
        return text


class TesterLoadError(SureAliveError):
    """A tester module that could not be imported or does not follow the tester API."""

    def __init__(self, name: str, origin: str, message: str) -> None:
        self.name = name
        self.origin = origin
        self.message = message
        super().__init__(f"{origin}: tester {name!r}: {message}")
