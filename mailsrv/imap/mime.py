"""Sans-IO MIME structure of a stored message, by byte offsets.

Everything works on the CRLF form of the message (what IMAP sends), and every
part is a pair of slices of that buffer, so each BODY[section] is the stored
bytes exactly: original header order, case, repeats and the blank line.
Nothing is re-serialised through ``email.message``.

Where RFC 2046 leaves room the behaviour follows Dovecot 2.3 (golden values
in tests/imap/test_fetchdata.py): the CRLF before a boundary belongs to the
boundary, except that a nested multipart keeps the line end of its own close
delimiter; a multipart with no usable boundary has one empty text/plain part.
Header syntax is in :mod:`headers`, ENVELOPE in :mod:`envelope`.
"""

from __future__ import annotations

import base64
import binascii
import quopri
import re
from collections.abc import Iterable

from mailsrv.imap.envelope import envelope
from mailsrv.imap.headers import (
    Field,
    charset_decode,
    decode_raw,
    first,
    header_end,
    istr,
    parse_content_type,
    parse_disposition,
    parse_fields,
    strip_comments,
)

MAX_DEPTH = 40  # nesting of multipart / message/rfc822 we descend into
MAX_PARTS = 2000

# --- structure ------------------------------------------------------------------------

class Part:
    """One entity: header [hstart, bstart), body [bstart, end) of the CRLF data.
    ``children`` for multipart, ``message`` (a Part) for message/rfc822."""

    __slots__ = ("hstart", "bstart", "end", "fields", "maintype", "subtype",
                 "params", "children", "message")

    def __init__(self, hstart: int, bstart: int, end: int, fields: list[Field],
                 ctype: tuple[str, str, list]) -> None:
        self.hstart, self.bstart, self.end = hstart, bstart, end
        self.fields = fields
        self.maintype, self.subtype, self.params = ctype
        self.children: list[Part] = []
        self.message: Part | None = None

    @property
    def is_multipart(self) -> bool:
        return self.maintype.lower() == "multipart"

    def param(self, name: str) -> bytes | None:
        key = name.encode("ascii")
        for n, v in self.params:
            if n.lower() == key:
                return v
        return None


class _Budget:
    def __init__(self) -> None:
        self.parts = 0


def parse(data: bytes) -> Part:
    """The MIME tree of a whole message (CRLF bytes).  Never raises."""
    return _entity(data, 0, len(data), False, 0, _Budget())


def _entity(data: bytes, start: int, end: int, digest: bool, depth: int, budget: _Budget) -> Part:
    budget.parts += 1
    bstart = header_end(data, start, end)
    fields = parse_fields(data[start:bstart])
    ct = first(fields, "content-type")
    ctype = parse_content_type(ct) if ct is not None else None
    if ctype is None:
        ctype = ("message", "rfc822", []) if digest else ("text", "plain", [])
    part = Part(start, bstart, end, fields, ctype)
    deep = depth >= MAX_DEPTH or budget.parts >= MAX_PARTS
    mt, st = part.maintype.lower(), part.subtype.lower()
    if mt == "multipart":
        part.end = _multipart(data, part, st == "digest", depth, budget, deep)
    elif mt == "message" and st == "rfc822" and not deep:
        inner = _entity(data, bstart, end, False, depth + 1, budget)
        part.message = inner
        part.end = inner.end
    return part


def _multipart(data: bytes, part: Part, digest: bool, depth: int, budget: _Budget, deep: bool) -> int:
    s, e = part.bstart, part.end
    boundary = part.param("boundary")
    delims = [] if deep or not boundary else _delimiters(data, s, e, b"--" + boundary)
    if not delims:
        part.children.append(Part(e, e, e, [], ("text", "plain", [])))
        return e
    new_end = e
    for i, (_, close, line_end) in enumerate(delims):
        if close:
            if line_end == e and data[e:e + 2] == b"\r\n":
                new_end = e + 2
            break
        if i + 1 < len(delims):
            cend = max(line_end, delims[i + 1][0] - 2)
        else:
            cend = e
        start = min(line_end + 2, cend) if data[line_end:line_end + 2] == b"\r\n" else line_end
        part.children.append(_entity(data, start, cend, digest, depth + 1, budget))
        if budget.parts >= MAX_PARTS:
            break
    if not part.children:  # only a close delimiter: as Dovecot, one empty text/plain part
        part.children.append(Part(e, e, e, [], ("text", "plain", [])))
    return new_end


