"""Message header text (RFC 5322) on the CRLF form of a message: fields
with their raw bytes kept, field-value syntax (comments, tokens, quoted
strings, parameters), RFC 2047 encoded words, and the IMAP string form of
a value (quoted or literal, as Dovecot chooses).  Shared by the MIME
structure (:mod:`mime`), ENVELOPE (:mod:`envelope`) and SEARCH.
"""

from __future__ import annotations

import base64
import binascii
import quopri
import re
from collections.abc import Iterable, Sequence

Field = tuple[str, bytes, bytes]  # (lower-case name, raw bytes incl. CRLFs, unfolded value)

FOLD = re.compile(rb"[ \t]*\r?\n[ \t]*")
_NEEDS_LITERAL = re.compile(rb'[^\x20-\x7e]|["\\]')


# --- headers --------------------------------------------------------------------------

def header_end(data: bytes, start: int = 0, end: int | None = None) -> int:
    """Offset just past the blank line ending the header that starts at
    ``start`` (CRLF data); ``end`` when there is no blank line."""
    if end is None:
        end = len(data)
    if data.startswith(b"\r\n", start) and start + 2 <= end:
        return start + 2
    i = data.find(b"\r\n\r\n", start, end)
    return end if i < 0 else i + 4


def parse_fields(header: bytes) -> list[Field]:
    """Header fields in order; a field's raw bytes keep its continuation
    lines.  Lines that are neither a field nor a continuation get name ''."""
    fields: list[Field] = []
    if not header:
        return fields
    lines = header.split(b"\r\n")
    trailing = header.endswith(b"\r\n")
    if trailing:
        lines.pop()
    cur_name: str | None = None
    cur: list[bytes] = []
    for line in lines:
        if line[:1] in (b" ", b"\t") and cur_name is not None:
            cur.append(line)
            continue
        if cur_name is not None:
            fields.append(_field(cur_name, cur))
        if not line:
            cur_name = None
            cur = []
            continue
        colon = line.find(b":")
        cur_name = line[:colon].rstrip(b" \t").decode("latin-1").lower() if colon > 0 else ""
        cur = [line]
    if cur_name is not None:
        fields.append(_field(cur_name, cur, trailing))
    return fields


def _field(name: str, lines: list[bytes], crlf_end: bool = True) -> Field:
    raw = b"\r\n".join(lines) + (b"\r\n" if crlf_end else b"")
    if not name:
        return (name, raw, b"")
    joined = b"\r\n".join(lines)
    value = joined[joined.find(b":") + 1:]
    return (name, raw, FOLD.sub(b" ", value).strip(b" \t"))


def unfold(value: bytes) -> bytes:
    """Folded header text on one line (folding whitespace -> one space)."""
    return FOLD.sub(b" ", value)


def first(fields: Sequence[Field], name: str) -> bytes | None:
    for n, _, v in fields:
        if n == name:
            return v
    return None


def header_fields(header: bytes, names: Iterable[str], negate: bool) -> bytes:
    """BODY[HEADER.FIELDS (...)] / .NOT: matching fields in stored order,
    continuation lines included, then the terminating blank line."""
    want = {n.lower() for n in names}
    out = b"".join(raw for n, raw, _ in parse_fields(header)
                   if n and ((n in want) != negate))
    if not out or out.endswith(b"\r\n"):
        out += b"\r\n"  # Dovecot adds no blank line after an unterminated last field
    return out


# --- header value syntax --------------------------------------------------------------

_TSPECIALS = b'()<>@,;:\\"/[]?='


def skip_cfws(v: bytes, i: int) -> int:
    n = len(v)
    while i < n:
        c = v[i:i + 1]
        if c in (b" ", b"\t", b"\r", b"\n"):
            i += 1
        elif c == b"(":
            depth = 0
            while i < n:
                c = v[i:i + 1]
                if c == b"\\":
                    i += 2
                    continue
                if c == b"(":
                    depth += 1
                elif c == b")":
                    depth -= 1
                    if depth == 0:
                        i += 1
                        break
                i += 1
        else:
            break
    return i


_TOKEN_RE: dict[bytes, re.Pattern[bytes]] = {}


def _token(v: bytes, i: int, stop: bytes = _TSPECIALS) -> tuple[bytes, int]:
    """The run of non-space, non-control bytes not in ``stop`` at v[i:]."""
    rx = _TOKEN_RE.get(stop)
    if rx is None:
        cls = b"".join(b"\\x%02x" % c for c in stop)
        rx = _TOKEN_RE[stop] = re.compile(b"[^\\x00-\\x20" + cls + b"]*")
    m = rx.match(v, i)
    assert m is not None  # a starred class matches the empty string
    j = m.end()
    return v[i:j], j


