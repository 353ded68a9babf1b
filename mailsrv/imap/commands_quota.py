"""QUOTA (RFC 9208): GETQUOTA, GETQUOTAROOT, SETQUOTA.

Limits come from the configuration and the passwd file (see
:mod:`mailsrv.store.quota`); users cannot change them, so SETQUOTA is
refused with NOPERM.  STORAGE is reported in units of 1024 octets, usage
and limit rounded up as Dovecot does (``quota_get_resource``: 100 octets
in use show as 1).
"""

from __future__ import annotations

from mailsrv.imap import render
from mailsrv.imap.context import Context, Handlers
from mailsrv.imap.grammar_acl import GetQuota, SetQuota
from mailsrv.imap.results import AUTHENTICATED, Result, no, ok
from mailsrv.store.interfaces import IUserView, QuotaRoot

CAPABILITIES = ("QUOTA", "QUOTA=RES-STORAGE", "QUOTA=RES-MESSAGE")


def quota_line(root: QuotaRoot) -> bytes:
    """``* QUOTA "User quota" (STORAGE 10 1024 MESSAGE 3 100)``."""
    parts = []
    for res in root.resources:
        usage, limit = res.usage, res.limit
        if res.name == "STORAGE":
            usage, limit = -(-usage // 1024), -(-limit // 1024)
        parts.append(b"%s %d %d" % (res.name.encode("ascii"), usage, limit))
    return b"* QUOTA " + render.astring(root.name) + b" (" + b" ".join(parts) + b")\r\n"


def _view(ctx: Context) -> IUserView | None:
    account = ctx.account
    return account if IUserView.providedBy(account) else None


async def getquotaroot(ctx: Context, cmd: GetQuota) -> Result:
    view = _view(ctx)
    if view is None:
        return no("Quota not available", "CANNOT")
    roots: list[QuotaRoot] = await view.quota_roots(cmd.mailbox)
    head = b"* QUOTAROOT " + render.mailbox(cmd.mailbox)
    ctx.send_many([head + b"".join(b" " + render.astring(r.name) for r in roots) + b"\r\n"]
                  + [quota_line(r) for r in roots])
    return ok()


async def getquota(ctx: Context, cmd: GetQuota) -> Result:
    view = _view(ctx)
    if view is None:
        return no("Quota not available", "CANNOT")
    root: QuotaRoot = await view.get_quota(cmd.root)
    ctx.send(quota_line(root))
    return ok()


async def setquota(ctx: Context, cmd: SetQuota) -> Result:
    return no("Quota limits are set by the administrator", "NOPERM")


HANDLERS: Handlers = {
    "GETQUOTA": (getquota, AUTHENTICATED),
    "GETQUOTAROOT": (getquotaroot, AUTHENTICATED),
    "SETQUOTA": (setquota, AUTHENTICATED),
}
