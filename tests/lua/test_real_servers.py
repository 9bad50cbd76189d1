"""The shipped Lua testers against real Debian servers: redis-server, memcached, MariaDB, vsftpd,
nginx."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.servers import find_binary, free_port, mariadb, memcached, nginx, redis, serving

from .helpers import LUA_TESTERS, lua_check

pytestmark = pytest.mark.asyncio


async def test_redis() -> None:
    script = str(LUA_TESTERS / "redis.lua")
    with redis() as port:
        plain, _ = await lua_check(script, port)
        master, _ = await lua_check(script, port, params="role=master")
        slave, _ = await lua_check(script, port, params="role=slave")
    with redis("s3cret") as port:
        good, _ = await lua_check(script, port, params="password=s3cret")
        bad, _ = await lua_check(script, port, params="password=wrong")
        none, _ = await lua_check(script, port)
    assert plain.ok and master.ok and good.ok, (plain, master, good)
    assert slave.reason == "role is master, expected slave"
    assert not bad.ok and bad.reason.startswith("AUTH: WRONGPASS")
    assert not none.ok and none.reason.startswith("PING: NOAUTH")


async def test_memcached() -> None:
    with memcached() as port:
        result, _ = await lua_check(str(LUA_TESTERS / "memcached.lua"), port)
        missing, _ = await lua_check(str(LUA_TESTERS / "memcached.lua"), port, params="key=k")
    assert result.ok and result.reason[:1].isdigit(), result
    assert missing.reason == "key k not found"


async def test_mysql_greeting_of_mariadb() -> None:
    script = str(LUA_TESTERS / "mysql.lua")
    with mariadb() as db:
        greeting, _ = await lua_check(script, db.port)
        same, _ = await lua_check(script, db.port, params="version=10.")
        other, _ = await lua_check(script, db.port, params="version=5.")
    assert greeting.ok and greeting.reason.startswith("10.") and same.ok, (greeting, same)
    assert other.reason.startswith("version ") and other.reason.endswith(", expected 5."), other


async def test_vsftpd(tmp_path: Path) -> None:
    binary = find_binary(("/usr/sbin/vsftpd", "vsftpd"), "vsftpd")
    root = tmp_path / "ftproot"
    root.mkdir()
    (root / "hello.txt").write_text("hello\n")
    root.chmod(0o555)
    conf = tmp_path / "vsftpd.conf"
    conf.write_text("")
    port = free_port()
    with serving([binary, str(conf), "-olisten=YES", "-olisten_address=127.0.0.1",
                  f"-olisten_port={port}", "-orun_as_launching_user=YES",
                  "-oanonymous_enable=YES", "-ono_anon_password=YES", f"-oanon_root={root}",
                  "-olocal_enable=NO", "-obackground=NO", "-oseccomp_sandbox=NO"], port):
        anonymous, _ = await lua_check(str(LUA_TESTERS / "ftp.lua"), port)
        local, _ = await lua_check(str(LUA_TESTERS / "ftp.lua"), port,
                                   params="user=root; password=x")
    assert anonymous.ok, anonymous
    assert not local.ok and local.reason.startswith("login: 530"), local


async def test_http_against_nginx(tmp_path: Path) -> None:
    script = str(LUA_TESTERS / "http.lua")
    with nginx(tmp_path) as web:
        healthy, _ = await lua_check(script, web.port, params="path=/health pattern=ok%shealthy")
        naive, _ = await lua_check(script, web.port, params="path=/health naive=1")
        down, _ = await lua_check(script, web.port, params="path=/down")
        body, _ = await lua_check(script, web.port, params="path=/health pattern=nope")
        tls, _ = await lua_check(script, web.tls_port, params="path=/health pattern=healthy",
                                 target={"ssl": True})
    assert healthy.ok and naive.ok and tls.ok, (healthy, naive, tls)
    assert down.reason == "status 503, expected 200"
    assert body.reason == "status 200, but the body does not contain nope"
