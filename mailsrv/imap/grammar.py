"""The IMAP command grammar (RFC 3501 plus the extensions we advertise):
one framed command in, a typed command or a ParseError out.

Two tables drive it.  :data:`COMMANDS` maps a command name to its parse
function; ``UID`` looks its sub-command up in the same table with
``uid=True``, restricted to :data:`UID_COMMANDS`, so ``FETCH`` and ``UID
FETCH`` are one function.  :data:`SEARCH_KEYS` maps a search keyword to the
function that reads its arguments and builds a typed key
(:mod:`searchkeys`).  A new command or key is one function and one table
entry.  The lexical layer (atoms, strings, literals, dates) is in
:mod:`reader`; framing (lines and literals) in :mod:`framing`.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from functools import partial

from mailsrv.imap import commands as C
from mailsrv.imap import condstore_grammar as CG
from mailsrv.imap import flags as F
from mailsrv.imap import grammar_acl, searchgrammar
from mailsrv.imap import grammar_ext as X
from mailsrv.imap import searchkeys as K
from mailsrv.imap.framing import MAX_LINE, Literal, Parser, Parts
from mailsrv.imap.reader import MAX_DEPTH, TAG, BadMailboxName, Dialect, Reader, Syntax, parse_date_time
from mailsrv.imap.seqset import SavedResult

ParseFn = Callable[[Reader, str, str, bool], C.Command]
"""(reader after the name, tag, upper-case name, uid) -> command."""

TextFn = Callable[[bytes], str]
KeyFn = Callable[[Reader, str, TextFn], K.SearchKey]
"""(reader after the keyword, upper-case keyword, charset decoder) -> key."""


def command_parser(append_limit: int = 50 * 1024 * 1024, max_line: int = MAX_LINE,
                   dialect: Dialect | None = None) -> Parser:
    """Framing wired to this grammar: what a connection reads with
    (``dialect``: the session's, which ENABLE may change)."""
    parse = parse_command if dialect is None else partial(parse_command, dialect=dialect)
    return Parser(parse, append_limit=append_limit, max_line=max_line)


def parse_command(parts: Parts, dialect: Dialect | None = None) -> C.Command | C.ParseError:
    """Parse one complete command (text parts with literals between)."""
    r = Reader(parts, dialect)
    tag = None
    try:
        tag = r.chars(TAG, "tag").decode("ascii")
        r.sp()
        name = r.command = r.atom().upper()
        fn = COMMANDS.get(name)
        if fn is None:
            raise Syntax(f"unknown command {name}")
        return fn(r, tag, name, False)
    except BadMailboxName as e:
        _close_literals(parts)
        return C.ParseError(tag, str(e), status="NO", command=r.command)
    except Syntax as e:
        for p in parts:
            if isinstance(p, Literal):
                p.close()
        return C.ParseError(tag, f"Error in IMAP command: {e}")
    except IndexError:
        return C.ParseError(tag, "Error in IMAP command: unexpected literal")


def _close_literals(parts: Parts) -> None:
    for p in parts:
        if isinstance(p, Literal):
            p.close()


# ---------------------------------------------------------------- commands

def _uid(r: Reader, tag: str, name: str, uid: bool) -> C.Command:
    r.sp()
    sub = r.command = r.atom().upper()
    if sub not in UID_COMMANDS:
        raise Syntax(f"unknown UID command {sub}")
    return COMMANDS[sub](r, tag, sub, True)


def _no_args(r: Reader, tag: str, name: str, uid: bool) -> C.Command:
    r.end()
    return C.Simple(tag, name)


def _expunge(r: Reader, tag: str, name: str, uid: bool) -> C.Command:
    if not uid:
        return _no_args(r, tag, name, uid)
    r.sp()
    s = r.seqset()
    r.end()
    return C.UidExpunge(tag, "UID EXPUNGE", seqset=s)


def _one_mailbox(r: Reader, tag: str, name: str, uid: bool) -> C.Command:
    r.sp()
    mbox = r.mailbox()
    r.end()
    return C.MailboxCommand(tag, name, mailbox=mbox)


def _login(r: Reader, tag: str, name: str, uid: bool) -> C.Command:
    r.sp()
    user = r.utf8(r.astring())
    r.sp()
    password = r.utf8(r.astring())
    r.end()
    return C.Login(tag, name, user=user, password=password)


_BASE64 = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/=")


def _authenticate(r: Reader, tag: str, name: str, uid: bool) -> C.Command:
    r.sp()
    mech = r.atom().upper()
    initial = None
    if not r.at_end():
        r.sp()
        initial = r.chars(_BASE64, "initial response")
    r.end()
    return C.Authenticate(tag, name, mechanism=mech, initial=initial)


def _rename(r: Reader, tag: str, name: str, uid: bool) -> C.Command:
    r.sp()
    old = r.mailbox()
    r.sp()
    new = r.mailbox()
    r.end()
    return C.Rename(tag, name, old=old, new=new)


STATUS_ATTS = {"MESSAGES", "RECENT", "UIDNEXT", "UIDVALIDITY", "UNSEEN", "SIZE", "DELETED", "DELETED-STORAGE",
               "MAILBOXID", "HIGHESTMODSEQ"}


def _status_atts(r: Reader) -> list[str]:
    atts = [a.upper() for a in r.paren_list(r.atom, allow_empty=False)]
    for a in atts:
        if a not in STATUS_ATTS:
            raise Syntax(f"unknown status attribute {a}")
    return atts


def _status(r: Reader, tag: str, name: str, uid: bool) -> C.Command:
    r.sp()
    mbox = r.mailbox()
    r.sp()
    atts = _status_atts(r)
    r.end()
    return C.Status(tag, name, mailbox=mbox, atts=atts)


_LIST_SELECT = {"SUBSCRIBED", "REMOTE", "RECURSIVEMATCH", "SPECIAL-USE"}
_LIST_RETURN = {"SUBSCRIBED", "CHILDREN", "SPECIAL-USE", "STATUS", "MYRIGHTS"}  # MYRIGHTS: RFC 8440


def _list_select_opts(r: Reader, cmd: C.ListCommand) -> None:
    cmd.extended = True
    cmd.select_opts = [o.upper() for o in r.paren_list(r.atom)]
    for o in cmd.select_opts:
        if o not in _LIST_SELECT:
            raise Syntax(f"unknown LIST selection option {o}")
    if "RECURSIVEMATCH" in cmd.select_opts and not set(cmd.select_opts) - {"RECURSIVEMATCH", "REMOTE"}:
        raise Syntax("RECURSIVEMATCH needs another selection option")  # REMOTE is none (RFC 5258 3.1)
    r.sp()


def _list_return_opts(r: Reader, cmd: C.ListCommand) -> None:
    r.sp()
    r.expect(b"RETURN ")
    cmd.extended = True
    r.expect(b"(")
    if r.maybe(b")"):
        return
    while True:
        o = r.atom().upper()
        if o not in _LIST_RETURN:
            raise Syntax(f"unknown LIST return option {o}")
        cmd.return_opts.append(o)
        if o == "STATUS":
            r.sp()
            cmd.status_atts = _status_atts(r)
        if r.maybe(b")"):
            return
        r.sp()


def _list(r: Reader, tag: str, name: str, uid: bool) -> C.Command:
    """LIST (with RFC 5258 selection/return options) and LSUB."""
    cmd = C.ListCommand(tag, name)
    extended = name == "LIST"
    r.sp()
    if extended and r.peek() == 0x28:
        _list_select_opts(r, cmd)
    cmd.reference = r.mailbox()
    r.sp()
    if extended and r.peek() == 0x28:
        cmd.extended = True
        cmd.patterns = r.paren_list(r.list_mailbox, allow_empty=False)
    else:
        cmd.patterns = [r.list_mailbox()]
    if extended and not r.at_end():
        _list_return_opts(r, cmd)
    r.end()
    return cmd


def _append(r: Reader, tag: str, name: str, uid: bool) -> C.Command:
    """APPEND with MULTIAPPEND (RFC 3502): one or more messages."""
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
            if r.maybe(b"CATENATE "):
                cmd.messages.append(C.AppendMessage(flags, date, io.BytesIO(), 0, parts=X.cat_parts(r)))
                if r.at_end():
                    return cmd
                continue
            utf8 = r.maybe(b"UTF8 (~")
            binary = not utf8 and r.maybe(b"~")  # a literal8 (RFC 3516)
            if not r.at_literal():
                raise Syntax("expected message literal")
            lit = r.take_literal()
            if utf8:
                r.expect(b")")
            cmd.messages.append(C.AppendMessage(flags, date, lit.as_file(), lit.size, binary=binary, utf8=utf8))
            if r.at_end():
                return cmd
    except Syntax:
        cmd.close()
        raise


_SIMPLE_FETCH = {"FLAGS", "UID", "INTERNALDATE", "RFC822", "RFC822.HEADER", "RFC822.TEXT",
                 "RFC822.SIZE", "ENVELOPE", "BODY", "BODYSTRUCTURE", "MODSEQ"}
_MACROS = {
    "ALL": ["FLAGS", "INTERNALDATE", "RFC822.SIZE", "ENVELOPE"],
    "FAST": ["FLAGS", "INTERNALDATE", "RFC822.SIZE"],
    "FULL": ["FLAGS", "INTERNALDATE", "RFC822.SIZE", "ENVELOPE", "BODY"],
}
_NAME_CHARS = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789.")
_SECTION_TEXTS = ("HEADER", "HEADER.FIELDS", "HEADER.FIELDS.NOT", "TEXT", "MIME")


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
        if rest not in _SECTION_TEXTS:
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


def _binary_att(r: Reader, name: str) -> C.FetchAtt:
    """BINARY[part]<partial>, BINARY.PEEK[...] and BINARY.SIZE[part] (RFC 3516):
    the section is a part number or nothing."""
    r.expect(b"[")
    part: list[int] = []
    if not r.maybe(b"]"):
        for item in r.chars(_NAME_CHARS, "section part").decode().split("."):
            if not item.isdigit() or int(item) == 0 or int(item) > 0xFFFFFFFF:
                raise Syntax("BINARY takes a part number only")
            part.append(int(item))
        r.expect(b"]")
    partial = None
    if name != "BINARY.SIZE" and r.maybe(b"<"):
        origin = r.number()
        r.expect(b".")
        length = r.number()
        if length == 0:
            raise Syntax("partial length must be positive")
        r.expect(b">")
        partial = (origin, length)
    return C.FetchAtt("BINARY.SIZE" if name == "BINARY.SIZE" else "BINARY", C.Section(tuple(part)), partial,
                      peek=name != "BINARY")


def _fetch_att(r: Reader) -> C.FetchAtt:
    name = r.chars(_NAME_CHARS, "fetch attribute").decode().upper()
    if name in ("BINARY", "BINARY.PEEK", "BINARY.SIZE"):
        return _binary_att(r, name)
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
    if name in X.FETCH_ITEMS:
        return X.fetch_item(r, name)
    if name not in _SIMPLE_FETCH:
        raise Syntax(f"unknown fetch attribute {name}")
    return C.FetchAtt(name)


def _fetch(r: Reader, tag: str, name: str, uid: bool) -> C.Command:
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
    cmd = C.Fetch(tag, "FETCH", uid=uid, seqset=seqset, atts=atts)
    if not r.at_end():
        r.sp()
        CG.fetch_modifiers(r, cmd)
    r.end()
    return cmd


def _store(r: Reader, tag: str, name: str, uid: bool) -> C.Command:
    r.sp()
    seqset = r.seqset()
    r.sp()
    modified = C.Store(tag, "STORE")
    if r.peek() == 0x28:
        CG.store_modifiers(r, modified)
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
                   silent=item.endswith(".SILENT"), flags=flags, unchangedsince=modified.unchangedsince)


