"""Lua testers: a sandboxed Lua 5.1 runtime per script, the cosocket API and the original's API.

A ``scripts.ScriptRegistry`` holds every script of one daemon (hot edits, errors for the status
output); the daemon owns it (``services.Services``). ``bridge.run_script`` runs one check (it is
``LuaTester.check``). The Lua side of the sandbox is in ``lua/*.lua`` (loaded by ``runtime``),
the request codes both sides use in ``codes``.
"""

from .bridge import ArgsCache, run_script
from .scripts import Limits, Script, ScriptProblem, ScriptRegistry

__all__ = ["ArgsCache", "Limits", "Script", "ScriptProblem", "ScriptRegistry", "run_script"]
