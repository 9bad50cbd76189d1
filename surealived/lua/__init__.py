"""Lua testers: a sandboxed Lua 5.1 runtime per script, the cosocket API and the original's API.

``scripts.SCRIPTS`` holds every script in use (hot edits, errors for the status output);
``bridge.run_script`` runs one check (it is ``LuaTester.check``). The Lua side of the sandbox
is in ``lua/*.lua`` (loaded by ``runtime``), the request codes both sides use in ``codes``.
"""

from .bridge import ArgsCache, run_script
from .scripts import SCRIPTS, Script, ScriptProblem

__all__ = ["SCRIPTS", "ArgsCache", "Script", "ScriptProblem", "run_script", "script_errors"]


def script_errors() -> dict[str, ScriptProblem]:
    """Scripts whose file is broken (the last good version, if any, keeps running)."""
    return SCRIPTS.errors()
