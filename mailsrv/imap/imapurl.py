"""IMAP URLs (RFC 5092) naming one message or part: what CATENATE (RFC
4469) and URLAUTH (RFC 4467) take.

    imap://user;AUTH=*@host:143/INBOX;UIDVALIDITY=5/;UID=20/;SECTION=1.2/;PARTIAL=0.100
        ;EXPIRE=2026-01-01T00:00:00Z;URLAUTH=submit+fred:internal:<hex token>
    /INBOX/;UID=20/;SECTION=HEADER        (relative to the session's server)

Only message and message-part URLs are accepted (no search or list
URLs).  Names and values are %-decoded; the mailbox is then the IMAP
mailbox name as on the wire (modified UTF-7, or UTF-8).  Keys are
case-insensitive.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import unquote_to_bytes

from mailsrv.imap.reader import Syntax, decode_mailbox

_SECTION_TEXTS = ("HEADER", "TEXT", "MIME", "HEADER.FIELDS", "HEADER.FIELDS.NOT")
_SERVER = re.compile(r"imap://(?:(?P<user>[^@/;]*)(?:;auth=[^@/]*)?@)?(?P<host>\[[^\]]*\]|[^:/]*)(?::(?P<port>\d+))?",
                     re.I)


class BadUrl(ValueError):
    """Not an IMAP URL of a message or part."""


@dataclass(frozen=True)
class ImapUrl:
    mailbox: str
    uid: int
    uidvalidity: int | None = None
    section: str = ""  # as given, upper-cased: "", "1.2", "HEADER", "1.MIME", "HEADER.FIELDS (FROM)"
    partial: tuple[int, int | None] | None = None  # (offset, length or None: to the end)
    user: str | None = None
    host: str | None = None
    port: int | None = None
    expire: str | None = None  # URLAUTH
    access: str | None = None  # URLAUTH access identifier, e.g. "user+fred", "authuser"
    mechanism: str | None = None
    token: str | None = None

    @property
    def part(self) -> tuple[int, ...]:
        return parse_section(self.section)[0]

    @property
    def text(self) -> str | None:
        return parse_section(self.section)[1]

    @property
    def fields(self) -> tuple[str, ...]:
        return parse_section(self.section)[2]


def _dec(s: str) -> str:
    return unquote_to_bytes(s).decode("utf-8", "surrogateescape")


def _number(s: str, what: str, zero: bool = False) -> int:
    if not s.isdigit() or not s.isascii() or len(s) > 10 or (int(s) == 0 and not zero) or int(s) > 0xFFFFFFFF:
        raise BadUrl(f"bad {what}")
    return int(s)


def parse_section(section: str) -> tuple[tuple[int, ...], str | None, tuple[str, ...]]:
    """(part numbers, HEADER/TEXT/MIME/HEADER.FIELDS[.NOT] or None, field names)."""
    if not section:
        return (), None, ()
    spec, _, rest = section.partition(" ")
    items = spec.split(".")
    part: list[int] = []
    while items and items[0].isdigit():
        part.append(_number(items.pop(0), "section part"))
    text = ".".join(items) or None
    if text is not None and text not in _SECTION_TEXTS:
        raise BadUrl("bad section")
    if text == "MIME" and not part:
        raise BadUrl("MIME needs a part number")
    fields: tuple[str, ...] = ()
    if text is not None and text.startswith("HEADER.FIELDS"):
        if not (rest.startswith("(") and rest.endswith(")")):
            raise BadUrl("HEADER.FIELDS needs field names")
        fields = tuple(rest[1:-1].upper().split())
        if not fields:
            raise BadUrl("HEADER.FIELDS needs field names")
    elif rest:
        raise BadUrl("bad section")
    return tuple(part), text, fields


def _server(url: str) -> tuple[str | None, str | None, int | None, str]:
    """(user, host, port, the path after the server) of an absolute URL, or
    no server for a relative one (``/mailbox...``)."""
    if url.startswith("/"):
        return None, None, None, url[1:]
    m = _SERVER.match(url)
    if m is None or m.end() >= len(url) or url[m.end()] != "/":
        raise BadUrl("not an imap:// URL of a message")
    user = _dec(m.group("user")) if m.group("user") else None
    port = _number(m.group("port"), "port") if m.group("port") else None
    return user, _dec(m.group("host")) or None, port, url[m.end() + 1:]


def parse(url: str) -> ImapUrl:
    """An IMAP URL of one message or part; BadUrl for anything else."""
    user, host, port, path = _server(url)
    # the mailbox runs up to "/;UID=" (case-insensitively); ";UIDVALIDITY=" may end it
    m = re.search(r"/;uid=", path, re.I)
    if m is None:
        raise BadUrl("no UID")
    box, rest = path[:m.start()], path[m.start() + 2:]
    uidvalidity = None
    v = re.search(r";uidvalidity=([^/;]*)$", box, re.I)
    if v is not None:
        uidvalidity = _number(v.group(1), "UIDVALIDITY")
        box = box[:v.start()]
    if not box:
        raise BadUrl("no mailbox")
    try:
        mailbox = decode_mailbox(unquote_to_bytes(box))
    except Syntax as e:
        raise BadUrl(str(e)) from None
    fields: dict[str, str] = {}
    for seg in rest.split("/;"):
        for i, item in enumerate(seg.split(";")):
            key, eq, value = item.partition("=")
            key = key.upper()
            if not eq or key in fields or (i > 0 and key not in ("EXPIRE", "URLAUTH", "PARTIAL")):
                raise BadUrl(f"bad URL item {item!r}")
            fields[key] = value
    return _build(mailbox, uidvalidity, fields, user, host, port)


def _build(mailbox: str, uidvalidity: int | None, fields: dict[str, str], user: str | None, host: str | None,
           port: int | None) -> ImapUrl:
    known = {"UID", "SECTION", "PARTIAL", "EXPIRE", "URLAUTH"}
    if set(fields) - known or "UID" not in fields:
        raise BadUrl("unknown URL item")
    section = _dec(fields.get("SECTION", "")).upper()
    parse_section(section)
    partial = None
    if "PARTIAL" in fields:
        off, dot, length = fields["PARTIAL"].partition(".")
        partial = (_number(off, "partial offset", zero=True), _number(length, "partial length") if dot else None)
    access = mechanism = token = None
    if "URLAUTH" in fields:
        access, c1, rest = _dec(fields["URLAUTH"]).partition(":")
        mechanism, c2, token = rest.partition(":")
        if not access or not c1:
            raise BadUrl("bad URLAUTH")
        if not c2:
            mechanism = token = None
    return ImapUrl(mailbox, _number(fields["UID"], "UID"), uidvalidity, section, partial, user, host, port,
                   _dec(fields["EXPIRE"]) if "EXPIRE" in fields else None, access, mechanism, token)


def rump(url: str) -> str:
    """The URL up to and including ``;URLAUTH=<access>`` (RFC 4467's
    "rump", what the token is computed over); BadUrl without one."""
    m = re.search(r";urlauth=[^:;/]*", url, re.I)
    if m is None:
        raise BadUrl("no URLAUTH")
    return url[:m.end()]
