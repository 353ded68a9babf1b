"""COMPRESS=DEFLATE (RFC 4978): raw deflate both ways once the client asks.

Three pieces, each testable alone:

- :class:`Deflater` and :class:`Inflater` are sans-IO.  Every write is
  compressed and ended with a sync flush, so a response never waits in the
  compressor while the client waits for it (RFC 4978 section 4); the
  inflater hands out at most ``chunk`` bytes per call, so a small
  compressed input that expands enormously (a "zip bomb") is never held
  whole in memory.
- :class:`CompressingTransport` wraps the connection's transport: ``write``
  and ``writeSequence`` compress, everything else (producers, closing,
  pausing, the peer's address, TLS underneath) is the wrapped transport's.
  A command that streams a body through ``transport.write`` or registers a
  producer works unchanged under COMPRESS.
- :class:`CompressionLayer` is what the connection holds once COMPRESS
  succeeded: received bytes are inflated in bounded steps into the command
  parser, and inflating stops while the command pump has paused reading.

Memory per session is bounded by zlib's own state (window and hash tables:
about 256 KiB to compress at memLevel 8, 40 KiB to inflate), one inflated
chunk, and the compressed bytes of one read.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable
from typing import Any, Protocol

from twisted.logger import Logger

from mailsrv.imap import commands as C
from mailsrv.imap import render
from mailsrv.imap.context import Context, Handlers
from mailsrv.imap.results import AUTHENTICATED, Result, bad, no

log = Logger()

MECHANISM = "DEFLATE"
CAPABILITY = "COMPRESS=DEFLATE"
LEVEL = 6  # Dovecot's default imap_compress_deflate_level
MEM_LEVEL = 8
WBITS = -15  # raw deflate (RFC 1951), no zlib header: what RFC 4978 sends
CHUNK = 64 * 1024  # inflated bytes handed to the parser per step
PARSER_HIGH_WATER = 1 << 20  # stop inflating while this much waits unparsed


class CompressionError(Exception):
    """The client's compressed stream is corrupt."""


class Deflater:
    """Raw deflate with a sync flush after every call."""

    def __init__(self, level: int = LEVEL, mem_level: int = MEM_LEVEL) -> None:
        self._z = zlib.compressobj(level, zlib.DEFLATED, WBITS, mem_level)
        self.bytes_in = 0
        self.bytes_out = 0

    def compress(self, chunks: Iterable[bytes]) -> bytes:
        """Compress ``chunks`` and flush: the result decodes to everything
        written so far."""
        z = self._z
        out = []
        for c in chunks:
            if c:
                self.bytes_in += len(c)
                out.append(z.compress(c))
        out.append(z.flush(zlib.Z_SYNC_FLUSH))
        data = b"".join(out)
        self.bytes_out += len(data)
        return data


class Inflater:
    """Raw inflate, at most ``chunk`` bytes out per :meth:`read`."""

    def __init__(self, chunk: int = CHUNK) -> None:
        self._z = zlib.decompressobj(WBITS)
        self._tail = b""
        self.chunk = chunk
        self.bytes_in = 0

    def feed(self, data: bytes) -> None:
        self.bytes_in += len(data)
        self._tail = self._tail + data if self._tail else data

    def read(self) -> bytes:
        """The next inflated bytes (b"" when the input fed so far is used
        up).  Raises CompressionError on a corrupt stream or data after
        its end."""
        if not self._tail:
            return b""
        try:
            out = self._z.decompress(self._tail, self.chunk)
        except zlib.error as e:
            self._tail = b""
            raise CompressionError(str(e)) from None
        self._tail = self._z.unconsumed_tail
        if self._z.eof and (self._z.unused_data or self._tail):
            self._tail = b""
            raise CompressionError("data after the end of the compressed stream")
        return out

    def pending(self) -> bool:
        """Compressed input is waiting to be inflated."""
        return bool(self._tail)


class CompressingTransport:
    """A transport whose writes are compressed; the rest is the wrapped
    transport's (``__getattr__`` forwards what is not defined here, so
    ``getPeer``, ``setTcpNoDelay``, ``abortConnection`` and TLS details
    stay reachable)."""

    def __init__(self, inner: Any, deflater: Deflater, on_resume: Any = None) -> None:
        self.inner = inner
        self.deflater = deflater
        self.reading_paused = False
        self._on_resume = on_resume

    def write(self, data: bytes) -> None:
        if data:
            self.inner.write(self.deflater.compress((data,)))

    def writeSequence(self, seq: Iterable[bytes]) -> None:
        self.inner.write(self.deflater.compress(seq))

    def registerProducer(self, producer: Any, streaming: bool) -> None:
        self.inner.registerProducer(producer, streaming)

    def unregisterProducer(self) -> None:
        self.inner.unregisterProducer()

    def loseConnection(self) -> None:
        self.inner.loseConnection()

    def pauseProducing(self) -> None:
        """Stop reading (the command pump has too much unparsed input)."""
        self.reading_paused = True
        self.inner.pauseProducing()

    def resumeProducing(self) -> None:
        self.reading_paused = False
        self.inner.resumeProducing()
        if self._on_resume is not None:
            self._on_resume()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


class Sink(Protocol):
    """Where inflated input goes: the command parser and its pump."""

    def push(self, data: bytes) -> None: ...

    def buffered(self) -> int: ...


class CompressionLayer:
    """The compression state of one connection (both directions)."""

    def __init__(self, transport: Any, parser: Sink, pump: Any, level: int = LEVEL) -> None:
        self.deflater = Deflater(level)
        self.inflater = Inflater()
        self.transport = CompressingTransport(transport, self.deflater, on_resume=self.drain)
        self.parser = parser
        self.pump = pump

    def received(self, data: bytes) -> None:
        """Compressed bytes from the client.  Raises CompressionError."""
        self.inflater.feed(data)
        self.drain()

    def drain(self) -> None:
        """Inflate into the parser until the input is used up or the pump
        stopped reading (resumed by :meth:`CompressingTransport.resumeProducing`)."""
        inflater, parser = self.inflater, self.parser
        while (inflater.pending() and not self.transport.reading_paused
               and parser.buffered() < PARSER_HIGH_WATER and not self.pump.closed):
            chunk = inflater.read()
            if chunk:
                parser.push(chunk)
                self.pump.pump()


async def compress(ctx: Context, cmd: C.Compress) -> Result | None:
    """COMPRESS DEFLATE: the tagged OK goes out uncompressed, everything
    after it in either direction is deflated.  A second COMPRESS is refused
    with COMPRESSIONACTIVE, as Dovecot does; input pipelined behind the
    command cannot be right (the client must wait for the OK) and is
    refused too."""
    if ctx.compressed:
        return no("already active (DEFLATE)", "COMPRESSIONACTIVE")
    if cmd.mechanism != MECHANISM:
        return bad(f"mechanism {cmd.mechanism} is not supported")
    if ctx.input_pending():
        return bad("refused: the client did not wait for the reply before sending more")
    ctx.send(render.tagged(cmd.tag, "OK", "Begin compression"))
    ctx.start_compression()
    return None


HANDLERS: Handlers = {
    "COMPRESS": (compress, AUTHENTICATED),
}
