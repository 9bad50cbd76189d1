"""`surealived -t` rejects bad XML with the right FILE:LINE message, and accepts good XML.

Each case is a whole small document; the expected error names the line, the element, the
attribute and what is wrong. The corpus covers every attribute's bad values, missing mandatory
attributes, wrong nesting and malformed XML.
"""

from __future__ import annotations

import os
import stat

import pytest

from surealived.config.xml import parse_config_bytes
from surealived.errors import ConfigErrors
from surealived.registry import load_testers

REGISTRY = load_testers()

V = 'name="web" addr="192.0.2.10" port="80" proto="tcp" sched="wrr" rt="dr"'
T = 'proto="tcp" testport="80"'
R = 'name="r1" addr="127.0.0.1" port="80" weight="10"'


def doc(virtual: str = V, tester: str = T, real: str = R, extra: str = "") -> str:
    # line 1 <surealived>, line 2 <virtual>, line 3 <tester>, line 4 <real>
    return (f"<surealived>\n<virtual {virtual}>\n<tester {tester}/>\n<real {real}/>\n{extra}"
            f"</virtual>\n</surealived>\n")


def sub(base: str, old: str, new: str) -> str:
    assert old in base, old
    return base.replace(old, new)


BAD: list[tuple[str, str, int, str]] = [
    # virtual attributes
    ("v-name-missing", doc(virtual=sub(V, 'name="web" ', "")), 2, "<virtual> name: is mandatory"),
    ("v-name-long", doc(virtual=sub(V, "web", "w" * 32)), 2, "is not a valid name"),
    ("v-name-chars", doc(virtual=sub(V, "web", "we b")), 2, "is not a valid name"),
    ("v-name-slash", doc(virtual=sub(V, "web", "a/b")), 2, "is not a valid name"),
    ("v-name-empty", doc(virtual=sub(V, '"web"', '""')), 2, "is not a valid name"),
    ("v-addr-bad", doc(virtual=sub(V, "192.0.2.10", "192.0.2")), 2, "addr: '192.0.2' is not an IP"),
    ("v-addr-host", doc(virtual=sub(V, "192.0.2.10", "www.example.test")), 2, "is not an IP"),
    ("v-addr-multicast", doc(virtual=sub(V, "192.0.2.10", "224.0.0.1")), 2, "multicast"),
    ("v-addr-v6-multicast", doc(virtual=sub(V, "192.0.2.10", "ff02::1")), 2, "multicast"),
    ("v-addr-unspecified", doc(virtual=sub(V, "192.0.2.10", "0.0.0.0")), 2, "unspecified"),
    ("v-addr-missing", doc(virtual=sub(V, 'addr="192.0.2.10" ', "")), 2,
     'addr: is mandatory with proto="tcp"'),
    ("v-port-big", doc(virtual=sub(V, 'port="80"', 'port="65536"')), 2,
     "port: '65536' is not a port"),
    ("v-port-neg", doc(virtual=sub(V, 'port="80"', 'port="-1"')), 2, "is not a port"),
    ("v-port-text", doc(virtual=sub(V, 'port="80"', 'port="http"')), 2, "is not a port"),
    ("v-port-trailing", doc(virtual=sub(V, 'port="80"', 'port="80abc"')), 2, "is not a port"),
    ("v-port-missing", doc(virtual=sub(V, 'port="80" ', "")), 2, "port: is mandatory"),
    ("v-proto-bad", doc(virtual=sub(V, 'proto="tcp"', 'proto="sctp"')), 2,
     "proto: 'sctp' is not allowed (valid: tcp, udp, fwmark)"),
    ("v-proto-missing", doc(virtual=sub(V, 'proto="tcp" ', "")), 2, "proto: is mandatory"),
    ("v-sched-bad", doc(virtual=sub(V, "wrr", "fastest")), 2, "sched: 'fastest' is not allowed"),
    ("v-sched-missing", doc(virtual=sub(V, 'sched="wrr" ', "")), 2, "sched: is mandatory"),
    ("v-rt-bad", doc(virtual=sub(V, 'rt="dr"', 'rt="nat"')), 2, "rt: 'nat' is not allowed"),
    ("v-rt-missing", doc(virtual=sub(V, ' rt="dr"', "")), 2, "rt: is mandatory"),
    ("v-pers-neg", doc(virtual=V + ' pers="-5"'), 2, "pers: -5 is out of range"),
    ("v-pers-text", doc(virtual=V + ' pers="long"'), 2, "pers: 'long' is not an integer"),
    ("v-ops-tcp", doc(virtual=V + ' ops="1"'), 2, "ops: one-packet scheduling applies to udp"),
    ("v-ops-bad", doc(virtual=sub(V, "tcp", "udp") + ' ops="maybe"'), 2, "is not a boolean"),
    ("v-fwmark-tcp", doc(virtual=V + ' fwmark="7"'), 2, 'fwmark: needs proto="fwmark"'),
    ("v-fwmark-missing", doc(virtual='name="fw" proto="fwmark" sched="wrr" rt="dr"'), 2,
     'fwmark: is mandatory with proto="fwmark"'),
    ("v-fwmark-zero", doc(virtual='name="fw" proto="fwmark" fwmark="0" sched="wrr" rt="dr"'), 2,
     "fwmark: 0 is out of range"),
    ("v-fwmark-addr", doc(virtual='name="fw" proto="fwmark" fwmark="3" addr="192.0.2.1" '
                                  'sched="wrr" rt="dr"'), 2,
     'addr: is not used with proto="fwmark"'),
    ("v-af-tcp", doc(virtual=V + ' af="inet6"'), 2, "af: applies to fwmark virtuals only"),
    ("v-unknown-attr", doc(virtual=V + ' shed="wrr"'), 2, "shed: unknown attribute 'shed'"),
    # tester attributes
    ("t-proto-missing", doc(tester='testport="80"'), 3, "proto: is mandatory"),
    ("t-proto-unknown", doc(tester='proto="htp" testport="80"'), 3, "no tester named 'htp'"),
    ("t-testport-missing", doc(tester='proto="tcp"'), 3, 'testport: is mandatory for proto="tcp"'),
    ("t-testport-bad", doc(tester='proto="tcp" testport="99999"'), 3, "is not a port"),
    ("t-loopdelay-neg", doc(tester=T + ' loopdelay="-1"'), 3, "loopdelay: '-1' is out of range"),
    ("t-loopdelay-text", doc(tester=T + ' loopdelay="soon"'), 3, "is not a number of seconds"),
    ("t-timeout-zero", doc(tester=T + ' timeout="0"'), 3, "timeout: '0' is out of range"),
    ("t-timeout-nan", doc(tester=T + ' timeout="nan"'), 3, "timeout: 'nan' is out of range"),
    ("t-r2ok-zero", doc(tester=T + ' retries2ok="0"'), 3, "retries2ok: 0 is out of range"),
    ("t-r2fail-zero", doc(tester=T + ' retries2fail="0"'), 3, "retries2fail: 0 is out of range"),
    ("t-r2fail-text", doc(tester=T + ' retries2fail="two"'), 3, "is not an integer"),
    ("t-rof-bad", doc(tester=T + ' remove_on_fail="sometimes"'), 3, "is not a boolean"),
    ("t-ssl-bad", doc(tester=T + ' SSL="yes please"'), 3, "SSL: 'yes please' is not a boolean"),
    ("t-ssl-lowercase", doc(tester=T + ' ssl="1"'), 3, "ssl: unknown attribute"),
    ("t-samples-big", doc(tester=T + ' stats_samples="21"'), 3,
     "stats_samples: 21 is out of range"),
    ("t-notify-missing", doc(tester=T + ' notify_up="/nonexistent/up.sh"'), 3,
     "notify_up: program '/nonexistent/up.sh' does not exist"),
    ("t-min-reals-bad", doc(tester=T + ' notify_min_reals="half"'), 3,
     "notify_min_reals: 'half' is not a count or a percentage"),
    ("t-min-weight-pct", doc(tester=T + ' notify_min_weight="150%"'), 3, "is over 100%"),
    ("t-bindaddr-bad", doc(tester=T + ' bindaddr="localhost"'), 3, "bindaddr: 'localhost' is not"),
    ("t-ssl-ca-missing", doc(tester=T + ' ssl_ca="/nonexistent/ca.pem"'), 3, "does not exist"),
    ("t-sni-long", doc(tester=T + f' sni="{"a" * 254}"'), 3, "sni: 254 characters is too long"),
    ("t-http-url-missing", doc(tester='proto="http" testport="80" host="h"'), 3,
     'url: is mandatory for proto="http"'),
    ("t-http-host-missing", doc(tester='proto="http" testport="80" url="/"'), 3,
     "host: is mandatory"),
    ("t-http-retcode-bad", doc(tester='proto="http" testport="80" url="/" host="h" retcode="2xx"'),
     3, "retcode: '2xx' is not a status list"),
    ("t-http-retcode-range", doc(tester='proto="http" testport="80" url="/" host="h" '
                                        'retcode="302-301"'), 3, "is not a status code or range"),
    ("t-http-naive-bad", doc(tester='proto="http" testport="80" url="/" host="h" naive="perhaps"'),
     3, "naive: 'perhaps' is not a boolean"),
    ("t-http-regex-bad", doc(tester='proto="http" testport="80" url="/" host="h" '
                                    'body_match="(unclosed"'), 3, "is not a regular expression"),
    ("t-http-method-bad", doc(tester='proto="http" testport="80" url="/" host="h" method="FETCH"'),
     3, "method: 'FETCH' is not allowed"),
    ("t-dns-request-missing", doc(tester='proto="dns" testport="53"'), 3, "request: is mandatory"),
    ("t-dns-qtype-bad", doc(tester='proto="dns" testport="53" request="example.test" qtype="ANY"'),
     3, "qtype: 'ANY' is not allowed"),
    ("t-exec-missing", doc(tester='proto="exec" testport="80"'), 3, "exec: is mandatory"),
    ("t-exec-nofile", doc(tester='proto="exec" testport="80" exec="/nonexistent/check"'), 3,
     "does not exist"),
    ("t-lua-script-missing", doc(tester='proto="lua" testport="80"'), 3, "script: is mandatory"),
    ("t-lua-script-nofile", doc(tester='proto="lua" testport="80" script="/nonexistent/x.lua"'),
     3, "does not exist"),
    ("t-unknown-attr", doc(tester=T + ' url="/"'), 3, "url: unknown attribute 'url'"),
    # real attributes
    ("r-name-missing", doc(real=sub(R, 'name="r1" ', "")), 4, "<real> name: is mandatory"),
    ("r-name-long", doc(real=sub(R, "r1", "r" * 40)), 4, "is not a valid name"),
    ("r-addr-missing", doc(real=sub(R, 'addr="127.0.0.1" ', "")), 4, "addr: is mandatory"),
    ("r-addr-bad", doc(real=sub(R, "127.0.0.1", "127.1")), 4, "addr: '127.1' is not an IP"),
    ("r-addr-v6-bad", doc(real=sub(R, "127.0.0.1", "::1::2")), 4, "is not an IP"),
    ("r-addr-multicast", doc(real=sub(R, "127.0.0.1", "239.1.1.1")), 4, "multicast"),
    ("r-port-missing", doc(real=sub(R, 'port="80" ', "")), 4, "port: is mandatory"),
    ("r-port-big", doc(real=sub(R, 'port="80"', 'port="70000"')), 4, "'70000' is not a port"),
    ("r-weight-missing", doc(real=sub(R, ' weight="10"', "")), 4, "weight: is mandatory"),
    ("r-weight-neg", doc(real=sub(R, 'weight="10"', 'weight="-5"')), 4,
     "weight: -5 is out of range"),
    ("r-weight-big", doc(real=sub(R, 'weight="10"', 'weight="65536"')), 4, "is out of range"),
    ("r-weight-text", doc(real=sub(R, 'weight="10"', 'weight="heavy"')), 4, "is not an integer"),
    ("r-testport-bad", doc(real=R + ' testport="x"'), 4, "testport: 'x' is not a port"),
    ("r-uthresh-neg", doc(real=R + ' uthresh="-1"'), 4, "uthresh: -1 is out of range"),
    ("r-lthresh-alone", doc(real=R + ' lthresh="5"'), 4, "lthresh: must not exceed uthresh"),
    ("r-lthresh-above", doc(real=R + ' lthresh="50" uthresh="10"'), 4, "must not exceed uthresh"),
    ("r-rt-bad", doc(real=R + ' rt="direct"'), 4, "rt: 'direct' is not allowed"),
    ("r-bindaddr-bad", doc(real=R + ' bindaddr="eth0"'), 4, "bindaddr: 'eth0' is not an IP"),
    ("r-unknown-attr", doc(real=R + ' wieght="3"'), 4, "wieght: unknown attribute"),
    ("r-foreign-module-attr", doc(real=R + ' url="/x"'), 4, "url: unknown attribute"),
    ("r-exec-not-per-real", doc(tester='proto="exec" testport="80" exec="/bin/true"',
                                real=R + ' exec="/bin/false"'), 4, "exec: unknown attribute"),
    ("r-http-override-bad", doc(tester='proto="http" testport="80" url="/" host="h"',
                                real=R + ' retcode="abc"'), 4, "retcode: 'abc' is not a status"),
    # structure
    ("s-real-before-tester", "<surealived>\n<virtual " + V + ">\n<real " + R + "/>\n<tester " + T
     + "/>\n</virtual>\n</surealived>\n", 3, "the first element inside <virtual> must be <tester>"),
    ("s-no-tester", "<surealived>\n<virtual " + V + ">\n</virtual>\n</surealived>\n", 2,
     "has no <tester>"),
    ("s-two-testers", doc(extra=f"<tester {T}/>\n"), 5, "only one <tester>"),
    ("s-unknown-in-virtual", doc(extra="<backend/>\n"), 5, "<backend> is not allowed inside"),
    ("s-unknown-root", "<config>\n</config>\n", 1, "root element must be <surealived>"),
    ("s-real-at-top", "<surealived>\n<real " + R + "/>\n</surealived>\n", 2,
     "<real> is not allowed inside <surealived>"),
    ("s-nested-surealived", "<surealived>\n<surealived/>\n</surealived>\n", 2, "is not allowed"),
    ("s-root-attr", '<surealived version="1">\n</surealived>\n', 1, "takes no attributes"),
    ("s-malformed", "<surealived>\n<virtual " + V + ">\n</surealived>\n", 3, "malformed XML"),
    ("s-not-xml", "this is not xml\n", 1, "malformed XML"),
    ("s-unclosed-attr", '<surealived>\n<virtual name="x>\n</surealived>\n', 3, "malformed XML"),
    ("s-duplicate-attr", '<surealived>\n<virtual name="a" name="b"/>\n</surealived>\n', 2,
     "malformed XML"),
    ("s-empty", "", 1, "malformed XML"),
    ("s-dup-virtual", "<surealived>\n<virtual " + V + ">\n<tester " + T + "/>\n</virtual>\n"
     "<virtual " + sub(V, "web", "web2") + ">\n<tester " + T + "/>\n</virtual>\n</surealived>\n",
     5, "duplicates the service of line 2"),
    ("s-dup-virtual-name", "<surealived>\n<virtual " + V + ">\n<tester " + T + "/>\n</virtual>\n"
     "<virtual " + sub(V, "80", "81") + ">\n<tester " + T + "/>\n</virtual>\n</surealived>\n",
     5, "name 'web' is already used on line 2"),
    ("s-dup-real", doc(extra=f"<real {sub(R, 'r1', 'r2')}/>\n"), 5,
     "duplicates the real of line 4"),
    ("s-dup-real-name", doc(extra="<real " + sub(R, 'port="80"', 'port="81"') + "/>\n"), 5,
     "name 'r1' is already used on line 4"),
]


