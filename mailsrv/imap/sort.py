"""SORT and UID SORT (RFC 5256, with RFC 5957's DISPLAYFROM/DISPLAYTO and
RFC 5267's ESORT/CONTEXT=SORT return options).

The keys come from :mod:`sortdata` (the folder's cache, not the message
files); ARRIVAL and SIZE from the message list itself.  Each criterion is
one stable sort, last criterion first, over the matches in mailbox order,
so ties fall to the next criterion and finally to the sequence number
(never reversed), as RFC 5256 and Dovecot have it.  DATE is the Date:
header in UTC, or the internal date when there is none.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from twisted.internet.interfaces import IReactorTime

from mailsrv.imap import commands as C
from mailsrv.imap import sortdata as D
from mailsrv.imap.context import Context, Handlers
from mailsrv.imap.contextsearch import answer, check_update, matches, search_failed
from mailsrv.imap.results import SELECTED_ONLY, Result, no, ok
from mailsrv.store.interfaces import IFolder, MessageInfo

CHARSETS = ("UTF-8", "US-ASCII")
BADCHARSET = "BADCHARSET (UTF-8 US-ASCII)"
KIND = {"DATE": D.DATE, "SUBJECT": D.SUBJECT, "FROM": D.FROM, "TO": D.TO, "CC": D.CC,
        "DISPLAYFROM": D.DISPLAYFROM, "DISPLAYTO": D.DISPLAYTO}

InfoOf = Callable[[int], MessageInfo | None]


def _arrival(info: MessageInfo | None) -> int:
    return int(info.internaldate) if info is not None else 0


def order(uids: list[int], criteria: Sequence[C.SortCriterion], info_of: InfoOf,
          cols: Mapping[str, Mapping[int, Any]]) -> list[int]:
    """``uids`` (ascending) in SORT order; ``cols`` holds the sortdata
    column of every string/date criterion."""
    result = list(uids)
    for name, reverse in reversed(criteria):
        keys: Mapping[int, Any]
        if name == "ARRIVAL":
            keys = {u: _arrival(info_of(u)) for u in result}
        elif name == "SIZE":
            keys = {u: (i.size if (i := info_of(u)) is not None else 0) for u in result}
        elif name == "DATE":
            col = cols[D.DATE]
            keys = {u: (d if (d := col[u]) is not None else _arrival(info_of(u))) for u in result}
        else:
            keys = cols[KIND[name]]
        result.sort(key=keys.__getitem__, reverse=reverse)
    return result


def _kinds(criteria: Sequence[C.SortCriterion]) -> list[str]:
    return sorted({KIND[name] for name, _ in criteria if name in KIND})


async def sort_uids(folder: IFolder, uids: list[int], criteria: Sequence[C.SortCriterion],
                    reactor: IReactorTime, progress: Callable[[], None] | None = None) -> list[int]:
    """:func:`order` with the columns read (or computed, a slice at a time)."""
    cols = {kind: await D.column(folder, uids, kind, reactor, progress) for kind in _kinds(criteria)}
    return order(uids, criteria, folder.get, cols)


def sort_uids_now(folder: IFolder, uids: list[int], criteria: Sequence[C.SortCriterion]) -> list[int]:
    """:func:`sort_uids` without yielding: a SORT context placing a few new messages."""
    ordered = sorted(uids)
    cols = {kind: D.column_now(folder, ordered, kind) for kind in _kinds(criteria)}
    return order(ordered, criteria, folder.get, cols)


async def sort(ctx: Context, cmd: C.Sort) -> Result:
    """SORT / UID SORT: ``* SORT`` numbers, or with RETURN an ESEARCH in sort order."""
    sel = ctx.mailbox
    if cmd.charset not in CHARSETS:
        search_failed(ctx, cmd)
        return no("Unsupported charset", BADCHARSET)
    refused = check_update(ctx, cmd)
    if refused is not None:
        search_failed(ctx, cmd)
        return refused
    bound, found = matches(sel, cmd)
    folder = sel.folder
    seq_of = {u: s for s, u in found}
    sorted_uids = await sort_uids(folder, [u for _, u in found], cmd.criteria, ctx.reactor, ctx.reset_timeout)
    found = [(seq_of[u], u) for u in sorted_uids]
    criteria = list(cmd.criteria)
    assert isinstance(bound, C.Sort)
    answer(ctx, bound, found, lambda us: sort_uids_now(folder, us, criteria))
    return ok()


HANDLERS: Handlers = {
    "SORT": (sort, SELECTED_ONLY),
}
