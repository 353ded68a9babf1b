"""What SEARCH and SORT answer, and the results that live on: ESEARCH
(RFC 4731), ESORT and contexts (RFC 5267: PARTIAL, UPDATE with ADDTO and
REMOVEFROM, CANCELUPDATE) and SEARCHRES (RFC 5182: SAVE and ``$``).

:func:`answer` renders a finished SEARCH or SORT (its matches in result
order) and saves or registers what its RETURN options ask for.

An UPDATE context keeps the UIDs of its result.  The session's
:class:`Contexts` listens to the folder for flag changes and wraps the
report of changes (a :data:`~mailsrv.imap.context.FlushHook`): messages
whose expunge is about to be reported leave their contexts first
(REMOVEFROM with the numbers still valid, RFC 5267 4.3.4), and after the
EXISTS/FETCH lines the changed and new messages are tested again and
ADDTO/REMOVEFROM sent (4.3.3).  Only the changed messages are tested, so
a BODY search context costs nothing while nothing changes.  A SEARCH
context uses position 0 (mailbox order), as Dovecot; a SORT context keeps
its order and says where each message goes or went.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace

from zope.interface import implementer

from mailsrv import ranges
from mailsrv.imap import commands as C
from mailsrv.imap import condstore, flagsearch
from mailsrv.imap import searchkeys as K
from mailsrv.imap.context import Context, Handlers
from mailsrv.imap.results import SELECTED_ONLY, Result, bad, no, ok
from mailsrv.imap.search import search_among
from mailsrv.imap.search import search_loaded as run_search
from mailsrv.imap.session import SelectedMailbox
from mailsrv.store.interfaces import IFolder, IFolderListener, MessageInfo

MAX_CONTEXTS = 16  # UPDATE contexts per session; more get NO [NOUPDATE]

Reorder = Callable[[list[int]], list[int]]
"""Puts UIDs in a SORT context's order (synchronously: few new messages)."""


# ---------------------------------------------------------------- $ (RFC 5182)

def bind_saved(key: K.SearchKey, saved: Sequence[int]) -> K.SearchKey:
    """The key with ``$`` replaced by the saved UIDs."""
    if isinstance(key, K.Saved):
        return K.Uid(tuple(ranges.runs(sorted(saved))))
    if isinstance(key, K.Not):
        return K.Not(bind_saved(key.key, saved))
    if isinstance(key, K.Or):
        return K.Or(bind_saved(key.a, saved), bind_saved(key.b, saved))
    if isinstance(key, K.And):
        return K.And(tuple(bind_saved(k, saved) for k in key.keys))
    return key


class Found:
    """What a search matched, in result order: UIDs, and their sequence
    numbers (worked out only when asked for: UID SORT never needs them).
    ``lost``: messages of the view were gone (expunged elsewhere) and left
    out; the command answers ``OK [EXPUNGEISSUED]``, as Dovecot's."""

    __slots__ = ("_seqs", "uids", "_seq_of", "_origin", "lost")

    def __init__(self, seqs: list[int] | None, uids: list[int], origin: Found | None = None,
                 lost: bool = False) -> None:
        self._seqs, self.uids, self._origin = seqs, uids, origin
        self._seq_of: Mapping[int, int] | None = None
        self.lost: bool = lost or (origin is not None and origin.lost)

    def result(self) -> Result:
        """The tagged OK: ``[EXPUNGEISSUED]`` when messages were left out
        because they were gone (RFC 5530; RFC 2180 4.3 lets SEARCH omit them)."""
        return ok("completed", "EXPUNGEISSUED") if self.lost else ok()

    @property
    def seqs(self) -> list[int]:
        if self._seqs is None:
            assert self._origin is not None
            self._seqs = list(map(self._origin.seq_of().__getitem__, self.uids))
        return self._seqs

    def seq_of(self) -> Mapping[int, int]:
        if self._seq_of is None:
            self._seq_of = dict(zip(self.uids, self.seqs, strict=True))
        return self._seq_of

    def reordered(self, uids: list[int]) -> Found:
        """The same matches in the order of ``uids``."""
        return Found(None, uids, self)


