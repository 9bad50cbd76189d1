"""Benchmark: the sync-file writer at N reals. Run by hand:

    .venv/bin/python tests/bench/bench_sync.py [--virtuals 250] [--per-virtual 80]

Prints how long building the snapshot text, writing it (temp file, fsync, rename), queueing one
diff line per real and flushing them take, and one JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

from surealived.ipvssync.files import SyncPaths
from surealived.sync.formats import diff_lines, snapshot_body
from surealived.sync.writer import SyncWriter
from tests.sync.helpers import state_of
from tests.sync.test_crash import big_xml


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--virtuals", type=int, default=250)
    parser.add_argument("--per-virtual", type=int, default=80)
    args = parser.parse_args()
    state = state_of(big_xml(args.virtuals, args.per_virtual))
    reals = list(state.reals())
    folder = tempfile.mkdtemp()
    try:
        start = time.perf_counter()
        body = snapshot_body(state.virtuals)
        build = time.perf_counter() - start
        writer = SyncWriter(SyncPaths.from_dir(folder))
        start = time.perf_counter()
        writer.start(body)
        write = time.perf_counter() - start
        start = time.perf_counter()
        for real in reals:
            writer.diff(diff_lines(real))
        queue = time.perf_counter() - start
        start = time.perf_counter()
        writer.drain()
        flush = time.perf_counter() - start
        writer.stop()
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    print(f"{len(reals)} reals: snapshot text {build * 1000:.1f} ms, snapshot write "
          f"{write * 1000:.1f} ms ({len(body):,} bytes), {len(reals)} diff lines queued "
          f"{queue * 1000:.1f} ms, flushed {flush * 1000:.1f} ms")
    print(json.dumps({"bench": "sync_writer", "reals": len(reals), "snapshot_text_s": build,
                      "snapshot_write_s": write, "bytes": len(body), "diff_queue_s": queue,
                      "diff_flush_s": flush}))


if __name__ == "__main__":
    main()
