"""Selected-state commands: CHECK CLOSE UNSELECT EXPUNGE SEARCH FETCH
STORE COPY MOVE and their UID forms (FETCH itself is in :mod:`fetch`)."""

from __future__ import annotations

from mailsrv.imap import commands as C
from mailsrv.imap import flags as F
from mailsrv.imap import render, rev2, utf8
from mailsrv.imap.context import Context, Handlers
from mailsrv.imap.fetch import fetch, target
from mailsrv.imap.results import SELECTED_ONLY, Result, bad, no, ok
from mailsrv.imap.search import search_loaded as run_search
from mailsrv.imap.seqset import render as render_set
from mailsrv.imap.seqset import render_pairs
from mailsrv.imap.session import SelectedMailbox
from mailsrv.store.interfaces import IFolder, NoSuchFolder

READ_ONLY = "Mailbox is read-only"
GONE = "Some of the requested messages no longer exist"


async def check(ctx: Context, cmd: C.Simple) -> Result:
    return ok()


async def close(ctx: Context, cmd: C.Simple) -> Result:
    """Unselect, expunging silently unless read-only (RFC 3501 6.4.2)."""
    sel = ctx.mailbox
    folder, readonly = sel.folder, sel.readonly
    ctx.unselect()
    if not readonly and "e" in getattr(folder, "rights", "e"):  # without 'e' CLOSE expunges nothing (RFC 4314)
        await folder.expunge(None)
    return ok()


async def unselect(ctx: Context, cmd: C.Simple) -> Result:
    ctx.unselect()
    return ok()


async def expunge(ctx: Context, cmd: C.Simple | C.UidExpunge) -> Result:
    """EXPUNGE, and UID EXPUNGE (RFC 4315): only the \\Deleted messages of
    the set."""
    sel = ctx.mailbox
    if sel.readonly:
        return no(READ_ONLY, "CANNOT")
    if isinstance(cmd, C.UidExpunge):
        uids = [u for _, u in target(sel, True, cmd.seqset) or []]
        doomed = [u for u in uids if (i := sel.folder.get(u)) is not None and "\\Deleted" in i.flags]
        if doomed:
            await sel.folder.expunge(doomed)
    else:
        await sel.folder.expunge(None)
    return ok()


async def _report_flags(ctx: Context, sel: SelectedMailbox, pairs: list[tuple[int, int]], uid: bool) -> None:
    """The untagged FETCH (FLAGS) responses of a STORE, in batches."""
    folder = sel.folder
    lines = []
    for seq, u in pairs:
        info = folder.get(u)
        if info is None:
            continue
        items = b"FLAGS " + render.flag_list(sel.flags_of(info))
        if uid:
            items = b"UID %d " % u + items
        lines.append(b"* %d FETCH (%s)\r\n" % (seq, items))
        if len(lines) >= 512:
            ctx.send_many(lines)
            lines = []
            await ctx.drained()
    ctx.send_many(lines)


async def store(ctx: Context, cmd: C.Store) -> Result:
    """STORE / UID STORE; FLAGS.SILENT reports nothing this session did."""
    sel = ctx.mailbox
    if sel.readonly:
        return no(READ_ONLY, "CANNOT")
    flags = F.storable(cmd.flags)
    if flags is None:
        return bad("Invalid system flag")
    pairs = target(sel, cmd.uid, cmd.seqset)
    if pairs is None:
        return bad("Invalid message sequence number")
    folder = sel.folder
    live = [u for _, u in pairs if folder.get(u) is not None]
    changed = await folder.store_flags(live, flags, cmd.mode) if live else []
    ctx.send_many(sel.new_keywords_response())  # FLAGS before a FETCH that uses a new keyword
    if cmd.silent:
        sel.forget_flag_updates(changed)
    else:
        sel.forget_flag_updates(live)
        await _report_flags(ctx, sel, pairs, cmd.uid)
    if len(live) < len(pairs):
        return no(GONE, "EXPUNGEISSUED")
    return ok()