def _copy(r: Reader, tag: str, name: str, uid: bool) -> C.Command:
    """COPY and MOVE."""
    r.sp()
    seqset = r.seqset()
    r.sp()
    mailbox = r.mailbox()
    r.end()
    return C.Copy(tag, name, uid=uid, seqset=seqset, mailbox=mailbox)


def _enable(r: Reader, tag: str, name: str, uid: bool) -> C.Command:
    caps = []
    while not r.at_end():
        r.sp()
        caps.append(r.atom().upper())
    if not caps:
        raise Syntax("ENABLE needs a capability")
    return C.Enable(tag, name, capabilities=caps)


def _id(r: Reader, tag: str, name: str, uid: bool) -> C.Command:
    r.sp()
    if r.maybe(b"NIL"):
        r.end()
        return C.Id(tag, "ID", params=None)
    params: dict[str, str | None] = {}

    def pair() -> None:
        k = r.string().decode("utf-8", "replace")
        r.sp()
        v = r.nstring()
        params[k] = None if v is None else v.decode("utf-8", "replace")

    r.paren_list(pair)
    r.end()
    return C.Id(tag, "ID", params=params)


COMMANDS: dict[str, ParseFn] = {
    **{n: _no_args for n in ("CAPABILITY", "NOOP", "LOGOUT", "STARTTLS", "CHECK", "CLOSE",
                             "UNSELECT", "IDLE", "NAMESPACE", "UNAUTHENTICATE")},
    **{n: _one_mailbox for n in ("DELETE", "SUBSCRIBE", "UNSUBSCRIBE")},
    "SELECT": CG.select,
    "EXAMINE": CG.select,
    "CREATE": X.create,
    "EXPUNGE": _expunge,
    "LOGIN": _login,
    "AUTHENTICATE": _authenticate,
    "RENAME": _rename,
    "LIST": _list,
    "LSUB": _list,
    "STATUS": _status,
    "APPEND": _append,
    "FETCH": _fetch,
    "STORE": _store,
    "COPY": _copy,
    "MOVE": _copy,
    "UID": _uid,
    "ENABLE": _enable,
    "ID": _id,
    "COMPRESS": X.compress,
    "NOTIFY": lambda r, tag, name, uid: X.notify(r, tag, name, _fetch_att),
    **grammar_acl.COMMANDS,  # ACL and QUOTA (issue 12)
}

