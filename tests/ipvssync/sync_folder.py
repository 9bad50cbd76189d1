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

    def link_next(self) -> None:
        """Start the next diff file and link the current one to it, without a new snapshot
        (as a chain that grew over several snapshots looks from the oldest one)."""
        self.epoch += 1
        diff = self.root / "diffs" / f"diff_sync.{self.epoch}"
        diff.write_text("")
        with open(self.current, "a") as handle:
            handle.write(f"DIFF file={diff}\n")
        self.current = str(diff)

    def diff(self, *lines: str) -> None:
        with open(self.current, "a") as handle:
            handle.write("".join(line + "\n" for line in lines))


def write_long_chain(files: Files, vprefix: str, real: str, megabytes: int,
                     last_weight: int) -> int:
    """Append ``chgreal`` lines for ``real`` to the current diff until the chain has grown by
    about ``megabytes`` MB, spread over two diff files (the first linked to the second), the
    weights going round 0..99; the very last line sets ``last_weight``. Returns the lines
    written."""
    count = 0
    per_file = megabytes * 1024 * 1024 // 2
    for part in range(2):
        if part:
            files.link_next()
        with open(files.current, "a") as handle:
            written = 0
            while written < per_file:
                block = "".join(f"cmd=chgreal {vprefix} {real} rweight={(count + i) % 100}\n"
                                for i in range(1000))
                handle.write(block)
                written += len(block)
                count += 1000
    files.diff(f"cmd=chgreal {vprefix} {real} rweight={last_weight}")
    return count + 1
