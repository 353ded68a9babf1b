"""Sans-IO MIME structure of a stored message, by byte offsets.

Everything works on the CRLF form of the message (what IMAP sends), and every
part is a pair of slices of that buffer, so each BODY[section] is the stored
bytes exactly: original header order, case, repeats and the blank line.
Nothing is re-serialised through ``email.message``.

Where RFC 2046 leaves room the behaviour follows Dovecot 2.3 (golden values
in tests/imap/test_fetchdata.py): the CRLF before a boundary belongs to the
boundary, except that a nested multipart keeps the line end of its own close
delimiter; a multipart with no usable boundary has one empty text/plain part;
missing mailbox/host in addresses are MISSING_MAILBOX / MISSING_DOMAIN.
"""

from __future__ import annotations

import base64
import binascii
import quopri
import re
from collections.abc import Iterable, Sequence

MAX_DEPTH = 40  # nesting of multipart / message/rfc822 we descend into
MAX_PARTS = 2000

Field = tuple[str, bytes, bytes]  # (lower-case name, raw bytes incl. CRLFs, unfolded value)

_FOLD = re.compile(rb"[ \t]*\r?\n[ \t]*")
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
    return (name, raw, _FOLD.sub(b" ", value).strip(b" \t"))


def unfold(value: bytes) -> bytes:
    """Folded header text on one line (folding whitespace -> one space)."""
    return _FOLD.sub(b" ", value)


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
    for i, (p, close, line_end) in enumerate(delims):
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
    out = []
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


# --- header value syntax --------------------------------------------------------------

_TSPECIALS = b'()<>@,;:\\"/[]?='


def _skip_cfws(v: bytes, i: int) -> int:
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


_TOKEN_RE: dict = {}


def _token(v: bytes, i: int, stop: bytes = _TSPECIALS) -> tuple[bytes, int]:
    """The run of non-space, non-control bytes not in ``stop`` at v[i:]."""
    rx = _TOKEN_RE.get(stop)
    if rx is None:
        cls = b"".join(b"\\x%02x" % c for c in stop)
        rx = _TOKEN_RE[stop] = re.compile(b"[^\\x00-\\x20" + cls + b"]*")
    j = rx.match(v, i).end()
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
        i = _skip_cfws(v, i)
        if i >= n:
            break
        if v[i:i + 1] != b";":
            nxt = v.find(b";", i)
            if nxt < 0:
                break
            i = nxt
        i = _skip_cfws(v, i + 1)
        name, i = _token(v, i)
        i = _skip_cfws(v, i)
        if not name or v[i:i + 1] != b"=":
            continue
        i = _skip_cfws(v, i + 1)
        if v[i:i + 1] == b'"':
            val, i = _quoted(v, i)
        else:
            val, i = _token(v, i, b'"; \t')
        params.append((name, val))
    return params


def parse_content_type(v: bytes) -> tuple[str, str, list] | None:
    """(type, subtype, [(name, value)]) with the stored case, or None when
    there is no type at all (then the default applies)."""
    i = _skip_cfws(v, 0)
    mt, i = _token(v, i)
    if not mt:
        return None
    i = _skip_cfws(v, i)
    st = b""
    if v[i:i + 1] == b"/":
        i = _skip_cfws(v, i + 1)
        st, i = _token(v, i)
    return (mt.decode("latin-1"), st.decode("latin-1"), _params(v, i))


def parse_disposition(v: bytes) -> tuple[bytes, list[tuple[bytes, bytes]]] | None:
    i = _skip_cfws(v, 0)
    d, i = _token(v, i)
    if not d:
        return None
    return d, _params(v, i)


# --- IMAP rendering -------------------------------------------------------------------

