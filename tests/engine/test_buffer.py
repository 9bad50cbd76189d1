"""The receive buffer, each case three ways (as h11's tests): the whole input at once, one byte
at a time (nothing until the last byte), and with trailing bytes (which must stay buffered)."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from surealived.engine.buffer import ReceiveBuffer
from surealived.tester_api import ProbeError

Extract = Callable[[ReceiveBuffer], bytes | None]


def three_ways(data: bytes, extract: Extract, expected: bytes) -> None:
    whole = ReceiveBuffer()
    whole.feed(data)
    assert extract(whole) == expected
    assert len(whole) == 0

    dripped = ReceiveBuffer()
    for i, byte in enumerate(data):
        dripped.feed(bytes([byte]))
        got = extract(dripped)
        if i < len(data) - 1:
            assert got is None, f"complete after {i + 1} of {len(data)} bytes"
        else:
            assert got == expected

    trailing = ReceiveBuffer()
    trailing.feed(data + b"TRAILING")
    assert extract(trailing) == expected
    assert trailing.extract_rest() == b"TRAILING"


def test_exactly() -> None:
    three_ways(b"HTTP/1.0 200", lambda b: b.maybe_extract_exactly(12), b"HTTP/1.0 200")


def test_line_with_crlf() -> None:
    three_ways(b"HTTP/1.1 200 OK\r\n", lambda b: b.maybe_extract_line(100), b"HTTP/1.1 200 OK")


def test_line_with_bare_lf() -> None:
    three_ways(b"+PONG\n", lambda b: b.maybe_extract_line(100), b"+PONG")


def test_empty_line() -> None:
    three_ways(b"\r\n", lambda b: b.maybe_extract_line(100), b"")


def test_until_multibyte_delimiter() -> None:
    three_ways(b"A: 1\r\nB: 2\r\n\r\n", lambda b: b.maybe_extract_until(b"\r\n\r\n", 100),
               b"A: 1\r\nB: 2")


def test_delimiter_split_across_feeds_is_found() -> None:
    buf = ReceiveBuffer()
    buf.feed(b"abc\r\n\r")
    assert buf.maybe_extract_until(b"\r\n\r\n", 100) is None
    buf.feed(b"\nrest")
    assert buf.maybe_extract_until(b"\r\n\r\n", 100) == b"abc"
    assert buf.extract_rest() == b"rest"


def test_at_most_takes_what_is_there() -> None:
    buf = ReceiveBuffer()
    assert buf.maybe_extract_at_most(10) is None
    buf.feed(b"0123456789ABC")
    assert buf.maybe_extract_at_most(10) == b"0123456789"
    assert buf.maybe_extract_at_most(10) == b"ABC"
    assert buf.maybe_extract_at_most(10) is None


def test_line_longer_than_limit_fails() -> None:
    buf = ReceiveBuffer()
    buf.feed(b"x" * 50)
    assert buf.maybe_extract_line(100) is None
    buf.feed(b"x" * 60)
    with pytest.raises(ProbeError, match="within 100 bytes"):
        buf.maybe_extract_line(100)


def test_line_exactly_at_limit_is_accepted() -> None:
    buf = ReceiveBuffer()
    buf.feed(b"y" * 10 + b"\n")
    assert buf.maybe_extract_line(10) == b"y" * 10


def test_pieces_in_sequence() -> None:
    buf = ReceiveBuffer()
    buf.feed(b"220 hello\r\n250 ok\r\nDATA")
    assert buf.maybe_extract_line(100) == b"220 hello"
    assert buf.maybe_extract_line(100) == b"250 ok"
    assert buf.maybe_extract_line(100) is None
    assert buf.maybe_extract_exactly(4) == b"DATA"