UID_COMMANDS = frozenset({"FETCH", "STORE", "COPY", "MOVE", "SEARCH", "EXPUNGE", "SORT", "THREAD"})


# ---------------------------------------------------------------- search keys

def search_key(r: Reader, text: TextFn) -> K.SearchKey:
    """One search key (RFC 3501 ``search-key``), nesting bounded."""
    r.depth += 1
    if r.depth > MAX_DEPTH:
        raise Syntax("search key nested too deeply")
    try:
        c = r.peek()
        if c == 0x28:
            keys = r.paren_list(lambda: search_key(r, text), allow_empty=False)
            return keys[0] if len(keys) == 1 else K.And(tuple(keys))
        if c == 0x2A or 0x30 <= c <= 0x39:
            return K.Seq(tuple(r.seqset()))
        if c == 0x24:  # $ (RFC 5182)
            r.seqset()
            return K.Saved()
        name = r.atom().upper()
        fn = SEARCH_KEYS.get(name)
        if fn is None:
            raise Syntax(f"unknown search key {name}")
        return fn(r, name, text)
    finally:
        r.depth -= 1


def _const(key: K.SearchKey) -> KeyFn:
    return lambda r, name, text: key


def _flag(flag: str, present: bool) -> KeyFn:
    return _const(K.Flag(flag, present))


