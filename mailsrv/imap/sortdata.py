"""What SORT and THREAD compare, per message: derived once from the header,
kept in the folder's per-message cache, and read back without opening
message files.

Cache kinds (one small value each, so a SORT by one key reads one kind):

- ``sk:date``: the Date: header as seconds since the epoch (8 bytes, big
  endian, signed), empty when missing or unparsable (RFC 5256: then the
  internal date is used);
- ``sk:subj``: the base subject (RFC 5256 2.1), casemapped, UTF-8;
- ``sk:from`` ``sk:to`` ``sk:cc``: the addr-mailbox of the first address,
  casemapped;
- ``sk:dfrom`` ``sk:dto``: the display name of the first address (RFC
  5957), else its address, casemapped;
- ``th``: what THREAD needs besides subject and date: a reply/forward
  flag (``R`` or ``-``) followed by the Message-ID, then the parent chain
  (References:, else In-Reply-To:), NUL-separated (:class:`ThreadData`).

Strings are compared as UTF-8 bytes, which orders them as their code
points, so a cached value is its own sort key.  :func:`keys_of` derives
every kind from one header (so a SORT (DATE) also prepares SORT (SUBJECT)
and THREAD); :mod:`sortcolumns` serves them by the column.
"""

from __future__ import annotations

import calendar
import email.utils
import re
from typing import Any

from mailsrv.imap import basesubject
from mailsrv.imap.envelope import parse_addresses
from mailsrv.imap.headers import decode_header_value, decode_raw, unfold
from mailsrv.store.interfaces import IFolder

DATE = "sk:date"
SUBJECT = "sk:subj"
FROM = "sk:from"
TO = "sk:to"
CC = "sk:cc"
DISPLAYFROM = "sk:dfrom"
DISPLAYTO = "sk:dto"
THREAD = "th"
KINDS = (DATE, SUBJECT, FROM, TO, CC, DISPLAYFROM, DISPLAYTO, THREAD)

HEADER_KIND = "header"  # fetchdata's cached header, used when present
MAX_HEADER = 1 << 20  # header bytes read to find the keys
CHUNK = 16384

Value = Any  # decoded column value: int | None (date), bytes (strings and the thread data)

_FIELDS = re.compile(rb"^(date|subject|from|to|cc|message-id|in-reply-to|references)[ \t]*:"
                     rb"(.*(?:\r?\n[ \t].*)*)", re.I | re.M)
_BLANK = re.compile(rb"\n\r?\n")


class ThreadData:
    """The threading headers of one message."""

    __slots__ = ("msgid", "refs", "reply")

    def __init__(self, msgid: str | None, refs: tuple[str, ...], reply: bool) -> None:
        self.msgid, self.refs, self.reply = msgid, refs, reply

    def encode(self) -> bytes:
        parts = [(b"R" if self.reply else b"-") + (self.msgid or "").encode("utf-8", "surrogatepass")]
        parts += [r.encode("utf-8", "surrogatepass") for r in self.refs]
        return b"\x00".join(parts)

    @classmethod
    def decode(cls, v: bytes) -> ThreadData:
        parts = v.split(b"\x00")
        head = parts[0]
        msgid = head[1:].decode("utf-8", "surrogatepass") or None
        return cls(msgid, tuple(p.decode("utf-8", "surrogatepass") for p in parts[1:]), head[:1] == b"R")


# ---------------------------------------------------------------- extraction

def message_ids(value: bytes | None) -> list[str]:
    """Every valid ``<id-left@id-right>`` in a header value, in order, as
    Dovecot reads them: whitespace inside removed, ids without ``@``
    skipped; quoted or commented forms go through a small RFC 5322 reader."""
    if not value:
        return []
    out: list[str] = []
    text = decode_raw(value)
    i = 0
    n = len(text)
    while True:
        i = text.find("<", i)
        if i < 0:
            return out
        i += 1
        j = i
        while j < n and text[j] not in '>"(':
            j += 1
        if j >= n:
            return out
        if text[j] == ">":
            inner = text[i:j]
            if "@" in inner:
                out.append("".join(inner.split()))
            i = j + 1
            continue
        got, i = _slow_msgid(text, i)
        if got is not None:
            out.append(got.replace("\r", "").replace("\n", ""))


_ATEXT = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~\-\x80-\U0010ffff]+")


def _skip_cfws(s: str, i: int) -> int:
    while i < len(s):
        c = s[i]
        if c in " \t\r\n":
            i += 1
        elif c == "(":
            depth = 0
            while i < len(s):
                if s[i] == "\\":
                    i += 2
                    continue
                if s[i] == "(":
                    depth += 1
                elif s[i] == ")":
                    depth -= 1
                    if depth == 0:
                        i += 1
                        break
                i += 1
        else:
            break
    return i


def _dot_atom(s: str, i: int) -> tuple[str | None, int]:
    words = []
    while True:
        i = _skip_cfws(s, i)
        m = _ATEXT.match(s, i)
        if not m:
            return None, i
        words.append(m.group(0))
        i = _skip_cfws(s, m.end())
        if i < len(s) and s[i] == ".":
            i += 1
            continue
        return ".".join(words), i


