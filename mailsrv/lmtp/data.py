"""The DATA phase: dot-unstuffing, spooling and per-recipient readers.

The message is never held whole in memory: the decoder works chunk by chunk
(holding at most four bytes across a chunk boundary), the spool rolls over
to an anonymous temporary file after a small in-memory start, and each
recipient's delivery reads the spool through its own prefixed reader.
"""

from __future__ import annotations

import io
import tempfile
from typing import IO, BinaryIO

_END = b"\r\n.\r\n"
SPOOL_IN_MEMORY = 256 * 1024


class DotDecoder:
    """Incremental RFC 5321 4.5.2 dot-unstuffing up to the ``CRLF . CRLF``.

    The stream starts at a line beginning; a virtual CRLF is prepended so the
    terminator and stuffed dots look the same on the first line as on any
    other, and is dropped from the output.
    """

    def __init__(self) -> None:
        self._held = b"\r\n"
        self._virtual = True
        self.done = False

    def feed(self, data: bytes) -> tuple[bytes, bytes | None]:
        """Return ``(message bytes, leftover)``; ``leftover`` is ``None``
        until the terminator was seen, then the bytes that followed it."""
        data = self._held + data
        end = data.find(_END)
        if end >= 0:
            self.done = True
            self._held = b""
            return self._strip(data[: end + 2].replace(b"\r\n.", b"\r\n")), data[end + 5 :]
        keep = _partial_end(data)
        self._held = data[len(data) - keep :]
        return self._strip(data[: len(data) - keep].replace(b"\r\n.", b"\r\n")), None

    def _strip(self, out: bytes) -> bytes:
        if self._virtual and len(out) >= 2:
            self._virtual = False
            return out[2:]
        return out


def _partial_end(data: bytes) -> int:
    """Length of the longest suffix of ``data`` that starts a terminator."""
    for k in (4, 3, 2, 1):
        if data.endswith(_END[:k]):
            return k
    return 0


class Spool:
    """Where the message body goes while DATA is read; bounded by ``limit``
    (``<= 0``: unbounded).  Past the limit the data is dropped and
    ``overflow`` set; a write error sets ``error`` (reported as 451)."""

    def __init__(self, limit: int, memory: int = SPOOL_IN_MEMORY) -> None:
        self._file = tempfile.SpooledTemporaryFile(max_size=memory)
        self.limit = limit
        self.size = 0
        self.overflow = False
        self.error: OSError | None = None

    def write(self, data: bytes) -> None:
        if self.overflow or self.error is not None or not data:
            return
        if self.limit > 0 and self.size + len(data) > self.limit:
            self.overflow = True
            self._file.close()
            return
        try:
            self._file.write(data)
        except OSError as e:
            self.error = e
            self._file.close()
            return
        self.size += len(data)

    def reader(self, prefix: bytes = b"") -> BinaryIO:
        """A fresh binary file object on ``prefix`` + the spooled message.
        Readers share the spool's file position, so use one at a time."""
        return io.BufferedReader(_PrefixedRaw(prefix, self._file, self.size), buffer_size=1 << 16)

    def close(self) -> None:
        self._file.close()


class _PrefixedRaw(io.RawIOBase):
    def __init__(self, prefix: bytes, f: IO[bytes], size: int) -> None:
        self._prefix = prefix
        self._f = f
        self._size = size
        self._pos = 0  # over prefix + file

    def readable(self) -> bool:
        return True

    def readinto(self, b: memoryview) -> int:  # type: ignore[override]
        n = len(b)
        if n == 0:
            return 0
        plen = len(self._prefix)
        if self._pos < plen:
            chunk = self._prefix[self._pos : self._pos + n]
        else:
            off = self._pos - plen
            if off >= self._size:
                return 0
            self._f.seek(off)
            chunk = self._f.read(min(n, self._size - off))
        b[: len(chunk)] = chunk
        self._pos += len(chunk)
        return len(chunk)
