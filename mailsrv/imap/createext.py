"""CREATE's extensions: ``(USE (\\Archive))`` (RFC 6154 CREATE-SPECIAL-USE)
and the new mailbox's ``[MAILBOXID (...)]`` (RFC 8474)."""

from __future__ import annotations

from mailsrv.imap.context import Context
from mailsrv.imap.results import Result, no, ok
from mailsrv.store.interfaces import IFolder, StoreError

USES = ("\\Archive", "\\Drafts", "\\Junk", "\\Sent", "\\Trash")
_CANONICAL = {u.lower(): u for u in USES}


def check_uses(uses: list[str]) -> str | None | Result:
    """The one attribute to give the new mailbox (None: none asked for),
    or the NO [USEATTR] refusing them before anything is created: the
    virtual ones (\\All, \\Flagged) cannot be given, nor two at once."""
    if not uses:
        return None
    if len(uses) > 1:
        return no("Only one special-use attribute per mailbox", "USEATTR")
    use = _CANONICAL.get(uses[0].lower())
    if use is None:
        return no(f"{uses[0]} cannot be given to a mailbox", "USEATTR")
    return use


async def created(ctx: Context, name: str, use: str | None) -> Result:
    """After the store created ``name``: its special use, then the OK with
    its MAILBOXID."""
    acct = ctx.account
    if use is not None:
        acct.set_special_use(name, use)
    try:
        folder: IFolder = await acct.open_folder(name)
    except StoreError:
        return ok()
    return ok("completed", f"MAILBOXID ({folder.mailboxid})")
