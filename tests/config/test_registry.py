"""Testers load from built-ins, entry points and modules_path; failures name file and line."""

from __future__ import annotations

import importlib.metadata
import textwrap

from surealived.registry import load_testers


def test_builtins_are_all_loaded() -> None:
    registry = load_testers()
    assert not registry.errors
    assert {"tcp", "http", "dns", "exec", "none", "lua"} <= set(registry.names)
    assert registry.get("NO-TEST") is registry.get("none")


def test_a_tester_dropped_into_modules_path_is_one_file(tmp_path) -> None:
    (tmp_path / "smtp.py").write_text(textwrap.dedent('''
        from surealived.tester_api import Attr, Result, Tester

        class SmtpTester(Tester):
            name = "smtp"
            attributes = (Attr("helo", "str", "check.example.test"),)

            async def check(self, probe):
                conn = await probe.connect()
                banner = await conn.receive_line()
                return Result.up() if banner.startswith(b"220") else Result.down("no 220")
    '''))
    registry = load_testers(modules_path=str(tmp_path))
    assert not registry.errors
    assert registry.get("smtp").attributes[0].name == "helo"
    assert registry.origins["smtp"].endswith("smtp.py")


def test_broken_tester_file_is_reported_with_file_and_line(tmp_path) -> None:
    (tmp_path / "broken.py").write_text("x = 1\ndef oops(:\n")
    (tmp_path / "raises.py").write_text("import os\n\nraise RuntimeError('boom')\n")
    registry = load_testers(modules_path=str(tmp_path))
    text = "\n".join(str(e) for e in registry.errors)
    assert f"{tmp_path}/broken.py:2" in text
    assert f"{tmp_path}/raises.py:3" in text and "boom" in text
    assert "tcp" in registry.names  # the others stay usable


def test_invalid_tester_class_is_refused(tmp_path) -> None:
    (tmp_path / "sync_check.py").write_text(textwrap.dedent('''
        from surealived.tester_api import Attr, Tester

        class Blocking(Tester):
            name = "blocking"
            def check(self, probe):
                return None

        class Clash(Tester):
            name = "clash"
            attributes = (Attr("timeout", "uint"),)
            async def check(self, probe):
                return None
    '''))
    registry = load_testers(modules_path=str(tmp_path))
    text = "\n".join(str(e) for e in registry.errors)
    assert "sync_check.py:4" in text and "must be an async method" in text
    assert "every tester already has: timeout" in text
    assert "blocking" not in registry.names and "clash" not in registry.names


def test_entry_point_testers_are_loaded(monkeypatch) -> None:
    ep = importlib.metadata.EntryPoint("tcp2", "builtin_testers.tcp:TcpTester",
                                       "surealived.testers")
    real = importlib.metadata.entry_points

    def fake(**kwargs):
        if kwargs.get("group") == "surealived.testers":
            return [ep]
        return real(**kwargs)

    monkeypatch.setattr(importlib.metadata, "entry_points", fake)
    registry = load_testers()
    assert "entry point tcp2" in registry.origins["tcp"]


def test_modules_key_selects_testers() -> None:
    registry = load_testers(("http", "tcp", "nope"))
    assert set(registry.names) == {"http", "tcp", "none"}
    assert any("nope" in str(e) and "no such tester" in str(e) for e in registry.errors)


def test_a_tester_gets_the_services_of_its_own_registry(tmp_path) -> None:
    """Two registries (two daemons in one process) hand out their own Lua scripts: a script
    loaded by one is unknown to the other, and a third-party tester may use the service too."""
    (tmp_path / "scripted.py").write_text(textwrap.dedent('''
        from surealived.tester_api import Result, Tester

        class Scripted(Tester):
            name = "scripted"
            uses = ("lua_scripts",)

            def __init__(self, settings):
                super().__init__(settings)
                self.script = self.lua_scripts.get(settings["script"])

            async def check(self, probe):
                return Result.up()

        class Wrong(Tester):
            name = "wrong"
            uses = ("database",)

            async def check(self, probe):
                return Result.up()
    '''))
    script = tmp_path / "s.lua"
    script.write_text("function check(t) return true end")
    one, two = load_testers(modules_path=str(tmp_path)), load_testers(modules_path=str(tmp_path))
    assert one.services.lua_scripts is not two.services.lua_scripts
    lua_one, lua_two = one.get("lua"), two.get("lua")
    assert lua_one is not lua_two and lua_one.__name__ == "LuaTester"
    tester = lua_one({"script": str(script), "params": ""})
    assert tester.script is one.services.lua_scripts.get(str(script))  # type: ignore[attr-defined]
    assert str(script) in one.services.lua_scripts.scripts
    assert not two.services.lua_scripts.scripts
    scripted = two.get("scripted")({"script": str(script)})
    assert scripted.script is two.services.lua_scripts.get(str(script))  # type: ignore[attr-defined]
    assert scripted.script is not tester.script  # type: ignore[attr-defined]
    text = "\n".join(str(e) for e in one.errors)
    assert "uses unknown services: 'database' (valid: lua_scripts, process_trees)" in text
