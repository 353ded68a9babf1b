"""RFC 5321 reverse-path / forward-path parsing for MAIL FROM and RCPT TO.

Written here rather than reusing ``twisted.mail.smtp.Address``: that class
accepts spaces and control characters inside addresses and raises on a null
path, and LMTP puts the addresses verbatim into ``Return-Path`` and
``Delivered-To`` headers, so anything that could smuggle a CR/LF or a header
fold must be refused at the door.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# atext of RFC 5322 (dot-atom pieces) and qtext/quoted-pair of RFC 5321.
_ATEXT = re.compile(rb"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+\Z")
_ATEXT_DOTS = re.compile(rb"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*\Z")
_LABEL = re.compile(rb"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\Z")
# RFC 6531 (SMTPUTF8): atext and qtext also take UTF8-non-ascii, domains U-labels.
_ATEXT_U = re.compile(rb"[A-Za-z0-9!#$%&'*+/=?^_`{|}~\x80-\xff-]+\Z")
_ATEXT_DOTS_U = re.compile(rb"[A-Za-z0-9!#$%&'*+/=?^_`{|}~\x80-\xff-]+"
                           rb"(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~\x80-\xff-]+)*\Z")
_LITERAL = re.compile(rb"\[[\x21-\x5a\x5e-\x7e]+\]\Z")
_PARAM = re.compile(rb"([A-Za-z0-9][A-Za-z0-9-]*)(?:=([\x21-\x3c\x3e-\x7e]+))?\Z")

MAX_LOCAL = 64
MAX_DOMAIN = 255


class AddressError(ValueError):
    """The path is not a valid RFC 5321 path."""


@dataclass(frozen=True)
class Mailbox:
    """``local@domain``; ``local`` is kept as written (dequoted), ``domain``
    lower-cased (empty for the bare ``postmaster`` form)."""

    local: str
    domain: str

    def __str__(self) -> str:
        local = self.local
        if not _ATEXT_DOTS_U.match(local.encode("utf-8")):
            local = '"' + local.replace("\\", "\\\\").replace('"', '\\"') + '"'
        return f"{local}@{self.domain}" if self.domain else local



def split_path(arg: bytes) -> tuple[bytes, list[bytes]]:
    """Split ``<path> PARAM PARAM`` into the bracketed path and the params.

    The closing ``>`` is found outside quoted strings, so ``<"a>b"@x>``
    works.  A bare path without brackets is tolerated (some MTAs send one).
    """
    arg = arg.strip(b" ")
    if not arg.startswith(b"<"):
        path, _, rest = arg.partition(b" ")
        return path, rest.split()
    i, quoted = 1, False
    while i < len(arg):
        c = arg[i : i + 1]
        if quoted and c == b"\\":
            i += 2
            continue
        if c == b'"':
            quoted = not quoted
        elif c == b">" and not quoted:
            rest = arg[i + 1 :]
            if rest and not rest.startswith(b" "):
                raise AddressError("junk after path")
            return arg[1:i], rest.split()
        i += 1
    raise AddressError("unterminated path")


def needs_smtputf8(path: bytes) -> bool:
    """The path holds non-ASCII: only allowed with SMTPUTF8 (RFC 6531)."""
    return not path.isascii()


def parse_mailbox(path: bytes, allow_null: bool, utf8: bool = False) -> Mailbox | None:
    """Parse the inside of ``<...>``.  ``None`` is the null reverse-path.
    ``utf8``: the transaction is SMTPUTF8, so the local part may hold UTF-8
    and the domain U-labels (kept as Unicode, lower-cased)."""
    if utf8 and not path.isascii():
        return _parse_utf8(path)
    if path == b"":
        if allow_null:
            return None
        raise AddressError("null path not allowed here")
    if b":" in path and path.startswith(b"@"):
        path = path.split(b":", 1)[1]  # obsolete source route: ignored (RFC 5321 C)
    local_raw, domain = _split_at(path)
    local = _parse_local(local_raw)
    if domain is None:
        if local.lower() != "postmaster":
            raise AddressError("missing domain")
        return Mailbox(local, "")
    if len(domain) > MAX_DOMAIN or not _valid_domain(domain):
        raise AddressError("bad domain")
    return Mailbox(local, domain.decode("ascii").lower())


def parse_params(params: list[bytes]) -> list[tuple[str, str | None]]:
    """``KEY=value`` esmtp-params; keys upper-cased."""
    out = []
    for p in params:
        m = _PARAM.match(p)
        if not m:
            raise AddressError("bad parameter")
        value = m.group(2)
        out.append((m.group(1).decode("ascii").upper(), value.decode("ascii") if value is not None else None))
    return out


def _split_at(path: bytes) -> tuple[bytes, bytes | None]:
    if path.startswith(b'"'):
        i = 1
        while i < len(path):
            c = path[i : i + 1]
            if c == b"\\":
                i += 2
                continue
            if c == b'"':
                break
            i += 1
        else:
            raise AddressError("unterminated quoted string")
        rest = path[i + 1 :]
        if rest == b"":
            return path, None
        if not rest.startswith(b"@"):
            raise AddressError("junk after quoted local part")
        return path[: i + 1], rest[1:]
    local, at, domain = path.rpartition(b"@")
    if not at:
        return path, None
    return local, domain


def _parse_local(raw: bytes) -> str:
    if raw.startswith(b'"'):
        inner = raw[1:-1]
        out = bytearray()
        i = 0
        while i < len(inner):
            c = inner[i]
            if c == 0x5C:  # backslash: quoted-pair, %d32-126
                i += 1
                if i >= len(inner) or not 32 <= inner[i] <= 126:
                    raise AddressError("bad quoted pair")
                c = inner[i]
            elif not (32 <= c <= 126) or c == 0x22:
                raise AddressError("bad character in quoted local part")
            out.append(c)
            i += 1
        local = out.decode("ascii")
    else:
        if not raw or any(not _ATEXT.match(part) for part in raw.split(b".")):
            raise AddressError("bad local part")
        local = raw.decode("ascii")
    if not local or len(raw) > MAX_LOCAL:
        raise AddressError("bad local part length")
    return local


def _parse_utf8(path: bytes) -> Mailbox:
    """An RFC 6531 mailbox with non-ASCII in it (valid UTF-8, no controls)."""
    try:
        text = path.decode("utf-8")
    except UnicodeDecodeError:
        raise AddressError("not UTF-8") from None
    if any(ord(c) < 0x20 or 0x7F <= ord(c) < 0xA0 for c in text):
        raise AddressError("control character in address")
    local_raw, domain = _split_at(path)
    if local_raw.startswith(b'"'):
        inner = local_raw[1:-1]
        if b'"' in inner.replace(b'\\"', b"") or b"\\" in inner.replace(b'\\"', b""):
            raise AddressError("bad quoted local part")
        local = inner.replace(b'\\"', b'"').decode("utf-8")
    else:
        if not local_raw or any(not _ATEXT_U.match(p) for p in local_raw.split(b".")):
            raise AddressError("bad local part")
        local = local_raw.decode("utf-8")
    if not local or len(local_raw) > MAX_LOCAL:
        raise AddressError("bad local part length")
    if domain is None:
        raise AddressError("missing domain")
    if len(domain) > MAX_DOMAIN or not _valid_domain(domain, utf8=True):
        raise AddressError("bad domain")
    return Mailbox(local, domain.decode("utf-8").lower())


def ascii_domain(domain: str) -> str:
    """A domain in its ASCII (A-label) form, to compare U- and A-labels."""
    if domain.isascii():
        return domain.lower()
    try:
        return domain.encode("idna").decode("ascii").lower()
    except UnicodeError:
        return domain.lower()


def _valid_domain(domain: bytes, utf8: bool = False) -> bool:
    if _LITERAL.match(domain):
        return True
    labels = domain.split(b".")
    return all(_LABEL.match(label) or (utf8 and not label.isascii() and _u_label(label)) for label in labels)


def _u_label(label: bytes) -> bool:
    try:
        ace = label.decode("utf-8").encode("idna")
    except UnicodeError:
        return False
    return bool(_LABEL.match(ace))