async def matches(sel: SelectedMailbox, cmd: C.Search | C.Thread) -> tuple[C.Search | C.Thread, Found]:
    """The command with ``$`` bound, and what its search key matches in
    mailbox order (messages expunged elsewhere but still in the view are
    left out).  ALL over a view with nothing pending is the view itself."""
    folder = sel.folder
    cmd = replace(cmd, key=bind_saved(cmd.key, sel.saved))
    view = sel.uids
    if isinstance(cmd.key, K.All) and not sel.has_pending():
        return cmd, Found(list(range(1, len(view) + 1)), list(view))
    lost = sel.expunged_in_view()  # those are left out in any case
    seqs = flagsearch.search(sel, cmd.key)  # flags only: from the store's flag sets, pending left out
    if seqs is not None:
        return cmd, Found(seqs, [view[s - 1] for s in seqs], lost=lost)
    gone: set[int] = set()
    seqs = await run_search(folder, sel.infos(), cmd.key, set(sel.recent), cmd.charset, gone)
    if sel.has_pending():
        get = folder.get
        seqs = [s for s in seqs if get(view[s - 1]) is not None]
    return cmd, Found(seqs, [view[s - 1] for s in seqs], lost=lost or bool(gone))


def _saved_part(opts: set[str], partial: tuple[int, int] | None, uids: list[int]) -> list[int]:
    """What SAVE keeps (RFC 5182 2.4, as Dovecot): everything, unless only
    MIN/MAX (those) or PARTIAL without COUNT (that window) asked for data."""
    if not uids:
        return []
    if "ALL" in opts or "COUNT" in opts:
        keep = list(uids)
    elif partial is not None:
        keep = uids[partial[0] - 1:partial[1]]
    elif opts & {"MIN", "MAX"}:
        keep = []
    else:
        keep = list(uids)
    if "MIN" in opts:
        keep.append(uids[0])
    if "MAX" in opts:
        keep.append(uids[-1])
    return sorted(set(keep))


# ---------------------------------------------------------------- answers

def spaced(numbers: list[int]) -> bytes:
    """`` 1 2 3`` (empty for none): the list's repr without its brackets
    and commas, the quickest way Python has to print 100,000 numbers."""
    if not numbers:
        return b""
    return b" " + repr(numbers)[1:-1].replace(",", "").encode("ascii")


def _set(numbers: Sequence[int], in_order: bool) -> bytes:
    """A sequence-set: sorted for SEARCH; for SORT in the given order with
    only ascending runs compressed (RFC 5267 3.2)."""
    return (ranges.render(numbers) if in_order else ranges.render_sorted(numbers)).encode("ascii")


def esearch(cmd: C.Search, numbers: Sequence[int], modseq: int | None = None) -> bytes:
    """The ESEARCH response for RETURN (MIN MAX COUNT ALL PARTIAL), with
    CONDSTORE's MODSEQ when the key asked about mod-sequences."""
    opts = cmd.return_opts or []
    in_order = isinstance(cmd, C.Sort)
    parts = [b'* ESEARCH (TAG "%s")' % cmd.tag.encode("utf-8", "replace")]
    if cmd.uid:
        parts.append(b"UID")
    if numbers and "MIN" in opts:
        parts.append(b"MIN %d" % (numbers[0] if in_order else min(numbers)))
    if numbers and "MAX" in opts:
        parts.append(b"MAX %d" % (numbers[-1] if in_order else max(numbers)))
    if cmd.partial is not None:  # before COUNT, as Dovecot (PARTIAL and ALL never meet)
        lo, hi = cmd.partial
        window = numbers[lo - 1:hi]
        parts.append(b"PARTIAL (%d:%d %s)" % (lo, hi, _set(window, in_order) if window else b"NIL"))
    if "COUNT" in opts:
        parts.append(b"COUNT %d" % len(numbers))
    if numbers and "ALL" in opts:
        parts.append(b"ALL " + _set(numbers, in_order))
    if modseq is not None:
        parts.append(b"MODSEQ %d" % modseq)
    return b" ".join(parts) + b"\r\n"


def check_update(ctx: Context, cmd: C.Search) -> Result | None:
    """Refuse UPDATE under a tag whose context is still alive (RFC 5267 4.3)."""
    if cmd.return_opts and "UPDATE" in cmd.return_opts and cmd.tag in ctx.session_data(Contexts).contexts:
        return bad("Duplicate search update tag")
    return None


