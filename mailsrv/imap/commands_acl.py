"""ACL (RFC 4314): SETACL, DELETEACL, GETACL, LISTRIGHTS, MYRIGHTS, and
the MYRIGHTS responses of LIST-MYRIGHTS (RFC 8440).

The rights themselves are checked by the store (the user's
:class:`~mailsrv.store.interfaces.IUserView`); these handlers only render.
A mailbox the user may not see answers NONEXISTENT, a missing right NOPERM
(both raised by the store and turned into the tagged NO by the server).
"""

from __future__ import annotations

from mailsrv.imap import render
from mailsrv.imap.context import Context, Handlers
from mailsrv.imap.grammar_acl import AclCommand
from mailsrv.imap.results import AUTHENTICATED, Result, bad, no, ok
from mailsrv.store.acl import BadRights, with_virtual
from mailsrv.store.interfaces import IUserView, StoreError

CAPABILITIES = ("ACL", "RIGHTS=texk", "LIST-MYRIGHTS")


def _view(ctx: Context) -> IUserView | None:
    account = ctx.account
    return account if IUserView.providedBy(account) else None


def _rights(text: str) -> bytes:
    return render.astring(text) if text else b'""'


def myrights_line(name: str, rights: str) -> bytes:
    """``* MYRIGHTS "box" lrs``: the user's rights with RFC 4314's virtual c/d."""
    return b"* MYRIGHTS " + render.mailbox(name) + b" " + _rights(with_virtual(rights)) + b"\r\n"


async def list_myrights(ctx: Context, name: str) -> bytes | None:
    """LIST ... RETURN (MYRIGHTS) (RFC 8440): the MYRIGHTS response for one
    listed mailbox, or None when its rights cannot be looked up (the RFC
    then sends none)."""
    view = _view(ctx)
    if view is None:
        return None
    try:
        rights: str = await view.my_rights(name)
    except StoreError:
        return None
    return myrights_line(name, rights)


async def acl(ctx: Context, cmd: AclCommand) -> Result:
    view = _view(ctx)
    if view is None:
        return no("Access control lists are not available", "CANNOT")
    box = render.mailbox(cmd.mailbox)
    if cmd.name == "MYRIGHTS":
        rights: str = await view.my_rights(cmd.mailbox)
        ctx.send(myrights_line(cmd.mailbox, rights))
    elif cmd.name == "GETACL":
        entries: list[tuple[str, str]] = await view.get_acl(cmd.mailbox)
        items = b"".join(b" " + render.astring(i) + b" " + _rights(r) for i, r in entries)
        ctx.send(b"* ACL " + box + items + b"\r\n")
    elif cmd.name == "LISTRIGHTS":
        try:
            required, optional = await view.list_rights(cmd.mailbox, cmd.identifier)
        except BadRights as e:
            return bad(f"Invalid identifier: {e}")
        ctx.send(b"* LISTRIGHTS " + box + b" " + render.astring(cmd.identifier) + b" " + _rights(required)
                 + b"".join(b" " + _rights(o) for o in optional) + b"\r\n")
    elif cmd.name == "SETACL":
        try:
            await view.set_acl(cmd.mailbox, cmd.identifier, cmd.rights)
        except BadRights as e:
            return bad(f"Invalid rights: {e}")
    else:
        try:
            await view.delete_acl(cmd.mailbox, cmd.identifier)
        except BadRights as e:
            return bad(f"Invalid identifier: {e}")
    return ok()


HANDLERS: Handlers = {name: (acl, AUTHENTICATED)
                      for name in ("SETACL", "DELETEACL", "GETACL", "LISTRIGHTS", "MYRIGHTS")}
