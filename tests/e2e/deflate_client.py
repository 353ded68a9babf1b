"""Client side of COMPRESS=DEFLATE (RFC 4978) for imaplib and imapclient,
which do not have it: after the tagged OK the connection's socket writes
are deflated and its reads inflated, and the bytes that really crossed the
wire are counted."""

from __future__ import annotations

import imaplib
import io
import zlib
from typing import Any

imaplib.Commands.setdefault("COMPRESS", ("AUTH", "SELECTED"))


class _InflatingReader(io.RawIOBase):
    def __init__(self, sock: Any) -> None:
        self.sock = sock
        self.z = zlib.decompressobj(-15)
        self.buf = b""
        self.wire_in = 0

    def readable(self) -> bool:
        return True

    def readinto(self, b: Any) -> int:
        while not self.buf:
            data = self.sock.recv(1 << 16)
            if not data:
                return 0
            self.wire_in += len(data)
            self.buf = self.z.decompress(data)
        n = min(len(b), len(self.buf))
        b[:n] = self.buf[:n]
        self.buf = self.buf[n:]
        return n


class _DeflatingSocket:
    def __init__(self, sock: Any) -> None:
        self.sock = sock
        self.z = zlib.compressobj(6, zlib.DEFLATED, -15)
        self.wire_out = 0

    def sendall(self, data: bytes) -> None:
        packed = self.z.compress(data) + self.z.flush(zlib.Z_SYNC_FLUSH)
        self.wire_out += len(packed)
        self.sock.sendall(packed)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.sock, name)


class Wire:
    """Compressed bytes received and sent since COMPRESS."""

    def __init__(self, reader: _InflatingReader, writer: _DeflatingSocket) -> None:
        self._r, self._w = reader, writer

    @property
    def received(self) -> int:
        return self._r.wire_in

    @property
    def sent(self) -> int:
        return self._w.wire_out


def start_compression(imap: imaplib.IMAP4) -> Wire:
    """Send COMPRESS DEFLATE on an imaplib connection (imapclient's is
    ``client._imap``) and switch it to deflate."""
    typ, data = imap._simple_command("COMPRESS", "DEFLATE")
    if typ != "OK":
        raise imaplib.IMAP4.error(f"COMPRESS refused: {data!r}")
    reader = _InflatingReader(imap.sock)
    imap.file = io.BufferedReader(reader, 1 << 16)
    writer = _DeflatingSocket(imap.sock)
    imap.sock = writer
    return Wire(reader, writer)