def _delimiters(data: bytes, s: int, e: int, dash: bytes) -> list[tuple[int, bool, int]]:
    """(offset of '--boundary', is close delimiter, end of the line before its
    CRLF) for each delimiter line in [s, e)."""
    out: list[tuple[int, bool, int]] = []
    pos = s
    n = len(dash)
    while True:
        if pos == s and data.startswith(dash, s) and s + n <= e:
            p = s
        else:
            i = data.find(b"\r\n" + dash, max(pos, s), e)
            if i < 0 or i + 2 + n > e:
                return out
            p = i + 2
        nl = data.find(b"\r\n", p + n, e)
        line_end = e if nl < 0 else nl
        rest = data[p + n:line_end]
        close = rest[:2] == b"--"
        tail = rest[2:] if close else rest
        if not tail.strip(b" \t"):
            out.append((p, close, line_end))
            if close:
                return out
        pos = line_end
        if pos >= e:
            return out


# --- IMAP rendering -------------------------------------------------------------------
def _plist(params: list[tuple[bytes, bytes]]) -> bytes:
    if not params:
        return b"NIL"
    return b"(" + b" ".join(istr(n) + b" " + istr(v) for n, v in params) + b")"


def _s(text: str) -> bytes:
    return istr(text.encode("latin-1"))


def bodystructure(data: bytes, part: Part, extended: bool) -> bytes:
    """BODYSTRUCTURE (extended) or BODY of ``part`` (as a message/entity)."""
    if part.is_multipart:
        out = b"(" + b"".join(bodystructure(data, c, extended) for c in part.children)
        out += b" " + _s(part.subtype)
        if extended:
            out += b" " + _plist(part.params) + b" " + _ext_tail(part)
        return out + b")"
    mt, st = part.maintype, part.subtype
    params = list(part.params)
    if mt.lower() == "text" and part.param("charset") is None:
        params.insert(0, (b"charset", b"us-ascii"))
    f = part.fields
    enc = first(f, "content-transfer-encoding")
    size = part.end - part.bstart
    fields = [_s(mt), _s(st), _plist(params), istr(first(f, "content-id")),
              istr(first(f, "content-description")), istr(enc if enc else b"7bit"), b"%d" % size]
    lines = data.count(b"\n", part.bstart, part.end)
    if part.message is not None:
        inner = part.message
        fields.append(envelope(inner.fields))
        fields.append(bodystructure(data, inner, extended))
        fields.append(b"%d" % lines)
    elif mt.lower() == "text":
        fields.append(b"%d" % lines)
    if extended:
        fields.append(istr(first(f, "content-md5")))
        fields.append(_ext_tail(part))
    return b"(" + b" ".join(fields) + b")"


def _ext_tail(part: Part) -> bytes:
    f = part.fields
    disp = first(f, "content-disposition")
    d = parse_disposition(disp) if disp is not None else None
    dsp = b"NIL" if d is None else b"(" + istr(d[0]) + b" " + _plist(d[1]) + b")"
    lang = first(f, "content-language")
    langs = [t for t in re.split(rb"[,\s]+", strip_comments(lang))] if lang is not None else []
    langs = [t for t in langs if t]
    lng = b"(" + b" ".join(istr(t) for t in langs) + b")" if langs else b"NIL"
    return dsp + b" " + lng + b" " + istr(first(f, "content-location"))


def decode_body(data: bytes, part: Part) -> str:
    """Text of a leaf part after Content-Transfer-Encoding and charset."""
    body = data[part.bstart:part.end]
    enc = (first(part.fields, "content-transfer-encoding") or b"").strip().lower()
    try:
        if enc == b"base64":
            body = base64.b64decode(re.sub(rb"[^A-Za-z0-9+/]", b"", body) + b"==", validate=False)
        elif enc == b"quoted-printable":
            body = quopri.decodestring(body)
    except (binascii.Error, ValueError):
        pass
    cs = part.param("charset")
    if cs:
        return charset_decode(body, cs.decode("latin-1"))
    return decode_raw(body)


def text_parts(part: Part) -> Iterable[Part]:
    """Leaf parts whose text SEARCH BODY/TEXT look at (text/* and the text of
    attached messages)."""
    if part.children:
        for c in part.children:
            yield from text_parts(c)
    elif part.message is not None:
        yield from text_parts(part.message)
    elif part.maintype.lower() == "text":
        yield part
