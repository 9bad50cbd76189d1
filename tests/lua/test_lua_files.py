"""The Lua side of the sandbox (``surealived/lua/lua/*.lua``): each file compiles with Lua 5.1's
own compiler, reads globals only while it loads, names only request codes that ``codes.py``
defines, and is package data (so a wheel carries what the runtime loads)."""

from __future__ import annotations

import re
import shutil
import subprocess
import tomllib
from pathlib import Path

import pytest

from surealived.lua.codes import NAMES
from surealived.lua.runtime import FILES, LUA_DIR

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "surealived" / "lua"
# What Lua 5.1 offers at load time; a name outside it is a typo, read as nil.
LUA51_GLOBALS = {
    "assert", "collectgarbage", "coroutine", "debug", "error", "getmetatable", "ipairs",
    "loadstring", "math", "newproxy", "next", "os", "pairs", "pcall", "rawequal", "rawget",
    "rawset", "select", "setfenv", "setmetatable", "string", "table", "tonumber", "tostring",
    "type", "unpack", "_VERSION",
}
# luac -l: a function's header, and an instruction on a global (its name after the ';')
HEADER = re.compile(r"^(main|function) <")
GLOBAL = re.compile(r"\[(\d+)\]\s+(GETGLOBAL|SETGLOBAL)\s.*; (\S+)$")


def _luac() -> str:
    path = shutil.which("luac5.1")
    if path is None:
        pytest.skip("luac5.1 is not installed (contrib/ci-deps.sh installs lua5.1)")
    return path


def _path(name: str) -> Path:
    return PACKAGE / "lua" / f"{name}.lua"


def test_the_runtime_loads_every_file_of_the_directory():
    assert sorted(p.name for p in LUA_DIR.iterdir()) == sorted(f"{n}.lua" for n in FILES)


@pytest.mark.parametrize("name", FILES)
def test_file_compiles_with_luac(name):
    out = subprocess.run([_luac(), "-p", str(_path(name))], capture_output=True, text=True,
                         timeout=30)
    assert out.returncode == 0, out.stderr


@pytest.mark.parametrize("name", FILES)
def test_file_reads_globals_only_while_loading(name):
    """Functions use locals taken at load (no global is looked up on the check path, and a
    misspelt name fails here rather than as a nil at run time); the only global written is
    sandbox.lua's ``python = nil``."""
    out = subprocess.run([_luac(), "-l", "-p", str(_path(name))], capture_output=True,
                         text=True, timeout=30, check=True)
    in_main = False
    problems = []
    for line in out.stdout.splitlines():
        header = HEADER.match(line)
        if header:
            in_main = header.group(1) == "main"
            continue
        found = GLOBAL.search(line)
        if not found:
            continue
        where, op, global_name = f"{name}.lua:{found.group(1)}", found.group(2), found.group(3)
        if not in_main:
            problems.append(f"{where}: {global_name} looked up at run time")
        elif op == "SETGLOBAL" and (name, global_name) != ("sandbox", "python"):
            problems.append(f"{where}: sets the global {global_name}")
        elif op == "GETGLOBAL" and global_name not in LUA51_GLOBALS:
            problems.append(f"{where}: reads {global_name}, not a global of Lua 5.1")
    assert problems == []


@pytest.mark.parametrize("name", FILES)
def test_file_names_only_codes_of_codes_py(name):
    code = re.sub(r"--.*", "", _path(name).read_text())  # not the comments' "codes.py"
    named = set(re.findall(r"\bcodes\.([A-Za-z_]+)", code))
    assert named - set(NAMES) == set()


@pytest.mark.parametrize("name", FILES)
def test_file_says_what_it_is_for(name):
    assert _path(name).read_text().startswith(f"-- {name}.lua: ")


def test_package_data_carries_the_lua_files():
    """A wheel (non-editable install) holds the files ``runtime.py`` loads."""
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    patterns = config["tool"]["setuptools"]["package-data"]["surealived.lua"]
    shipped = {p.relative_to(PACKAGE) for pattern in patterns for p in PACKAGE.glob(pattern)}
    assert shipped == {Path("lua", f"{n}.lua") for n in FILES}