def istr(b: bytes | None) -> bytes:
    """IMAP nstring: quoted when plain printable ASCII, else a literal (8-bit,
    CR/LF, quotes or backslashes), as Dovecot does."""
    if b is None:
        return b"NIL"
    if _NEEDS_LITERAL.search(b):
        return b"{%d}\r\n" % len(b) + b
    return b'"' + b + b'"'


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
    langs = [t for t in re.split(rb"[,\s]+", _strip_comments(lang))] if lang is not None else []
    langs = [t for t in langs if t]
    lng = b"(" + b" ".join(istr(t) for t in langs) + b")" if langs else b"NIL"
    return dsp + b" " + lng + b" " + istr(first(f, "content-location"))


def _strip_comments(v: bytes) -> bytes:
    out = bytearray()
    i, n = 0, len(v)
    while i < n:
        if v[i:i + 1] == b"(":
            i = _skip_cfws(v, i)
            out += b" "
            continue
        out.append(v[i])
        i += 1
    return bytes(out)


# --- addresses and ENVELOPE -----------------------------------------------------------

_ENV_STRINGS = ("date", "subject")
_ENV_ADDRS = ("from", "sender", "reply-to", "to", "cc", "bcc")


def envelope(fields: Sequence[Field]) -> bytes:
    """ENVELOPE (RFC 3501 7.4.2) from parsed header fields; values are the
    raw (RFC 2047-encoded) header text, unfolded."""
    vals = {}
    for n, _, v in fields:
        if n not in vals:
            vals[n] = v
    out = [istr(vals.get("date")), istr(vals.get("subject"))]
    addrs = {}
    for name in _ENV_ADDRS:
        v = vals.get(name)
        addrs[name] = parse_addresses(v) if v is not None else []
    for name in _ENV_ADDRS:
        lst = addrs[name]
        if not lst and name in ("sender", "reply-to"):
            lst = addrs["from"]
        out.append(render_addresses(lst))
    out.append(istr(vals.get("in-reply-to")))
    out.append(istr(vals.get("message-id")))
    return b"(" + b" ".join(out) + b")"


Address = tuple[bytes | None, bytes | None, bytes | None, bytes | None]


def render_addresses(lst: list[Address]) -> bytes:
    if not lst:
        return b"NIL"
    return b"(" + b"".join(b"(" + b" ".join(istr(x) for x in a) + b")" for a in lst) + b")"


_TOK = re.compile(rb'[ \t\r\n]+|(")|(\()|(\[[^\]]*\]?)|([<>@,;:.])|([^\x00-\x20()<>@,;:".\[\]]+)|(.)', re.S)
_QUOTED = re.compile(rb'"((?:[^"\\]|\\.)*)"?', re.S)
_QPAIR = re.compile(rb"\\(.)", re.S)


def _tokens(v: bytes) -> list[tuple[str, bytes]]:
    """(kind, text): kind 'a' atom, 'q' quoted, 'c' comment, 'd' domain
    literal, or the special character itself."""
    toks = []
    i, n = 0, len(v)
    match = _TOK.match
    while i < n:
        m = match(v, i)
        g = m.lastindex
        if g is None:
            i = m.end()
        elif g == 1:
            q = _QUOTED.match(v, i)
            text = q.group(1)
            toks.append(("q", _QPAIR.sub(rb"\1", text) if b"\\" in text else text))
            i = q.end()
        elif g == 2:
            j = _skip_cfws(v, i)
            toks.append(("c", _FOLD.sub(b" ", v[i + 1:j - 1]).strip()))
            i = max(j, i + 1)
        else:
            t = m.group(g)
            toks.append(("d" if g == 3 else t.decode("latin-1") if g == 4 else "a", t))
            i = m.end()
    return toks


_ADDR_CH = rb"[^\x00-\x20()<>@,;:\\\"\[\]\x7f-\xff]+"
_SIMPLE_ADDR = re.compile(
    rb'[ \t]*(?:(?:([A-Za-z0-9!#$%&\'*+/=?^_`{|}~ \t-]*?)|"([^"\\\r\n]*)")[ \t]*<(' + _ADDR_CH + rb')@(' + _ADDR_CH
    + rb')>|(' + _ADDR_CH + rb')@(' + _ADDR_CH + rb'))[ \t]*(,|$)')


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
            name = quoted if quoted is not None else (b" ".join(plain.split()) or None)
            out.append((name, None, local, host))
        pos = m.end()
        if not sep:
            break
        if pos >= n:
            return None  # trailing comma: let the full parser decide
    return out if pos >= n else None


