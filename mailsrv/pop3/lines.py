"""Sans-IO input handling for POP3: bounded line splitting and command parsing.

Kept apart from the protocol so it can be tested (and fuzzed) on its own and
so that the protocol never has to think about partial or over-long lines.
:class:`LineSplitter` is the POP3 session's event source for the shared
:class:`~mailsrv.pump.CommandPump`: every event is one line (a command, or a
SASL response the running AUTH command asks the pump for) or ``TOO_LONG``.
"""

from __future__ import annotations

from dataclasses import dataclass

# RFC 2449: a command line is at most 255 octets including CRLF.  AUTH lines
# and SASL continuations carry base64 credentials and may be longer, up to
# MAX_LINE_LENGTH; anything longer is discarded up to its line end.
MAX_COMMAND_LENGTH = 255
MAX_LINE_LENGTH = 1024
# A line this long is no mistake (IMAP's bound too): answer -ERR and hang
# up, at once, without waiting for a line end that may never come.
FLOOD_LENGTH = 64 * 1024


class _TooLong:
    """Marker for a line that exceeded the hard limit (its bytes are gone)."""

    def __repr__(self) -> str:
        return "TOO_LONG"


TOO_LONG = _TooLong()


class _Flood:
    """Marker for input over FLOOD_LENGTH without a line end: the session ends."""

    def __repr__(self) -> str:
        return "FLOOD"


FLOOD = _Flood()


class LineSplitter:
    """Turns a byte stream into lines (CRLF or bare LF), bounded in memory;
    an :class:`~mailsrv.pump.EventSource`.

    An over-long line yields one TOO_LONG once its end arrives, so responses
    stay one per line and pipelined commands after it are not lost; one
    over ``flood_length`` yields FLOOD as soon as that much has arrived, and
    nothing after it.
    """

    def __init__(self, max_length: int = MAX_LINE_LENGTH, flood_length: int = FLOOD_LENGTH) -> None:
        self.max_length = max_length
        self.flood_length = flood_length
        self._buffer = bytearray()
        self._discarding = False
        self._discarded = 0  # octets of the over-long line thrown away so far
        self._flooded = False

    def feed(self, data: bytes) -> None:
        if self._flooded:
            return
        self._buffer += data
        if b"\n" not in self._buffer and (self._discarding or len(self._buffer) > self.max_length):
            self._discard()

    def _discard(self) -> None:
        self._discarding = True
        self._discarded += len(self._buffer)
        self._buffer.clear()
        if self._discarded > self.flood_length:
            self._flooded = True

    def next_event(self) -> bytes | _TooLong | _Flood | None:
        """The next complete line without its line end, TOO_LONG, FLOOD, or None."""
        if self._flooded:
            return FLOOD
        i = self._buffer.find(b"\n")
        if i < 0:
            if not self._discarding and len(self._buffer) > self.max_length:
                self._discard()
                if self._flooded:
                    return FLOOD
            return None
        line = bytes(self._buffer[:i])
        del self._buffer[: i + 1]
        if self._discarding:
            total, self._discarding, self._discarded = len(line) + self._discarded, False, 0
            if total > self.flood_length:
                self._flooded = True
                return FLOOD
            return TOO_LONG
        if line.endswith(b"\r"):
            line = line[:-1]
        if len(line) > self.flood_length:
            self._flooded = True
            return FLOOD
        if len(line) > self.max_length:
            return TOO_LONG
        return line

    def buffered(self) -> int:
        """Octets received but not yet returned as lines."""
        return len(self._buffer) + (1 if self._discarding else 0)

    def clear(self) -> None:
        self._buffer.clear()
        self._discarding = False
        self._discarded = 0


@dataclass
class Command:
    keyword: bytes  # upper-cased
    args: list[bytes]  # whitespace-separated arguments
    rest: bytes  # everything after the first space, verbatim (PASS)


def parse_command(line: bytes) -> Command | None:
    """Split a command line; None if it has no keyword at all."""
    keyword, _, rest = line.partition(b" ")
    if not keyword or not keyword.isalnum() or not keyword.isascii() or len(keyword) > 8:
        return None
    return Command(keyword.upper(), rest.split(), rest)


def parse_number(arg: bytes) -> int | None:
    """A non-negative decimal number, or None if ``arg`` is not one."""
    if not arg or not arg.isdigit() or not arg.isascii():
        return None
    return int(arg)
