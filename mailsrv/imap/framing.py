"""IMAP framing, sans-IO: bytes in, one event at a time out.

This layer knows lines, ``{n}`` / ``{n+}`` literals (RFC 3501, LITERAL+),
the bounds on both, and the two modes a running command can ask for: the
next line raw (a SASL response, IDLE's ``DONE``) and skipping the rest of a
command that was refused for its size.  It knows nothing of the grammar: a
complete command (its text parts with the literals between them) goes to
the ``parse`` function it was built with (:func:`grammar.parse_command`),
so either side can be tested and changed alone.

The server pulls events with :meth:`Parser.next_event` through the shared
:class:`mailsrv.pump.CommandPump`, one command at a time, which lets a
command switch to raw-line mode before later pipelined bytes are parsed.
Large APPEND literals are spooled to a temporary file, never held whole in
memory.
"""

from __future__ import annotations

import io
import re
import tempfile
from collections.abc import Callable
from typing import IO

from mailsrv.imap import commands as C

MAX_LINE = 64 * 1024
SPOOL_MEMORY = 1024 * 1024  # APPEND literals beyond this go to a temp file

_LITERAL_AT_END = re.compile(rb"\{(\d{1,20})(\+?)\}$")
_TAG_NAME = re.compile(rb"([^ \x00-\x1f\x7f(){%*\"\\+]+) ([A-Za-z]+)")
_TAG_ONLY = re.compile(rb"([^ \x00-\x1f\x7f(){%*\"\\+]+)(?: |$)")


class Literal:
    """A literal's payload: bytes, or a spooled file for big APPEND data."""

    def __init__(self, size: int, spool: bool) -> None:
        self.size = size
        self.file: IO[bytes] | None = tempfile.SpooledTemporaryFile(max_size=SPOOL_MEMORY) if spool else None
        self.buf: bytearray | None = None if spool else bytearray()

    def write(self, data: bytes) -> None:
        if self.file is not None:
            self.file.write(data)
        elif self.buf is not None:
            self.buf += data

    def as_bytes(self) -> bytes | None:
        """The payload, or None when it was spooled (too large to be
        anything but an APPEND message)."""
        return None if self.buf is None else bytes(self.buf)

    def as_file(self) -> IO[bytes]:
        """The payload as a file positioned at 0; the caller closes it."""
        if self.file is None:
            return io.BytesIO(bytes(self.buf or b""))
        f, self.file = self.file, None
        f.seek(0)
        return f

    def close(self) -> None:
        if self.file is not None:
            self.file.close()
            self.file = None


Parts = list[bytes | Literal]
ParseFn = Callable[[Parts], "C.Command | C.ParseError"]


def peek_tag_name(line: bytes) -> tuple[str | None, str]:
    """Best-effort tag and command name of a line, for errors that are
    answered before the command is parsed (too long, literal too big)."""
    m = _TAG_NAME.match(line)
    if not m:
        m2 = _TAG_ONLY.match(line)
        return (m2.group(1).decode("ascii") if m2 and m2.group(1).isascii() else None), ""
    tag = m.group(1).decode("ascii") if m.group(1).isascii() else None
    return tag, m.group(2).decode().upper()


