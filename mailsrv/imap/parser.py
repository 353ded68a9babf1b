"""Sans-IO IMAP command parser: bytes in, commands or errors out.

Framing (lines, ``{n}`` / ``{n+}`` literals, bounds) and grammar (RFC 3501
plus the extensions we advertise) live here so the protocol only dispatches.
The caller pulls one event at a time with :meth:`Parser.next_event`, which
lets it switch to raw-line mode (AUTHENTICATE, IDLE) before later pipelined
bytes are parsed.  Large APPEND literals are spooled to a temporary file,
never held whole in memory.
"""

from __future__ import annotations

import calendar
import datetime
import io
import re
import tempfile
from collections.abc import Callable
from typing import Any

import twisted.mail.imap4  # noqa: F401  registers the imap4-utf-7 codec

from mailsrv.imap import commands as C
from mailsrv.imap import seqset as S

MAX_LINE = 64 * 1024
SPOOL_MEMORY = 1024 * 1024  # APPEND literals beyond this go to a temp file
MAX_DEPTH = 64  # nesting of parenthesised search keys / NOT / OR

_LITERAL_AT_END = re.compile(rb"\{(\d{1,20})(\+?)\}$")
_ATOM_SPECIALS = set(b'(){ %*"\\]') | set(range(0x20)) | {0x7F}
ATOM_CHARS = bytes(c for c in range(1, 0x80) if c not in _ATOM_SPECIALS)
_ATOM = frozenset(ATOM_CHARS)
_ASTRING = _ATOM | {ord("]")}
_TAG = _ASTRING - {ord("+")}
_LIST_CHARS = _ASTRING | {ord("%"), ord("*")}
_MONTHS = {m.upper(): i for i, m in enumerate(
    ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"], 1)}
SYSTEM_FLAGS = {f.upper(): f for f in ("\\Answered", "\\Flagged", "\\Deleted", "\\Seen", "\\Draft", "\\Recent")}


class Syntax(Exception):
    """Grammar error inside one command (becomes a ParseError)."""


class Literal:
    """A literal's payload: bytes, or a spooled file for big APPEND data."""

    def __init__(self, size: int, spool: bool) -> None:
        self.size = size
        self.file: Any | None = tempfile.SpooledTemporaryFile(max_size=SPOOL_MEMORY) if spool else None
        self.buf = bytearray() if not spool else None

    def write(self, data: bytes) -> None:
        if self.file is not None:
            self.file.write(data)
        else:
            self.buf += data

    def as_bytes(self) -> bytes:
        if self.buf is None:
            raise Syntax("literal too large here")
        return bytes(self.buf)

    def as_file(self):
        if self.file is None:
            f = io.BytesIO(bytes(self.buf))
        else:
            f = self.file
            f.seek(0)
        self.file = None
        return f

    def close(self) -> None:
        if self.file is not None:
            self.file.close()
            self.file = None


def decode_mailbox(raw: bytes) -> str:
    """Wire mailbox name (modified UTF-7, or raw UTF-8 from lax clients) to
    str; INBOX is case-insensitive."""
    try:
        if raw.isascii():
            name = raw.decode("imap4-utf-7")
            if name.encode("imap4-utf-7") != raw:  # the codec is lenient; we are not
                raise ValueError("not canonical modified UTF-7")
        else:
            name = raw.decode("utf-8")
    except (UnicodeDecodeError, ValueError) as e:
        raise Syntax("mailbox name is not valid modified UTF-7") from e
    if name.upper() == "INBOX":
        return "INBOX"
    if name[:6].upper() == "INBOX/":
        return "INBOX" + name[5:]
    return name


class Reader:
    """Cursor over one command: text parts with literals between them."""

    def __init__(self, parts: list[bytes | Literal]) -> None:
        self.parts = parts
        self.i = 0
        self.pos = 0
        self.depth = 0

    @property
    def text(self) -> bytes:
        return self.parts[self.i]  # type: ignore[return-value]

    def peek(self) -> int:
        t = self.text
        return t[self.pos] if self.pos < len(t) else -1

    def at_literal(self) -> bool:
        return self.pos == len(self.text) and self.i + 1 < len(self.parts)

    def at_end(self) -> bool:
        return self.pos == len(self.text) and self.i + 1 >= len(self.parts)

    def take_literal(self) -> Literal:
        lit = self.parts[self.i + 1]
        self.i += 2
        self.pos = 0
        return lit  # type: ignore[return-value]

    def expect(self, token: bytes) -> None:
        t = self.text
        if t[self.pos:self.pos + len(token)].upper() != token.upper():
            raise Syntax(f"expected {token.decode()!r}")
        self.pos += len(token)

    def maybe(self, token: bytes) -> bool:
        t = self.text
        if t[self.pos:self.pos + len(token)].upper() == token.upper():
            self.pos += len(token)
            return True
        return False

    def sp(self) -> None:
        self.expect(b" ")

    def end(self) -> None:
        if not self.at_end():
            raise Syntax("unexpected characters at end of command")

    def chars(self, allowed: frozenset, what: str) -> bytes:
        t = self.text
        start = self.pos
        n = len(t)
        p = start
        while p < n and t[p] in allowed:
            p += 1
        if p == start:
            raise Syntax(f"expected {what}")
        self.pos = p
        return t[start:p]

    def atom(self) -> str:
        return self.chars(_ATOM, "atom").decode("ascii")

    def number(self) -> int:
        s = self.chars(frozenset(b"0123456789"), "number")
        if len(s) > 10 or int(s) > 0xFFFFFFFF:
            raise Syntax("number out of range")
        return int(s)

    def quoted(self) -> bytes:
        self.expect(b'"')
        t = self.text
        out = bytearray()
        p = self.pos
        while True:
            if p >= len(t):
                raise Syntax("unterminated quoted string")
            c = t[p]
            if c == 0x22:
                self.pos = p + 1
                return bytes(out)
            if c == 0x5C:
                p += 1
                if p >= len(t) or t[p] not in (0x22, 0x5C):
                    raise Syntax("bad escape in quoted string")
                c = t[p]
            elif c == 0:
                raise Syntax("NUL in quoted string")
            out.append(c)
            p += 1

    def string(self) -> bytes:
        if self.at_literal():
            return self.take_literal().as_bytes()
        if self.peek() == 0x22:
            return self.quoted()
        raise Syntax("expected string")

    def astring(self) -> bytes:
        if self.at_literal() or self.peek() == 0x22:
            return self.string()
        return self.chars(_ASTRING, "astring")

    def nstring(self) -> bytes | None:
        if self.maybe(b"NIL"):
            return None
        return self.string()

    def mailbox(self) -> str:
        return decode_mailbox(self.astring())

    def list_mailbox(self) -> str:
        if self.at_literal() or self.peek() == 0x22:
            raw = self.string()
        else:
            raw = self.chars(_LIST_CHARS, "mailbox pattern")
        if raw.upper() == b"INBOX":
            return "INBOX"
        try:
            return decode_mailbox(raw)
        except Syntax:
            # not modified UTF-7: no mailbox can match it (RFC 3501 allows
            # any pattern; Dovecot lists nothing), so not a syntax error
            return raw.decode("latin-1")

    def paren_list(self, item: Callable[[], Any], allow_empty: bool = True) -> list:
        self.expect(b"(")
        out = []
        if self.maybe(b")"):
            if not allow_empty:
                raise Syntax("empty list")
            return out
        while True:
            out.append(item())
            if self.maybe(b")"):
                return out
            self.sp()

    def flag(self) -> str:
        if self.maybe(b"\\"):
            if self.maybe(b"*"):
                return "\\*"
            name = self.atom()
            return SYSTEM_FLAGS.get("\\" + name.upper(), "\\" + name)
        return self.atom()

    def flag_list(self) -> list[str]:
        return self.paren_list(self.flag)

    def seqset(self) -> S.SeqSet:
        raw = self.chars(frozenset(b"0123456789:,*"), "sequence set").decode()
        try:
            return S.parse(raw)
        except S.SeqSetError as e:
            raise Syntax(str(e)) from None

    def utf8(self, raw: bytes) -> str:
        return raw.decode("utf-8", "replace")


# ---------------------------------------------------------------- grammar

def _date_text(s: str) -> datetime.date:
    m = re.fullmatch(r"(\d{1,2})-([A-Za-z]{3})-(\d{4})", s)
    if not m or m.group(2).upper() not in _MONTHS:
        raise Syntax("bad date")
    try:
        return datetime.date(int(m.group(3)), _MONTHS[m.group(2).upper()], int(m.group(1)))
    except ValueError:
        raise Syntax("bad date") from None


def _search_date(r: Reader) -> datetime.date:
    if r.peek() == 0x22:
        return _date_text(r.quoted().decode("ascii", "replace"))
    return _date_text(r.atom())


def parse_date_time(s: str) -> float:
    """``dd-Mon-yyyy hh:mm:ss +zzzz`` to seconds since the epoch."""
    m = re.fullmatch(r"([ \d]\d)-([A-Za-z]{3})-(\d{4}) (\d\d):(\d\d):(\d\d) ([+-])(\d\d)(\d\d)", s)
    if not m or m.group(2).upper() not in _MONTHS:
        raise Syntax("bad date-time")
    try:
        dt = datetime.datetime(int(m.group(3)), _MONTHS[m.group(2).upper()], int(m.group(1).strip()),
                               int(m.group(4)), int(m.group(5)), int(m.group(6)))
    except ValueError:
        raise Syntax("bad date-time") from None
    offset = (int(m.group(8)) * 60 + int(m.group(9))) * 60
    if m.group(7) == "-":
        offset = -offset
    return calendar.timegm(dt.timetuple()) - offset


_FLAG_KEYS = {"ANSWERED": "\\Answered", "DELETED": "\\Deleted", "DRAFT": "\\Draft",
              "FLAGGED": "\\Flagged", "SEEN": "\\Seen"}
_HEADER_KEYS = {"FROM": "From", "TO": "To", "CC": "Cc", "BCC": "Bcc", "SUBJECT": "Subject"}
_DATE_KEYS = {"BEFORE", "ON", "SINCE", "SENTBEFORE", "SENTON", "SENTSINCE"}
_NULLARY = {"ALL": ("ALL",), "NEW": ("NEW",), "OLD": ("OLD",), "RECENT": ("RECENT",)}


def _search_key(r: Reader, text: Callable[[bytes], str]) -> tuple:
    r.depth += 1
    if r.depth > MAX_DEPTH:
        raise Syntax("search key nested too deeply")
    try:
        if r.peek() == 0x28:
            keys = r.paren_list(lambda: _search_key(r, text), allow_empty=False)
            return keys[0] if len(keys) == 1 else ("AND", keys)
        c = r.peek()
        if c == 0x2A or 0x30 <= c <= 0x39:
            return ("SEQ", r.seqset())
        name = r.atom().upper()
        if name in _NULLARY:
            return _NULLARY[name]
        if name in _FLAG_KEYS:
            return ("FLAG", _FLAG_KEYS[name])
        if name.startswith("UN") and name[2:] in _FLAG_KEYS:
            return ("UNFLAG", _FLAG_KEYS[name[2:]])
        if name in ("KEYWORD", "UNKEYWORD"):
            r.sp()
            kw = r.atom()
            return ("FLAG" if name == "KEYWORD" else "UNFLAG", kw)
        if name in _HEADER_KEYS:
            r.sp()
            return ("HEADER", _HEADER_KEYS[name], text(r.astring()))
        if name == "HEADER":
            r.sp()
            field = r.astring().decode("ascii", "replace")
            r.sp()
            return ("HEADER", field, text(r.astring()))
        if name in ("BODY", "TEXT"):
            r.sp()
            return (name, text(r.astring()))
        if name in _DATE_KEYS:
            r.sp()
            return (name, _search_date(r))
        if name in ("LARGER", "SMALLER"):
            r.sp()
            return (name, r.number())
        if name == "UID":
            r.sp()
            return ("UID", r.seqset())
        if name == "NOT":
            r.sp()
            return ("NOT", _search_key(r, text))
        if name == "OR":
            r.sp()
            a = _search_key(r, text)
            r.sp()
            return ("OR", a, _search_key(r, text))
        raise Syntax(f"unknown search key {name}")
    finally:
        r.depth -= 1


_SEARCH_RETURN = {"MIN", "MAX", "ALL", "COUNT"}


def _search(r: Reader, tag: str, uid: bool) -> C.Search:
    r.sp()
    return_opts = None
    if r.maybe(b"RETURN "):
        opts = [o.upper() for o in r.paren_list(r.atom)]
        for o in opts:
            if o not in _SEARCH_RETURN:
                raise Syntax(f"unknown search return option {o}")
        return_opts = opts or ["ALL"]
        r.sp()
    charset = None
    if r.maybe(b"CHARSET "):
        charset = r.astring().decode("ascii", "replace").upper()
        r.sp()
    if charset in (None, "UTF-8", "US-ASCII"):
        def text(b: bytes) -> str:
            return b.decode("utf-8", "replace")
    else:
        def text(b: bytes) -> str:
            return b.decode("latin-1")
    keys = [_search_key(r, text)]
    while not r.at_end():
        r.sp()
        keys.append(_search_key(r, text))
    key = keys[0] if len(keys) == 1 else ("AND", keys)
    return C.Search(tag, "SEARCH", uid=uid, charset=charset, key=key, return_opts=return_opts)


_SIMPLE_FETCH = {"FLAGS", "UID", "INTERNALDATE", "RFC822", "RFC822.HEADER", "RFC822.TEXT",
                 "RFC822.SIZE", "ENVELOPE", "BODY", "BODYSTRUCTURE"}
_MACROS = {
    "ALL": ["FLAGS", "INTERNALDATE", "RFC822.SIZE", "ENVELOPE"],
    "FAST": ["FLAGS", "INTERNALDATE", "RFC822.SIZE"],
    "FULL": ["FLAGS", "INTERNALDATE", "RFC822.SIZE", "ENVELOPE", "BODY"],
}
_NAME_CHARS = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789.")


def _section(r: Reader) -> C.Section:
    r.expect(b"[")
    part: list[int] = []
    text = None
    fields: tuple[str, ...] = ()
    if r.maybe(b"]"):
        return C.Section()
    spec = r.chars(_NAME_CHARS, "section").decode().upper()
    items = spec.split(".")
    while items and items[0].isdigit():
        n = int(items.pop(0))
        if n == 0 or n > 0xFFFFFFFF:
            raise Syntax("bad section part")
        part.append(n)
    rest = ".".join(items)
    if rest:
        if rest not in ("HEADER", "HEADER.FIELDS", "HEADER.FIELDS.NOT", "TEXT", "MIME"):
            raise Syntax(f"bad section {spec}")
        if rest == "MIME" and not part:
            raise Syntax("MIME needs a part number")
        text = rest
        if rest.startswith("HEADER.FIELDS"):
            r.sp()
            fields = tuple(f.decode("ascii", "replace").upper()
                           for f in r.paren_list(r.astring, allow_empty=False))
    elif spec.endswith(".") or not part:
        raise Syntax(f"bad section {spec}")
    r.expect(b"]")
    return C.Section(tuple(part), text, fields)


def _fetch_att(r: Reader) -> C.FetchAtt:
    name = r.chars(_NAME_CHARS, "fetch attribute").decode().upper()
    if name in ("BODY", "BODY.PEEK") and r.peek() == 0x5B:
        section = _section(r)
        partial = None
        if r.maybe(b"<"):
            origin = r.number()
            r.expect(b".")
            length = r.number()
            if length == 0:
                raise Syntax("partial length must be positive")
            r.expect(b">")
            partial = (origin, length)
        return C.FetchAtt("BODY", section, partial, peek=name == "BODY.PEEK")
    if name not in _SIMPLE_FETCH:
        raise Syntax(f"unknown fetch attribute {name}")
    return C.FetchAtt(name)


def _fetch(r: Reader, tag: str, uid: bool) -> C.Fetch:
    r.sp()
    seqset = r.seqset()
    r.sp()
    if r.peek() == 0x28:
        atts = r.paren_list(lambda: _fetch_att(r), allow_empty=False)
    else:
        save = r.pos
        word = r.chars(_NAME_CHARS, "fetch attribute").decode().upper()
        if word in _MACROS:
            atts = [C.FetchAtt(n) for n in _MACROS[word]]
        else:
            r.pos = save
            atts = [_fetch_att(r)]
    r.end()
    return C.Fetch(tag, "FETCH", uid=uid, seqset=seqset, atts=atts)


def _store(r: Reader, tag: str, uid: bool) -> C.Store:
    r.sp()
    seqset = r.seqset()
    r.sp()
    mode = "="
    if r.peek() in (0x2B, 0x2D):
        mode = chr(r.peek())
        r.pos += 1
    item = r.chars(_NAME_CHARS, "FLAGS").decode().upper()
    if item not in ("FLAGS", "FLAGS.SILENT"):
        raise Syntax("expected FLAGS or FLAGS.SILENT")
    r.sp()
    if r.peek() == 0x28:
        flags = r.flag_list()
    else:
        flags = [r.flag()]
        while not r.at_end():
            r.sp()
            flags.append(r.flag())
    r.end()
    return C.Store(tag, "STORE", uid=uid, seqset=seqset, mode=mode,
                   silent=item.endswith(".SILENT"), flags=flags)


def _copy(r: Reader, tag: str, uid: bool, name: str) -> C.Copy:
    r.sp()
    seqset = r.seqset()
    r.sp()
    mailbox = r.mailbox()
    r.end()
    return C.Copy(tag, name, uid=uid, seqset=seqset, mailbox=mailbox)


def _uid(r: Reader, tag: str) -> C.Command:
    r.sp()
    sub = r.atom().upper()
    if sub == "FETCH":
        return _fetch(r, tag, True)
    if sub == "STORE":
        return _store(r, tag, True)
    if sub in ("COPY", "MOVE"):
        return _copy(r, tag, True, sub)
    if sub == "SEARCH":
        return _search(r, tag, True)
    if sub == "EXPUNGE":
        r.sp()
        s = r.seqset()
        r.end()
        return C.UidExpunge(tag, "UID EXPUNGE", seqset=s)
    raise Syntax(f"unknown UID command {sub}")


def _append(r: Reader, tag: str) -> C.Append:
    r.sp()
    mailbox = r.mailbox()
    cmd = C.Append(tag, "APPEND", mailbox=mailbox)
    try:
        while True:
            r.sp()
            flags: list[str] = []
            date = None
            if r.peek() == 0x28:
                flags = r.flag_list()
                r.sp()
            if r.peek() == 0x22:
                date = parse_date_time(r.quoted().decode("ascii", "replace"))
                r.sp()
            if not r.at_literal():
                raise Syntax("expected message literal")
            lit = r.take_literal()
            cmd.messages.append(C.AppendMessage(flags, date, lit.as_file(), lit.size))
            if r.at_end():
                return cmd
    except Syntax:
        cmd.close()
        raise


_LIST_SELECT = {"SUBSCRIBED", "REMOTE", "RECURSIVEMATCH", "SPECIAL-USE"}
_LIST_RETURN = {"SUBSCRIBED", "CHILDREN", "SPECIAL-USE", "STATUS"}
STATUS_ATTS = {"MESSAGES", "RECENT", "UIDNEXT", "UIDVALIDITY", "UNSEEN", "SIZE"}


def _status_atts(r: Reader) -> list[str]:
    atts = [a.upper() for a in r.paren_list(r.atom, allow_empty=False)]
    for a in atts:
        if a not in STATUS_ATTS:
            raise Syntax(f"unknown status attribute {a}")
    return atts


def _list(r: Reader, tag: str, name: str) -> C.ListCommand:
    cmd = C.ListCommand(tag, name)
    r.sp()
    if name == "LIST" and r.peek() == 0x28:
        cmd.extended = True
        cmd.select_opts = [o.upper() for o in r.paren_list(r.atom)]
        for o in cmd.select_opts:
            if o not in _LIST_SELECT:
                raise Syntax(f"unknown LIST selection option {o}")
        if "RECURSIVEMATCH" in cmd.select_opts and cmd.select_opts == ["RECURSIVEMATCH"]:
            raise Syntax("RECURSIVEMATCH needs another selection option")
        r.sp()
    cmd.reference = r.mailbox()
    r.sp()
    if name == "LIST" and r.peek() == 0x28:
        cmd.extended = True
        cmd.patterns = r.paren_list(r.list_mailbox, allow_empty=False)
    else:
        cmd.patterns = [r.list_mailbox()]
    if name == "LIST" and not r.at_end():
        r.sp()
        r.expect(b"RETURN ")
        cmd.extended = True
        r.expect(b"(")
        if not r.maybe(b")"):
            while True:
                o = r.atom().upper()
                if o not in _LIST_RETURN:
                    raise Syntax(f"unknown LIST return option {o}")
                cmd.return_opts.append(o)
                if o == "STATUS":
                    r.sp()
                    cmd.status_atts = _status_atts(r)
                if r.maybe(b")"):
                    break
                r.sp()
    r.end()
    return cmd


def _id(r: Reader, tag: str) -> C.Id:
    r.sp()
    if r.maybe(b"NIL"):
        r.end()
        return C.Id(tag, "ID", params=None)
    params = {}

    def pair() -> None:
        k = r.string().decode("utf-8", "replace")
        r.sp()
        v = r.nstring()
        params[k] = None if v is None else v.decode("utf-8", "replace")

    r.paren_list(pair)
    r.end()
    return C.Id(tag, "ID", params=params)


_NO_ARGS = {"CAPABILITY", "NOOP", "LOGOUT", "STARTTLS", "CHECK", "CLOSE", "EXPUNGE",
            "UNSELECT", "IDLE", "NAMESPACE"}
_ONE_MAILBOX = {"SELECT", "EXAMINE", "CREATE", "DELETE", "SUBSCRIBE", "UNSUBSCRIBE"}


def parse_command(parts: list[bytes | Literal]) -> C.Command | C.ParseError:
    """Parse one complete command (text parts with literals between)."""
    r = Reader(parts)
    tag = None
    try:
        tag = r.chars(_TAG, "tag").decode("ascii")
        r.sp()
        name = r.atom().upper()
        if name in _NO_ARGS:
            r.end()
            return C.Simple(tag, name)
        if name in _ONE_MAILBOX:
            r.sp()
            mbox = r.mailbox()
            if name in ("SELECT", "EXAMINE") and not r.at_end():
                raise Syntax("SELECT parameters are not supported")
            r.end()
            return C.MailboxCommand(tag, name, mailbox=mbox)
        if name == "LOGIN":
            r.sp()
            user = r.utf8(r.astring())
            r.sp()
            password = r.utf8(r.astring())
            r.end()
            return C.Login(tag, name, user=user, password=password)
        if name == "AUTHENTICATE":
            r.sp()
            mech = r.atom().upper()
            initial = None
            if not r.at_end():
                r.sp()
                initial = r.chars(frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/="),
                                  "initial response")
            r.end()
            return C.Authenticate(tag, name, mechanism=mech, initial=initial)
        if name == "RENAME":
            r.sp()
            old = r.mailbox()
            r.sp()
            new = r.mailbox()
            r.end()
            return C.Rename(tag, name, old=old, new=new)
        if name in ("LIST", "LSUB"):
            return _list(r, tag, name)
        if name == "STATUS":
            r.sp()
            mbox = r.mailbox()
            r.sp()
            atts = _status_atts(r)
            r.end()
            return C.Status(tag, name, mailbox=mbox, atts=atts)
        if name == "APPEND":
            return _append(r, tag)
        if name == "FETCH":
            return _fetch(r, tag, False)
        if name == "STORE":
            return _store(r, tag, False)
        if name in ("COPY", "MOVE"):
            return _copy(r, tag, False, name)
        if name == "SEARCH":
            return _search(r, tag, False)
        if name == "UID":
            return _uid(r, tag)
        if name == "ENABLE":
            caps = []
            while not r.at_end():
                r.sp()
                caps.append(r.atom().upper())
            if not caps:
                raise Syntax("ENABLE needs a capability")
            return C.Enable(tag, name, capabilities=caps)
        if name == "ID":
            return _id(r, tag)
        raise Syntax(f"unknown command {name}")
    except Syntax as e:
        for p in parts:
            if isinstance(p, Literal):
                p.close()
        return C.ParseError(tag, f"Error in IMAP command: {e}")
    except IndexError:
        return C.ParseError(tag, "Error in IMAP command: unexpected literal")


# ---------------------------------------------------------------- framing

def _peek_tag_name(line: bytes) -> tuple[str | None, str]:
    m = re.match(rb"([^ \x00-\x1f\x7f(){%*\"\\+]+) ([A-Za-z]+)", line)
    if not m:
        m2 = re.match(rb"([^ \x00-\x1f\x7f(){%*\"\\+]+)(?: |$)", line)
        return (m2.group(1).decode("ascii") if m2 and m2.group(1).isascii() else None), ""
    tag = m.group(1).decode("ascii") if m.group(1).isascii() else None
    return tag, m.group(2).decode().upper()


class Parser:
    """Incremental framing plus grammar.  ``push`` bytes, pull events with
    ``next_event`` (None: need more input)."""

    def __init__(self, append_limit: int = 50 * 1024 * 1024, max_line: int = MAX_LINE) -> None:
        self.append_limit = append_limit
        self.max_line = max_line
        self._buf = bytearray()
        self._scan = 0  # where to resume looking for LF
        self._parts: list[bytes | Literal] = []
        self._size = 0  # bytes of this command held in memory
        self._tag: str | None = None
        self._name = ""
        self._literal: Literal | None = None
        self._remaining = 0
        self._skip_literal = 0  # bytes still to discard
        self._skip_line = False  # discard up to the next LF
        self._raw = False

    # -- input
    def push(self, data: bytes) -> None:
        self._buf += data

    def feed(self, data: bytes) -> list:
        """Push and return every event that is complete now."""
        self.push(data)
        out = []
        while True:
            ev = self.next_event()
            if ev is None:
                return out
            out.append(ev)

    def buffered(self) -> int:
        """Bytes received but not yet consumed."""
        return len(self._buf)

    def expect_raw_line(self) -> None:
        """The next line is a SASL response or IDLE's DONE, not a command."""
        self._raw = True

    def close(self) -> None:
        """Drop partial state (connection lost); closes spooled literals."""
        for p in self._parts:
            if isinstance(p, Literal):
                p.close()
        if self._literal is not None:
            self._literal.close()
        self._parts = []
        self._literal = None

    def discard_buffer(self) -> None:
        """Forget buffered input (STARTTLS: plaintext must not survive)."""
        self._buf.clear()
        self._scan = 0

    # -- events
    def next_event(self):
        while True:
            if self._skip_literal:
                n = min(self._skip_literal, len(self._buf))
                if n == 0:
                    return None
                del self._buf[:n]
                self._skip_literal -= n
                self._scan = 0
                continue
            if self._literal is not None:
                n = min(self._remaining, len(self._buf))
                if n == 0 and self._remaining:
                    return None
                self._literal.write(bytes(self._buf[:n]))
                del self._buf[:n]
                self._remaining -= n
                self._scan = 0
                if self._remaining:
                    return None
                self._parts.append(self._literal)
                self._literal = None
                continue
            nl = self._buf.find(b"\n", self._scan)
            if nl < 0:
                self._scan = len(self._buf)
                if len(self._buf) + self._size > self.max_line and not self._skip_line:
                    tag, _ = _peek_tag_name(bytes(self._buf[:200])) if not self._parts else (self._tag, "")
                    self._reset()
                    self._skip_line = True
                    self._buf.clear()
                    self._scan = 0
                    return C.ParseError(tag, "Command line too long", code="TOOBIG")
                if self._skip_line:
                    self._buf.clear()
                    self._scan = 0
                return None
            line = bytes(self._buf[:nl])
            del self._buf[:nl + 1]
            self._scan = 0
            if line.endswith(b"\r"):
                line = line[:-1]
            if self._skip_line:
                self._skip_line = False
                m = _LITERAL_AT_END.search(line)
                if m and m.group(2):
                    self._skip_literal = int(m.group(1))
                    self._skip_line = True
                continue
            if self._raw:
                self._raw = False
                if len(line) > self.max_line:
                    return C.ParseError(None, "Line too long", code="TOOBIG")
                return C.RawLine(line)
            ev = self._line(line)
            if ev is not None:
                return ev

    def _reset(self) -> None:
        self.close()
        self._size = 0
        self._tag = None
        self._name = ""

    def _line(self, line: bytes):
        if not self._parts:
            if not line.strip():
                return None  # blank lines between commands are harmless
            self._tag, self._name = _peek_tag_name(line)
        self._size += len(line)
        if self._size > self.max_line:
            tag = self._tag
            m = _LITERAL_AT_END.search(line)
            self._reset()
            if m and m.group(2):
                self._skip_literal = int(m.group(1))
                self._skip_line = True
            return C.ParseError(tag, "Command line too long", code="TOOBIG")
        m = _LITERAL_AT_END.search(line)
        if not m:
            self._parts.append(line)
            parts = self._parts
            self._parts = []
            self._size = 0
            return parse_command(parts)
        size = int(m.group(1))
        sync = not m.group(2)
        self._parts.append(line[:m.start()])
        is_append = self._name == "APPEND"
        limit = self.append_limit if is_append else self.max_line - self._size
        if size > limit:
            tag = self._tag
            self._reset()
            if not sync:
                self._skip_literal = size
                self._skip_line = True
            if is_append:
                return C.ParseError(tag, "Message too large", code="TOOBIG", status="NO" if sync else "BAD")
            return C.ParseError(tag, "Literal too large", code="TOOBIG")
        self._literal = Literal(size, spool=is_append and size > self.max_line)
        self._remaining = size
        if not is_append:
            self._size += size
        return C.LiteralContinuation(self._tag, size) if sync else None
