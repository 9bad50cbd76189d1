"""Cost per call of the ngx/bit/cjson API from a check, as a script sees it (µs of CPU).

    .venv/bin/python tests/bench/bench_ngx.py [--calls 20000]

Each figure is one check that calls the operation ``--calls`` times (pausing with sd.sleep(0)
every 1000 calls, so the CPU slice of a check does not end it; the hostile regexes 10 times, a
pause after each) and divides this process's CPU
time by the calls, minus an empty loop's. ``bit.band (pure Lua)`` is a nibble-table band written
in Lua, the alternative to native.py's band, for comparison.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from surealived.lua import SCRIPTS  # noqa: E402
from tests.lua.helpers import lua_check, write_script  # noqa: E402

PRELUDE = r"""
local cjson = require "cjson"
local floor = math.floor
local AND = {}
for i = 0, 15 do for j = 0, 15 do
  local r, bv, x, y = 0, 1, i, j
  for k = 1, 4 do
    if x % 2 == 1 and y % 2 == 1 then r = r + bv end
    x, y, bv = floor(x / 2), floor(y / 2), bv * 2
  end
  AND[i * 16 + j] = r
end end
local function lua_band(a, b)
  a, b = a % 4294967296, b % 4294967296
  local r, m = 0, 1
  for i = 1, 8 do
    local x, y = a % 16, b % 16
    r = r + AND[x * 16 + y] * m
    a, b, m = (a - x) / 16, (b - y) / 16, m * 16
  end
  if r >= 2147483648 then r = r - 4294967296 end
  return r
end
local headers = "HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: 1234\r\n\r\n"
local page = string.rep("lorem ipsum dolor sit amet ", 4000) .. "Welcome"
local doc = { status = "ok", checks = { { name = "db", up = true, ms = 1.25 } }, n = 7 }
local doc_json = cjson.encode(doc)
local a100k, a1m = string.rep("a", 100000), string.rep("a", 2^20)
"""

OPS = {
    "empty loop": "",
    "bit.band": "bit.band(12345, 678)",
    "bit.band (pure Lua)": "lua_band(12345, 678)",
    "bit.lshift": "bit.lshift(12345, 3)",
    "ngx.sha1_bin (3 bytes)": 'ngx.sha1_bin("abc")',
    "ngx.md5 (3 bytes)": 'ngx.md5("abc")',
    "ngx.encode_base64 (3 bytes)": 'ngx.encode_base64("abc")',
    "ngx.now": "ngx.now()",
    "ngx.re.match (status line)": 'ngx.re.match(headers, "^HTTP/1\\\\.[01] ([0-9]{3})", "jo")',
    "ngx.re.find (108 kB page)": 'ngx.re.find(page, "Welcome", "jo")',
    "ngx.escape_uri (11 bytes)": 'ngx.escape_uri("a b/c?d=e&f")',
    "cjson.encode (small doc)": "cjson.encode(doc)",
    "cjson.decode (small doc)": "cjson.decode(doc_json)",
}
# backtracking bombs for PCRE: linear here (a few calls each, the figure per call)
HOSTILE = {
    "ngx.re.match (a+)+$ on 100 kB": 'ngx.re.match(a100k, "(a+)+$")',
    "ngx.re.match (a+)+$ on 1 MiB": 'ngx.re.match(a1m, "(a+)+$")',
    "ngx.re.find ^(a|aa)+$ on 1 MiB + b": 'ngx.re.find(a1m .. "b", "^(a|aa)+$")',
}


def script_for(op: str, calls: int, pause: int) -> str:
    return PRELUDE + f"""
function check(t)
  local c0 = os.clock()
  for i = 1, {calls} do
    {op}
    if i % {pause} == 0 then sd.sleep(0) end
  end
  return false, tostring(os.clock() - c0)
end
"""


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=20000)
    args = parser.parse_args()
    SCRIPTS.set_limits(64 << 20, 10**10)
    directory = Path(tempfile.mkdtemp())
    base = 0.0
    runs = [(name, op, args.calls, 1000) for name, op in OPS.items()]
    runs += [(name, op, 10, 1) for name, op in HOSTILE.items()]
    for name, op, calls, pause in runs:
        path = write_script(directory, script_for(op, calls, pause), f"{abs(hash(name))}.lua")
        result, _ = await lua_check(path, 1, timeout=120)
        try:
            seconds = float(result.reason)
        except ValueError:
            sys.exit(f"{name}: {result.reason}")
        per_call = seconds / calls * 1e6
        if name == "empty loop":
            base = per_call
        print(f"{name:36} {per_call - base:10.2f} µs/call")


if __name__ == "__main__":
    asyncio.run(main())
