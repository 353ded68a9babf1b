"""Response formatting: the choice of atom, quoted string or literal, so
any bytes (8-bit header values, odd mailbox names) go out well-formed."""

from __future__ import annotations

import time
from collections.abc import Iterable

import twisted.mail.imap4  # noqa: F401  registers the imap4-utf-7 codec

from mailsrv.imap.reader import ATOM as _ATOM

_MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]


def _b(s: str | bytes) -> bytes:
    return s.encode("utf-8") if isinstance(s, str) else s


def quoted_ok(data: bytes) -> bool:
    return all(0 < c < 0x80 and c not in (0x0A, 0x0D) for c in data)


def string(s: str | bytes) -> bytes:
    """A quoted string when it can be one, else a literal."""
    data = _b(s)
    if quoted_ok(data) and len(data) < 1024:
        return b'"' + data.replace(b"\\", b"\\\\").replace(b'"', b'\\"') + b'"'
    return b"{%d}\r\n" % len(data) + data


def nstring(s: str | bytes | None) -> bytes:
    return b"NIL" if s is None else string(s)


def astring(s: str | bytes) -> bytes:
    """An atom when the value is one (and is not NIL), else a string."""
    data = _b(s)
    if data and data.upper() != b"NIL" and all(c in _ATOM or c == 0x5D for c in data):
        return data
    return string(data)


def encode_mailbox(name: str) -> bytes:
    return name.encode("imap4-utf-7")


def mailbox(name: str, utf8: bool = False) -> bytes:
    """A mailbox name as sent: modified UTF-7, always quoted (clients expect
    LIST names quoted; INBOX and plain atoms are fine either way).
    ``utf8``: the session enabled UTF-8 names (RFC 6855): UTF-8 as it is,
    quoted when it can be (RFC 6855's utf8-quoted)."""
    if not utf8:
        return string(encode_mailbox(name))
    data = name.encode("utf-8")
    if data.isascii():
        return string(data)
    if len(data) < 1024 and not any(c < 0x20 or c == 0x7F for c in data):
        return b'"' + data.replace(b"\\", b"\\\\").replace(b'"', b'\\"') + b'"'
    return b"{%d}\r\n" % len(data) + data


def flag_list(flags: Iterable[str]) -> bytes:
    return b"(" + b" ".join(f.encode("utf-8") for f in flags) + b")"


def date_time(ts: float) -> bytes:
    """INTERNALDATE: ``"dd-Mon-yyyy hh:mm:ss +zzzz"`` in the server's zone."""
    t = time.localtime(ts)
    off = t.tm_gmtoff // 60
    sign = "+" if off >= 0 else "-"
    off = abs(off)
    return ('"%02d-%s-%04d %02d:%02d:%02d %s%02d%02d"' % (
        t.tm_mday, _MONTHS[t.tm_mon - 1], t.tm_year, t.tm_hour, t.tm_min, t.tm_sec,
        sign, off // 60, off % 60)).encode("ascii")


def text_line(text: str) -> bytes:
    """Human-readable text for a response line: one line, 7-bit safe."""
    return text.replace("\r", " ").replace("\n", " ").encode("ascii", "replace")


def tagged(tag: str, status: str, text: str, code: str | None = None) -> bytes:
    head = f"{tag} {status} "
    if code:
        head += f"[{code}] "
    return head.encode("ascii", "replace") + text_line(text) + b"\r\n"


def untagged(text: str | bytes) -> bytes:
    return b"* " + _b(text) + b"\r\n"
