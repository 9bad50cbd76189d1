"""Configuration fuzzing: thousands of generated and mutated XML documents and surealived.cfg
files through the parsers, and a few dozen (hundreds with RELIABILITY_SCALE) through the real
``surealived -t``: each is accepted or refused with ``FILE:LINE: ...`` errors, and nothing else
ever reaches the user (no other exception, no traceback, exit status 0 or 1)."""

from __future__ import annotations

import random
import re
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from surealived.config.main import MainConfig, parse_maincfg
from surealived.config.xml import parse_config_bytes
from surealived.errors import ConfigErrors
from surealived.registry import load_testers

from .figures import Row, scale, timeout
from .harness import BIN
from .mutate import generate_cfg, generate_xml, mutate_xml, seeds

pytestmark = pytest.mark.timeout(timeout(120))
REGISTRY = load_testers()
SEEDS = seeds()
COUNTS: dict[str, list[float]] = {}  # part -> [cases, accepted, first and last time]
FUZZ = settings(max_examples=1000 * scale(), deadline=None, derandomize=False,
                suppress_health_check=list(HealthCheck), database=None)


def count(part: str, accepted: bool) -> None:
    cases = COUNTS.setdefault(part, [0, 0, time.monotonic(), 0])
    cases[0] += 1
    cases[1] += accepted
    cases[3] = time.monotonic()


def check_xml(data: bytes, path: str) -> bool:
    """Parse; True if accepted. Any refusal must be ConfigErrors whose every error is one line
    starting with ``path:LINE:``."""
    try:
        parse_config_bytes(data, path, REGISTRY)
    except ConfigErrors as exc:
        assert exc.errors, "ConfigErrors without errors"
        for error in exc.errors:
            text = str(error)
            assert isinstance(error.line, int) and error.line >= 1, text
            assert text.startswith(f"{path}:{error.line}: "), text
            assert "\n" not in text and "\r" not in text, repr(text)
        return False
    return True


def check_cfg(text: str, path: str) -> bool:
    try:
        config = parse_maincfg(text, path)
    except ConfigErrors as exc:
        assert exc.errors
        for error in exc.errors:
            rendered = str(error)
            assert error.line >= 1 and rendered.startswith(f"{path}:{error.line}: "), rendered
            assert "\n" not in rendered and "\r" not in rendered, repr(rendered)
        return False
    assert isinstance(config, MainConfig)
    return True


@FUZZ
@given(st.sampled_from(SEEDS), st.randoms(use_true_random=False))
def test_mutated_xml(seed: tuple[str, bytes], rng: random.Random) -> None:
    path, data = seed
    count("XML mutated", check_xml(mutate_xml(data, rng), path))


@FUZZ
@given(st.randoms(use_true_random=False))
def test_generated_xml(rng: random.Random) -> None:
    count("XML generated", check_xml(generate_xml(rng), "/etc/surealived/gen.xml"))


@FUZZ
@given(st.randoms(use_true_random=False))
def test_generated_maincfg(rng: random.Random) -> None:
    count("surealived.cfg generated", check_cfg(generate_cfg(rng), "/etc/surealived/x.cfg"))


@FUZZ
@given(st.text(max_size=300))
def test_arbitrary_maincfg_text(text: str) -> None:
    count("surealived.cfg arbitrary text", check_cfg(text, "x.cfg"))


def test_truncation_at_every_byte() -> None:
    """A file cut anywhere (an editor crash, a full disk): refused with a line number, never
    half-accepted as something else. Only the whole file (or a cut after the root's end) may
    be accepted."""
    row = Row("XML truncated at every byte")
    for path, data in SEEDS:
        end = data.rindex(b"</surealived>") + len(b"</surealived>")
        for cut in range(len(data)):
            row.cases += 1
            accepted = check_xml(data[:cut], path)
            if accepted != (cut >= end):
                row.failures += 1
    row.done()
    assert row.failures == 0