def parse_addresses(v: bytes) -> list[Address]:
    """An address-list header value as ENVELOPE address tuples, groups as
    (NIL NIL name NIL) ... (NIL NIL NIL NIL)."""
    fast = _simple_addresses(v)
    if fast is not None:
        return fast
    toks = _tokens(v)
    out: list[Address] = []
    i, n = 0, len(toks)
    in_group = False
    item: list[tuple[str, bytes]] = []
    prev_sep = ","
    while i < n:
        k, t = toks[i]
        if k == ":" and not in_group and not any(x[0] in ("<", "@") for x in item):
            out.append((None, None, _phrase(item) or b"", None))
            in_group = True
            item = []
            prev_sep = ":"
        elif k == "<":
            j = i
            while j < n and toks[j][0] != ">":
                j += 1
            item.extend(toks[i:j + 1])
            i = j
        elif k == "," or (k == ";" and in_group):
            if item:
                out.append(_mailbox(item))
            elif k == "," and prev_sep == "," and _more(toks, i + 1):
                out.append((None, None, b"MISSING_MAILBOX", b"MISSING_DOMAIN"))
            item = []
            prev_sep = k
            if k == ";":
                out.append((None, None, None, None))
                in_group = False
        else:
            item.append((k, t))
        i += 1
    if item:
        out.append(_mailbox(item))
    if in_group:
        out.append((None, None, None, None))
    return out


def _more(toks, i: int) -> bool:
    return any(k not in (",", "c") for k, _ in toks[i:])


def _phrase(toks: list[tuple[str, bytes]]) -> bytes | None:
    words: list[bytes] = []
    for k, t in toks:
        if k in ("a", "q", "d"):
            words.append(t)
        elif k == "." and words:
            words[-1] += b"."
    return b" ".join(words) if words else None


def _mailbox(toks: list[tuple[str, bytes]]) -> Address:
    kinds = [k for k, _ in toks]
    adl = None
    if "<" in kinds:
        lt = kinds.index("<")
        name = _phrase(toks[:lt])
        inner = [x for x in toks[lt + 1:] if x[0] not in (">", "c")]
        ikinds = [k for k, _ in inner]
        if inner and ikinds[0] == "@" and ":" in ikinds:
            colon = ikinds.index(":")
            adl = b"".join(t for _, t in inner[:colon])
            inner = inner[colon + 1:]
        spec = inner
    else:
        spec = [x for x in toks if x[0] != "c"]
        comments = [t for k, t in toks if k == "c" and t]
        name = comments[0] if comments else None
    skinds = [k for k, _ in spec]
    if "@" in skinds:
        at = len(skinds) - 1 - skinds[::-1].index("@")
        local = b"".join(t for _, t in spec[:at])
        host = b"".join(t for _, t in spec[at + 1:])
    else:
        local = b"".join(t for _, t in spec)
        host = b""
    return (name, adl, local or b"MISSING_MAILBOX", host or b"MISSING_DOMAIN")


# --- decoding for SEARCH ---------------------------------------------------------------

_EWORD = re.compile(rb"=\?([^?\s]+)\?([bBqQ])\?([^?\s]*)\?=")
_EWORD_GAP = re.compile(rb"(\?=)[ \t]+(?==\?)")


def _charset_decode(b: bytes, charset: str) -> str:
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
            out.append(_charset_decode(raw, charset))
        except (binascii.Error, ValueError):
            out.append(decode_raw(m.group(0)))
        pos = m.end()
    out.append(decode_raw(v[pos:]))
    return "".join(out)


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
        return _charset_decode(body, cs.decode("latin-1"))
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