def _slow_msgid(s: str, i: int) -> tuple[str | None, int]:
    """``[CFWS] (quoted-string / dot-atom) "@" dot-atom ">"`` at s[i]; the id
    and where to go on (past it, or just past the ``<`` when invalid)."""
    j = _skip_cfws(s, i)
    if j < len(s) and s[j] == '"':
        k = j + 1
        buf = []
        while k < len(s) and s[k] != '"':
            if s[k] == "\\" and k + 1 < len(s):
                k += 1
            buf.append(s[k])
            k += 1
        if k >= len(s):
            return None, i
        left: str | None = "".join(buf)
        j = _skip_cfws(s, k + 1)
    else:
        left, j = _dot_atom(s, j)
    if left is None or j >= len(s) or s[j] != "@":
        return None, i
    right, j = _dot_atom(s, j + 1)
    if right is None or j >= len(s) or s[j] != ">":
        return None, i
    return f"{left}@{right}", j + 1


def _first_fields(header: bytes) -> dict[bytes, bytes]:
    """The first value of each field sorting and threading look at."""
    found: dict[bytes, bytes] = {}
    for m in _FIELDS.finditer(header):
        name = m.group(1).lower()
        if name not in found:
            found[name] = unfold(m.group(2)).strip(b" \t\r\n")
    return found


def sent_date(value: bytes | None) -> int | None:
    """The Date: header in seconds since the epoch (UTC), None when there
    is none or it cannot be read (a zone-less date counts as UTC)."""
    if not value:
        return None
    try:
        t = email.utils.parsedate_tz(decode_raw(value))
        if not t:
            return None
        if t[9] is None:
            return calendar.timegm(t[:9])
        return int(email.utils.mktime_tz(t))
    except (ValueError, IndexError, TypeError, OverflowError):
        return None


def _mailbox(value: bytes | None) -> bytes:
    if value is None:
        return b""
    addrs = parse_addresses(value)
    if not addrs or addrs[0][2] is None:
        return b""
    return _utf8(basesubject.casemap(decode_raw(addrs[0][2])))


def _display(value: bytes | None) -> bytes:
    """RFC 5957 display name of the first address: its decoded name, else
    ``mailbox@domain`` (or the mailbox alone)."""
    if value is None:
        return b""
    addrs = parse_addresses(value)
    if not addrs:
        return b""
    name, _, mailbox, host = addrs[0]
    text = decode_header_value(name) if name else ""
    if not text:
        if mailbox is not None and host is not None:
            text = decode_raw(mailbox) + "@" + decode_raw(host)
        elif mailbox is not None:
            text = decode_raw(mailbox)
    return _utf8(basesubject.casemap(text))


def _utf8(s: str) -> bytes:
    """A sort key as stored: UTF-8, cut at a NUL (as a C string would be),
    no line feeds (packed columns are LF-separated)."""
    nul = s.find("\x00")
    if nul >= 0:
        s = s[:nul]
    return s.encode("utf-8", "surrogatepass").replace(b"\n", b" ")


def encode_date(seconds: int | None) -> bytes:
    return b"" if seconds is None else seconds.to_bytes(8, "big", signed=True)


def decode_date(v: bytes) -> int | None:
    return int.from_bytes(v, "big", signed=True) if v else None


def keys_of(header: bytes) -> dict[str, bytes]:
    """Every cache kind's value for a message with this header (LF or CRLF,
    with or without its blank line)."""
    f = _first_fields(header)
    subject = f.get(b"subject")
    if subject is not None:
        base, reply = basesubject.base_subject(subject)
    else:
        base, reply = "", False
    msgids = message_ids(f.get(b"message-id"))
    refs = message_ids(f.get(b"references"))
    if not refs:
        refs = message_ids(f.get(b"in-reply-to"))[:1]
    return {
        DATE: encode_date(sent_date(f.get(b"date"))),
        SUBJECT: _utf8(base),
        FROM: _mailbox(f.get(b"from")),
        TO: _mailbox(f.get(b"to")),
        CC: _mailbox(f.get(b"cc")),
        DISPLAYFROM: _display(f.get(b"from")),
        DISPLAYTO: _display(f.get(b"to")),
        THREAD: ThreadData(msgids[0] if msgids else None, tuple(refs), reply).encode(),
    }


def decode(kind: str, v: bytes) -> Value:
    """A cached value as the column holds it: dates as numbers, the rest as
    stored (THREAD splits the thread data itself, in its hot loop)."""
    if kind == DATE:
        return decode_date(v)
    return v


def read_header(folder: IFolder, uid: int) -> bytes:
    """The stored header of a message, up to its blank line (at most
    MAX_HEADER bytes); raises MessageGone."""
    f = folder.open_message(uid)
    try:
        buf = b""
        while len(buf) < MAX_HEADER:
            chunk = f.read(CHUNK)
            if not chunk:
                break
            start = max(0, len(buf) - 2)
            buf += chunk
            if buf[:1] == b"\n" or buf[:2] == b"\r\n":
                return b""
            m = _BLANK.search(buf, start)
            if m:
                return buf[:m.start() + 1]
        return buf
    finally:
        f.close()