def test_deep_nesting_and_entity_tricks() -> None:
    """Deep nesting, entity expansion bombs and external entities: refused or harmless, and no
    file outside the configuration is ever read into an error message."""
    secret = Path("/etc/passwd").read_text()[:20]
    laughs = b"".join(b'<!ENTITY l%d "%s">' % (i + 1, (b"&l%d;" % i) * 10) for i in range(10))
    cases = {
        "deep": b"<surealived>" + b"<virtual>" * 100_000 + b"</virtual>" * 100_000
                + b"</surealived>",
        "deep tester": b'<surealived><virtual name="a">' + b"<tester>" * 5000
                       + b"</tester>" * 5000 + b"</virtual></surealived>",
        "laughs": b'<!DOCTYPE s [<!ENTITY l0 "lol">' + laughs
                  + b']><surealived><virtual name="&l10;"/></surealived>',
        "xxe attr": b'<!DOCTYPE s [<!ENTITY x SYSTEM "file:///etc/passwd">]>'
                    b'<surealived><virtual name="&x;"/></surealived>',
        "xxe text": b'<!DOCTYPE s [<!ENTITY x SYSTEM "/etc/passwd">]><surealived>&x;'
                    b"</surealived>",
        "parameter entity": b'<!DOCTYPE s [<!ENTITY % p SYSTEM "file:///etc/passwd"> %p;]>'
                            b"<surealived/>",
        "external dtd": b'<!DOCTYPE s SYSTEM "http://127.0.0.1:9/x.dtd"><surealived/>',
        "xinclude": b'<surealived xmlns:xi="http://www.w3.org/2001/XInclude">'
                    b'<xi:include href="/etc/passwd" parse="text"/></surealived>',
        "pi and cdata": b"<?xml-stylesheet href='/etc/passwd'?><surealived><![CDATA[x]]>"
                        b"</surealived>",
        "utf-16": '<?xml version="1.0" encoding="UTF-16"?><surealived/>'.encode("utf-16"),
        "lying encoding": b'<?xml version="1.0" encoding="EBCDIC-US"?><surealived/>',
        "bom junk": b"\xef\xbb\xbf\xef\xbb\xbf<surealived/>",
        "huge attribute": b'<surealived><virtual name="' + b"a" * 20_000_000
                          + b'"/></surealived>',
        "many virtuals": b"<surealived>" + b'<virtual name="v"/>' * 5000 + b"</surealived>",
    }
    row = Row("XML nesting and entity tricks", cases=len(cases))
    for name, data in cases.items():
        try:
            check_xml(data, "/etc/surealived/t.xml")
        except ConfigErrors as exc:  # pragma: no cover - check_xml catches these
            raise AssertionError(name) from exc
        except AssertionError:
            row.failures += 1
            raise
        try:
            parse_config_bytes(data, "t.xml", REGISTRY)
        except ConfigErrors as exc:
            assert secret not in str(exc), f"{name}: a file's content reached the errors"
    row.done()


# -- through the real command line ------------------------------------------------------------

ERROR_LINE = re.compile(r"^(?P<file>[^\n]+?):(?P<line>\d+): ")


def run_check(folder: Path, xml: bytes, cfg: str) -> tuple[int, str, str]:
    folder.mkdir()
    (folder / "testers").mkdir()
    (folder / "t.xml").write_bytes(xml)
    (folder / "s.cfg").write_text(cfg + "\nmodules_path testers\n", errors="surrogatepass")
    done = subprocess.run([str(BIN / "surealived"), "-t", "-c", "s.cfg", "t.xml"], cwd=folder,
                          capture_output=True, timeout=60)
    return (done.returncode, done.stdout.decode("utf-8", "replace"),
            done.stderr.decode("utf-8", "replace"))


def test_cli_never_shows_a_traceback(tmp_path: Path) -> None:
    rng = random.Random(9)
    n = 32 * scale()
    cases = []
    for i in range(n):
        path, data = rng.choice(SEEDS)
        # some valid files too: they must be accepted
        xml = data if i % 8 == 0 else generate_xml(rng) if i % 5 == 0 else mutate_xml(data, rng)
        xml = xml.replace(b'"../scripts/', f'"{Path(path).parent}/../scripts/'.encode())
        cfg = generate_cfg(rng) if i % 3 == 0 else "logging info"
        cases.append((tmp_path / f"c{i}", xml, cfg))
    row = Row("surealived -t (CLI) on mutated files", cases=n)
    problems = []
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda c: run_check(*c), cases))
    outcomes = {0: 0, 1: 0}
    for (folder, _, _), (status, out, err) in zip(cases, results, strict=True):
        text = out + err
        bad = status not in (0, 1) or "Traceback" in text
        for line in err.splitlines():
            if not ERROR_LINE.match(line):
                bad = True
        if status == 1 and "ERROR" not in out:
            bad = True
        outcomes[status] = outcomes.get(status, 0) + 1
        if bad:
            problems.append(f"{folder}: status {status}\n{text[-2000:]}")
    row.failures = len(problems)
    row.note = f"{outcomes.get(0, 0)} accepted, {outcomes.get(1, 0)} refused"
    if not outcomes.get(0):
        problems.append("no valid file was accepted")
    row.done()
    assert not problems, "\n\n".join(problems[:3])


def test_record_parser_figures() -> None:
    """One figures row per hypothesis part (runs after them in file order)."""
    if not COUNTS:
        pytest.skip("the hypothesis parts did not run")
    for part, (cases, accepted, started, last) in COUNTS.items():
        note = f"{accepted:.0f} accepted, {cases - accepted:.0f} refused"
        row = Row(part, cases=int(cases), note=note).done()
        row.seconds = round(last - started, 1)
