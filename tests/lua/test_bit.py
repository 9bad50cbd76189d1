"""The ``bit`` library (a global, and the built-in module ``bit``): LuaBitOp's semantics, 32-bit
signed results in Lua 5.1's doubles, on the examples of LuaBitOp's documentation and the
conversions at its edges."""

from __future__ import annotations

from pathlib import Path

import pytest

from .helpers import run_body, run_expect

pytestmark = pytest.mark.asyncio

# LuaBitOp's API documentation, example by example
DOCUMENTED = [
    ("bit.tobit(0xffffffff)", "-1"),
    ("bit.tobit(0xffffffff + 1)", "0"),
    ("bit.tobit(2^40 + 1234)", "1234"),
    ("bit.tohex(1)", '"00000001"'),
    ("bit.tohex(-1)", '"ffffffff"'),
    ("bit.tohex(0xffffffff)", '"ffffffff"'),
    ("bit.tohex(-1, -4)", '"FFFF"'),
    ("bit.tohex(0x21, 4)", '"0021"'),
    ("bit.tohex(0x87654321, 4)", '"4321"'),
    ("bit.bnot(0)", "-1"),
    ("bit.tohex(bit.bnot(0x12345678))", '"edcba987"'),
    ("bit.bor(1, 2, 4, 8)", "15"),
    ("bit.tohex(bit.band(0x12345678, 0xff))", '"00000078"'),
    ("bit.tohex(bit.bxor(0xa5a5f0f0, 0xaa55ff00))", '"0ff00ff0"'),
    ("bit.lshift(1, 0)", "1"),
    ("bit.lshift(1, 8)", "256"),
    ("bit.lshift(1, 40)", "256"),
    ("bit.rshift(256, 8)", "1"),
    ("bit.rshift(-256, 8)", "16777215"),
    ("bit.arshift(256, 8)", "1"),
    ("bit.arshift(-256, 8)", "-1"),
    ("bit.tohex(bit.lshift(0x87654321, 12))", '"54321000"'),
    ("bit.tohex(bit.rshift(0x87654321, 12))", '"00087654"'),
    ("bit.tohex(bit.arshift(0x87654321, 12))", '"fff87654"'),
    ("bit.tohex(bit.rol(0x12345678, 12))", '"45678123"'),
    ("bit.tohex(bit.ror(0x12345678, 12))", '"67812345"'),
    ("bit.tohex(bit.bswap(0x12345678))", '"78563412"'),
    ("bit.tohex(bit.bswap(0x78563412))", '"12345678"'),
]

EDGES = [
    # rounding half to even, then modulo 2^32, signed
    ("bit.tobit(1.5)", "2"), ("bit.tobit(2.5)", "2"), ("bit.tobit(-1.5)", "-2"),
    ("bit.tobit(-1)", "-1"), ("bit.tobit(2^31)", "-2147483648"), ("bit.tobit(2^32 + 5)", "5"),
    ("bit.tobit(0/0)", "0"), ("bit.tobit(math.huge)", "0"), ("bit.tobit(2^52 + 3)", "3"),
    ("bit.band(2.5, 7)", "2"), ("bit.band(-1, 0xffffffff)", "-1"),
    ("bit.band(0xff)", "255"), ("bit.bxor(1, 2, 3)", "0"), ("bit.band(7, 6, 3)", "2"),
    # numeric strings are numbers, as in any Lua library
    ('bit.band("0xff", "15")', "15"), ('bit.lshift("1", "4")', "16"),
    ("bit.lshift(1, 31)", "-2147483648"), ("bit.lshift(1, 32)", "1"), ("bit.lshift(1, -1)",
                                                                       "-2147483648"),
    ("bit.rshift(-1, 0)", "-1"), ("bit.rshift(-1, 31)", "1"), ("bit.arshift(-1, 31)", "-1"),
    ("bit.rol(1, 0)", "1"), ("bit.ror(1, 1)", "-2147483648"), ("bit.rol(-1, 7)", "-1"),
    ("bit.tohex(255, 2)", '"ff"'), ("bit.tohex(255, 0)", '""'), ("bit.tohex(255, 12)",
                                                                  '"000000ff"'),
    ("bit.tohex(255, -2)", '"FF"'), ("bit.bswap(-1)", "-1"),
    ('require("bit") == bit', "true"),
    ('type(bit.band)', '"function"'),
]


async def test_luabitop_documented_examples(tmp_path: Path) -> None:
    result = await run_expect(tmp_path, DOCUMENTED)
    assert result.ok, result.reason


async def test_conversions_at_the_edges(tmp_path: Path) -> None:
    result = await run_expect(tmp_path, EDGES)
    assert result.ok, result.reason


@pytest.mark.parametrize(("call", "message"), [
    ("bit.band(1, nil)", "bad argument #2 to 'band' (number expected, got no value)"),
    ("bit.bor({})", "bad argument #1 to 'bor' (number expected, got table)"),
    ("bit.band()", "bad argument #1 to 'band' (number expected, got no value)"),
    ("bit.lshift('x', 1)", "bad argument #1 to 'lshift' (number expected, got string)"),
    ("bit.tohex(1, 'z')", "bad argument #2 to 'tohex' (number expected, got string)"),
])
async def test_bad_arguments_raise_as_luabitop(tmp_path: Path, call: str, message: str) -> None:
    result = await run_body(tmp_path, f"return {call}")
    assert not result.ok
    assert message in result.reason


async def test_bit_is_read_only(tmp_path: Path) -> None:
    result = await run_body(tmp_path, "bit.band = function() return 0 end")
    assert "attempt to modify the read-only table 'bit'" in result.reason