def _keyword(r: Reader, name: str, text: TextFn) -> K.SearchKey:
    r.sp()
    return K.Flag(r.atom(), name == "KEYWORD")


def _named_header(field: str) -> KeyFn:
    def parse(r: Reader, name: str, text: TextFn) -> K.SearchKey:
        r.sp()
        return K.Header(field, text(r.astring()))
    return parse


def _address(field: str) -> KeyFn:
    def parse(r: Reader, name: str, text: TextFn) -> K.SearchKey:
        r.sp()
        return K.Address(field, text(r.astring()))
    return parse


def _header(r: Reader, name: str, text: TextFn) -> K.SearchKey:
    r.sp()
    field = r.astring().decode("ascii", "replace")
    r.sp()
    return K.Header(field, text(r.astring()))


def _body(r: Reader, name: str, text: TextFn) -> K.SearchKey:
    r.sp()
    return K.Body(text(r.astring()))


def _text(r: Reader, name: str, text: TextFn) -> K.SearchKey:
    r.sp()
    return K.Text(text(r.astring()))


def _date(r: Reader, name: str, text: TextFn) -> K.SearchKey:
    r.sp()
    day = r.search_date()
    if name.startswith("SENT"):
        return K.Date("sent", _DATE_OPS[name[4:]], day)
    return K.Date("internal", _DATE_OPS[name], day)


