"""Streaming reader for standard mbox files (Thunderbird, mutt, Dovecot exports).

Format choice, documented because mbox has several dialects:

- **mboxrd unquoting.**  A message starts at a line beginning with ``From ``
  whose date parses (like mutt; the first line of the file needs no date), so
  an unquoted ``From here`` in a body stays body.  Body lines matching ``>+From `` lose exactly one ``>``, so
  ``>From `` becomes ``From `` and ``>>From `` becomes ``>From ``.  For mboxo
  files (which quote ``From `` but not ``>From ``) this is also right except for
  original lines that began with ``>From ``, which mboxo itself made ambiguous.
- **Bytes are kept exactly** otherwise: LF or CRLF line ends as in the file,
  headers included (``Status``/``X-Status`` stay in the message; they only
  also become flags).  The blank line that the mbox format puts before each
  ``From `` line is the format's, not the message's, and is dropped.
- **Flags** (Dovecot's and mutt's convention): ``Status: R`` -> ``\\Seen``;
  ``X-Status: A`` -> ``\\Answered``, ``F`` -> ``\\Flagged``, ``T`` -> ``\\Draft``,
  ``D`` -> ``\\Deleted``; Thunderbird's ``X-Mozilla-Status`` bits 0x1/0x2/0x4/0x8
  -> ``\\Seen``/``\\Answered``/``\\Flagged``/``\\Deleted``; ``X-Keywords`` atoms
  become keywords.
- **Internal date** from the ``From_`` line's date (asctime form, UTC unless a
  numeric zone follows), else the ``Date:`` header, else None.

Memory stays bounded: lines are read in pieces of at most 1 MiB and each
message goes to a spooled temporary file (on disk beyond 8 MiB).
"""

from __future__ import annotations

import calendar
import email.utils
import re
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import IO, BinaryIO

PIECE = 1 << 20
LINE_HEAD = 4096  # a line start is read at least this far (whole From_ lines)
SPOOL = 8 << 20