@pytest.mark.parametrize(("xml", "line", "fragment"), [c[1:] for c in BAD], ids=[c[0] for c in BAD])
def test_bad_config_is_rejected_with_file_line_and_reason(xml: str, line: int, fragment: str
                                                          ) -> None:
    with pytest.raises(ConfigErrors) as caught:
        parse_config_bytes(xml.encode(), "bad.xml", REGISTRY)
    messages = [str(e) for e in caught.value.errors]
    assert any(m.startswith(f"bad.xml:{line}:") and fragment in m for m in messages), messages


def test_corpus_is_large_and_distinct() -> None:
    assert len(BAD) >= 60
    assert len({c[1] for c in BAD}) == len(BAD)


def test_all_errors_are_reported_at_once() -> None:
    xml = doc(virtual=sub(V, "wrr", "fastest"), tester=T + ' timeout="0"',
              real=sub(R, 'weight="10"', 'weight="-1"'))
    with pytest.raises(ConfigErrors) as caught:
        parse_config_bytes(xml.encode(), "bad.xml", REGISTRY)
    lines = sorted(e.line for e in caught.value.errors)
    assert lines == [2, 3, 4]


def test_error_names_element_attribute_and_valid_values() -> None:
    xml = doc(real=sub(R, 'port="80"', 'port="70000"'))
    with pytest.raises(ConfigErrors) as caught:
        parse_config_bytes(xml.encode(), "cfg/web.xml", REGISTRY)
    assert str(caught.value.errors[0]) == (
        "cfg/web.xml:4: <real name=\"r1\"> port: '70000' is not a port (valid: 0..65535)")


