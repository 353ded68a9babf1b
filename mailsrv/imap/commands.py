"""Typed IMAP commands and parser events (what :mod:`framing` and
:mod:`grammar` produce).

Handlers receive these dataclasses, never raw bytes, so the grammar lives in
one place and every command is checked before any store call is made.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import IO, TypeAlias

from mailsrv.imap.searchkeys import All, SearchKey
from mailsrv.imap.seqset import SeqSet


@dataclass
class ParseError:
    """A command that could not be parsed: answer ``tag status [code] message``
    (tag None: untagged ``* BAD``); the connection goes on."""

    tag: str | None
    message: str
    code: str | None = None
    status: str = "BAD"


@dataclass
class LiteralContinuation:
    """A synchronizing literal of ``size`` octets was announced and accepted:
    the server must send ``+`` before the client sends it."""

    tag: str | None
    size: int


@dataclass
class RawLine:
    """A line read in raw mode (SASL responses, IDLE's DONE)."""

    data: bytes


@dataclass
class Command:
    """Every command: its tag and upper-case name."""

    tag: str
    name: str  # upper-case command name, e.g. 'NOOP', 'UID FETCH' is name 'FETCH' + uid


@dataclass
class Simple(Command):
    """A command without arguments: CAPABILITY NOOP LOGOUT STARTTLS CHECK
    CLOSE EXPUNGE UNSELECT IDLE NAMESPACE."""


@dataclass
class Login(Command):
    user: str = ""
    password: str = ""


@dataclass
class Authenticate(Command):
    mechanism: str = ""
    initial: bytes | None = None  # SASL-IR initial response, base64 as sent


@dataclass
class MailboxCommand(Command):
    """SELECT EXAMINE CREATE DELETE SUBSCRIBE UNSUBSCRIBE."""

    mailbox: str = ""


@dataclass
class Rename(Command):
    old: str = ""
    new: str = ""


@dataclass
class ListCommand(Command):
    """LIST (RFC 3501 and LIST-EXTENDED/LIST-STATUS) and LSUB."""

    reference: str = ""
    patterns: list[str] = field(default_factory=list)
    select_opts: list[str] = field(default_factory=list)
    return_opts: list[str] = field(default_factory=list)
    status_atts: list[str] = field(default_factory=list)
    extended: bool = False


@dataclass
class Status(Command):
    mailbox: str = ""
    atts: list[str] = field(default_factory=list)


@dataclass
class AppendMessage:
    flags: list[str]
    date: float | None
    data: IO[bytes]  # positioned at 0; caller closes
    size: int
    utf8: bool = False  # sent as UTF8 (~{n}) (RFC 6855): its headers may be UTF-8


@dataclass
class Append(Command):
    mailbox: str = ""
    messages: list[AppendMessage] = field(default_factory=list)

    def close(self) -> None:
        for m in self.messages:
            m.data.close()


@dataclass
class Section:
    part: tuple[int, ...] = ()
    text: str | None = None  # None HEADER HEADER.FIELDS HEADER.FIELDS.NOT TEXT MIME
    fields: tuple[str, ...] = ()

    def render(self) -> str:
        s = ".".join(str(p) for p in self.part)
        if self.text:
            s = f"{s}.{self.text}" if s else self.text
        if self.fields:
            s += " (" + " ".join(self.fields) + ")"
        return s


@dataclass
class FetchAtt:
    name: str  # FLAGS UID INTERNALDATE RFC822 RFC822.HEADER RFC822.TEXT RFC822.SIZE ENVELOPE BODY BODYSTRUCTURE
    section: Section | None = None  # BODY[...] when not None
    partial: tuple[int, int] | None = None
    peek: bool = False
    modifiers: tuple[str, ...] = ()  # PREVIEW (LAZY)


@dataclass
class Fetch(Command):
    uid: bool = False
    seqset: SeqSet = field(default_factory=list)
    atts: list[FetchAtt] = field(default_factory=list)


@dataclass
class Store(Command):
    uid: bool = False
    seqset: SeqSet = field(default_factory=list)
    mode: str = "+"  # '+', '-', '='
    silent: bool = False
    flags: list[str] = field(default_factory=list)


@dataclass
class Copy(Command):
    """COPY and MOVE (name tells which)."""

    uid: bool = False
    seqset: SeqSet = field(default_factory=list)
    mailbox: str = ""


@dataclass
class UidExpunge(Command):
    seqset: SeqSet = field(default_factory=list)


@dataclass
class Search(Command):
    uid: bool = False
    charset: str | None = None
    key: SearchKey = field(default_factory=All)
    return_opts: list[str] | None = None  # ESEARCH RETURN (...); None: plain SEARCH


@dataclass
class Enable(Command):
    capabilities: list[str] = field(default_factory=list)


@dataclass
class Id(Command):
    params: dict[str, str | None] | None = None


# -- issue 12 (COMPRESS, NOTIFY, UNAUTHENTICATE, ...): see the feature modules

@dataclass
class Compress(Command):
    """COMPRESS (RFC 4978): the mechanism, upper-case."""

    mechanism: str = ""


@dataclass
class Create(MailboxCommand):
    """CREATE with RFC 4466 parameters: ``USE (...)`` (RFC 6154)."""

    uses: list[str] = field(default_factory=list)


@dataclass
class NotifyGroup:
    """One event group of NOTIFY SET (RFC 5465): which mailboxes, which
    events (canonical spelling, e.g. "MessageNew"; empty for NONE)."""

    filter: str  # SELECTED SELECTED-DELAYED INBOXES PERSONAL SUBSCRIBED SUBTREE MAILBOXES
    mailboxes: list[str] = field(default_factory=list)  # SUBTREE / MAILBOXES
    events: list[str] = field(default_factory=list)
    fetch_atts: list[FetchAtt] = field(default_factory=list)  # MessageNew (fetch-att ...), selected only


@dataclass
class Notify(Command):
    """NOTIFY NONE (``groups`` None) or NOTIFY SET [STATUS] groups."""

    status: bool = False
    groups: list[NotifyGroup] | None = None


Event: TypeAlias = Command | ParseError | LiteralContinuation | RawLine
"""What the framing layer hands the server."""