async def copy(ctx: Context, cmd: C.Copy) -> Result:
    """COPY and MOVE (RFC 6851), with COPYUID (RFC 4315)."""
    sel = ctx.mailbox
    move = cmd.name == "MOVE"
    if move and sel.readonly:
        return no(READ_ONLY, "CANNOT")
    pairs = target(sel, cmd.uid, cmd.seqset)
    if pairs is None:
        return bad("Invalid message sequence number")
    try:
        dest: IFolder = await ctx.account.open_folder(cmd.mailbox)
    except NoSuchFolder:
        return no("Mailbox doesn't exist: " + cmd.mailbox, "TRYCREATE")
    folder = sel.folder
    uids = [u for _, u in pairs]
    if any(folder.get(u) is None for u in uids):
        return no(GONE, "EXPUNGEISSUED")
    if not uids:
        return ok("completed (no messages)")
    # a MOVE within one account never fails for quota (the store's move=True)
    copied: list[tuple[int, int]] = await (folder.copy_to(uids, dest, move=True) if move
                                           else folder.copy_to(uids, dest))
    if len(copied) < len(uids):
        # another session expunged some while we copied: all or nothing, so a
        # client that retries does not get duplicates (RFC 2180 4.4.1)
        if copied:
            await dest.expunge([d for _, d in copied])
        return no(GONE, "EXPUNGEISSUED")
    code = None
    if copied:
        code = "COPYUID %d %s %s" % (dest.uidvalidity, render_pairs([s for s, _ in copied]),
                                     render_pairs([d for _, d in copied]))
    if move:
        if code:
            ctx.send(render.untagged(f"OK [{code}] Moved"))
        await folder.expunge([s for s, _ in copied])
        return ok()
    return ok("completed", code)


def _esearch(cmd: C.Search, numbers: list[int]) -> bytes:
    """The ESEARCH response (RFC 4731) for RETURN (MIN MAX COUNT ALL)."""
    opts = cmd.return_opts or []
    parts = [b'* ESEARCH (TAG "%s")' % cmd.tag.encode()]
    if cmd.uid:
        parts.append(b"UID")
    if numbers and "MIN" in opts:
        parts.append(b"MIN %d" % min(numbers))
    if numbers and "MAX" in opts:
        parts.append(b"MAX %d" % max(numbers))
    if "COUNT" in opts:
        parts.append(b"COUNT %d" % len(numbers))
    if numbers and "ALL" in opts:
        parts.append(b"ALL " + render_set(numbers).encode())
    return b" ".join(parts) + b"\r\n"


async def search(ctx: Context, cmd: C.Search) -> Result:
    """SEARCH / UID SEARCH, answered as SEARCH or, with RETURN, ESEARCH."""
    sel = ctx.mailbox
    if cmd.charset is not None and utf8.enabled(ctx):
        return bad("CHARSET is not allowed after ENABLE UTF8=ACCEPT")
    if cmd.return_opts is None and rev2.active(ctx):
        cmd.return_opts = ["ALL"]  # IMAP4rev2 answers SEARCH with ESEARCH
    if cmd.charset not in (None, "UTF-8", "US-ASCII"):
        return no("Unsupported charset", "BADCHARSET (UTF-8 US-ASCII)")
    infos = sel.infos()
    folder = sel.folder
    seqs = await run_search(folder, infos, cmd.key, set(sel.recent), cmd.charset)
    seqs = sorted(s for s in set(seqs) if 0 < s <= len(infos) and folder.get(infos[s - 1].uid) is not None)
    numbers = [infos[s - 1].uid for s in seqs] if cmd.uid else seqs
    if cmd.return_opts is None:
        ctx.send(b"* SEARCH" + b"".join(b" %d" % n for n in numbers) + b"\r\n")
    else:
        ctx.send(_esearch(cmd, numbers))
    return ok()


HANDLERS: Handlers = {
    "CHECK": (check, SELECTED_ONLY),
    "CLOSE": (close, SELECTED_ONLY),
    "UNSELECT": (unselect, SELECTED_ONLY),
    "EXPUNGE": (expunge, SELECTED_ONLY),
    "UID EXPUNGE": (expunge, SELECTED_ONLY),
    "FETCH": (fetch, SELECTED_ONLY),
    "STORE": (store, SELECTED_ONLY),
    "COPY": (copy, SELECTED_ONLY),
    "MOVE": (copy, SELECTED_ONLY),
    "SEARCH": (search, SELECTED_ONLY),
}
