"""The sync writer in a folder: forced snapshot and reload flag at start, diff lines at once,
periodic snapshots closing the old diff with its link, the lock honoured, no_sync, recovery."""

from __future__ import annotations

import asyncio
import fcntl
import os
import shutil
import time
from pathlib import Path

from surealived.config.main import MainConfig
from surealived.engine.state import RoundReport
from surealived.ipvssync.files import SyncPaths
from surealived.ipvssync.reader import Link
from surealived.sync.component import SyncComponent
from surealived.sync.writer import SyncWriter

from .helpers import (
    ONETWP,
    check,
    commands,
    read_diff,
    read_snapshot,
    reals_by_virtual,
    state_of,
    virtual_names,
)
from .test_dumps import FakeDaemon


def sync_cfg(tmp: Path, **kw) -> MainConfig:
    return MainConfig(lock_sync_file=str(tmp / "ipvsfull.lock"),
                      full_sync_file=str(tmp / "ipvsfull.cfg"),
                      full_reload_file=str(tmp / "ipvsfull.reload"),
                      diff_sync_dir=str(tmp / "diffs"), **kw)


def daemon(tmp: Path, xml: str = ONETWP, no_sync: bool = False, **kw) -> FakeDaemon:
    return FakeDaemon(state_of(xml), sync_cfg(tmp, no_sync=no_sync, **kw))


def end_round(d: FakeDaemon, index: int = 0) -> None:
    v = d.state.virtuals[index]
    now = time.time()
    d.state.finish_round(RoundReport(v, now, now, ()))


def snapshot(tmp: Path):
    return read_snapshot(tmp / "ipvsfull.cfg")


def test_start_forces_snapshot_and_reload_flag_then_diffs_at_once(tmp_path):
    d = daemon(tmp_path)
    comp = SyncComponent()

    async def scenario() -> None:
        await comp.start(d)
        assert (tmp_path / "ipvsfull.reload").exists()
        assert (tmp_path / "ipvsfull.lock").exists()
        snap = snapshot(tmp_path)
        assert virtual_names(snap) == ["onet", "wp"]
        assert os.path.getsize(snap.diff_file) == 0
        onet = d.state.virtuals[0].reals[0]
        check(d.state, onet, False)
        assert comp.writer is not None and comp.writer.drain(5)
        assert commands(Path(snap.diff_file).read_text()) == [("addreal", "sg", 0),
                                                               ("chgreal", "sg", 0)]
        await comp.stop(d)

    asyncio.run(scenario())


def test_periodic_snapshot_links_old_diff_and_leaves_reload_flag_alone(tmp_path):
    d = daemon(tmp_path, snapshot_interval=1)
    comp = SyncComponent()

    async def scenario() -> None:
        await comp.start(d)
        first = snapshot(tmp_path).diff_file
        os.unlink(tmp_path / "ipvsfull.reload")  # as ipvssync does after its sync
        comp.last_snapshot -= 2  # the interval has passed
        end_round(d, 0)  # not every virtual tested yet: no snapshot
        assert comp.writer is not None and comp.writer.drain(5)
        assert snapshot(tmp_path).diff_file == first
        wp = d.state.virtuals[1].reals[0]
        check(d.state, wp, False)  # wp has remove_on_fail: delreal
        end_round(d, 1)  # now all are tested: a periodic snapshot
        assert comp.writer.drain(5)
        second = snapshot(tmp_path)
        assert second.diff_file != first
        text = Path(first).read_text()
        assert [c[0] for c in commands(text)] == ["delreal"]
        assert read_diff(text)[-1] == Link(second.diff_file)
        assert [len(reals) for reals in reals_by_virtual(second).values()] == [1, 0]
        assert not (tmp_path / "ipvsfull.reload").exists()
        await comp.reloaded(d)  # SIGHUP: forced snapshot and the flag again
        assert (tmp_path / "ipvsfull.reload").exists()
        assert Path(second.diff_file).read_text().endswith(
            f"DIFF file={snapshot(tmp_path).diff_file}\n")
        await comp.stop(d)

    asyncio.run(scenario())