_DATE_OPS: dict[str, K.DateOp] = {"BEFORE": "BEFORE", "ON": "ON", "SINCE": "SINCE"}


def _size(r: Reader, name: str, text: TextFn) -> K.SearchKey:
    r.sp()
    return K.Size("LARGER" if name == "LARGER" else "SMALLER", r.number())


def _uid_key(r: Reader, name: str, text: TextFn) -> K.SearchKey:
    r.sp()
    seqset = r.seqset()
    if isinstance(seqset, SavedResult):
        return K.Saved()
    return K.Uid(tuple(seqset))


def _not(r: Reader, name: str, text: TextFn) -> K.SearchKey:
    r.sp()
    return K.Not(search_key(r, text))


def _or(r: Reader, name: str, text: TextFn) -> K.SearchKey:
    r.sp()
    a = search_key(r, text)
    r.sp()
    return K.Or(a, search_key(r, text))


SEARCH_KEYS: dict[str, KeyFn] = {
    "ALL": _const(K.All()),
    "NEW": _const(K.New()),
    "OLD": _const(K.Old()),
    "RECENT": _const(K.Recent()),
    **{word: _flag(flag, True) for word, flag in F.SEARCH_FLAG_KEYS.items()},
    **{"UN" + word: _flag(flag, False) for word, flag in F.SEARCH_FLAG_KEYS.items()},
    "KEYWORD": _keyword,
    "UNKEYWORD": _keyword,
    **{word: _address(field) for word, field in (("FROM", "From"), ("TO", "To"), ("CC", "Cc"), ("BCC", "Bcc"))},
    "SUBJECT": _named_header("Subject"),
    "HEADER": _header,
    "BODY": _body,
    "TEXT": _text,
    **{word: _date for word in ("BEFORE", "ON", "SINCE", "SENTBEFORE", "SENTON", "SENTSINCE")},
    "LARGER": _size,
    "SMALLER": _size,
    "UID": _uid_key,
    "MODSEQ": CG.modseq_key,
    "NOT": _not,
    "OR": _or,
    **X.SEARCH_KEYS,
}

# SEARCH, SORT, THREAD and CANCELUPDATE: their own module (RETURN options,
# sort criteria), handed the search-key parser defined above
COMMANDS.update(searchgrammar.parsers(search_key))
