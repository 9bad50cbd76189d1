"""sslhandshake as OpenResty's: its error words, session objects, and TLS connections in the
keepalive pool. Certificates are made for each test (trustme), servers are on loopback."""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import pytest_asyncio
import trustme

from surealived.engine.transcript import Transcript

from .helpers import Checks, dialogue_server, line_server, lua_check, write_script

pytestmark = pytest.mark.asyncio

NAME = "real1.example.test"

# connect to args.port (default: the test port), sslhandshake(session?, args.sni, verify),
# ping (not on a new connection with args.quiet), then keep the connection (args.keep)
HANDSHAKE = """
function check(t)
  local s = sd.tcp()
  s:settimeout(tonumber(t.args.ms) or 2000)
  local ok, err = s:connect(t.addr, tonumber(t.args.port) or t.port)
  if not ok then return false, "connect: " .. err end
  local reused = s:getreusedtimes()
  local session, herr = s:sslhandshake(nil, t.args.sni, t.args.verify == "1")
  if not session then return false, herr end
  if reused > 0 or not t.args.quiet then
    s:send("ping\\n")
    local line, rerr = s:receive()
    if not line then return false, rerr end
  end
  if t.args.keep then assert(s:setkeepalive()) end
  return true, "reused=" .. reused
end
"""


@dataclass
class Certs:
    ca_file: str
    good: ssl.SSLContext  # a certificate for NAME and 127.0.0.1, from the CA
    self_signed: ssl.SSLContext  # a self-signed certificate for NAME


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    base = tmp_path_factory.mktemp("certs")
    ca = trustme.CA()
    ca.cert_pem.write_to_path(str(base / "ca.pem"))
    good = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ca.issue_cert(NAME, "127.0.0.1").configure_cert(good)
    # another CA's own certificate served as the server's: self-signed, and not trusted
    other = trustme.CA()
    other.cert_pem.write_to_path(str(base / "other.pem"))
    other.private_key_pem.write_to_path(str(base / "other.key"))
    self_signed = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    self_signed.load_cert_chain(str(base / "other.pem"), str(base / "other.key"))
    return Certs(str(base / "ca.pem"), good, self_signed)


@pytest_asyncio.fixture
async def checks() -> AsyncIterator[Checks]:
    runner = Checks()
    try:
        yield runner
    finally:
        runner.close()


@pytest.mark.parametrize(("server", "params", "reason"), [
    ("self_signed", f"sni={NAME} verify=1", "18: self-signed certificate"),
    ("good", "sni=other.example.test verify=1", "certificate host mismatch"),
    ("good", f"sni={NAME} verify=1 no_ca=1", "20: unable to get local issuer certificate"),
    ("plain", "", "handshake failed"),
    ("silent", "ms=100", "timeout"),
    ("good", f"sni={NAME} verify=1", "reused=0"),
    ("self_signed", f"sni={NAME}", "reused=0"),  # not verified: any certificate
])
async def test_handshake_errors_read_as_openrestys(tmp_path: Path, certs: Certs, server: str,
                                                   params: str, reason: str) -> None:
    script = write_script(tmp_path, HANDSHAKE)
    ca = {} if "no_ca" in params else {"ssl_ca": certs.ca_file}
    if server == "silent":
        async with dialogue_server([("sleep", 2)]) as srv:
            result, _ = await lua_check(script, srv.port, params=params, target=ca)
    else:
        tls = None if server == "plain" else getattr(certs, server)
        async with line_server(tls=tls) as srv:
            result, _ = await lua_check(script, srv.port, params=params, target=ca)
    assert result.reason == reason


