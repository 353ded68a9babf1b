"""RETR/TOP: a message streamed from the store as a POP3 multi-line response.

The stored bytes (bare LF or CRLF) go through three incremental stages, each
correct across chunk boundaries: CRLF normalisation, the TOP cut (header,
blank line, n body lines) and dot-stuffing.  A push producer writes chunks
only while the transport wants them, so a message is never held in memory.

Every stage works with whole-buffer ``bytes`` methods (``replace``, ``in``),
never per line or per byte in Python, and a message stored with CRLF and no
bare LF (its stored length equals its RFC 822 size) skips normalisation.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, BinaryIO

from twisted.internet import defer
from twisted.internet.interfaces import IPushProducer
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from mailsrv.store.crlf import CRLFEncoder
from mailsrv.wire import send_now, unsent

log = Logger()

# Read size from the store.  Module constants so tests can make them tiny and
# exercise every chunk boundary.
CHUNK_SIZE = 256 * 1024
# Octets written in one go before yielding to the reactor, for transports
# that never push back (the kernel socket buffer normally pauses us first).
BURST_SIZE = 1024 * 1024


class DotStuffer:
    """RFC 1939 byte-stuffing: a '.' starting a line becomes '..'."""

    def __init__(self) -> None:
        self._tail = b"\r\n"  # the message starts at a line start

    def feed(self, data: bytes) -> bytes:
        if not data:
            return data
        tail = self._tail
        self._tail = data[-2:] if len(data) >= 2 else tail[-1:] + data
        out = data.replace(b"\r\n.", b"\r\n..")
        # A line start whose CRLF (or part of it) came in the previous piece.
        if tail == b"\r\n":
            if data[:1] == b".":
                out = b"." + out
        elif tail[-1:] == b"\r" and data[:2] == b"\n.":
            out = b"\n." + out[1:]
        return out

    @property
    def at_line_start(self) -> bool:
        """True if everything fed so far ends with CRLF (or nothing was fed)."""
        return self._tail == b"\r\n"


class TopLimiter:
    """Passes the header, the blank line and ``body_lines`` body lines (CRLF input)."""

    def __init__(self, body_lines: int) -> None:
        self._in_header = True
        self._line_len = 0
        self._left = body_lines

    def feed(self, data: bytes) -> tuple[bytes, bool]:
        """(what to send of ``data``, whether the cut point was reached)."""
        pos, end = 0, len(data)
        while pos < end:
            if self._in_header:
                i = data.find(b"\n", pos)
                if i < 0:
                    self._line_len += end - pos
                    return data, False
                blank = self._line_len + (i - pos) + 1 <= 2
                self._line_len = 0
                pos = i + 1
                if blank:
                    self._in_header = False
                    if self._left == 0:
                        return data[:pos], True
            else:
                lines = data.count(b"\n", pos)
                if lines < self._left:
                    self._left -= lines
                    return data, False
                for _ in range(self._left):
                    pos = data.index(b"\n", pos) + 1
                self._left = 0
                return data[:pos], True
        return data, False


def stored_length(f: BinaryIO) -> int | None:
    """Octets left in ``f`` from its position, or None if it cannot tell."""
    try:
        pos = f.tell()
        end = f.seek(0, 2)
        f.seek(pos)
    except (AttributeError, OSError, ValueError):
        return None
    return end - pos


@implementer(IPushProducer)
class MessageSender:
    """Streams one message (plus ``prefix`` and the terminating dot line).

    ``size`` is the message's RFC 822 size when known: a stored length equal
    to it means CRLF storage without a bare LF, sent without normalisation.
    Knowing the stored length also saves the read that would find its end.

    ``start()`` returns a Deferred that fires when everything was written
    and the transport is not asking for a pause (so the session's next
    command waits for a full buffer to drain), or fails if the connection
    went away or the store failed mid-message.
    """

    def __init__(
        self,
        transport: Any,
        message: BinaryIO,
        prefix: bytes = b"",
        body_lines: int | None = None,
        reactor: Any = None,
        on_progress: Callable[[], None] | None = None,
        size: int | None = None,
    ) -> None:
        self._transport = transport
        self._file = message
        self._prefix = prefix
        self._size = size
        self._left: int | None = None  # stored octets not read yet, if known
        self._encoder: CRLFEncoder | None = CRLFEncoder()
        self._limiter = TopLimiter(body_lines) if body_lines is not None else None
        self._stuffer = DotStuffer()
        self._reactor = reactor
        self._on_progress = on_progress
        self._paused = False
        self._producing = False
        self._scheduled = None
        self._done = False
        self._written_all = False
        self._deferred: defer.Deferred = defer.Deferred()

    def start(self) -> defer.Deferred:
        self._left = stored_length(self._file)
        if self._size is not None and self._left == self._size:
            self._encoder = None  # CRLF already: RFC 822 size = stored + bare LFs
        self._transport.registerProducer(self, True)
        self._produce()
        return self._deferred

    @property
    def passthrough(self) -> bool:
        """Whether the stored bytes go out without CRLF normalisation."""
        return self._encoder is None

    def _produce(self) -> None:
        self._scheduled = None
        if self._producing or self._done:
            return
        self._producing = True
        try:
            written = 0
            while not self._paused and not self._done:
                data, finished = self._next()
                if self._prefix:
                    pieces = [self._prefix, data] if data else [self._prefix]
                    self._prefix = b""
                else:
                    pieces = [data] if data else []
                if finished:
                    pieces.append(b".\r\n" if self._stuffer.at_line_start else b"\r\n.\r\n")
                self._write(pieces)
                if finished:
                    self._written_all = True
                    if not self._paused:
                        self._finish(None)
                    # else: done once the transport drains, so a pipelined next
                    # command cannot pile its output on a full buffer
                    return
                written += len(data)
                if data and self._on_progress is not None:
                    self._on_progress()
                if written >= BURST_SIZE and self._reactor is not None and not self._paused:
                    self._scheduled = self._reactor.callLater(0, self._produce)
                    return
        except Exception:
            log.failure("streaming a message failed")
            self._finish(Failure())
        finally:
            self._producing = False

    def _write(self, pieces: list[bytes]) -> None:
        """Straight to the socket when it is plain TCP and idle (no reactor
        turn before the first byte, no join of the pieces); what the kernel
        did not take goes through the transport, in order."""
        sent = send_now(self._transport, pieces)
        if sent:
            pieces = unsent(pieces, sent)
        for piece in pieces:
            self._transport.write(piece)

    def _next(self) -> tuple[bytes, bool]:
        """The next piece to send (stuffed, no prefix) and whether the message is complete."""
        left = self._left
        if left is None:
            chunk = self._file.read(CHUNK_SIZE)
            finished = not chunk
        else:
            chunk = self._file.read(min(CHUNK_SIZE, left)) if left > 0 else b""
            left -= len(chunk)
            self._left = left
            finished = not chunk or left <= 0
        if not chunk:
            return b"", True
        data = chunk if self._encoder is None else self._encoder.feed(chunk)
        if self._limiter is not None:
            data, cut = self._limiter.feed(data)
            finished = finished or cut
        return self._stuffer.feed(data), finished

    def _finish(self, result: Failure | None) -> None:
        if self._done:
            return
        self._done = True
        if self._scheduled is not None and self._scheduled.active():
            self._scheduled.cancel()
        self._scheduled = None
        try:
            self._file.close()
        except Exception:
            log.failure("closing a message file failed")
        if result is None or not result.check(defer.CancelledError):
            self._transport.unregisterProducer()
        if result is None:
            self._deferred.callback(None)
        else:
            self._deferred.errback(result)

    def pauseProducing(self) -> None:
        self._paused = True

    def resumeProducing(self) -> None:
        self._paused = False
        if self._written_all:
            self._finish(None)
        elif self._scheduled is None:
            self._produce()

    def stopProducing(self) -> None:
        """The connection is gone: close the file, report the stream as cut."""
        self._paused = True
        self._finish(Failure(defer.CancelledError("connection closed while streaming")))
