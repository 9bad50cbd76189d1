"""The transcript of one check (debugcomm): every chunk sent and received, in the original's format.

``[time]  sd_write ->`` + data + ``\\n``; bounded to about 1 MiB, the last check's replacing the
file. The runner records into it; a tester adds notes through ``probe.note``.
"""

from __future__ import annotations

from datetime import datetime

TRANSCRIPT_LIMIT = 1 << 20


class Transcript:
    """A conversation in the original's debugcomm format; ``render()`` gives the file's bytes."""

    __slots__ = ("chunks", "size", "truncated")

    def __init__(self) -> None:
        self.chunks: list[bytes] = []
        self.size = 0
        self.truncated = False

    def add(self, tag: str, data: bytes) -> None:
        if self.truncated:
            return
        stamp = datetime.now().strftime("%Y-%m-%d %H:%M:%S.%f")
        entry = f"[{stamp}]  {tag}\n".encode() + data + b"\n"
        if self.size + len(entry) > TRANSCRIPT_LIMIT:
            self.truncated = True
            entry = f"[{stamp}]  (transcript truncated at {TRANSCRIPT_LIMIT} bytes)\n".encode()
        self.chunks.append(entry)
        self.size += len(entry)

    def note(self, text: str) -> None:
        self.add("note:", text.encode("utf-8", "replace"))

    def render(self) -> bytes:
        return b"".join(self.chunks)

    def save(self, path: str) -> None:
        """Replace ``path`` with this transcript (the file holds the last check only)."""
        with open(path, "wb") as handle:
            handle.write(self.render())