def answer(ctx: Context, cmd: C.Search, found: Found, reorder: Reorder | None = None) -> None:
    """Send the result of a SEARCH or SORT (``found`` in result order)
    and do what SAVE and UPDATE ask."""
    sel = ctx.mailbox
    uids = found.uids
    numbers = uids if cmd.uid else found.seqs
    opts = set(cmd.return_opts or ())
    modseq = None
    if condstore.has_modseq(cmd.key):  # RFC 7162 3.1.5: the highest MODSEQ of what matched
        condstore.enable_condstore(ctx)
        modseq = condstore.search_modseq(sel.folder, uids, cmd.return_opts)
    if cmd.return_opts is None:
        word = b"* SORT" if isinstance(cmd, C.Sort) else b"* SEARCH"
        tail = b" (MODSEQ %d)" % modseq if modseq is not None else b""
        ctx.send(word + spaced(numbers) + tail + b"\r\n")
        return
    if "SAVE" in opts:
        sel.saved = _saved_part(opts, cmd.partial, uids)
    if opts != {"SAVE"} or cmd.partial is not None:
        ctx.send(esearch(cmd, numbers, modseq))
    if "UPDATE" in opts:
        contexts = ctx.session_data(Contexts)
        if not contexts.add(ctx, sel, UpdateContext(cmd.tag, cmd.uid, cmd.key, uids, reorder)):
            ctx.send(b'* NO [NOUPDATE "%s"] Too many update contexts\r\n' % cmd.tag.encode("utf-8", "replace"))


def search_failed(ctx: Context, cmd: C.Search) -> None:
    """A SEARCH or SORT with SAVE that fails leaves ``$`` empty (RFC 5182 2.1)."""
    if cmd.return_opts and "SAVE" in cmd.return_opts and ctx.selected is not None:
        ctx.selected.saved = []


# ---------------------------------------------------------------- update contexts

@dataclass
class UpdateContext:
    """One RETURN (UPDATE) result kept up to date."""

    tag: str
    uid: bool
    key: K.SearchKey
    result: list[int]  # UIDs in context order
    reorder: Reorder | None = None  # None: a SEARCH context (mailbox order, position 0)
    members: set[int] = field(default_factory=set)

    def __post_init__(self) -> None:
        self.members = set(self.result)


class _View(Sequence[MessageInfo]):
    """The session's view as MessageInfo without building the whole list."""

    def __init__(self, sel: SelectedMailbox) -> None:
        self.sel = sel

    def __len__(self) -> int:
        return len(self.sel.uids)

    def __getitem__(self, i: int) -> MessageInfo:  # type: ignore[override]  # ints only, never slices
        uid = self.sel.uids[i]
        info = self.sel.folder.get(uid)
        return info if info is not None else MessageInfo(uid, "", 0, 0.0, frozenset({"\\Deleted"}))


@implementer(IFolderListener)
class Contexts:
    """A session's update contexts (``ctx.session_data(Contexts)``)."""

    def __init__(self) -> None:
        self.contexts: dict[str, UpdateContext] = {}
        self.sel: SelectedMailbox | None = None
        self.changed: set[int] = set()
        self.last_uid = 0  # the highest UID of the view when contexts were last brought up to date
        self.hooked = False

    # -- lifecycle
    def add(self, ctx: Context, sel: SelectedMailbox, context: UpdateContext) -> bool:
        """Keep a context; False when there are too many."""
        if self.sel is not sel:
            self._detach()
            self.sel = sel
            sel.folder.add_listener(self)
            sel.on_close.append(self._detach)
            self.last_uid = sel.uids[-1] if sel.uids else 0
        if not self.hooked:
            ctx.flush_hooks.append(self.hook)
            self.hooked = True
        if len(self.contexts) >= MAX_CONTEXTS:
            return False
        self.contexts[context.tag] = context
        return True

    def cancel(self, tag: str) -> bool:
        if self.contexts.pop(tag, None) is None:
            return False
        if not self.contexts:
            self._detach()
        return True

    def _detach(self) -> None:
        if self.sel is not None:
            self.sel.folder.remove_listener(self)
            self.sel = None
        self.contexts.clear()
        self.changed.clear()

    # -- IFolderListener: only flag changes matter here (new messages are
    # seen in the view once reported, expunges when about to be reported)
    def messages_added(self, folder: IFolder, uids: list[int]) -> None:
        pass

    def flags_changed(self, folder: IFolder, uids: list[int]) -> None:
        self.changed.update(uids)
        if self.sel is not None and self.sel.on_change is not None:
            self.sel.on_change()  # idling: the view was told first and already flushed

    def messages_expunged(self, folder: IFolder, uids: list[int]) -> None:
        pass

    # -- the flush hook
    def hook(self, sel: SelectedMailbox, allow_expunge: bool, flush: Callable[[], list[bytes]]) -> list[bytes]:
        if not self.contexts or sel is not self.sel:
            return flush()
        before = self._expunged(sel) if allow_expunge else []
        lines = flush()
        return before + lines + self._changed(sel)

    def _expunged(self, sel: SelectedMailbox) -> list[bytes]:
        """REMOVEFROM for context members whose EXPUNGE goes out next, in
        the numbering that is still valid."""
        out = []
        for c in self.contexts.values():
            gone = [u for u in c.result if sel.is_pending_expunge(u)]
            if gone:
                out.append(_line(c, b"REMOVEFROM " + _removals(c, sel, set(gone))))
        return out

    def _changed(self, sel: SelectedMailbox) -> list[bytes]:
        """ADDTO/REMOVEFROM for messages new in the view or with new flags."""
        uids = sel.uids
        fresh = [u for u in uids[self._first_after(uids):]]
        self.last_uid = uids[-1] if uids else 0
        changed = self.changed | set(fresh)
        self.changed = set()
        if not changed:
            return []
        positions = sorted(p - 1 for u in changed
                           if (p := sel.seq_of(u)) is not None and not sel.is_pending_expunge(u))
        view = _View(sel)
        out = []
        for c in self.contexts.values():
            hits = {uids[s - 1] for s in search_among(sel.folder, view, c.key, set(sel.recent), positions)}
            tested = [uids[p] for p in positions]
            adds = [u for u in tested if u in hits and u not in c.members]
            removes = {u for u in tested if u not in hits and u in c.members}
            if adds or removes:
                out.append(_line(c, _update(c, sel, adds, removes)))
        return out

    def _first_after(self, uids: list[int]) -> int:
        from bisect import bisect_right
        return bisect_right(uids, self.last_uid)


