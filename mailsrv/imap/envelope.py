"""ENVELOPE (RFC 3501 7.4.2): address lists parsed the way Dovecot 2.3
does (:mod:`mailsrv.imap.addresses`: groups, routes, comments, missing
parts as MISSING_MAILBOX / MISSING_DOMAIN), rendered from the raw header
values."""

from __future__ import annotations

import re
from collections.abc import Sequence

from mailsrv.imap import addresses
from mailsrv.imap.addresses import Address
from mailsrv.imap.headers import Field

_ENV_STRINGS = ("date", "subject", "in-reply-to", "message-id")
_ENV_ADDRS = ("from", "sender", "reply-to", "to", "cc", "bcc")
_ESCAPED = re.compile(rb'["\\]')
_LITERAL_ONLY = re.compile(rb"[\r\n\x80-\xff]")
_LWSP_RUN = re.compile(rb"[ \t\r\n]+")


def envelope(fields: Sequence[Field]) -> bytes:
    """ENVELOPE (RFC 3501 7.4.2) from parsed header fields, as Dovecot
    builds it: a string field's last occurrence counts, every occurrence
    of an address field adds its addresses; values keep trailing space
    and joined folds; the subject and display names are cleaned up "for
    humans" (whitespace runs collapsed, a literal when anything changed)."""
    strings: dict[str, bytes] = {}
    addrs: dict[str, list[Address]] = {n: [] for n in _ENV_ADDRS}
    for n, raw, _v in fields:
        if n in addrs:
            addrs[n].extend(parse_addresses(field_value(raw)))
        elif n in _ENV_STRINGS:
            strings[n] = field_value(raw)
    subject = strings.get("subject")
    out = [nstring(_joined(strings.get("date"))), b"NIL" if subject is None else human(subject)]
    for name in _ENV_ADDRS:
        lst = addrs[name]
        if not lst and name in ("sender", "reply-to"):
            lst = addrs["from"]
        out.append(render_addresses(lst))
    out.append(nstring(_joined(strings.get("in-reply-to"))))
    out.append(nstring(_joined(strings.get("message-id"))))
    return b"(" + b" ".join(out) + b")"


def field_value(raw: bytes) -> bytes:
    """A field's value from its raw lines: after the colon, leading blanks
    of the first line gone (unless that is all there is), folds kept as
    CRLF, the final CRLF dropped."""
    value = raw[raw.find(b":") + 1:]
    if value.endswith(b"\r\n"):
        value = value[:-2]
    eol = value.find(b"\r\n")
    first = value if eol < 0 else value[:eol]
    stripped = first.lstrip(b" \t")
    if stripped or eol >= 0:
        value = stripped + (b"" if eol < 0 else value[eol:])
    return value


def _joined(value: bytes | None) -> bytes | None:
    """A folded value on one line, as Dovecot reads it: the CRLFs removed,
    the blanks around them kept."""
    return None if value is None else value.replace(b"\r\n", b"")


def nstring(b: bytes | None) -> bytes:
    """IMAP nstring as Dovecot writes header text: quoted (a few quotes or
    backslashes escaped), a literal for 8-bit, CR, LF or many escapes."""
    if b is None:
        return b"NIL"
    if _LITERAL_ONLY.search(b) or len(_ESCAPED.findall(b)) > 4:
        return b"{%d}\r\n" % len(b) + b
    return b'"' + _ESCAPED.sub(rb"\\\g<0>", b) + b'"'


def human(b: bytes) -> bytes:
    """A string "for humans" (subject, display names) as Dovecot writes it:
    blanks and line breaks collapsed to single spaces, none at either end,
    NUL as 0x80; sent as a literal whenever that changed anything or the
    text holds quotes, backslashes or 8-bit bytes."""
    clean = _LWSP_RUN.sub(b" ", b.replace(b"\x00", b"\x80")).strip(b" ")
    if not clean:
        return b'""'
    if clean == b and not _ESCAPED.search(b) and not _LITERAL_ONLY.search(b):
        return b'"' + b + b'"'
    return b"{%d}\r\n" % len(clean) + clean


def render_addresses(lst: list[Address]) -> bytes:
    if not lst:
        return b"NIL"
    return b"(" + b"".join(b"(" + (b"NIL" if a[0] is None else human(a[0])) + b" "
                           + b" ".join(nstring(x) for x in a[1:]) + b")" for a in lst) + b")"


_ADDR_CH = rb"[^\x00-\x20()<>@,;:\\\"\[\]\x7f-\xff]+"
_DOMAIN = rb"[^\x00-\x20()<>@,;:\\\"\[\]\x7f-\xff.]+(?:\.[^\x00-\x20()<>@,;:\\\"\[\]\x7f-\xff.]+)*"
_SIMPLE_ADDR = re.compile(
    rb'[ \t]*(?:(?:([A-Za-z0-9!#$%&\'*+/=?^_`{|}~ \t-]*?)|"([^"\\\r\n]*)")[ \t]*<(' + _ADDR_CH + rb')@(' + _DOMAIN
    + rb')>|(' + _ADDR_CH + rb')@(' + _DOMAIN + rb'))[ \t]*(,|$)')


def _simple_addresses(v: bytes) -> list[Address] | None:
    """Fast path for the usual 'Name <a@b>, c@d' lists; None when the value
    needs the full parser (groups, comments, routes, 8-bit, odd phrases)."""
    out: list[Address] = []
    pos, n = 0, len(v)
    while pos < n:
        m = _SIMPLE_ADDR.match(v, pos)
        if m is None:
            return None
        plain, quoted, local, host, local2, host2, sep = m.groups()
        if local2 is not None:
            out.append((None, None, local2, host2))
        else:
            name = (quoted if quoted is not None else b" ".join(plain.split())) or None
            out.append((name, None, local, host))
        pos = m.end()
        if not sep:
            break
        if pos >= n:
            return None  # trailing comma: let the full parser decide
    return out if pos >= n else None


def parse_addresses(v: bytes) -> list[Address]:
    """An address-list header value as ENVELOPE address tuples, groups as
    (NIL NIL name NIL) ... (NIL NIL NIL NIL), parsed as Dovecot does
    (:mod:`mailsrv.imap.addresses`).  A folded value goes to the full
    parser: a fold inside a quoted string or comment is part of it."""
    fast = _simple_addresses(v) if b"\n" not in v else None
    if fast is not None:
        return fast
    return addresses.parse(v)
