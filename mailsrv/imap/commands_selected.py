"""Selected-state commands: CHECK CLOSE UNSELECT EXPUNGE SEARCH FETCH
STORE COPY MOVE and their UID forms."""

from __future__ import annotations

from twisted.internet import defer

from mailsrv.imap import commands as C
from mailsrv.imap import render
from mailsrv.imap.commands_auth import check_flags
from mailsrv.imap.fetch import fetch, target
from mailsrv.imap.seqset import render as render_set
from mailsrv.imap.seqset import render_pairs
from mailsrv.imap.server import SELECTED, bad, no, ok
from mailsrv.store.interfaces import NoSuchFolder

READ_ONLY = "Mailbox is read-only"


async def check(server, cmd):
    return ok()


async def close(server, cmd):
    sel = server.selected
    folder, readonly = sel.folder, sel.readonly
    server.unselect()
    if not readonly:
        await folder.expunge(None)
    return ok()


async def unselect(server, cmd):
    server.unselect()
    return ok()


async def expunge(server, cmd):
    sel = server.selected
    if sel.readonly:
        return no(READ_ONLY, "CANNOT")
    if isinstance(cmd, C.UidExpunge):
        uids = [u for _, u in target(sel, True, cmd.seqset)]
        doomed = [u for u in uids if (i := sel.folder.get(u)) is not None and "\\Deleted" in i.flags]
        if doomed:
            await sel.folder.expunge(doomed)
    else:
        await sel.folder.expunge(None)
    return ok()


async def store(server, cmd: C.Store):
    sel = server.selected
    if sel.readonly:
        return no(READ_ONLY, "CANNOT")
    flags = check_flags(cmd.flags)
    if flags is None:
        return bad("Invalid system flag")
    pairs = target(sel, cmd.uid, cmd.seqset)
    if pairs is None:
        return bad("Invalid message sequence number")
    folder = sel.folder
    live = [u for _, u in pairs if folder.get(u) is not None]
    changed = await folder.store_flags(live, flags, cmd.mode) if live else []
    server.send_many(sel.new_keywords_response())  # FLAGS before a FETCH that uses a new keyword
    if cmd.silent:
        sel.forget_flag_updates(changed)
    else:
        sel.forget_flag_updates(live)
        lines = []
        for seq, uid in pairs:
            info = folder.get(uid)
            if info is None:
                continue
            items = b"FLAGS " + render.flag_list(sel.flags_of(info))
            if cmd.uid:
                items = b"UID %d " % uid + items
            lines.append(b"* %d FETCH (%s)\r\n" % (seq, items))
            if len(lines) >= 512:
                server.send_many(lines)
                lines = []
                await server.drained()
        server.send_many(lines)
    if len(live) < len(pairs):
        return no("Some of the requested messages no longer exist", "EXPUNGEISSUED")
    return ok()


async def copy(server, cmd: C.Copy):
    sel = server.selected
    move = cmd.name == "MOVE"
    if move and sel.readonly:
        return no(READ_ONLY, "CANNOT")
    pairs = target(sel, cmd.uid, cmd.seqset)
    if pairs is None:
        return bad("Invalid message sequence number")
    try:
        dest = await server.account.open_folder(cmd.mailbox)
    except NoSuchFolder:
        return no("Mailbox doesn't exist: " + cmd.mailbox, "TRYCREATE")
    folder = sel.folder
    uids = [u for _, u in pairs]
    if any(folder.get(u) is None for u in uids):
        return no("Some of the requested messages no longer exist", "EXPUNGEISSUED")
    if not uids:
        return ok("completed (no messages)")
    copied = await folder.copy_to(uids, dest)
    if len(copied) < len(uids):
        # another session expunged some while we copied: all or nothing, so a
        # client that retries does not get duplicates (RFC 2180 4.4.1)
        if copied:
            await dest.expunge([d for _, d in copied])
        return no("Some of the requested messages no longer exist", "EXPUNGEISSUED")
    code = None
    if copied:
        code = "COPYUID %d %s %s" % (dest.uidvalidity, render_pairs([s for s, _ in copied]),
                                     render_pairs([d for _, d in copied]))
    if move:
        if code:
            server.send(render.untagged(f"OK [{code}] Moved"))
        await folder.expunge([s for s, _ in copied])
        return ok()
    return ok("completed", code)


def _search_module():
    from mailsrv.imap import search as searchmod
    return searchmod


async def search(server, cmd: C.Search):
    sel = server.selected
    if cmd.charset not in (None, "UTF-8", "US-ASCII"):
        return no("Unsupported charset", "BADCHARSET (UTF-8 US-ASCII)")
    infos = sel.infos()
    folder = sel.folder
    seqs = await defer.maybeDeferred(_search_module().search, folder, infos, cmd.key, set(sel.recent), cmd.charset)
    seqs = sorted(s for s in set(seqs) if 0 < s <= len(infos) and folder.get(infos[s - 1].uid) is not None)
    numbers = [infos[s - 1].uid for s in seqs] if cmd.uid else seqs
    if cmd.return_opts is None:
        head = b"* SEARCH"
        chunk = [head]
        for n in numbers:
            chunk.append(b" %d" % n)
        chunk.append(b"\r\n")
        server.send(b"".join(chunk))
        return ok()
    parts = [b'* ESEARCH (TAG "%s")' % cmd.tag.encode()]
    if cmd.uid:
        parts.append(b"UID")
    opts = cmd.return_opts
    if numbers and "MIN" in opts:
        parts.append(b"MIN %d" % min(numbers))
    if numbers and "MAX" in opts:
        parts.append(b"MAX %d" % max(numbers))
    if "COUNT" in opts:
        parts.append(b"COUNT %d" % len(numbers))
    if numbers and "ALL" in opts:
        parts.append(b"ALL " + render_set(numbers).encode())
    server.send(b" ".join(parts) + b"\r\n")
    return ok()


HANDLERS = {
    "CHECK": (check, (SELECTED,)),
    "CLOSE": (close, (SELECTED,)),
    "UNSELECT": (unselect, (SELECTED,)),
    "EXPUNGE": (expunge, (SELECTED,)),
    "UID EXPUNGE": (expunge, (SELECTED,)),
    "FETCH": (fetch, (SELECTED,)),
    "STORE": (store, (SELECTED,)),
    "COPY": (copy, (SELECTED,)),
    "MOVE": (copy, (SELECTED,)),
    "SEARCH": (search, (SELECTED,)),
}
