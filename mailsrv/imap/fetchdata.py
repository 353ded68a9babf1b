"""FETCH data of one message: ENVELOPE, BODYSTRUCTURE/BODY, BODY[section].

Derived values go into the folder's per-message cache after the first parse
(kinds below), so a warm ``FETCH 1:* (ENVELOPE)`` or a header SEARCH never
opens a message file.  ENVELOPE and header sections read only the header
part of the file, in chunks, until the blank line.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

from mailsrv.imap import headers, mime
from mailsrv.imap.envelope import envelope as envelope_of
from mailsrv.store.crlf import to_crlf
from mailsrv.store.interfaces import IFolder, MessageInfo

HEADER = "header"  # CRLF header bytes incl. the blank line
ENVELOPE = "envelope"
BODYSTRUCTURE = "bodystructure"  # extended form
BODY = "body"  # BODY (non-extended) form
FIELDS = "hf:"  # + field names: BODY[HEADER.FIELDS (...)] of the message ("hf!:" for .NOT)
SEARCH_TEXT = "hs:"  # + field name: its values decoded and casefolded (SEARCH HEADER)
SEARCH_ADDRESSES = "ha:"  # + field name: its addresses written out, decoded, casefolded (SEARCH FROM/TO...)
MAX_KIND = 200  # longer field lists are computed, not cached

CHUNK = 4096


_BLANK = re.compile(rb"\n\r?\n")


def _read_header(folder: IFolder, uid: int) -> bytes:
    """Read until the blank line; the blank line of the CRLF form is an LF
    followed by LF or CRLF in the stored form, so search the raw bytes and
    convert only the header."""
    f = folder.open_message(uid)
    try:
        buf = b""
        while True:
            chunk = f.read(CHUNK)
            if not chunk:
                return to_crlf(buf)
            from_ = max(0, len(buf) - 2)
            buf += chunk
            if buf[:1] == b"\n" or buf[:2] == b"\r\n":
                return b"\r\n"
            if buf == b"\r":
                continue
            m = _BLANK.search(buf, from_)
            if m:
                return to_crlf(buf[:m.end()])
    finally:
        f.close()


def header_bytes(folder: IFolder, info: MessageInfo) -> bytes:
    """The message header exactly as BODY[HEADER] sends it (cached)."""
    h = folder.get_cached(info.uid, HEADER)
    if h is None:
        h = _read_header(folder, info.uid)
        folder.set_cached(info.uid, HEADER, h)
    return h


def cached_many(folder: IFolder, uids: Sequence[int], kind: str) -> dict[int, bytes]:
    """``{uid: value}`` of one cache kind, in one store query."""
    values: dict[int, bytes] = folder.get_cached_many(uids, kind)
    return values


def fields_kind(fields: Iterable[str], negate: bool) -> str | None:
    """Cache kind of a HEADER.FIELDS answer: the answer depends only on the
    set of (case-insensitive) names, so equal sets share one value."""
    kind = ("hf!:" if negate else FIELDS) + ",".join(sorted({f.lower() for f in fields}))
    return kind if len(kind) <= MAX_KIND else None


def header_fields(folder: IFolder, info: MessageInfo, fields: tuple[str, ...], negate: bool) -> bytes:
    """BODY[HEADER.FIELDS (...)] / .NOT of the whole message (cached per field set)."""
    kind = fields_kind(fields, negate)
    v = folder.get_cached(info.uid, kind) if kind else None
    if v is None:
        v = headers.header_fields(header_bytes(folder, info), fields, negate)
        if kind:
            folder.set_cached(info.uid, kind, v)
    return v


def _whole(folder: IFolder, uid: int) -> bytes:
    f = folder.open_message(uid)
    try:
        return to_crlf(f.read())
    finally:
        f.close()


def envelope(folder: IFolder, info: MessageInfo) -> bytes:
    """Parenthesised ENVELOPE (cached)."""
    env = folder.get_cached(info.uid, ENVELOPE)
    if env is None:
        env = envelope_of(headers.parse_fields(header_bytes(folder, info)))
        folder.set_cached(info.uid, ENVELOPE, env)
    return env


def bodystructure(folder: IFolder, info: MessageInfo, extended: bool) -> bytes:
    """BODYSTRUCTURE (``extended``) or BODY; both forms are cached from one parse."""
    kind = BODYSTRUCTURE if extended else BODY
    v = folder.get_cached(info.uid, kind)
    if v is None:
        data = _whole(folder, info.uid)
        root = mime.parse(data)
        bs = mime.bodystructure(data, root, True)
        b = mime.bodystructure(data, root, False)
        folder.set_cached(info.uid, BODYSTRUCTURE, bs)
        folder.set_cached(info.uid, BODY, b)
        if folder.get_cached(info.uid, HEADER) is None:
            folder.set_cached(info.uid, HEADER, data[:root.bstart])
        v = bs if extended else b
    return v


def _locate(root: mime.Part, part: tuple[int, ...]) -> mime.Part | None:
    """The entity a part number names (RFC 3501 6.4.5): numbers index the
    parts of a multipart; inside a message/rfc822 part they index its inner
    message; a non-multipart entity is its own part 1 (one level only, as
    Dovecot: BODY[3.1] of a leaf part 3 is part 3, BODY[3.1.1] is empty)."""
    cur = root
    stayed = False  # a non-multipart entity is its own part 1, once
    for depth, n in enumerate(part):
        if depth > 0 and cur.message is not None:
            cur = cur.message
        elif stayed:
            return None
        if cur.is_multipart:
            if not 1 <= n <= len(cur.children):
                return None
            cur = cur.children[n - 1]
            stayed = False
        elif n != 1:
            return None
        else:
            stayed = True
    return cur


def section(folder: IFolder, info: MessageInfo, part: tuple[int, ...], text: str | None,
            fields: tuple[str, ...] = ()) -> bytes:
    """Exact bytes of BODY[<part>.<text>]; empty for a part that does not
    exist or a HEADER/TEXT of a part that is not a message (as Dovecot)."""
    text = text.upper() if text else None
    if not part:
        if text == "HEADER":
            return header_bytes(folder, info)
        if text == "HEADER.FIELDS":
            return header_fields(folder, info, fields, False)
        if text == "HEADER.FIELDS.NOT":
            return header_fields(folder, info, fields, True)
        data = _whole(folder, info.uid)
        if text == "TEXT":
            return data[headers.header_end(data):]
        if text is None:
            return data
        return b""
    data = _whole(folder, info.uid)
    p = _locate(mime.parse(data), tuple(part))
    if p is None:
        return b""
    if text is None:
        return data[p.bstart:p.end]
    if text == "MIME":
        return data[p.hstart:p.bstart]
    msg = p.message
    if msg is None:
        return b""
    if text == "HEADER":
        return data[msg.hstart:msg.bstart]
    if text == "TEXT":
        return data[msg.bstart:msg.end]
    if text in ("HEADER.FIELDS", "HEADER.FIELDS.NOT"):
        return headers.header_fields(data[msg.hstart:msg.bstart], fields, text.endswith(".NOT"))
    return b""
