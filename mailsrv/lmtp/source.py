"""Sans-IO LMTP input: bytes in, typed events out.

The LMTP session's event source for the shared
:class:`~mailsrv.pump.CommandPump`.  It has two modes, like the protocol:

- *command lines* (the start): each event is one line without its line end
  (CRLF or bare LF), as ``bytes``.  A line longer than ``max_line`` yields
  :data:`TOO_LONG` as soon as that is known, even before its end arrives
  (the server answers ``500 5.5.2`` at once), and the rest of it up to its
  line end is dropped, so the pipelined commands behind it still count.
- *message data*, entered with :meth:`LMTPSource.start_data` once the DATA
  command has said 354: events are :class:`Body` chunks, already
  dot-unstuffed (RFC 5321 4.5.2), then one :data:`END_OF_DATA` for the
  ``CRLF . CRLF`` line; the source is back in command mode after it, and
  what followed the terminator is the next command's input.  Data lines
  have no length bound (the spool bounds the message).

Many pipelined lines cost one pass: lines are cut at an offset into the
buffer, which is compacted only when more input arrives.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypeAlias

from mailsrv.lmtp.data import DotDecoder

MAX_LINE = 2048  # RFC 5321 allows 512; extensions make MAIL longer


class _TooLong:
    """A command line over the limit (its bytes are dropped)."""

    def __repr__(self) -> str:
        return "TOO_LONG"


class _EndOfData:
    """The ``.`` line that ends the message data."""

    def __repr__(self) -> str:
        return "END_OF_DATA"


TOO_LONG = _TooLong()
END_OF_DATA = _EndOfData()


@dataclass(frozen=True, slots=True)
class Body:
    """A chunk of message data, dot-unstuffed, never empty."""

    data: bytes


Event: TypeAlias = "bytes | _TooLong | Body | _EndOfData"


class LMTPSource:
    """Splits LMTP input into command lines and message data."""

    def __init__(self, max_line: int = MAX_LINE) -> None:
        self.max_line = max_line
        self._buffer = b""
        self._pos = 0  # start of the unread input in _buffer
        self._discarding = False  # inside an over-long line, up to its end
        self._decoder: DotDecoder | None = None  # message data mode
        self._ended = False  # the terminator was seen, END_OF_DATA is next

    def feed(self, data: bytes) -> None:
        if self._pos:
            self._buffer, self._pos = self._buffer[self._pos :] + data, 0
        else:
            self._buffer += data

    def buffered(self) -> int:
        return len(self._buffer) - self._pos

    @property
    def in_data(self) -> bool:
        return self._decoder is not None

    def start_data(self) -> None:
        """What follows is message data, up to the ``CRLF . CRLF`` line."""
        self._decoder = DotDecoder()
        self._ended = False

    def next_event(self) -> Event | None:
        if self._decoder is not None:
            return self._data_event(self._decoder)
        return self._line_event()

    def _line_event(self) -> bytes | _TooLong | None:
        buf = self._buffer
        while True:
            start = self._pos
            end = buf.find(b"\n", start)
            if self._discarding:
                if end < 0:
                    self._buffer, self._pos = b"", 0
                    return None
                self._pos = end + 1
                self._discarding = False
                continue
            if end < 0:
                if len(buf) - start <= self.max_line:
                    return None
                self._buffer, self._pos = b"", 0
                self._discarding = True
                return TOO_LONG
            self._pos = end + 1
            if end - start > self.max_line:
                return TOO_LONG
            return buf[start : end - 1] if end > start and buf[end - 1] == 13 else buf[start:end]

    def _data_event(self, decoder: DotDecoder) -> Body | _EndOfData | None:
        if self._ended:
            self._decoder = None
            self._ended = False
            return END_OF_DATA
        if self._pos >= len(self._buffer):
            return None
        chunk = self._buffer[self._pos :] if self._pos else self._buffer
        self._buffer, self._pos = b"", 0
        out, leftover = decoder.feed(chunk)
        if leftover is not None:
            self._buffer = leftover
            if not out:
                self._decoder = None
                return END_OF_DATA
            self._ended = True
        return Body(out) if out else None
