"""ENVELOPE (RFC 3501 7.4.2): address lists parsed the way Dovecot 2.3
does (groups, routes, comments, missing parts as MISSING_MAILBOX /
MISSING_DOMAIN), rendered from the raw header values."""

from __future__ import annotations

import re
from collections.abc import Sequence

from mailsrv.imap.headers import FOLD, Field, istr, skip_cfws

_ENV_STRINGS = ("date", "subject")
_ENV_ADDRS = ("from", "sender", "reply-to", "to", "cc", "bcc")


def envelope(fields: Sequence[Field]) -> bytes:
    """ENVELOPE (RFC 3501 7.4.2) from parsed header fields; values are the
    raw (RFC 2047-encoded) header text, unfolded."""
    vals: dict[str, bytes] = {}
    for n, _, v in fields:
        if n not in vals:
            vals[n] = v
    out = [istr(vals.get("date")), istr(vals.get("subject"))]
    addrs: dict[str, list[Address]] = {}
    for name in _ENV_ADDRS:
        value = vals.get(name)
        addrs[name] = parse_addresses(value) if value is not None else []
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
        assert m is not None  # the last alternative takes any byte
        g = m.lastindex
        if g is None:
            i = m.end()
        elif g == 1:
            q = _QUOTED.match(v, i)
            assert q is not None  # v[i] is the opening quote
            text = q.group(1)
            toks.append(("q", _QPAIR.sub(rb"\1", text) if b"\\" in text else text))
            i = q.end()
        elif g == 2:
            j = skip_cfws(v, i)
            toks.append(("c", FOLD.sub(b" ", v[i + 1:j - 1]).strip()))
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


def _more(toks: list[tuple[str, bytes]], i: int) -> bool:
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


