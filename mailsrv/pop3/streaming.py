"""RETR/TOP: a message streamed from the store as a POP3 multi-line response.

The stored bytes (bare LF or CRLF) go through three incremental stages, each
correct across chunk boundaries: CRLF normalisation, the TOP cut (header,
blank line, n body lines) and dot-stuffing.  A push producer writes chunks
only while the transport wants them, so a message is never held in memory.
"""

from __future__ import annotations

from typing import BinaryIO, Callable, Optional, Tuple

from twisted.internet import defer
from twisted.internet.interfaces import IPushProducer
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from mailsrv.store.crlf import CRLFNormalizer

log = Logger()

# Read size from the store.  Module constants so tests can make them tiny and
# exercise every chunk boundary.
CHUNK_SIZE = 64 * 1024
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
        joined = self._tail + data
        self._tail = joined[-2:]
        return joined.replace(b"\r\n.", b"\r\n..")[2:]

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

    def feed(self, data: bytes) -> Tuple[bytes, bool]:
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


@implementer(IPushProducer)
class MessageSender:
    """Streams one message (plus ``prefix`` and the terminating dot line).

    ``start()`` returns a Deferred that fires when everything was written,
    or fails if the connection went away or the store failed mid-message.
    """

    def __init__(
        self,
        transport,
        message: BinaryIO,
        prefix: bytes = b"",
        body_lines: Optional[int] = None,
        reactor=None,
        on_progress: Optional[Callable[[], None]] = None,
    ) -> None:
        self._transport = transport
        self._file = message
        self._prefix = prefix
        self._normalizer = CRLFNormalizer()
        self._limiter = TopLimiter(body_lines) if body_lines is not None else None
        self._stuffer = DotStuffer()
        self._reactor = reactor
        self._on_progress = on_progress
        self._paused = False
        self._producing = False
        self._scheduled = None
        self._done = False
        self._deferred: defer.Deferred = defer.Deferred()

    def start(self) -> defer.Deferred:
        self._transport.registerProducer(self, True)
        self._produce()
        return self._deferred

    def _produce(self) -> None:
        self._scheduled = None
        if self._producing or self._done:
            return
        self._producing = True
        try:
            written = 0
            while not self._paused and not self._done:
                data, finished = self._next()
                if finished:
                    tail = b".\r\n" if self._stuffer.at_line_start else b"\r\n.\r\n"
                    self._transport.write(data + tail)
                    self._finish(None)
                    return
                if data:
                    self._transport.write(data)
                    written += len(data)
                    if self._on_progress is not None:
                        self._on_progress()
                if written >= BURST_SIZE and self._reactor is not None and not self._paused:
                    self._scheduled = self._reactor.callLater(0, self._produce)
                    return
        except Exception:
            log.failure("streaming a message failed")
            self._finish(Failure())
        finally:
            self._producing = False

    def _next(self) -> Tuple[bytes, bool]:
        """The next piece to write and whether the message is complete."""
        chunk = self._file.read(CHUNK_SIZE)
        data = self._normalizer.feed(chunk) if chunk else b""
        finished = not chunk
        if self._limiter is not None and data:
            data, finished = self._limiter.feed(data)
        data = self._stuffer.feed(data)
        if self._prefix:
            data, self._prefix = self._prefix + data, b""
        return data, finished

    def _finish(self, result) -> None:
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
        if result is None or not isinstance(result, Failure) or not result.check(defer.CancelledError):
            self._transport.unregisterProducer()
        if result is None:
            self._deferred.callback(None)
        else:
            self._deferred.errback(result)

    def pauseProducing(self) -> None:
        self._paused = True

    def resumeProducing(self) -> None:
        self._paused = False
        if self._scheduled is None:
            self._produce()

    def stopProducing(self) -> None:
        """The connection is gone: close the file, report the stream as cut."""
        self._paused = True
        self._finish(Failure(defer.CancelledError("connection closed while streaming")))