def _quoted(v: bytes, i: int) -> tuple[bytes, int]:
    """Quoted string starting at v[i] == '"'; unescaped content."""
    out = bytearray()
    i += 1
    n = len(v)
    while i < n:
        c = v[i]
        if c == 0x5C and i + 1 < n:
            out.append(v[i + 1])
            i += 2
            continue
        if c == 0x22:
            return bytes(out), i + 1
        out.append(c)
        i += 1
    return bytes(out), i


def _params(v: bytes, i: int) -> list[tuple[bytes, bytes]]:
    params = []
    n = len(v)
    while i < n:
        i = skip_cfws(v, i)
        if i >= n:
            break
        if v[i:i + 1] != b";":
            nxt = v.find(b";", i)
            if nxt < 0:
                break
            i = nxt
        i = skip_cfws(v, i + 1)
        name, i = _token(v, i)
        i = skip_cfws(v, i)
        if not name or v[i:i + 1] != b"=":
            continue
        i = skip_cfws(v, i + 1)
        if v[i:i + 1] == b'"':
            val, i = _quoted(v, i)
        else:
            val, i = _token(v, i, b'"; \t')
        params.append((name, val))
    return params


def parse_content_type(v: bytes) -> tuple[str, str, list] | None:
    """(type, subtype, [(name, value)]) with the stored case, or None when
    there is no type at all (then the default applies)."""
    i = skip_cfws(v, 0)
    mt, i = _token(v, i)
    if not mt:
        return None
    i = skip_cfws(v, i)
    st = b""
    if v[i:i + 1] == b"/":
        i = skip_cfws(v, i + 1)
        st, i = _token(v, i)
    return (mt.decode("latin-1"), st.decode("latin-1"), _params(v, i))


def parse_disposition(v: bytes) -> tuple[bytes, list[tuple[bytes, bytes]]] | None:
    i = skip_cfws(v, 0)
    d, i = _token(v, i)
    if not d:
        return None
    return d, _params(v, i)


# --- IMAP strings ---------------------------------------------------------------------

def istr(b: bytes | None) -> bytes:
    """IMAP nstring: quoted when plain printable ASCII, else a literal (8-bit,
    CR/LF, quotes or backslashes), as Dovecot does."""
    if b is None:
        return b"NIL"
    if _NEEDS_LITERAL.search(b):
        return b"{%d}\r\n" % len(b) + b
    return b'"' + b + b'"'



def strip_comments(v: bytes) -> bytes:
    out = bytearray()
    i, n = 0, len(v)
    while i < n:
        if v[i:i + 1] == b"(":
            i = skip_cfws(v, i)
            out += b" "
            continue
        out.append(v[i])
        i += 1
    return bytes(out)


# --- RFC 2047 and charsets ---------------------------------------------------------------

_EWORD = re.compile(rb"=\?([^?\s]+)\?([bBqQ])\?([^?\s]*)\?=")
_EWORD_GAP = re.compile(rb"(\?=)[ \t]+(?==\?)")


def charset_decode(b: bytes, charset: str) -> str:
    charset = charset.split("*", 1)[0].strip().lower() or "utf-8"
    try:
        return b.decode(charset, "replace")
    except LookupError:
        return b.decode("utf-8", "replace")


def decode_raw(b: bytes) -> str:
    """Raw header/body bytes of unknown charset: UTF-8 if valid, else Latin-1."""
    try:
        return b.decode("utf-8")
    except UnicodeDecodeError:
        return b.decode("latin-1")


def decode_header_value(v: bytes) -> str:
    """Unfolded header value with RFC 2047 encoded words decoded; raw 8-bit
    taken as UTF-8 (Latin-1 when not valid UTF-8)."""
    if b"=?" not in v:
        return decode_raw(v)
    v = _EWORD_GAP.sub(rb"\1", v)
    out: list[str] = []
    pos = 0
    for m in _EWORD.finditer(v):
        out.append(decode_raw(v[pos:m.start()]))
        charset, enc, text = m.group(1).decode("latin-1"), m.group(2), m.group(3)
        try:
            if enc in b"bB":
                raw = base64.b64decode(text + b"=" * (-len(text) % 4), validate=True)
            else:
                raw = quopri.decodestring(text.replace(b"_", b" "), header=True)
            out.append(charset_decode(raw, charset))
        except (binascii.Error, ValueError):
            out.append(decode_raw(m.group(0)))
        pos = m.end()
    out.append(decode_raw(v[pos:]))
    return "".join(out)


