"""A folder as surealived writes it (snapshot, lock, reload flag, diffs/), for ipvssync's tests
on the host and in the VM."""

from __future__ import annotations

from pathlib import Path

from surealived.ipvssync.files import SyncPaths


class Files:
    """Writes snapshots and diff lines the way surealived does, chaining each new diff."""

    def __init__(self, root: Path) -> None:
        self.root = root
        (root / "diffs").mkdir(parents=True)
        (root / "ipvsfull.lock").write_text("")
        self.paths = SyncPaths.from_dir(str(root))
        self.current = ""
        self.epoch = 1700000000

    def snapshot(self, body: str, epoch: int | None = None, reload: bool = True) -> None:
        """A new snapshot naming a new diff (``diff_sync.<epoch>``, the next one by default);
        the previous diff gets its ``DIFF file=`` link; ``reload`` touches the reload flag."""
        self.epoch = self.epoch + 1 if epoch is None else epoch
        diff = self.root / "diffs" / f"diff_sync.{self.epoch}"
        if self.current:
            with open(self.current, "a") as handle:
                handle.write(f"DIFF file={diff}\n")
        diff.write_text("")
        self.current = str(diff)
        (self.root / "ipvsfull.cfg").write_text(
            f"meta version=1.0 mdate=2024-01-15 mtime=10:00:00\n\nDIFF file={diff}\n\n{body}")
        if reload:
            (self.root / "ipvsfull.reload").write_text("")

    def diff(self, *lines: str) -> None:
        with open(self.current, "a") as handle:
            handle.write("".join(line + "\n" for line in lines))
