"""Incremental LF -> CRLF conversion for messages stored with bare LF.

Maildirs written by Postfix or Dovecot hold bare LF; POP3 and IMAP must send
CRLF, and the sizes they announce are CRLF sizes.  Streaming code feeds
chunks of any size through one :class:`CRLFNormalizer` per message.
"""

from __future__ import annotations

import re
from typing import BinaryIO

_BARE_LF = re.compile(rb"(?<!\r)\n")


class CRLFNormalizer:
    """Turns bare LF into CRLF across chunk boundaries; CRLF stays as is."""

    def __init__(self) -> None:
        self._last_cr = False

    def feed(self, chunk: bytes) -> bytes:
        if not chunk:
            return b""
        out = _BARE_LF.sub(b"\r\n", chunk)
        if self._last_cr and chunk[:1] == b"\n":
            out = out[1:]  # the chunk's leading LF closed a CR from the last chunk
        self._last_cr = chunk[-1:] == b"\r"
        return out


def to_crlf(data: bytes) -> bytes:
    """Whole-buffer form of :class:`CRLFNormalizer`."""
    return _BARE_LF.sub(b"\r\n", data)


def crlf_size(f: BinaryIO, chunk_size: int = 1 << 16) -> int:
    """RFC 822 size of the rest of ``f`` (what sending it as CRLF costs)."""
    norm = CRLFNormalizer()
    total = 0
    while True:
        chunk = f.read(chunk_size)
        if not chunk:
            return total
        total += len(norm.feed(chunk))