def _number(c: UpdateContext, sel: SelectedMailbox, uid: int) -> int:
    return uid if c.uid else (sel.seq_of(uid) or 0)


def _line(c: UpdateContext, data: bytes) -> bytes:
    return b'* ESEARCH (TAG "%s")%s %s\r\n' % (c.tag.encode("utf-8", "replace"), b" UID" if c.uid else b"", data)


def _removals(c: UpdateContext, sel: SelectedMailbox, gone: set[int]) -> bytes:
    """The REMOVEFROM payload for ``gone`` (members), updating the context."""
    if c.reorder is None:
        payload = b"(0 " + _set([_number(c, sel, u) for u in c.result if u in gone], False) + b")"
    else:
        # one pair per removed member, from the end, so each position is
        # where that member is when the client removes it
        pairs = [b"%d %d" % (i + 1, _number(c, sel, u)) for i, u in reversed(list(enumerate(c.result)))
                 if u in gone]
        payload = b"(" + b" ".join(pairs) + b")"
    c.result = [u for u in c.result if u not in gone]
    c.members.difference_update(gone)
    return payload


def _update(c: UpdateContext, sel: SelectedMailbox, adds: list[int], removes: set[int]) -> bytes:
    """REMOVEFROM and/or ADDTO for one context, updating it."""
    parts = []
    if removes:
        parts.append(b"REMOVEFROM " + _removals(c, sel, removes))
    if adds:
        if c.reorder is None:
            c.result = sorted(c.members.union(adds))
            parts.append(b"ADDTO (0 " + _set([_number(c, sel, u) for u in adds], False) + b")")
        else:
            c.result = c.reorder(c.result + adds)
            added = set(adds)
            runs: list[tuple[int, list[int]]] = []
            for i, u in enumerate(c.result):
                if u not in added:
                    continue
                if runs and runs[-1][0] + len(runs[-1][1]) == i + 1:
                    runs[-1][1].append(u)
                else:
                    runs.append((i + 1, [u]))
            parts.append(b"ADDTO (" + b" ".join(b"%d %s" % (pos, _set([_number(c, sel, u) for u in us], True))
                                                for pos, us in runs) + b")")
        c.members.update(adds)
    return b" ".join(parts)


# ---------------------------------------------------------------- CANCELUPDATE

async def cancelupdate(ctx: Context, cmd: C.CancelUpdate) -> Result:
    """CANCELUPDATE (RFC 5267 4.3.5): stop the named contexts."""
    contexts = ctx.session_data(Contexts)
    for tag in cmd.tags:
        if not contexts.cancel(tag):
            return no("Unknown tag")
    return ok("completed")


HANDLERS: Handlers = {
    "CANCELUPDATE": (cancelupdate, SELECTED_ONLY),
}
