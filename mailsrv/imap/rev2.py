"""IMAP4rev2 (RFC 9051) beside IMAP4rev1 on one server.

A session is IMAP4rev1 until it sends ``ENABLE IMAP4rev2``; from then on
(RFC 9051 section 6.3.1, appendix E):

- mailbox names are UTF-8 on the wire, both ways (:class:`reader.Dialect`);
- no ``\\Recent`` flag and no ``RECENT`` response, no ``UNSEEN`` response
  code at SELECT, which instead sends the mailbox's ``LIST`` response;
- a SELECT or EXAMINE that closes the previously selected mailbox first
  says ``OK [CLOSED]``;
- SEARCH answers with ESEARCH (as if ``RETURN (ALL)`` had been given);
- LIST shows names that only exist as parents with ``\\NonExistent``.

What IMAP4rev2 takes from extensions the server already has (LITERAL+ in
place of LITERAL-, ESEARCH, LIST-EXTENDED, LIST-STATUS, MOVE, UIDPLUS,
SPECIAL-USE, NAMESPACE, UNSELECT, STATUS=SIZE, ...) needs nothing here.
"""

from __future__ import annotations

from mailsrv.imap import render
from mailsrv.imap.context import Context
from mailsrv.imap.results import SELECTED
from mailsrv.imap.session import SelectedMailbox

CAPABILITY = "IMAP4rev2"


def active(ctx: Context) -> bool:
    return CAPABILITY in ctx.enabled


def enable(ctx: Context) -> bool:
    """ENABLE IMAP4rev2: refused (left out of ENABLED) while a mailbox is
    selected, whose view was set up under IMAP4rev1 rules."""
    if ctx.state == SELECTED:
        return False
    ctx.dialect.utf8 = True
    return True


def closing(ctx: Context) -> list[bytes]:
    """``* OK [CLOSED]`` when a SELECT/EXAMINE is about to close the
    selected mailbox (RFC 9051 7.1)."""
    if ctx.selected is None or not active(ctx):
        return []
    return [render.untagged("OK [CLOSED] Previous mailbox closed.")]


def list_line(ctx: Context, name: str) -> bytes:
    """The LIST response SELECT sends for the mailbox it opened."""
    acct = ctx.account
    prefix = name + "/"
    attrs = ["\\HasChildren" if any(n.startswith(prefix) for n in acct.list_folders()) else "\\HasNoChildren"]
    special = acct.special_use(name)
    if special:
        attrs.append(special)
    return b"* LIST (" + " ".join(attrs).encode() + b') "/" ' + ctx.mailbox_name(name) + b"\r\n"


def selected(ctx: Context, sel: SelectedMailbox) -> list[bytes]:
    """The rev2 part of SELECT/EXAMINE: no \\Recent from here on, and the
    LIST response in place of RECENT and UNSEEN."""
    sel.report_recent = False
    sel.recent.clear()
    return [list_line(ctx, sel.folder.name)]
