"""CONDSTORE and QRESYNC (RFC 7162) in the IMAP session.

The store keeps the mod-sequences (``IFolder.highestmodseq``,
``MessageInfo.modseq``, ``vanished_since``); this module is what the
commands do with them:

- **Enabling.**  ``ENABLE CONDSTORE`` / ``QRESYNC`` (QRESYNC implies
  CONDSTORE), ``SELECT (CONDSTORE)``, and every CONDSTORE-enabling command
  (FETCH MODSEQ or CHANGEDSINCE, STORE UNCHANGEDSINCE, SEARCH MODSEQ,
  STATUS HIGHESTMODSEQ) turn it on for the session; a mailbox selected at
  that moment gets its ``OK [HIGHESTMODSEQ]`` at once.  From then on
  untagged FETCH responses carry UID and MODSEQ, SELECT reports
  HIGHESTMODSEQ, and after QRESYNC expunges are ``VANISHED`` and EXPUNGE
  answers ``OK [HIGHESTMODSEQ]``.
- **SELECT/EXAMINE.**  ``[CLOSED]`` when a mailbox was open (3.2.11);
  ``QRESYNC (uidvalidity modseq [known-uids [seq-match]])`` answers with
  ``VANISHED (EARLIER)`` for what vanished since and a FETCH (UID FLAGS
  MODSEQ) for each message changed since (3.2.5), both limited to the
  known UIDs; when the store's expunge record no longer reaches back that
  far, the seq-match data narrows its superset.
- **FETCH** ``(CHANGEDSINCE n [VANISHED])``, the MODSEQ item; **STORE**
  ``(UNCHANGEDSINCE n)`` with ``[MODIFIED set]``; **SEARCH MODSEQ** with
  ``(MODSEQ n)`` / ESEARCH ``MODSEQ n``.

Session state is ``ctx.enabled`` ("CONDSTORE", "QRESYNC") and the selected
mailbox's ``modseqs`` / ``vanished`` switches.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Callable, Sequence

from mailsrv.imap import commands as C
from mailsrv.imap import render
from mailsrv.imap import searchkeys as K
from mailsrv.imap.context import Context
from mailsrv.imap.results import Result, bad
from mailsrv.imap.seqset import SeqSet, seq_in_range
from mailsrv.imap.seqset import render as render_set
from mailsrv.imap.session import SelectedMailbox
from mailsrv.store.interfaces import IFolder, MessageInfo

CONDSTORE = "CONDSTORE"
QRESYNC = "QRESYNC"


def on(ctx: Context) -> bool:
    """CONDSTORE is enabled for this session."""
    return CONDSTORE in ctx.enabled


def highestmodseq_line(folder: IFolder) -> bytes:
    return b"* OK [HIGHESTMODSEQ %d] Highest\r\n" % folder.highestmodseq


def _switch(ctx: Context, sel: SelectedMailbox | None) -> None:
    """Set the selected mailbox's reporting to what the session has enabled."""
    if sel is not None:
        sel.modseqs = CONDSTORE in ctx.enabled
        sel.vanished = QRESYNC in ctx.enabled


def enable_condstore(ctx: Context) -> None:
    """CONDSTORE on: by ENABLE, SELECT (CONDSTORE) or a CONDSTORE-enabling
    command (RFC 7162 3.1); a mailbox selected now hears its HIGHESTMODSEQ."""
    if CONDSTORE in ctx.enabled:
        return
    ctx.enabled.add(CONDSTORE)
    if ctx.selected is not None:
        _switch(ctx, ctx.selected)
        ctx.send(highestmodseq_line(ctx.selected.folder))


def enable(ctx: Context) -> bool:
    """ENABLE CONDSTORE (:mod:`mailsrv.imap.enable`)."""
    enable_condstore(ctx)
    return True


def enable_qresync(ctx: Context) -> bool:
    """ENABLE QRESYNC: CONDSTORE too (RFC 7162 3.2.3)."""
    enable_condstore(ctx)
    ctx.enabled.add(QRESYNC)
    _switch(ctx, ctx.selected)
    return True


# -- SELECT / EXAMINE -------------------------------------------------------------------------------


def select_begin(ctx: Context, cmd: C.MailboxCommand) -> Result | None:
    """Before SELECT opens anything (the mailbox open so far is closed,
    with ``[CLOSED]``, 3.2.11): QRESYNC wants ENABLE QRESYNC first
    (3.2.5)."""
    if isinstance(cmd, C.Select) and cmd.qresync is not None and QRESYNC not in ctx.enabled:
        return bad("QRESYNC not enabled")
    if isinstance(cmd, C.Select) and cmd.condstore:
        ctx.enabled.add(CONDSTORE)
    return None


