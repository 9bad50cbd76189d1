"""The receive buffer of a probe connection: bytes in, complete pieces out. Pure, no sockets.

Strategy: the connection ``feed()``s whatever the socket returned, then asks for a piece with one
of the ``maybe_extract_*`` methods. Each returns the piece, or ``None`` when more bytes are needed;
what it does not take stays in the buffer for the next call. A piece that cannot complete within
its ``limit`` raises ``ProbeError`` (so a server that never sends a newline cannot grow memory).
At end of stream, ``extract_rest()`` hands back what is left.
"""

from __future__ import annotations

from ..tester_api import ProbeError


class ReceiveBuffer:
    """The bytes received and not yet taken (compiled with the check path: a native class over
    a ``bytearray``, its length and truth those of the bytes held)."""

    __slots__ = ("data", "searched")

    def __init__(self) -> None:
        self.data = bytearray()
        self.searched = 0  # bytes already scanned for a delimiter (no rescans on slow drips)

    def __len__(self) -> int:
        return len(self.data)

    def __bool__(self) -> bool:
        return len(self.data) > 0

    def feed(self, chunk: bytes) -> None:
        self.data.extend(chunk)

    def _take(self, count: int, skip: int = 0) -> bytes:
        data = self.data
        piece = bytes(data[:count])
        del data[:count + skip]
        self.searched = 0
        return piece

    def maybe_extract_exactly(self, count: int) -> bytes | None:
        """Exactly ``count`` bytes, or None."""
        if len(self.data) < count:
            return None
        return self._take(count)

    def maybe_extract_at_most(self, limit: int) -> bytes | None:
        """Whatever is buffered, up to ``limit`` bytes; None when empty."""
        if not self.data:
            return None
        return self._take(min(limit, len(self.data)))

    def maybe_extract_until(self, delimiter: bytes, limit: int) -> bytes | None:
        """The bytes before ``delimiter`` (the delimiter is consumed, not returned), or None.

        Raises ``ProbeError`` when ``limit`` bytes arrived without the delimiter."""
        data = self.data
        if not data:
            return None
        start = max(0, self.searched - len(delimiter) + 1)
        index = data.find(delimiter, start, limit + len(delimiter))
        if index >= 0:
            return self._take(index, len(delimiter))
        if len(data) >= limit + len(delimiter):
            raise ProbeError(f"no {delimiter!r} within {limit} bytes")
        self.searched = len(data)
        return None

    def maybe_extract_line(self, limit: int) -> bytes | None:
        """One line without its ``\\n`` or ``\\r\\n``, or None (``ProbeError`` past ``limit``)."""
        line = self.maybe_extract_until(b"\n", limit)
        if line is not None and line.endswith(b"\r"):
            return line[:-1]
        return line

    def extract_rest(self) -> bytes:
        """Everything buffered (at end of stream)."""
        return self._take(len(self.data))
