"""Authenticated-state commands: mailbox management, APPEND, IDLE,
NAMESPACE, ENABLE (also valid when a mailbox is selected)."""

from __future__ import annotations

from twisted.internet import defer, task
from twisted.logger import Logger

from mailsrv.imap import commands as C
from mailsrv.imap import createext, render, rev2
from mailsrv.imap import enable as E
from mailsrv.imap import flags as F
from mailsrv.imap.context import Context, Handlers
from mailsrv.imap.listing import list_mailboxes, status_values
from mailsrv.imap.results import AUTHENTICATED, Result, bad, no, ok
from mailsrv.imap.seqset import render_pairs
from mailsrv.store.interfaces import IFolder, NoSuchFolder, StoreError

log = Logger()

IDLE_POLL_SLOWDOWN = 12  # 5 s -> 60 s where the store pushes outside changes (IFolder.instant_notice)


async def select(ctx: Context, cmd: C.MailboxCommand) -> Result:
    """SELECT and EXAMINE (read-only)."""
    ctx.send_many(rev2.closing(ctx))
    ctx.unselect()
    try:
        folder: IFolder = await ctx.account.open_folder(cmd.mailbox)
    except NoSuchFolder:
        return no("Mailbox doesn't exist: " + cmd.mailbox, "NONEXISTENT")
    await folder.refresh()
    # without any right to change the mailbox, SELECT is read-only too (RFC 4314)
    readonly = cmd.name == "EXAMINE" or not any(r in getattr(folder, "rights", "w") for r in "swtie")
    sel = ctx.select(folder, readonly)
    sel.utf8 = ctx.dialect.utf8
    lines = sel.flags_response()
    lines.append(b"* %d EXISTS\r\n" % len(sel))
    if rev2.active(ctx):
        lines += rev2.selected(ctx, sel)
    else:
        lines.append(b"* %d RECENT\r\n" % len(sel.recent))
        get = folder.get
        for seq, uid in enumerate(sel.uids, 1):
            m = get(uid)
            if m is not None and "\\Seen" not in m.flags:
                lines.append(render.untagged(f"OK [UNSEEN {seq}] First unseen."))
                break
    lines.append(render.untagged(f"OK [UIDVALIDITY {folder.uidvalidity}] UIDs valid"))
    lines.append(render.untagged(f"OK [UIDNEXT {folder.uidnext}] Predicted next UID"))
    lines.append(render.untagged(f"OK [MAILBOXID ({folder.mailboxid})] Ok"))
    ctx.send_many(lines)
    return ok("completed", "READ-ONLY" if readonly else "READ-WRITE")


async def create(ctx: Context, cmd: C.Create) -> Result:
    """CREATE, with ``(USE (...))`` (RFC 6154) and the new MAILBOXID
    (RFC 8474) in the OK."""
    name = cmd.mailbox.rstrip("/")
    if not name:
        return no("Invalid mailbox name", "CANNOT")
    if name == "INBOX" or ctx.account.folder_exists(name):
        return no("Mailbox already exists", "ALREADYEXISTS")
    use = createext.check_uses(cmd.uses)
    if isinstance(use, Result):
        return use
    await ctx.account.create_folder(name)
    return await createext.created(ctx, name, use)


async def delete(ctx: Context, cmd: C.MailboxCommand) -> Result:
    if cmd.mailbox == "INBOX":
        return no("INBOX can't be deleted", "CANNOT")
    if not ctx.account.folder_exists(cmd.mailbox):
        return no("Mailbox doesn't exist: " + cmd.mailbox, "NONEXISTENT")
    if ctx.selected is not None and ctx.selected.folder.name == cmd.mailbox:
        ctx.unselect()
    await ctx.account.delete_folder(cmd.mailbox)
    return ok()


async def rename(ctx: Context, cmd: C.Rename) -> Result:
    acct = ctx.account
    if not acct.folder_exists(cmd.old):
        return no("Mailbox doesn't exist: " + cmd.old, "NONEXISTENT")
    new = cmd.new.rstrip("/")
    if new == "INBOX" or acct.folder_exists(new):
        return no("Mailbox already exists", "ALREADYEXISTS")
    await acct.rename_folder(cmd.old, new)
    return ok()


async def subscribe(ctx: Context, cmd: C.MailboxCommand) -> Result:
    """SUBSCRIBE and UNSUBSCRIBE."""
    change = ctx.account.subscribe if cmd.name == "SUBSCRIBE" else ctx.account.unsubscribe
    await defer.maybeDeferred(change, cmd.mailbox)  # stored before OK where the store is remote
    return ok()


async def list_(ctx: Context, cmd: C.ListCommand) -> Result:
    """LIST and LSUB (see :mod:`listing`)."""
    await list_mailboxes(ctx, cmd)
    return ok()