def test_good_config_defaults_and_overrides(tmp_path: os.PathLike[str]) -> None:
    script = os.path.join(str(tmp_path), "check.sh")
    with open(script, "w") as f:
        f.write("#!/bin/sh\nexit 0\n")
    os.chmod(script, stat.S_IRWXU)
    xml = """<surealived>
<virtual name="web" addr="2001:db8::10" port="443" proto="tcp" sched="wlc" rt="masq" pers="300">
  <tester proto="http" testport="8443" url="/health" host="www.example.test" SSL="1"
          retcode="200,301-302"/>
  <real name="a" addr="2001:DB8::1" port="443" weight="10" testport="9443" rt="dr"
        uthresh="100" lthresh="10"/>
  <real name="b" addr="127.0.0.1" port="443" weight="5" url="/other" naive="false"/>
</virtual>
<virtual name="dnsv" addr="192.0.2.53" port="53" proto="udp" sched="rr" rt="tun" ops="on">
  <tester proto="no-test"/>
</virtual>
<virtual name="fw" proto="fwmark" fwmark="7" af="inet6" sched="wrr" rt="dr">
  <tester proto="exec" testport="80" exec="check.sh" params="-q x" notify_min_reals="50%"/>
  <real name="c" addr="::1" port="80" weight="1"/>
</virtual>
</surealived>"""
    cfg = parse_config_bytes(xml.encode(), os.path.join(str(tmp_path), "t.xml"), REGISTRY)
    web, dnsv, fw = cfg.virtuals
    t = web.tester
    assert (t.loopdelay, t.timeout, t.retries2ok, t.retries2fail) == (3.0, 5.0, 1, 1)
    assert t.ssl and t.options["retcode"] == ((200, 200), (301, 302)) and t.options["naive"]
    a, b = web.reals
    assert a.addr == "2001:db8::1" and a.testport == 9443 and a.rt == "dr"
    assert (a.uthresh, a.lthresh) == (100, 10)
    assert b.testport == 8443 and b.rt == "masq"
    assert b.options["url"] == "/other" and b.options["naive"] is False
    assert a.options is t.options  # no override: shared, immutable
    assert dnsv.tester.proto == "none" and dnsv.ops and dnsv.reals == ()
    assert (fw.addr, fw.port, fw.fwmark, fw.af) == ("::", 0, 7, "inet6")
    assert fw.tester.options["exec"] == script
    assert fw.tester.notify_min_reals == (50, True)
    assert web.key_text == "[2001:db8::10]:443:0:0"


def test_single_virtual_root_is_accepted() -> None:
    xml = f"<virtual {V}>\n<tester {T}/>\n<real {R}/>\n</virtual>\n"
    cfg = parse_config_bytes(xml.encode(), "v.xml", REGISTRY)
    assert [v.name for v in cfg.virtuals] == ["web"]


def test_hostile_xml_entities_are_not_expanded_from_files() -> None:
    xml = ('<?xml version="1.0"?>\n<!DOCTYPE s [<!ENTITY x SYSTEM "file:///etc/passwd">]>\n'
           f'<surealived>\n<virtual {sub(V, "web", "&x;")}>\n<tester {T}/>\n</virtual>\n'
           '</surealived>\n')
    with pytest.raises(ConfigErrors) as caught:
        parse_config_bytes(xml.encode(), "evil.xml", REGISTRY)
    assert "root:" not in str(caught.value)
