"""The lexical layer of the IMAP grammar: a cursor over one framed command
(text parts with literals between them) that reads atoms, numbers, quoted
strings, literals, astrings, mailbox names, flags, sequence sets and dates
(RFC 3501 section 9).  :mod:`grammar` builds commands out of these.
"""

from __future__ import annotations

import calendar
import datetime
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar, cast

import twisted.mail.imap4  # noqa: F401  registers the imap4-utf-7 codec

from mailsrv.imap import flags as F
from mailsrv.imap import seqset as S
from mailsrv.imap.framing import Literal, Parts

MAX_DEPTH = 64  # nesting of parenthesised search keys / NOT / OR

_ATOM_SPECIALS = set(b'(){ %*"\\]') | set(range(0x20)) | {0x7F}
ATOM_CHARS = bytes(c for c in range(1, 0x80) if c not in _ATOM_SPECIALS)
ATOM = frozenset(ATOM_CHARS)
ASTRING = ATOM | {ord("]")}
TAG = ASTRING - {ord("+")}
LIST_CHARS = ASTRING | {ord("%"), ord("*")}
DIGITS = frozenset(b"0123456789")
SEQSET_CHARS = frozenset(b"0123456789:,*")
_MONTHS = {m.upper(): i for i, m in enumerate(
    ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"], 1)}

T = TypeVar("T")


class Syntax(Exception):
    """Grammar error inside one command (becomes a ParseError)."""


@dataclass
class Dialect:
    """What ENABLE changed in how one session's commands are read (and its
    responses written).  One object per connection, shared by its parser
    and its handler context; the parser reads it when a command is parsed,
    which is after the commands before it have finished."""

    utf8: bool = False  # UTF8=ACCEPT or IMAP4rev2: mailbox names are UTF-8, not modified UTF-7


def decode_mailbox(raw: bytes, utf8: bool = False) -> str:
    """Wire mailbox name (modified UTF-7, or raw UTF-8 from lax clients) to
    str; INBOX is case-insensitive.  ``utf8``: the session enabled UTF-8
    names (RFC 6855), so the name is UTF-8 as sent, ``&`` included."""
    try:
        if utf8:
            name = raw.decode("utf-8")
        elif raw.isascii():
            name = raw.decode("imap4-utf-7")
            if name.encode("imap4-utf-7") != raw:  # the codec is lenient; we are not
                raise ValueError("not canonical modified UTF-7")
        else:
            name = raw.decode("utf-8")
    except (UnicodeDecodeError, ValueError) as e:
        raise Syntax("mailbox name is not valid modified UTF-7") from e
    if name.upper() == "INBOX":
        return "INBOX"
    if name[:6].upper() == "INBOX/":
        return "INBOX" + name[5:]
    return name


def date_text(s: str) -> datetime.date:
    """``d-Mon-yyyy`` (SEARCH dates)."""
    m = re.fullmatch(r"(\d{1,2})-([A-Za-z]{3})-(\d{4})", s)
    if not m or m.group(2).upper() not in _MONTHS:
        raise Syntax("bad date")
    try:
        return datetime.date(int(m.group(3)), _MONTHS[m.group(2).upper()], int(m.group(1)))
    except ValueError:
        raise Syntax("bad date") from None


def parse_date_time(s: str) -> float:
    """``dd-Mon-yyyy hh:mm:ss +zzzz`` to seconds since the epoch."""
    m = re.fullmatch(r"([ \d]\d)-([A-Za-z]{3})-(\d{4}) (\d\d):(\d\d):(\d\d) ([+-])(\d\d)(\d\d)", s)
    if not m or m.group(2).upper() not in _MONTHS:
        raise Syntax("bad date-time")
    try:
        dt = datetime.datetime(int(m.group(3)), _MONTHS[m.group(2).upper()], int(m.group(1).strip()),
                               int(m.group(4)), int(m.group(5)), int(m.group(6)))
    except ValueError:
        raise Syntax("bad date-time") from None
    offset = (int(m.group(8)) * 60 + int(m.group(9))) * 60
    if m.group(7) == "-":
        offset = -offset
    return calendar.timegm(dt.timetuple()) - offset


class Reader:
    """Cursor over one command: text parts with literals between them."""

    def __init__(self, parts: Parts, dialect: Dialect | None = None) -> None:
        self.parts = parts
        self.utf8_names = dialect is not None and dialect.utf8
        self.i = 0
        self.pos = 0
        self.depth = 0

    @property
    def text(self) -> bytes:
        # framing alternates text and literals, and i only ever lands on text
        return self.parts[self.i]  # type: ignore[return-value]  # hot: no cast() call

    def peek(self) -> int:
        t = self.text
        return t[self.pos] if self.pos < len(t) else -1

    def at_literal(self) -> bool:
        return self.pos == len(self.text) and self.i + 1 < len(self.parts)

    def at_end(self) -> bool:
        return self.pos == len(self.text) and self.i + 1 >= len(self.parts)

    def take_literal(self) -> Literal:
        lit = cast(Literal, self.parts[self.i + 1])
        self.i += 2
        self.pos = 0
        return lit

    def expect(self, token: bytes) -> None:
        t = self.text
        if t[self.pos:self.pos + len(token)].upper() != token.upper():
            raise Syntax(f"expected {token.decode()!r}")
        self.pos += len(token)

    def maybe(self, token: bytes) -> bool:
        t = self.text
        if t[self.pos:self.pos + len(token)].upper() == token.upper():
            self.pos += len(token)
            return True
        return False

    def sp(self) -> None:
        self.expect(b" ")

    def end(self) -> None:
        if not self.at_end():
            raise Syntax("unexpected characters at end of command")

    def chars(self, allowed: frozenset[int], what: str) -> bytes:
        t = self.text
        start = self.pos
        n = len(t)
        p = start
        while p < n and t[p] in allowed:
            p += 1
        if p == start:
            raise Syntax(f"expected {what}")
        self.pos = p
        return t[start:p]

    def atom(self) -> str:
        return self.chars(ATOM, "atom").decode("ascii")

    def number(self) -> int:
        s = self.chars(DIGITS, "number")
        if len(s) > 10 or int(s) > 0xFFFFFFFF:
            raise Syntax("number out of range")
        return int(s)

    def quoted(self) -> bytes:
        self.expect(b'"')
        t = self.text
        out = bytearray()
        p = self.pos
        while True:
            if p >= len(t):
                raise Syntax("unterminated quoted string")
            c = t[p]
            if c == 0x22:
                self.pos = p + 1
                return bytes(out)
            if c == 0x5C:
                p += 1
                if p >= len(t) or t[p] not in (0x22, 0x5C):
                    raise Syntax("bad escape in quoted string")
                c = t[p]
            elif c == 0:
                raise Syntax("NUL in quoted string")
            out.append(c)
            p += 1

    def string(self) -> bytes:
        if self.at_literal():
            data = self.take_literal().as_bytes()
            if data is None:
                raise Syntax("literal too large here")
            return data
        if self.peek() == 0x22:
            return self.quoted()
        raise Syntax("expected string")

    def astring(self) -> bytes:
        if self.at_literal() or self.peek() == 0x22:
            return self.string()
        return self.chars(ASTRING, "astring")

    def nstring(self) -> bytes | None:
        if self.maybe(b"NIL"):
            return None
        return self.string()

    def mailbox(self) -> str:
        return decode_mailbox(self.astring(), self.utf8_names)

    def list_mailbox(self) -> str:
        if self.at_literal() or self.peek() == 0x22:
            raw = self.string()
        else:
            raw = self.chars(LIST_CHARS, "mailbox pattern")
        if raw.upper() == b"INBOX":
            return "INBOX"
        try:
            return decode_mailbox(raw, self.utf8_names)
        except Syntax:
            # not modified UTF-7: no mailbox can match it (RFC 3501 allows
            # any pattern; Dovecot lists nothing), so not a syntax error
            return raw.decode("latin-1")

    def paren_list(self, item: Callable[[], T], allow_empty: bool = True) -> list[T]:
        self.expect(b"(")
        out: list[T] = []
        if self.maybe(b")"):
            if not allow_empty:
                raise Syntax("empty list")
            return out
        while True:
            out.append(item())
            if self.maybe(b")"):
                return out
            self.sp()

    def flag(self) -> str:
        if self.maybe(b"\\"):
            if self.maybe(b"*"):
                return "\\*"
            return F.canonical("\\" + self.atom())
        return self.atom()

    def flag_list(self) -> list[str]:
        return self.paren_list(self.flag)

    def seqset(self) -> S.SeqSet:
        raw = self.chars(SEQSET_CHARS, "sequence set").decode()
        try:
            return S.parse(raw)
        except S.SeqSetError as e:
            raise Syntax(str(e)) from None

    def search_date(self) -> datetime.date:
        if self.peek() == 0x22:
            return date_text(self.quoted().decode("ascii", "replace"))
        return date_text(self.atom())

    def utf8(self, raw: bytes) -> str:
        return raw.decode("utf-8", "replace")