_MONTHS = {m: i for i, m in enumerate(
    ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"), 1)}
_FROM_DATE = re.compile(
    rb"(?:[A-Za-z]{3},?\s+)?([A-Za-z]{3})\s+(\d{1,2})\s+(\d{1,2}):(\d{2})(?::(\d{2}))?"
    rb"(?:\s+[A-Z]{3,5})?(?:\s+([+-]\d{4}))?\s+(\d{4})(?:\s+([+-]\d{4}))?\s*$"
)
_QUOTED_FROM = re.compile(rb">+From ")
_ATOM = re.compile(r"^[^\s(){%*\"\\\]]+$")
_X_STATUS = {"A": "\\Answered", "F": "\\Flagged", "T": "\\Draft", "D": "\\Deleted"}
_MOZILLA = ((0x1, "\\Seen"), (0x2, "\\Answered"), (0x4, "\\Flagged"), (0x8, "\\Deleted"))


class MboxError(Exception):
    """The file is not an mbox (reported as one line)."""


@dataclass
class MboxMessage:
    """One message; ``body`` is valid until the iterator advances."""

    index: int  # 1-based
    from_line: bytes
    body: IO[bytes]  # positioned at 0, exact message bytes
    size: int  # bytes as stored (LF or CRLF as in the file)
    flags: list[str] = field(default_factory=list)
    internaldate: float | None = None


def parse_from_date(from_line: bytes) -> float | None:
    """Seconds since the epoch from a ``From sender date`` line, or None."""
    rest = from_line.rstrip(b"\r\n")[5:]
    parts = rest.split(None, 1)
    if len(parts) < 2:
        return None
    m = _FROM_DATE.search(parts[1])
    if not m:
        return None
    mon, day, hh, mm, ss, tz1, year, tz2 = m.groups()
    month = _MONTHS.get(mon.decode("ascii").lower())
    if month is None:
        return None
    try:
        t = calendar.timegm((int(year), month, int(day), int(hh), int(mm), int(ss or 0), 0, 0, 0))
    except (ValueError, OverflowError):
        return None
    tz = tz1 or tz2
    if tz:
        sign = -1 if tz[:1] == b"-" else 1
        t -= sign * (int(tz[1:3]) * 3600 + int(tz[3:5]) * 60)
    return float(t)


def flags_from_headers(headers: dict) -> list[str]:
    """IMAP flags from Status / X-Status / X-Mozilla-Status / X-Keywords values."""
    flags = []
    if "R" in headers.get("status", ""):
        flags.append("\\Seen")
    for ch, flag in _X_STATUS.items():
        if ch in headers.get("x-status", ""):
            flags.append(flag)
    moz = headers.get("x-mozilla-status", "").strip()
    if moz:
        try:
            bits = int(moz, 16)
        except ValueError:
            bits = 0
        flags.extend(flag for bit, flag in _MOZILLA if bits & bit)
    for kw in re.split(r"[\s,]+", headers.get("x-keywords", "")):
        if kw and not kw.startswith("\\") and _ATOM.match(kw):
            flags.append(kw)
    seen, out = set(), []
    for f in flags:
        if f.lower() not in seen:
            seen.add(f.lower())
            out.append(f)
    return out


_FLAG_HEADERS = (b"status:", b"x-status:", b"x-mozilla-status:", b"x-keywords:")


class _Builder:
    """Accumulates one message, holding back a trailing blank line."""

    def __init__(self, index: int, from_line: bytes) -> None:
        self.index, self.from_line = index, from_line
        self.file = tempfile.SpooledTemporaryFile(max_size=SPOOL)
        self.size = 0
        self.held: bytes | None = None  # a blank line that may be the separator
        self.in_headers = True
        self.headers: dict = {}

    def _write(self, data: bytes) -> None:
        self.file.write(data)
        self.size += len(data)

    def line(self, piece: bytes, line_start: bool) -> None:
        if self.held is not None:
            self._write(self.held)
            self.held = None
        if line_start:
            if _QUOTED_FROM.match(piece):
                piece = piece[1:]
            if self.in_headers:
                if piece in (b"\n", b"\r\n"):
                    self.in_headers = False
                else:
                    self._note_header(piece)
            if piece in (b"\n", b"\r\n"):
                self.held = piece
                return
        self._write(piece)

    def _note_header(self, line: bytes) -> None:
        low = line[:20].lower()
        for h in _FLAG_HEADERS:
            if low.startswith(h):
                name = h[:-1].decode("ascii")
                value = line[len(h):].decode("latin-1").strip()
                self.headers[name] = (self.headers.get(name, "") + " " + value).strip()
        if low.startswith(b"date:"):
            self.headers.setdefault("date", line[5:].decode("latin-1").strip())

    def finish(self) -> MboxMessage:
        """Close the message; a held blank line was the mbox separator."""
        self.file.seek(0)
        date = parse_from_date(self.from_line)
        if date is None and self.headers.get("date"):
            parsed = email.utils.parsedate_tz(self.headers["date"])
            date = float(email.utils.mktime_tz(parsed)) if parsed else None
        return MboxMessage(self.index, self.from_line, self.file, self.size, flags_from_headers(self.headers), date)


def iter_mbox(f: BinaryIO) -> Iterator[MboxMessage]:
    """Yield the messages of the binary mbox stream ``f`` one at a time.

    Each message's ``body`` file is closed when the iterator advances, so a
    consumer stores (or copies) it before asking for the next one.
    """
    current: _Builder | None = None
    count = 0
    line_start = True
    while True:
        piece = f.readline(PIECE)
        if not piece:
            break
        starts = line_start
        while starts and not piece.endswith(b"\n") and len(piece) < LINE_HEAD:
            more = f.readline(PIECE)
            if not more:
                break
            piece += more
        line_start = piece.endswith(b"\n")
        if starts and piece.startswith(b"From ") and (current is None or parse_from_date(piece) is not None):
            if current is not None:
                msg = current.finish()
                yield msg
                msg.body.close()
            count += 1
            current = _Builder(count, piece)
            continue
        if current is None:
            if piece.strip() == b"":
                continue
            raise MboxError("not an mbox file: it does not start with a 'From ' line")
        current.line(piece, starts)
    if current is not None:
        msg = current.finish()
        yield msg
        msg.body.close()
