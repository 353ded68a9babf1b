"""Typed IMAP commands and parser events (what :mod:`parser` produces).

Handlers receive these dataclasses, never raw bytes, so the grammar lives in
one place and every command is checked before any store call is made.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass, field
from typing import Any, BinaryIO, Dict, List, Optional, Tuple

from mailsrv.imap.seqset import SeqSet


@dataclass
class ParseError:
    """A command that could not be parsed: answer ``tag status [code] message``
    (tag None: untagged ``* BAD``); the connection goes on."""

    tag: Optional[str]
    message: str
    code: Optional[str] = None
    status: str = "BAD"


@dataclass
class LiteralContinuation:
    """A synchronizing literal of ``size`` octets was announced and accepted:
    the server must send ``+`` before the client sends it."""

    tag: Optional[str]
    size: int


@dataclass
class RawLine:
    """A line read in raw mode (SASL responses, IDLE's DONE)."""

    data: bytes


@dataclass
class Command:
    tag: str
    name: str  # upper-case command name, e.g. 'NOOP', 'UID FETCH' is name 'FETCH' + uid


@dataclass
class Simple(Command):
    """CAPABILITY NOOP LOGOUT STARTTLS CHECK CLOSE EXPUNGE UNSELECT IDLE NAMESPACE."""


@dataclass
class Login(Command):
    user: str = ""
    password: str = ""


@dataclass
class Authenticate(Command):
    mechanism: str = ""
    initial: Optional[bytes] = None  # SASL-IR initial response, base64 as sent


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
    patterns: List[str] = field(default_factory=list)
    select_opts: List[str] = field(default_factory=list)
    return_opts: List[str] = field(default_factory=list)
    status_atts: List[str] = field(default_factory=list)
    extended: bool = False


@dataclass
class Status(Command):
    mailbox: str = ""
    atts: List[str] = field(default_factory=list)


@dataclass
class AppendMessage:
    flags: List[str]
    date: Optional[float]
    data: BinaryIO  # positioned at 0; caller closes
    size: int


@dataclass
class Append(Command):
    mailbox: str = ""
    messages: List[AppendMessage] = field(default_factory=list)

    def close(self) -> None:
        for m in self.messages:
            m.data.close()


@dataclass
class Section:
    part: Tuple[int, ...] = ()
    text: Optional[str] = None  # None HEADER HEADER.FIELDS HEADER.FIELDS.NOT TEXT MIME
    fields: Tuple[str, ...] = ()

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
    section: Optional[Section] = None  # BODY[...] when not None
    partial: Optional[Tuple[int, int]] = None
    peek: bool = False


@dataclass
class Fetch(Command):
    uid: bool = False
    seqset: SeqSet = field(default_factory=list)
    atts: List[FetchAtt] = field(default_factory=list)


@dataclass
class Store(Command):
    uid: bool = False
    seqset: SeqSet = field(default_factory=list)
    mode: str = "+"  # '+', '-', '='
    silent: bool = False
    flags: List[str] = field(default_factory=list)


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
    charset: Optional[str] = None
    key: Any = None  # tuple tree, see mailsrv.imap.search
    return_opts: Optional[List[str]] = None  # ESEARCH RETURN (...); None: plain SEARCH


@dataclass
class Enable(Command):
    capabilities: List[str] = field(default_factory=list)


@dataclass
class Id(Command):
    params: Optional[Dict[str, Optional[str]]] = None


SearchDate = datetime.date