def select_end(ctx: Context, cmd: C.MailboxCommand, sel: SelectedMailbox) -> list[bytes]:
    """The CONDSTORE/QRESYNC part of SELECT's answer, after UIDNEXT."""
    _switch(ctx, sel)
    if not sel.modseqs:
        return []
    out = [highestmodseq_line(sel.folder)]
    q = cmd.qresync if isinstance(cmd, C.Select) else None
    if q is not None and q.uidvalidity == sel.folder.uidvalidity:
        out += resync(sel, q)
    return out


def resync(sel: SelectedMailbox, q: C.Qresync) -> list[bytes]:
    """QRESYNC's answer: VANISHED (EARLIER), then the changed messages."""
    folder = sel.folder
    known = _uid_test(q.known_uids, folder.uidnext) if q.known_uids is not None else None
    gone = folder.vanished_since(q.modseq)
    if q.modseq < folder.vanished_floor and q.seq_match is not None:
        above = _matched_uid(sel, q.seq_match)
        gone = gone[bisect_right(gone, above):]
    if known is not None:
        gone = [u for u in gone if known(u)]
    out = []
    if gone:
        out.append(vanished_line(gone, earlier=True))
    get = folder.get
    for uid in folder.changed_since(q.modseq):
        seq, m = sel.seq_of(uid), get(uid)
        if seq is not None and m is not None and (known is None or known(uid)):
            out.append(b"* %d FETCH (UID %d FLAGS %s MODSEQ (%d))\r\n"
                       % (seq, uid, render.flag_list(sel.flags_of(m)), m.modseq))
    return out


def _matched_uid(sel: SelectedMailbox, seq_match: tuple[SeqSet, SeqSet]) -> int:
    """The highest UID below which nothing was expunged, by the client's
    (sequence number, UID) pairs that still hold (RFC 7162 3.2.5.2): if
    message n still has the UID it had, no message below it went."""
    seqs = _expand(seq_match[0])
    uids = _expand(seq_match[1])
    matched = 0
    for s, u in zip(seqs, uids, strict=False):  # unequal lengths: the pairs that exist
        if not (0 < s <= len(sel.uids)) or sel.uids[s - 1] != u:
            break
        matched = u
    return matched


def _expand(seqset: SeqSet, limit: int = 100_000) -> list[int]:
    out: list[int] = []
    for lo, hi in seqset:
        a, b = sorted((lo or 0, hi or 0))
        out.extend(range(a, min(b, a + limit) + 1))
        if len(out) >= limit:
            break
    return out[:limit]


def vanished_line(uids: Sequence[int], earlier: bool) -> bytes:
    return b"* VANISHED %s%s\r\n" % (b"(EARLIER) " if earlier else b"", render_set(list(uids)).encode())


def _uid_test(seqset: SeqSet, uidnext: int) -> Callable[[int], bool]:
    """Membership in a UID set ('*' is the last UID there can be)."""
    return _set_test(seqset, max(uidnext - 1, 1))


def _set_test(seqset: SeqSet, star: int) -> Callable[[int], bool]:
    """Membership in a sequence or UID set where '*' is ``star``."""
    merged: list[list[int]] = []
    for a, b in sorted(tuple(sorted((star if lo is None else lo, star if hi is None else hi)))
                       for lo, hi in seqset):
        if merged and a <= merged[-1][1] + 1:
            merged[-1][1] = max(merged[-1][1], b)
        else:
            merged.append([a, b])
    los = [a for a, _ in merged]

    def inside(uid: int) -> bool:
        i = bisect_right(los, uid) - 1
        return i >= 0 and uid <= merged[i][1]
    return inside


# -- FETCH ---------------------------------------------------------------------------------------


def changed_targets(sel: SelectedMailbox, cmd: C.Fetch, since: int) -> list[tuple[int, int]] | None:
    """(seq, uid) of the messages of a FETCH (CHANGEDSINCE) set changed
    since ``since``, from the store's change index (not the whole set);
    None when a sequence number is out of range (BAD, as without it)."""
    if not cmd.uid and not seq_in_range(cmd.seqset, len(sel)):
        return None
    inside = _set_test(cmd.seqset, max(sel.uids[-1], sel.folder.uidnext - 1) if cmd.uid and sel.uids
                       else len(sel) if not cmd.uid else 1)
    out = []
    for uid in sel.folder.changed_since(since):
        seq = sel.seq_of(uid)
        if seq is not None and inside(uid if cmd.uid else seq):
            out.append((seq, uid))
    return out