async def status(ctx: Context, cmd: C.Status) -> Result:
    try:
        values = await status_values(ctx, cmd.mailbox, cmd.atts)
    except NoSuchFolder:
        return no("Mailbox doesn't exist: " + cmd.mailbox, "NONEXISTENT")
    ctx.send(b"* STATUS " + ctx.mailbox_name(cmd.mailbox) + b" " + values + b"\r\n")
    return ok()


def _check_append(ctx: Context, cmd: C.Append) -> list[list[str]] | Result:
    """The storable flags of each message, or the answer refusing them all."""
    checked = []
    for m in cmd.messages:
        flags = F.storable(m.flags)
        if flags is None:
            return bad("Invalid system flag")
        if m.utf8 and not ctx.dialect.utf8:
            return bad("UTF8 (...) needs ENABLE UTF8=ACCEPT first")
        if m.size == 0:
            return no("Can't save a zero byte message", "CANNOT")
        if m.size > ctx.config.append_limit:
            return no("Message too large", "TOOBIG")
        checked.append(flags)
    return checked


async def append(ctx: Context, cmd: C.Append) -> Result:
    """APPEND with MULTIAPPEND: all messages or none (RFC 3502)."""
    try:
        folder: IFolder = await ctx.account.open_folder(cmd.mailbox)
    except NoSuchFolder:
        return no("Mailbox doesn't exist: " + cmd.mailbox, "TRYCREATE")
    checked = _check_append(ctx, cmd)
    if isinstance(checked, Result):
        return checked
    uids: list[int] = []
    try:
        for m, flags in zip(cmd.messages, checked, strict=True):
            uids.append(await folder.append(m.data, flags, m.date))
    except StoreError:
        if uids:
            await folder.expunge(uids)
        raise
    return ok("completed", f"APPENDUID {folder.uidvalidity} {render_pairs(uids)}")


async def namespace(ctx: Context, cmd: C.Simple) -> Result:
    """Personal, other users' and public namespaces (RFC 2342; the store's
    IUserView says which exist)."""
    spaces = getattr(ctx.account, "namespaces", None)
    groups = spaces() if spaces is not None else ([("", "/")], [], [])
    parts = [b"(" + b"".join(b"(" + render.string(p) + b" " + render.string(d) + b")" for p, d in g) + b")"
             if g else b"NIL" for g in groups]
    ctx.send(b"* NAMESPACE " + b" ".join(parts) + b"\r\n")
    return ok()


async def enable(ctx: Context, cmd: C.Enable) -> Result:
    """ENABLE (RFC 5161): what can be enabled is in :mod:`mailsrv.imap.enable`."""
    done = E.enable(ctx, cmd.capabilities)
    ctx.send(render.untagged(" ".join(["ENABLED", *done])))
    return ok()


async def idle(ctx: Context, cmd: C.Simple) -> Result:
    """IDLE (RFC 2177): changes are pushed as they happen, the folder is
    polled for outside changes, a keepalive goes out now and then, until
    the client sends DONE."""
    ctx.send(b"+ idling\r\n")
    ctx.idling = True
    ctx.flush_pending()

    def keepalive() -> None:
        ctx.send(b"* OK Still here\r\n")

    def poll() -> None:
        if ctx.selected is not None:
            d = ctx.selected.folder.refresh()
            d.addErrback(lambda f: log.failure("refresh during IDLE failed", f))

    # A folder whose outside changes are pushed (inotify) is polled only as a safety net.
    folder = ctx.selected.folder if ctx.selected is not None else None
    every = ctx.idle_poll * (IDLE_POLL_SLOWDOWN if getattr(folder, "instant_notice", False) else 1)
    loops = [task.LoopingCall(keepalive), task.LoopingCall(poll)]
    for loop, interval in zip(loops, (ctx.idle_keepalive, every), strict=True):
        loop.clock = ctx.reactor
        loop.start(interval, now=False)
    try:
        line = await ctx.next_line()
    finally:
        ctx.idling = False
        for loop in loops:
            if loop.running:
                loop.stop()
    if line is None:
        return bad("Line too long")
    if line.upper() != b"DONE":
        return bad("Expected DONE")
    return ok("terminated")


HANDLERS: Handlers = {
    "SELECT": (select, AUTHENTICATED),
    "EXAMINE": (select, AUTHENTICATED),
    "CREATE": (create, AUTHENTICATED),
    "DELETE": (delete, AUTHENTICATED),
    "RENAME": (rename, AUTHENTICATED),
    "SUBSCRIBE": (subscribe, AUTHENTICATED),
    "UNSUBSCRIBE": (subscribe, AUTHENTICATED),
    "LIST": (list_, AUTHENTICATED),
    "LSUB": (list_, AUTHENTICATED),
    "STATUS": (status, AUTHENTICATED),
    "APPEND": (append, AUTHENTICATED),
    "NAMESPACE": (namespace, AUTHENTICATED),
    "ENABLE": (enable, AUTHENTICATED),
    "IDLE": (idle, AUTHENTICATED),
}
