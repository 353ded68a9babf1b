"""BINARY (RFC 3516): message parts with their Content-Transfer-Encoding
undone, as Dovecot 2.3 serves them; and the reverse for APPEND of a
literal8, whose ``binary`` parts are stored base64-encoded.

- ``BINARY[n]`` of a leaf part is its body decoded (base64,
  quoted-printable; 7bit/8bit/binary as stored); of a multipart or
  message/rfc822 part, its body with every part inside decoded, each
  decoded part's Content-Transfer-Encoding header replaced by
  ``Content-Transfer-Encoding: binary`` at the end of its header.
  ``BINARY[]`` is the whole message converted that way.
- ``BINARY.SIZE[n]`` is the size of that; ``<origin.length>`` slices it.
- A literal8 (``~{n}``) is sent for decoded data and data with a NUL
  (Dovecot's choice: decoded data may hold anything).
- An unknown encoding (``x-uuencode``...) or undecodable base64 answers
  ``NO [UNKNOWN-CTE]``.

Quoted-printable is decoded by RFC 2045's rules as Dovecot applies them:
trailing whitespace dropped, ``=`` at a line end joins lines (also with
whitespace after it), a bare LF becomes CRLF, an invalid ``=`` sequence
is kept as it stands.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Callable
from typing import Any

from mailsrv.imap import commands as C
from mailsrv.imap import mime
from mailsrv.imap.fetchdata import _locate as locate  # the one place part numbers are resolved
from mailsrv.imap.headers import first, parse_fields
from mailsrv.store.crlf import to_crlf
from mailsrv.store.interfaces import IFolder, MessageInfo

PLAIN = frozenset({b"", b"7bit", b"8bit", b"binary"})
CONVERTED = frozenset({b"base64", b"quoted-printable"})
CTE_BINARY = b"Content-Transfer-Encoding: binary\r\n"


class UnknownCTE(Exception):
    """The part's Content-Transfer-Encoding is unknown or its data cannot be decoded."""

    code = "UNKNOWN-CTE"


def cte(part: mime.Part) -> bytes:
    """The part's Content-Transfer-Encoding, lower-case, without comments."""
    value = first(part.fields, "content-transfer-encoding")
    if value is None:
        return b""
    value = re.sub(rb"\([^)]*\)", b"", value)
    return value.strip().lower()


# ---------------------------------------------------------------- decoding

_HEX = re.compile(rb"=([0-9A-Fa-f]{2})")


def qp_decode(body: bytes) -> bytes:
    """Quoted-printable (RFC 2045 6.7) of CRLF or LF text."""
    out: list[bytes] = []
    lines = body.split(b"\n")
    last = len(lines) - 1
    for i, line in enumerate(lines):
        if line.endswith(b"\r"):
            line = line[:-1]
        line = line.rstrip(b" \t")
        soft = line.endswith(b"=")
        if soft:
            line = line[:-1]
        out.append(_HEX.sub(lambda m: bytes.fromhex(m.group(1).decode("ascii")), line))
        if i < last and not soft:
            out.append(b"\r\n")
    return b"".join(out)


_B64_JUNK = re.compile(rb"[ \t\r\n]+")


def b64_decode(body: bytes) -> bytes:
    """Base64 with line breaks and spaces ignored; anything else is an error."""
    text = _B64_JUNK.sub(b"", body)
    try:
        return base64.b64decode(text + b"=" * (-len(text) % 4), validate=True)
    except (binascii.Error, ValueError) as e:
        raise UnknownCTE(f"invalid base64 data: {e}") from None


def decode_body(data: bytes, part: mime.Part) -> bytes:
    """A leaf part's body with its transfer encoding undone."""
    enc = cte(part)
    body = data[part.bstart:part.end]
    if enc in PLAIN:
        return body
    if enc == b"base64":
        return b64_decode(body)
    if enc == b"quoted-printable":
        return qp_decode(body)
    raise UnknownCTE(f"unknown Content-Transfer-Encoding {enc.decode('latin-1')!r}")


def _binary_header(header: bytes) -> bytes:
    """A header whose Content-Transfer-Encoding becomes ``binary`` (the old
    field dropped, the new one last, before the blank line)."""
    kept = b"".join(raw for name, raw, _ in parse_fields(header) if name != "content-transfer-encoding")
    blank = b"\r\n" if header.endswith(b"\r\n\r\n") or header == b"\r\n" else b""
    if kept and not kept.endswith(b"\r\n"):
        kept += b"\r\n"
    return kept + CTE_BINARY + blank


