"""Selected-state commands: CHECK CLOSE UNSELECT EXPUNGE SEARCH FETCH
STORE COPY MOVE and their UID forms (FETCH itself is in :mod:`fetch`)."""

from __future__ import annotations

from mailsrv.imap import commands as C
from mailsrv.imap import condstore, render, rev2, utf8
from mailsrv.imap import flags as F
from mailsrv.imap.context import Context, Handlers
from mailsrv.imap.contextsearch import answer, check_update, matches, search_failed
from mailsrv.imap.fetch import fetch, target
from mailsrv.imap.results import SELECTED_ONLY, Result, bad, no, ok
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
    return ok("completed", condstore.expunge_code(ctx))


async def _report_flags(ctx: Context, sel: SelectedMailbox, pairs: list[tuple[int, int]], uid: bool) -> None:
    """The untagged FETCH (FLAGS) responses of a STORE, in batches; a flag
    list is rendered once per distinct set (a STORE on 10,000 messages
    leaves a handful)."""
    get, recent = sel.folder.get, sel.recent
    with_uid, with_modseq = uid or sel.modseqs, sel.modseqs
    rendered: dict[tuple[frozenset[str], bool], bytes] = {}
    lines: list[bytes] = []
    append = lines.append
    for seq, u in pairs:
        info = get(u)
        if info is None:
            continue
        key = (info.flags, u in recent)
        flags = rendered.get(key)
        if flags is None:
            flags = rendered[key] = b"FLAGS " + render.flag_list(sel.flags_of(info))
        if with_modseq:
            append(b"* %d FETCH (UID %d %b MODSEQ (%d))\r\n" % (seq, u, flags, info.modseq))
        elif with_uid:
            append(b"* %d FETCH (UID %d %b)\r\n" % (seq, u, flags))
        else:
            append(b"* %d FETCH (%b)\r\n" % (seq, flags))
        if len(lines) >= 2048:
            ctx.send_many(lines)
            lines = []
            append = lines.append
            await ctx.drained()
    ctx.send_many(lines)


async def store(ctx: Context, cmd: C.Store) -> Result:
    """STORE / UID STORE; FLAGS.SILENT reports nothing this session did
    (but the new MODSEQs under CONDSTORE)."""
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
    changed, modified = await condstore.store_flags(ctx, cmd, live, flags)
    ctx.send_many(sel.new_keywords_response())  # FLAGS before a FETCH that uses a new keyword
    if modified:  # UNCHANGEDSINCE kept these: no FETCH for them, their news stay pending
        kept = set(modified)
        pairs = [p for p in pairs if p[1] not in kept]
        live = [u for u in live if u not in kept]
    if cmd.silent:
        sel.forget_flag_updates(changed)
        if sel.modseqs:
            ctx.send_many(condstore.silent_report(sel, pairs, changed))
    else:
        sel.forget_flag_updates(live)
        await _report_flags(ctx, sel, pairs, cmd.uid)
    if modified:
        return ok("Conditional STORE failed", condstore.modified_code(sel, cmd, modified))
    # messages another session expunged meanwhile are skipped, the rest is
    # stored: OK, as Dovecot answers and RFC 2180 4.2.1 allows
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


async def search(ctx: Context, cmd: C.Search) -> Result:
    """SEARCH / UID SEARCH, answered as SEARCH or, with RETURN, ESEARCH
    (with SEARCHRES and context updates: :mod:`contextsearch`)."""
    sel = ctx.mailbox
    if cmd.charset is not None and utf8.enabled(ctx):
        search_failed(ctx, cmd)
        return bad("CHARSET is not allowed after ENABLE UTF8=ACCEPT")
    if cmd.return_opts is None and rev2.active(ctx):
        cmd.return_opts = ["ALL"]  # IMAP4rev2 answers SEARCH with ESEARCH
    if cmd.charset not in (None, "UTF-8", "US-ASCII"):
        search_failed(ctx, cmd)
        return no("Unsupported charset", "BADCHARSET (UTF-8 US-ASCII)")
    refused = check_update(ctx, cmd)
    if refused is not None:
        search_failed(ctx, cmd)
        return refused
    bound, found = await matches(sel, cmd)
    assert isinstance(bound, C.Search)
    answer(ctx, bound, found)
    return found.result()


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