async def test_sessions_are_opaque_and_offered_back(tmp_path: Path, certs: Certs) -> None:
    """sslhandshake() returns a session object (``true`` when reused_session is false); a
    session handed to a later handshake with the same server is offered to it (TLS 1.2 here,
    where a session is resumable as soon as the handshake ends)."""
    script = write_script(tmp_path, """
        function check(t)
          local out = {}
          local a = sd.tcp()
          assert(a:connect(t.addr, t.port))
          local session = assert(a:sslhandshake(nil, t.args.sni, true))
          out[#out + 1] = type(session) .. ":" .. tostring(session)
          out[#out + 1] = tostring(pcall(function() session.x = 1 end))
          out[#out + 1] = tostring(getmetatable(session))
          local b = sd.tcp()
          assert(b:connect(t.addr, t.port))
          out[#out + 1] = tostring(b:sslhandshake(session, t.args.sni, true) ~= nil)
          -- on a connection already in TLS: at once
          out[#out + 1] = type(b:sslhandshake(session, t.args.sni, true))
          local c = sd.tcp()
          assert(c:connect(t.addr, t.port))
          out[#out + 1] = tostring(c:sslhandshake(false, t.args.sni, true))
          local ok, err = pcall(c.sslhandshake, c, "a session?")
          out[#out + 1] = err
          return false, table.concat(out, "|")
        end""")
    tls = certs.good
    tls.maximum_version = ssl.TLSVersion.TLSv1_2
    transcript = Transcript()
    try:
        async with line_server(tls=tls) as srv:
            result, _ = await lua_check(script, srv.port, params=f"sni={NAME}",
                                        target={"ssl_ca": certs.ca_file},
                                        transcript=transcript)
    finally:
        tls.maximum_version = ssl.TLSVersion.MAXIMUM_SUPPORTED
    parts = result.reason.split("|")
    assert parts[:6] == ["table:ssl session", "false", "false", "true", "table", "true"]
    assert parts[6].endswith("bad argument #1 to 'sslhandshake' (an ssl session, nil or a "
                             "boolean expected, got a session?)")
    notes = [line for line in transcript.render().decode().splitlines() if "TLSv1.2" in line]
    assert len(notes) == 3 and "(session reused)" in notes[1], notes


async def test_tls_of_the_test_port_is_pooled(tmp_path: Path, certs: Certs,
                                              checks: Checks) -> None:
    """SSL="1": connect itself is in TLS; the pooled connection comes back in TLS."""
    script = write_script(tmp_path, """
        function check(t)
          local s = sd.tcp()
          assert(s:connect(t.addr, t.port))
          local n = s:getreusedtimes()
          s:send("ping\\n")
          local line = s:receive()
          assert(s:setkeepalive())
          return true, line .. " reused=" .. n
        end""")
    tls = {"ssl": True, "ssl_verify": True, "ssl_ca": certs.ca_file, "sni": NAME}
    async with line_server(tls=certs.good) as srv:
        reasons = [(await checks.run(script, srv.port, **tls)).reason for _ in range(3)]
        # the same real without SSL="1": never handed the TLS connection
        plain = await checks.run(write_script(tmp_path, HANDSHAKE, "h.lua"), srv.port,
                                 params=f"sni={NAME} verify=1", ssl_ca=certs.ca_file)
    assert reasons == ["pong 1 reused=0", "pong 1 reused=1", "pong 1 reused=2"]
    assert plain.reason == "reused=0"


async def test_a_pooled_tls_connection_keeps_its_setup(tmp_path: Path, certs: Certs,
                                                       checks: Checks) -> None:
    """A connection a script put in TLS comes back in TLS: sslhandshake with the same name
    and verification returns at once; with others, it fails rather than pass the connection
    off as verified for them. Records without data that come while it is idle (TLS 1.3
    session tickets) do not drop it."""
    script = write_script(tmp_path, HANDSHAKE)
    switch = write_script(tmp_path, """
        function check(t)
          local a = sd.tcp()
          assert(a:connect(t.addr, t.port))
          assert(a:sslhandshake(nil, "real1.example.test", true))
          assert(a:setkeepalive())
          local b = sd.tcp()
          assert(b:connect(t.addr, t.port))
          local ok, err = b:sslhandshake(nil, t.args.sni, t.args.verify == "1")
          return false, b:getreusedtimes() == nil and err
        end""", "switch.lua")
    async with line_server(tls=certs.good) as srv:
        params = f"port={srv.port} sni={NAME} verify=1 keep=1 quiet=1"
        first = await checks.run(script, 9, params=params, ssl_ca=certs.ca_file)
        again = await checks.run(script, 9, params=params, ssl_ca=certs.ca_file)
        other = await checks.run(switch, srv.port, params="sni=x.example.test verify=1",
                                 ssl_ca=certs.ca_file)
        unverified = await checks.run(switch, srv.port, params=f"sni={NAME}",
                                      ssl_ca=certs.ca_file)
    assert (first.reason, again.reason) == ("reused=0", "reused=1")
    failed = "handshake failed: the pooled connection is in TLS for another server name or " \
             "verification"
    assert other.reason == unverified.reason == failed
