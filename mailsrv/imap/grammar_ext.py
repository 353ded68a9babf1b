"""The grammar of the issue 9/12 extensions: COMPRESS (RFC 4978), NOTIFY
(RFC 5465), CREATE (USE ...) (RFC 6154), the FETCH items and SEARCH keys of
OBJECTID (RFC 8474), SAVEDATE (RFC 8514) and PREVIEW (RFC 8970).  Kept beside :mod:`grammar`,
which wires these functions into its one ``COMMANDS`` table (passing the
pieces of its own grammar they reuse, such as FETCH attributes)."""

from __future__ import annotations

from collections.abc import Callable

from mailsrv.imap import commands as C
from mailsrv.imap import searchext  # noqa: F401  registers the evaluators of these keys
from mailsrv.imap import searchkeys as K
from mailsrv.imap.reader import Reader, Syntax

FetchAttFn = Callable[[Reader], C.FetchAtt]


def compress(r: Reader, tag: str, name: str, uid: bool) -> C.Command:
    r.sp()
    mech = r.atom().upper()
    r.end()
    return C.Compress(tag, name, mechanism=mech)


# RFC 5465's event names, canonical spelling by upper-case name; unknown
# atoms (event-ext) are kept as written, NOTIFY answers them BADEVENT.
EVENTS = {e.upper(): e for e in (
    "MessageNew", "MessageExpunge", "FlagChange", "AnnotationChange",
    "MailboxName", "SubscriptionChange", "MailboxMetadataChange", "ServerMetadataChange")}
SELECTED_FILTERS = ("SELECTED", "SELECTED-DELAYED")
_FILTERS = SELECTED_FILTERS + ("INBOXES", "PERSONAL", "SUBSCRIBED", "SUBTREE", "MAILBOXES")


def _mailboxes(r: Reader) -> list[str]:
    """``one-or-more-mailbox``: a mailbox or a parenthesised list of them."""
    if r.peek() == 0x28:
        return r.paren_list(r.mailbox, allow_empty=False)
    return [r.mailbox()]


def _events(r: Reader, group: C.NotifyGroup, fetch_att: FetchAttFn) -> None:
    if r.maybe(b"NONE"):
        return
    r.expect(b"(")
    while True:
        word = r.atom()
        event = EVENTS.get(word.upper(), word)
        group.events.append(event)
        if event == "MessageNew" and r.text[r.pos:r.pos + 2] == b" (":
            r.sp()
            group.fetch_atts = r.paren_list(lambda: fetch_att(r), allow_empty=False)
        if r.maybe(b")"):
            return
        r.sp()


def _group(r: Reader, fetch_att: FetchAttFn) -> C.NotifyGroup:
    r.expect(b"(")
    kind = r.atom().upper()
    if kind not in _FILTERS:
        raise Syntax(f"unknown NOTIFY filter {kind}")
    group = C.NotifyGroup(kind)
    r.sp()
    if kind in ("SUBTREE", "MAILBOXES"):
        group.mailboxes = _mailboxes(r)
        r.sp()
    _events(r, group, fetch_att)
    if group.fetch_atts and kind not in SELECTED_FILTERS:
        raise Syntax("MessageNew fetch attributes are for the selected mailbox only")
    r.expect(b")")
    return group


def notify(r: Reader, tag: str, name: str, fetch_att: FetchAttFn) -> C.Command:
    """NOTIFY NONE / NOTIFY SET [STATUS] event-group *(SP event-group)."""
    r.sp()
    if r.maybe(b"NONE"):
        r.end()
        return C.Notify(tag, name)
    r.expect(b"SET ")
    status = r.maybe(b"STATUS ")
    groups = [_group(r, fetch_att)]
    while not r.at_end():
        r.sp()
        groups.append(_group(r, fetch_att))
    return C.Notify(tag, name, status=status, groups=groups)


# -- CREATE (USE (...)) (RFC 6154 CREATE-SPECIAL-USE, RFC 4466 create-param)

def create(r: Reader, tag: str, name: str, uid: bool) -> C.Command:
    r.sp()
    mbox = r.mailbox()
    cmd = C.Create(tag, name, mailbox=mbox)
    if not r.at_end():
        r.sp()
        r.expect(b"(")
        r.expect(b"USE ")
        cmd.uses = r.paren_list(r.flag, allow_empty=False)
        r.expect(b")")
    r.end()
    return cmd


# -- FETCH items and SEARCH keys (OBJECTID, SAVEDATE, PREVIEW)

FETCH_ITEMS = frozenset({"EMAILID", "THREADID", "SAVEDATE", "PREVIEW"})


def fetch_item(r: Reader, name: str) -> C.FetchAtt:
    """EMAILID THREADID SAVEDATE PREVIEW, and PREVIEW's modifiers (LAZY)."""
    if name == "PREVIEW" and r.text[r.pos:r.pos + 2] == b" (":
        r.sp()
        mods = tuple(m.upper() for m in r.paren_list(r.atom, allow_empty=False))
        for m in mods:
            if m != "LAZY":
                raise Syntax(f"unknown PREVIEW modifier {m}")
        return C.FetchAtt(name, modifiers=mods)
    return C.FetchAtt(name)


def _saved(r: Reader, name: str, text: Callable[[bytes], str]) -> K.SearchKey:
    r.sp()
    return K.SaveDate(_DATE_OPS[name], r.search_date())


def _object_id(r: Reader, name: str, text: Callable[[bytes], str]) -> K.SearchKey:
    r.sp()
    value = r.atom()
    return K.ObjectId("emailid" if name == "EMAILID" else "threadid", value)


_DATE_OPS: dict[str, K.DateOp] = {"SAVEDBEFORE": "BEFORE", "SAVEDON": "ON", "SAVEDSINCE": "SINCE"}
SEARCH_KEYS: dict[str, Callable[[Reader, str, Callable[[bytes], str]], K.SearchKey]] = {
    **{k: _saved for k in _DATE_OPS},
    "SAVEDATESUPPORTED": lambda r, name, text: K.SaveDateSupported(),
    "EMAILID": _object_id,
    "THREADID": _object_id,
}