class Parser:
    """Incremental framing.  ``push`` bytes, pull events with
    :meth:`next_event` (None: more input is needed)."""

    def __init__(self, parse: ParseFn, append_limit: int = 50 * 1024 * 1024, max_line: int = MAX_LINE) -> None:
        self.parse = parse
        self.append_limit = append_limit
        self.max_line = max_line
        self.nonsync_max: int | None = None  # LITERAL-: non-synchronizing literals up to this size only
        self._buf = bytearray()
        self._scan = 0  # where to resume looking for LF
        self._parts: Parts = []
        self._size = 0  # bytes of this command held in memory
        self._tag: str | None = None
        self._name = ""
        self._literal: Literal | None = None
        self._remaining = 0
        self._skip_literal = 0  # bytes still to discard
        self._skip_line = False  # discard up to the next LF
        self._raw = False

    # -- input
    def push(self, data: bytes) -> None:
        self._buf += data

    def feed(self, data: bytes) -> list[C.Event]:
        """Push and return every event that is complete now."""
        self.push(data)
        out: list[C.Event] = []
        while True:
            ev = self.next_event()
            if ev is None:
                return out
            out.append(ev)

    def buffered(self) -> int:
        """Bytes received but not yet consumed."""
        return len(self._buf)

    def expect_raw_line(self) -> None:
        """The next line is a SASL response or IDLE's DONE, not a command."""
        self._raw = True

    def close(self) -> None:
        """Drop partial state (connection lost); closes spooled literals."""
        for p in self._parts:
            if isinstance(p, Literal):
                p.close()
        if self._literal is not None:
            self._literal.close()
        self._parts = []
        self._literal = None

    def discard_buffer(self) -> None:
        """Forget buffered input (STARTTLS: plaintext must not survive)."""
        self._buf.clear()
        self._scan = 0

    # -- events
    def next_event(self) -> C.Event | None:
        while True:
            if self._skip_literal:
                if not self._discard_literal():
                    return None
                continue
            if self._literal is not None:
                if not self._fill_literal():
                    return None
                continue
            nl = self._buf.find(b"\n", self._scan)
            if nl < 0:
                return self._incomplete_line()
            line = bytes(self._buf[:nl])
            del self._buf[:nl + 1]
            self._scan = 0
            if line.endswith(b"\r"):
                line = line[:-1]
            if self._skip_line:
                self._end_skipped_line(line)
                continue
            if self._raw:
                self._raw = False
                if len(line) > self.max_line:
                    return C.ParseError(None, "Line too long", code="TOOBIG")
                return C.RawLine(line)
            ev = self._line(line)
            if ev is not None:
                return ev

    def _discard_literal(self) -> bool:
        """Drop bytes of a refused literal; False when input ran out."""
        n = min(self._skip_literal, len(self._buf))
        if n == 0:
            return False
        del self._buf[:n]
        self._skip_literal -= n
        self._scan = 0
        return True

    def _fill_literal(self) -> bool:
        """Move input into the current literal; True once it is complete."""
        assert self._literal is not None
        n = min(self._remaining, len(self._buf))
        if n == 0 and self._remaining:
            return False
        self._literal.write(bytes(self._buf[:n]))
        del self._buf[:n]
        self._remaining -= n
        self._scan = 0
        if self._remaining:
            return False
        self._parts.append(self._literal)
        self._literal = None
        return True

    def _incomplete_line(self) -> C.ParseError | None:
        """No LF yet: wait, or refuse a line that is already too long and
        skip to its end."""
        self._scan = len(self._buf)
        if len(self._buf) + self._size > self.max_line and not self._skip_line:
            tag = peek_tag_name(bytes(self._buf[:200]))[0] if not self._parts else self._tag
            self._reset()
            self._raw = False  # a waiting command gets this error instead of its line
            self._skip_line = True
            self._buf.clear()
            self._scan = 0
            return C.ParseError(tag, "Command line too long", code="TOOBIG")
        if self._skip_line:
            self._buf.clear()
            self._scan = 0
        return None

    def _end_skipped_line(self, line: bytes) -> None:
        """The end of a skipped line; a literal it announces with ``{n+}``
        follows without asking, so it is skipped too."""
        self._skip_line = False
        m = _LITERAL_AT_END.search(line)
        if m and m.group(2):
            self._skip_literal = int(m.group(1))
            self._skip_line = True

    def _reset(self) -> None:
        self.close()
        self._size = 0
        self._tag = None
        self._name = ""

    def _line(self, line: bytes) -> C.Event | None:
        if not self._parts:
            if not line.strip():
                return None  # blank lines between commands are harmless
            self._tag, self._name = peek_tag_name(line)
        self._size += len(line)
        if self._size > self.max_line:
            tag = self._tag
            m = _LITERAL_AT_END.search(line)
            self._reset()
            if m and m.group(2):
                self._skip_literal = int(m.group(1))
                self._skip_line = True
            return C.ParseError(tag, "Command line too long", code="TOOBIG")
        m = _LITERAL_AT_END.search(line)
        if not m:
            self._parts.append(line)
            parts = self._parts
            self._parts = []
            self._size = 0
            return self.parse(parts)
        return self._literal_announced(line, m)

    def _literal_announced(self, line: bytes, m: re.Match[bytes]) -> C.Event | None:
        """A line ending in ``{n}`` / ``{n+}``: accept the literal (asking
        for a synchronizing one with a continuation) or refuse it."""
        size = int(m.group(1))
        sync = not m.group(2)
        self._parts.append(line[:m.start()])
        is_append = self._name == "APPEND"
        limit = self.append_limit if is_append else self.max_line - self._size
        if not sync and self.nonsync_max is not None and size > self.nonsync_max:
            limit = -1  # LITERAL- (RFC 7888 4): a larger non-synchronizing literal is BAD [TOOBIG]
        if size > limit:
            tag = self._tag
            self._reset()
            if not sync:
                self._skip_literal = size
                self._skip_line = True
            if is_append and limit >= 0:
                return C.ParseError(tag, "Message too large", code="TOOBIG", status="NO" if sync else "BAD")
            return C.ParseError(tag, "Literal too large", code="TOOBIG")
        self._literal = Literal(size, spool=is_append and size > self.max_line)
        self._remaining = size
        if not is_append:
            self._size += size
        return C.LiteralContinuation(self._tag, size) if sync else None