def convert(data: bytes, part: mime.Part, with_header: bool) -> bytes:
    """``part`` (its header too if asked) with every part inside decoded."""
    out: list[bytes] = []
    leaf = not part.is_multipart and part.message is None
    header = data[part.hstart:part.bstart]
    if with_header:
        out.append(_binary_header(header) if leaf and cte(part) in CONVERTED else header)
    if leaf:
        out.append(decode_body(data, part))
        return b"".join(out)
    if part.message is not None:
        inner = part.message
        out += [data[part.bstart:inner.hstart], convert(data, inner, True), data[inner.end:part.end]]
        return b"".join(out)
    pos = part.bstart
    for child in part.children:
        out.append(data[pos:child.hstart])
        out.append(convert(data, child, True))
        pos = child.end
    out.append(data[pos:part.end])
    return b"".join(out)


def _decodes(part: mime.Part) -> bool:
    """Whether converting this part undoes any encoding."""
    if part.message is not None:
        return _decodes(part.message)
    if part.is_multipart:
        return any(_decodes(c) for c in part.children)
    return cte(part) in CONVERTED


def section(data: bytes, path: tuple[int, ...]) -> bytes | None:
    """BINARY[path] of a whole message (CRLF bytes); empty for a part that
    does not exist (as Dovecot)."""
    return section_and_kind(data, path)[0]


def section_and_kind(data: bytes, path: tuple[int, ...]) -> tuple[bytes, bool]:
    """BINARY[path] and whether it is decoded data (sent as a literal8, as
    Dovecot does, since it may hold anything)."""
    root = mime.parse(data)
    p = locate(root, path) if path else root
    if p is None:
        return b"", False
    return convert(data, p, not path), _decodes(p)


def literal(data: bytes, binary: bool = False) -> bytes:
    """``{n}``, or a literal8 ``~{n}`` for decoded data or data with a NUL."""
    return (b"~{%d}\r\n" if binary or b"\x00" in data else b"{%d}\r\n") % len(data) + data


# ---------------------------------------------------------------- FETCH

def _message(folder: IFolder, info: MessageInfo) -> bytes:
    f = folder.open_message(info.uid)
    try:
        return to_crlf(f.read())
    finally:
        f.close()


def maker(folder: IFolder, att: C.FetchAtt) -> Callable[[MessageInfo, Any], bytes]:
    """The FETCH item function for BINARY[...]<...> or BINARY.SIZE[...]."""
    assert att.section is not None
    path = att.section.part
    name = ".".join(str(n) for n in path)
    if att.name == "BINARY.SIZE":
        label = b"BINARY.SIZE[%s] " % name.encode("ascii")

        def size(info: MessageInfo, pre: Any) -> bytes:
            return label + b"%d" % len(section_and_kind(_message(folder, info), path)[0])
        return size
    label = b"BINARY[%s]" % name.encode("ascii")
    if att.partial is not None:
        label += b"<%d>" % att.partial[0]
    label += b" "
    partial = att.partial

    def body(info: MessageInfo, pre: Any) -> bytes:
        got, decoded = section_and_kind(_message(folder, info), path)
        if partial is not None:
            got = got[partial[0]:partial[0] + partial[1]]
        return label + literal(got, decoded)
    return body


# ---------------------------------------------------------------- APPEND of a literal8

def _b64_lines(raw: bytes) -> bytes:
    text = base64.b64encode(raw)
    return b"\r\n".join(text[i:i + 76] for i in range(0, len(text), 76))


def _base64_header(header: bytes) -> bytes:
    """The CTE field says base64 now, in its place."""
    out = []
    for name, raw, value in parse_fields(header):
        if name == "content-transfer-encoding" and value.strip().lower() == b"binary":
            raw = b"Content-Transfer-Encoding: base64\r\n"
        out.append(raw)
    joined = b"".join(out)
    return joined + (b"\r\n" if header.endswith(b"\r\n\r\n") or header == b"\r\n" else b"")


def _encode(data: bytes, part: mime.Part) -> list[bytes]:
    if part.message is not None:
        inner = part.message
        return [data[part.hstart:inner.hstart], *_encode(data, inner), data[inner.end:part.end]]
    if part.is_multipart:
        out = [data[part.hstart:part.bstart]]
        pos = part.bstart
        for child in part.children:
            out.append(data[pos:child.hstart])
            out += _encode(data, child)
            pos = child.end
        out.append(data[pos:part.end])
        return out
    if cte(part) != b"binary":
        return [data[part.hstart:part.end]]
    return [_base64_header(data[part.hstart:part.bstart]), _b64_lines(data[part.bstart:part.end])]


def store_form(data: bytes) -> bytes:
    """A message sent as a literal8, with its ``binary`` leaf parts
    base64-encoded (as Dovecot stores them), so every other reader of the
    Maildir gets 7-bit-safe MIME and BINARY[] gives the octets back.  The
    structure is read from the data as sent (APPEND data has CRLF line
    ends), so a binary body keeps every octet, bare CR and LF included."""
    root = mime.parse(data)
    return b"".join(_encode(data, root)) + data[root.end:]