def test_unchanged_entries_write_nothing(tmp_path):
    """A DOWN real flapping its test state is already absent: no repeated delreal lines."""
    d = daemon(tmp_path)
    comp = SyncComponent()

    async def scenario() -> None:
        await comp.start(d)
        onet = d.state.virtuals[0].reals[0]
        d.state.set_admin(onet, rstate="DOWN")
        check(d.state, onet, False)
        check(d.state, onet, True)
        d.state.set_admin(onet, rstate="DOWN")
        assert comp.writer is not None and comp.writer.drain(5)
        text = Path(snapshot(tmp_path).diff_file).read_text()
        assert [c[0] for c in commands(text)] == ["delreal"]
        await comp.stop(d)

    asyncio.run(scenario())


def test_no_sync_writes_nothing_and_survives_every_event(tmp_path):
    d = daemon(tmp_path, no_sync=True)
    comp = SyncComponent()

    async def scenario() -> None:
        await comp.start(d)
        onet = d.state.virtuals[0].reals[0]
        check(d.state, onet, False)
        d.state.set_admin(onet, rstate="DOWN")
        end_round(d, 0)
        end_round(d, 1)
        await comp.reloaded(d)
        await comp.stop(d)

    asyncio.run(scenario())
    assert list(tmp_path.iterdir()) == []


def test_same_second_snapshots_get_distinct_diff_files(tmp_path):
    paths = SyncPaths(full_sync_file=str(tmp_path / "f"), lock_sync_file=str(tmp_path / "l"),
                      full_reload_file=str(tmp_path / "r"), diff_sync_dir=str(tmp_path / "d"))
    writer = SyncWriter(paths)
    writer.start("", when=1705312800.1)
    writer.diff("cmd=delreal x\n")
    writer.snapshot("", when=1705312800.9)
    assert writer.drain(5)
    writer.stop()
    names = sorted(os.listdir(tmp_path / "d"))
    assert names == ["diff_sync.1705312800", "diff_sync.1705312800.1"]
    assert (tmp_path / "d" / names[0]).read_text() == (
        f"cmd=delreal x\nDIFF file={tmp_path / 'd' / names[1]}\n")


def test_writer_waits_for_the_lock_without_blocking_the_caller(tmp_path):
    d = daemon(tmp_path)
    comp = SyncComponent()

    async def scenario() -> None:
        await comp.start(d)
        fd = os.open(tmp_path / "ipvsfull.lock", os.O_RDONLY)
        fcntl.flock(fd, fcntl.LOCK_EX)  # ipvssync holds the lock
        try:
            check(d.state, d.state.virtuals[0].reals[0], False)  # returns at once
            assert comp.writer is not None and not comp.writer.drain(0.3)
            assert os.path.getsize(snapshot(tmp_path).diff_file) == 0
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)
        assert comp.writer.drain(5)
        assert os.path.getsize(snapshot(tmp_path).diff_file) > 0
        await comp.stop(d)

    asyncio.run(scenario())


def test_a_failed_write_is_followed_by_a_forced_snapshot(tmp_path):
    d = daemon(tmp_path, snapshot_interval=1)
    comp = SyncComponent()

    async def scenario() -> None:
        await comp.start(d)
        os.unlink(tmp_path / "ipvsfull.reload")
        shutil.rmtree(tmp_path / "diffs")  # the disk lost the folder
        comp.last_snapshot -= 2
        end_round(d, 0)
        end_round(d, 1)  # periodic snapshot: cannot create its diff
        assert comp.writer is not None and comp.writer.drain(5)
        assert comp.writer.failed
        (tmp_path / "diffs").mkdir()
        end_round(d, 0)  # recovery: forced snapshot and the reload flag
        assert comp.writer.drain(5)
        assert not comp.writer.failed
        assert (tmp_path / "ipvsfull.reload").exists()
        assert os.path.exists(snapshot(tmp_path).diff_file)
        await comp.stop(d)

    asyncio.run(scenario())
