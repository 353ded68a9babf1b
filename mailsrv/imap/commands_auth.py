"""Authenticated-state commands: mailbox management, APPEND, IDLE,
NAMESPACE, ENABLE (also valid when a mailbox is selected)."""

from __future__ import annotations

from twisted.internet import task
from twisted.logger import Logger

from mailsrv.imap import commands as C
from mailsrv.imap import render
from mailsrv.imap.listing import list_mailboxes, status_values
from mailsrv.imap.seqset import render_pairs
from mailsrv.imap.server import AUTH, SELECTED, bad, no, ok
from mailsrv.store.interfaces import SYSTEM_FLAGS, NoSuchFolder, StoreError

log = Logger()
AUTHED = (AUTH, SELECTED)


def check_flags(flags):
    """Store-able flags, or None if one is an unknown system flag."""
    out = []
    for f in flags:
        if f == "\\Recent":
            continue
        if f.startswith("\\") and f not in SYSTEM_FLAGS:
            return None
        out.append(f)
    return out


async def select(server, cmd: C.MailboxCommand):
    server.unselect()
    try:
        folder = await server.account.open_folder(cmd.mailbox)
    except NoSuchFolder:
        return no("Mailbox doesn't exist: " + cmd.mailbox, "NONEXISTENT")
    await folder.refresh()
    readonly = cmd.name == "EXAMINE"
    sel = server.select(folder, readonly)
    lines = sel.flags_response()
    lines.append(b"* %d EXISTS\r\n" % len(sel))
    lines.append(b"* %d RECENT\r\n" % len(sel.recent))
    get = folder.get
    for seq, uid in enumerate(sel.uids, 1):
        m = get(uid)
        if m is not None and "\\Seen" not in m.flags:
            lines.append(render.untagged(f"OK [UNSEEN {seq}] First unseen."))
            break
    lines.append(render.untagged(f"OK [UIDVALIDITY {folder.uidvalidity}] UIDs valid"))
    lines.append(render.untagged(f"OK [UIDNEXT {folder.uidnext}] Predicted next UID"))
    server.send_many(lines)
    return ok("completed", "READ-ONLY" if readonly else "READ-WRITE")


async def create(server, cmd: C.MailboxCommand):
    name = cmd.mailbox.rstrip("/")
    if not name:
        return no("Invalid mailbox name", "CANNOT")
    if name == "INBOX" or server.account.folder_exists(name):
        return no("Mailbox already exists", "ALREADYEXISTS")
    await server.account.create_folder(name)
    return ok()


async def delete(server, cmd: C.MailboxCommand):
    if cmd.mailbox == "INBOX":
        return no("INBOX can't be deleted", "CANNOT")
    if not server.account.folder_exists(cmd.mailbox):
        return no("Mailbox doesn't exist: " + cmd.mailbox, "NONEXISTENT")
    if server.selected is not None and server.selected.folder.name == cmd.mailbox:
        server.unselect()
    await server.account.delete_folder(cmd.mailbox)
    return ok()


async def rename(server, cmd: C.Rename):
    acct = server.account
    if not acct.folder_exists(cmd.old):
        return no("Mailbox doesn't exist: " + cmd.old, "NONEXISTENT")
    new = cmd.new.rstrip("/")
    if new == "INBOX" or acct.folder_exists(new):
        return no("Mailbox already exists", "ALREADYEXISTS")
    await acct.rename_folder(cmd.old, new)
    return ok()


async def subscribe(server, cmd: C.MailboxCommand):
    if cmd.name == "SUBSCRIBE":
        server.account.subscribe(cmd.mailbox)
    else:
        server.account.unsubscribe(cmd.mailbox)
    return ok()


async def list_(server, cmd: C.ListCommand):
    await list_mailboxes(server, cmd)
    return ok()


async def status(server, cmd: C.Status):
    try:
        values = await status_values(server, cmd.mailbox, cmd.atts)
    except NoSuchFolder:
        return no("Mailbox doesn't exist: " + cmd.mailbox, "NONEXISTENT")
    server.send(b"* STATUS " + render.mailbox(cmd.mailbox) + b" " + values + b"\r\n")
    return ok()


async def append(server, cmd: C.Append):
    try:
        folder = await server.account.open_folder(cmd.mailbox)
    except NoSuchFolder:
        return no("Mailbox doesn't exist: " + cmd.mailbox, "TRYCREATE")
    checked = []
    for m in cmd.messages:
        flags = check_flags(m.flags)
        if flags is None:
            return bad("Invalid system flag")
        if m.size == 0:
            return no("Can't save a zero byte message", "CANNOT")
        if m.size > server.config.append_limit:
            return no("Message too large", "TOOBIG")
        checked.append(flags)
    uids = []
    try:
        for m, flags in zip(cmd.messages, checked):
            uids.append(await folder.append(m.data, flags, m.date))
    except StoreError:
        if uids:  # MULTIAPPEND is all or nothing (RFC 3502)
            await folder.expunge(uids)
        raise
    return ok("completed", f"APPENDUID {folder.uidvalidity} {render_pairs(uids)}")


async def namespace(server, cmd):
    server.send(render.untagged('NAMESPACE (("" "/")) NIL NIL'))
    return ok()


async def enable(server, cmd: C.Enable):
    server.send(render.untagged("ENABLED"))  # none of CONDSTORE/QRESYNC/UTF8=ACCEPT yet
    return ok()


async def idle(server, cmd):
    server.send(b"+ idling\r\n")
    server.idling = True
    server.flush_pending()

    def keepalive() -> None:
        server.send(b"* OK Still here\r\n")

    def poll() -> None:
        if server.selected is not None:
            d = server.selected.folder.refresh()
            d.addErrback(lambda f: log.failure("refresh during IDLE failed", f))

    loops = [task.LoopingCall(keepalive), task.LoopingCall(poll)]
    for loop, interval in zip(loops, (server.idle_keepalive, server.idle_poll)):
        loop.clock = server.reactor
        loop.start(interval, now=False)
    try:
        line = await server.read_raw_line()
    finally:
        server.idling = False
        for loop in loops:
            if loop.running:
                loop.stop()
    if line is None:
        return bad("Line too long")
    if line.upper() != b"DONE":
        return bad("Expected DONE")
    return ok("terminated")


HANDLERS = {
    "SELECT": (select, AUTHED),
    "EXAMINE": (select, AUTHED),
    "CREATE": (create, AUTHED),
    "DELETE": (delete, AUTHED),
    "RENAME": (rename, AUTHED),
    "SUBSCRIBE": (subscribe, AUTHED),
    "UNSUBSCRIBE": (subscribe, AUTHED),
    "LIST": (list_, AUTHED),
    "LSUB": (list_, AUTHED),
    "STATUS": (status, AUTHED),
    "APPEND": (append, AUTHED),
    "NAMESPACE": (namespace, AUTHED),
    "ENABLE": (enable, AUTHED),
    "IDLE": (idle, AUTHED),
}
