"""native.py's pure helpers, without Lua: nginx's base64 and URI unescaping rules, PCRE's
extended syntax rewritten for RE2, and the regex cache's bound."""

from __future__ import annotations

import pytest

from surealived.lua import native


@pytest.mark.parametrize(("text", "want"), [
    (b"", b""), (b"Zg==", b"f"), (b"Zg", b"f"), (b"Zm8", b"fo"), (b"Zm9v", b"foo"),
    (b"Zg==!!", b"f"),  # what follows the first = is ignored, as nginx does
    (b"Z", None), (b"Zm9vY", None), (b"Zm 9v", None), (b"Zm9v\n", None), (b"-_-_", None),
])
def test_decode_base64(text: bytes, want: bytes | None) -> None:
    assert native.decode_base64(text) == want


@pytest.mark.parametrize(("text", "want"), [
    (b"plain", b"plain"), (b"a+b", b"a b"), (b"%41%6a", b"Aj"), (b"%", b""), (b"%4", b""),
    (b"%4z", b""), (b"%zz", b"zz"), (b"%%41", b"%41"), (b"%+", b"+"),
    (b"adm%' and '%'=", b"adm' and ''="),
])
def test_unescape_uri_follows_nginx(text: bytes, want: bytes) -> None:
    assert native.unescape_uri(text) == want


@pytest.mark.parametrize(("pattern", "want"), [
    (b"a b  c", b"abc"), (b"a\\ b", b"a\\ b"), (b"a # note\nb", b"ab"), (b"[ #]x", b"[ #]x"),
    (b"[] ]x", b"[] ]x"), (b"[^] ] x", b"[^] ]x"), (b"a\\#b", b"a\\#b"), (b"[a", b"[a"),
])
def test_extended_syntax(pattern: bytes, want: bytes) -> None:
    assert native.extended(pattern) == want


def test_the_regex_cache_is_bounded_and_errors_are_values() -> None:
    n = native.Natives()
    for i in range(native.REGEX_CACHE + 10):
        assert n.re_meta(f"x{i}".encode(), b"")[1] == 0
    assert len(n.regexes) == native.REGEX_CACHE
    assert n.re_meta(b"(a)\\1", b"") == (False, b"invalid escape sequence: \\1")
    assert n.re_exec(b"(a)\\1", b"", b"aa", 0, -1) is None
    assert n.re_exec(b"(b)|(a)", b"", b"xa", 0, -1) == (1, 2, -1, -1, 1, 2)
    assert n.re_exec(b"a", b"", False, 0, 0) == (2, 1, 2)  # the last subject again
    assert n.re_exec(b"A", b"i", b"xa", 0, 5) == (2, -1, -1)
