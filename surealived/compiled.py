"""Whether the check path runs compiled: setup.py builds its modules with mypyc, and a module
loaded from an extension file is the compiled one. The daemon's start line, its metrics and the
benchmarks say which; the tests refuse to run on compiled modules older than their source (an
editable install after an edit: the edit would not run)."""

from __future__ import annotations

import importlib.machinery
from pathlib import Path

_EXTENSIONS = tuple(importlib.machinery.EXTENSION_SUFFIXES)


def check_path() -> str:
    """"compiled" or "pure Python": how the runner's own module was loaded."""
    from .engine import flight

    return "compiled" if str(flight.__file__).endswith(_EXTENSIONS) else "pure Python"


def stale_modules() -> list[str]:
    """Compiled modules of the source tree whose ``.py`` changed after they were built."""
    import builtin_testers

    stale = []
    for root in (Path(__file__).parent, Path(builtin_testers.__file__).parent):
        for built in root.rglob("*.so"):
            if not built.name.endswith(_EXTENSIONS):
                continue
            source = built.with_name(built.name.split(".", 1)[0] + ".py")
            if source.exists() and source.stat().st_mtime > built.stat().st_mtime:
                stale.append(str(source))
    return sorted(stale)