def fetch_prepare(ctx: Context, cmd: C.Fetch, pairs: list[tuple[int, int]], atts: list[C.FetchAtt]
                  ) -> Result | list[tuple[int, int]]:
    """CHANGEDSINCE / VANISHED / MODSEQ of a FETCH (``pairs``: from
    :func:`changed_targets` with CHANGEDSINCE): the messages to answer for
    (``atts`` gets MODSEQ when CHANGEDSINCE implies it); VANISHED (EARLIER)
    is sent here, before them."""
    if cmd.vanished and not (cmd.uid and QRESYNC in ctx.enabled):
        return bad("VANISHED needs UID FETCH and ENABLE QRESYNC")
    if cmd.changedsince is None:
        if any(a.name == "MODSEQ" for a in atts):
            enable_condstore(ctx)
        return pairs
    enable_condstore(ctx)
    if not any(a.name == "MODSEQ" for a in atts):
        atts.append(C.FetchAtt("MODSEQ"))
    folder, since = ctx.mailbox.folder, cmd.changedsince
    if cmd.vanished:
        inside = _uid_test(cmd.seqset, folder.uidnext)
        gone = [u for u in folder.vanished_since(since) if inside(u)]
        if gone:
            ctx.send(vanished_line(gone, earlier=True))
    return pairs


def modseq_item(info: MessageInfo) -> bytes:
    return b"MODSEQ (%d)" % info.modseq


# -- STORE ---------------------------------------------------------------------------------------


async def store_flags(ctx: Context, cmd: C.Store, live: list[int], flags: list[str]
                      ) -> tuple[list[int], list[int]]:
    """The store call of a STORE: (changed, modified) - ``modified`` the
    UIDs UNCHANGEDSINCE kept from changing."""
    folder = ctx.mailbox.folder
    if cmd.unchangedsince is None:
        changed: list[int] = await folder.store_flags(live, flags, cmd.mode) if live else []
        return changed, []
    enable_condstore(ctx)
    if not live:
        return [], []
    done: tuple[list[int], list[int]] = await folder.store_flags_unchanged_since(
        live, flags, cmd.mode, cmd.unchangedsince)
    return done


def modified_code(sel: SelectedMailbox, cmd: C.Store, modified: list[int]) -> str:
    """``MODIFIED set``: sequence numbers for STORE, UIDs for UID STORE."""
    numbers = modified if cmd.uid else [s for s in (sel.seq_of(u) for u in modified) if s is not None]
    return "MODIFIED " + render_set(sorted(numbers))


def silent_report(sel: SelectedMailbox, pairs: list[tuple[int, int]], changed: list[int]) -> list[bytes]:
    """STORE .SILENT under CONDSTORE still reports the new MODSEQ of each
    changed message (RFC 7162 3.1.3)."""
    done = set(changed)
    get = sel.folder.get
    return [b"* %d FETCH (UID %d MODSEQ (%d))\r\n" % (s, u, m.modseq)
            for s, u in pairs if u in done and s and (m := get(u)) is not None]


# -- SEARCH --------------------------------------------------------------------------------------


def has_modseq(key: K.SearchKey) -> bool:
    if isinstance(key, K.Modseq):
        return True
    if isinstance(key, K.Not):
        return has_modseq(key.key)
    if isinstance(key, K.Or):
        return has_modseq(key.a) or has_modseq(key.b)
    if isinstance(key, K.And):
        return any(has_modseq(k) for k in key.keys)
    return False


def search_modseq(folder: IFolder, uids: Sequence[int], return_opts: list[str] | None) -> int | None:
    """The MODSEQ a SEARCH with a MODSEQ key reports (RFC 7162 3.1.5,
    3.1.6): the highest of the matching messages - of just the MIN/MAX
    ones when those are all an ESEARCH returns; None when nothing matched."""
    if not uids:
        return None
    if return_opts is not None and not {"ALL", "COUNT"} & set(return_opts):
        picked = []
        if "MIN" in return_opts:
            picked.append(min(uids))
        if "MAX" in return_opts:
            picked.append(max(uids))
        uids = picked
    get = folder.get
    return max((m.modseq for u in uids if (m := get(u)) is not None), default=None)


def expunge_code(ctx: Context) -> str | None:
    """EXPUNGE / UID EXPUNGE under QRESYNC answer with the HIGHESTMODSEQ."""
    if QRESYNC in ctx.enabled and ctx.selected is not None:
        return f"HIGHESTMODSEQ {ctx.selected.folder.highestmodseq}"
    return None
