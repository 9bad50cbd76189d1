"""kill -9 of a process running the sync writer at random moments, hundreds of times: what a
reader finds afterwards is always a complete snapshot naming a diff file that exists, and diff
files made of whole lines whose links point at files that exist."""

from __future__ import annotations

import os
import random
import signal
import time
from pathlib import Path

import pytest

from surealived.ipvssync.files import SyncPaths
from surealived.ipvssync.reader import Link, parse_diff_line
from surealived.sync.formats import snapshot_body
from surealived.sync.writer import SyncWriter

from .helpers import check, read_snapshot, state_of, virtual_names

KILLS = 300


def big_xml(virtuals: int = 40, reals: int = 12) -> str:
    out = ["<surealived>"]
    for v in range(virtuals):
        rof = ' remove_on_fail="1"' if v % 2 else ""
        out.append(f'<virtual name="v{v}" addr="10.1.{v}.1" port="80" proto="tcp" sched="wrr" '
                   f'rt="dr"><tester proto="tcp" testport="80"{rof}/>')
        out += [f'<real name="r{r}" addr="10.2.{v}.{r + 1}" port="80" weight="{r + 1}"/>'
                for r in range(reals)]
        out.append("</virtual>")
    out.append("</surealived>")
    return "\n".join(out)


def writer_child(paths: SyncPaths, xml: str, seed: int) -> None:
    """Runs in a forked child until killed."""
    from surealived.sync.formats import diff_lines

    rng = random.Random(seed)
    state = state_of(xml)
    reals = list(state.reals())
    writer = SyncWriter(paths)
    writer.start(snapshot_body(state.virtuals))
    for i in range(1_000_000):
        real = rng.choice(reals)
        if check(state, real, rng.random() < 0.5):
            writer.diff(diff_lines(real))
        if i % 25 == 0:
            writer.snapshot(snapshot_body(state.virtuals))
        if i % 100 == 0:
            writer.drain()


def check_files(tmp: Path, expected: list[str]) -> None:
    full = tmp / "ipvsfull.cfg"
    if not full.exists():
        return  # killed before the first snapshot was complete: nothing to take as complete
    snap = read_snapshot(full)
    assert virtual_names(snap) == expected
    assert os.path.exists(snap.diff_file)
    check_chain(snap.diff_file)


def check_chain(path: str) -> None:
    seen = set()
    while path and path not in seen:
        seen.add(path)
        text = Path(path).read_text()
        assert text == "" or text.endswith("\n"), f"{path} ends in a cut line"
        lines = text.splitlines()
        nxt = ""
        for number, line in enumerate(lines, start=1):
            parsed = parse_diff_line(line)
            if isinstance(parsed, Link):
                assert number == len(lines), f"{path}: a link that is not the last line"
                assert os.path.exists(parsed.path), f"{path}: dangling link {parsed.path}"
                assert os.path.dirname(parsed.path) == os.path.dirname(path), (
                    f"{path}: a link out of the diffs folder, which ipvssync refuses")
                nxt = parsed.path
        path = nxt


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_kill_9_at_random_moments_never_leaves_a_wrong_snapshot(tmp_path):
    xml = big_xml()
    expected = [f"v{v}" for v in range(40)]
    paths = SyncPaths.from_dir(str(tmp_path))
    state_of(xml)  # parse once in the parent: the children start warm
    rng = random.Random(5)
    deadline = time.monotonic() + 90
    kills = 0
    while kills < KILLS and time.monotonic() < deadline:
        pid = os.fork()
        if pid == 0:  # child
            try:
                writer_child(paths, xml, kills)
            finally:
                os._exit(0)
        time.sleep(rng.uniform(0, 0.04))
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        kills += 1
        check_files(tmp_path, expected)
    assert kills >= 100, f"only {kills} kills in the time allowed"
    for name in os.listdir(tmp_path / "diffs"):
        check_chain(str(tmp_path / "diffs" / name))
    assert (tmp_path / "ipvsfull.cfg").exists()
