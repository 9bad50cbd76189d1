"""Benchmark: parse an XML test definition with N reals (default 20,000). Run by hand:

    .venv/bin/python tests/bench/bench_config.py [--reals 20000] [--per-virtual 40]

Prints the parse time (best of several runs), the validation rate and one JSON line.
Bar (issue 2): 20,000 reals in under a second.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time

from surealived.config.xml import parse_config
from surealived.registry import load_testers


def generate(reals: int, per_virtual: int) -> str:
    lines = ["<surealived>"]
    n = 0
    v = 0
    while n < reals:
        a, b = divmod(v, 250)
        lines.append(f'  <virtual name="v{v}" addr="10.{a}.{b}.1" port="80" proto="tcp" '
                     f'sched="wrr" rt="dr">')
        lines.append('    <tester proto="http" testport="80" url="/health" '
                     'host="www.example.test" loopdelay="3" timeout="2"/>')
        for i in range(min(per_virtual, reals - n)):
            x, y = divmod(n, 250)
            lines.append(f'    <real name="r{i}" addr="127.{x % 250}.{y}.{1 + x // 250}" '
                         f'port="80" weight="{1 + i % 10}"/>')
            n += 1
        lines.append("  </virtual>")
        v += 1
    lines.append("</surealived>")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--reals", type=int, default=20000)
    parser.add_argument("--per-virtual", type=int, default=40)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    registry = load_testers()
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "big.xml")
        with open(path, "w") as f:
            f.write(generate(args.reals, args.per_virtual))
        times = []
        for _ in range(args.runs):
            start = time.perf_counter()
            config = parse_config(path, registry)
            times.append(time.perf_counter() - start)
    assert config.real_count == args.reals
    best = min(times)
    print(f"parsed {len(config.virtuals)} virtuals / {config.real_count} reals: "
          f"best {best * 1000:.0f} ms, median {sorted(times)[len(times) // 2] * 1000:.0f} ms "
          f"({config.real_count / best:,.0f} reals/s)")
    print(json.dumps({"bench": "config_parse", "reals": config.real_count,
                      "virtuals": len(config.virtuals), "best_s": round(best, 4),
                      "median_s": round(sorted(times)[len(times) // 2], 4)}))


if __name__ == "__main__":
    main()
