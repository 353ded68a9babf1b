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
from operator import attrgetter
from typing import Any

from twisted.internet.interfaces import IReactorTime

from mailsrv.imap import commands as C
from mailsrv.imap import sortcolumns as K
from mailsrv.imap import sortdata as D
from mailsrv.imap.context import Context, Handlers
from mailsrv.imap.contextsearch import answer, check_update, matches, search_failed
from mailsrv.imap.results import SELECTED_ONLY, Result, no
from mailsrv.imap.sortcolumns import Ranking
from mailsrv.store.interfaces import IFolder, MessageInfo

CHARSETS = ("UTF-8", "US-ASCII")
BADCHARSET = "BADCHARSET (UTF-8 US-ASCII)"
KIND = {"DATE": D.DATE, "SUBJECT": D.SUBJECT, "FROM": D.FROM, "TO": D.TO, "CC": D.CC,
        "DISPLAYFROM": D.DISPLAYFROM, "DISPLAYTO": D.DISPLAYTO}

InfoOf = Callable[[int], MessageInfo | None]


def arrival(info: MessageInfo | None) -> int:
    return int(info.internaldate) if info is not None else 0


def info_lookup(folder: IFolder, count: int) -> InfoOf:
    """``folder.get``, or for many messages one dict of all (cheaper per lookup)."""
    if count < 2000:
        return folder.get
    msgs = folder.messages()
    return dict(zip(map(attrgetter("uid"), msgs), msgs, strict=True)).get


def _numbers(uids: list[int], name: str, info_of: InfoOf, col: Mapping[int, Any] | None) -> list[int]:
    """ARRIVAL, SIZE or DATE of each message, as numbers."""
    if name == "DATE":
        assert col is not None
        dates = list(map(col.__getitem__, uids))
        if dates.count(None) == 0:
            return dates
        return [d if d is not None else arrival(info_of(u)) for u, d in zip(uids, dates, strict=True)]
    infos = list(map(info_of, uids))
    if not all(infos):  # a message gone meanwhile (truth, not ==: no dataclass __eq__ per message)
        return [0 if i is None else (i.size if name == "SIZE" else arrival(i)) for i in infos]
    if name == "SIZE":
        return list(map(attrgetter("size"), infos))
    return list(map(int, map(attrgetter("internaldate"), infos)))


def order(uids: list[int], criteria: Sequence[C.SortCriterion], info_of: InfoOf,
          cols: Mapping[str, Mapping[int, Any]], ranks: Mapping[str, Ranking] | None = None) -> list[int]:
    """``uids`` (ascending) in SORT order.  ``cols`` holds the sortdata
    column of every string/date criterion, ``ranks`` a ranking covering
    ``uids`` where one is at hand (it sorts faster, and a forward sort of
    everything it ranks is the ranking itself)."""
    ranks = ranks or {}
    if len(criteria) == 1 and criteria[0][0] in KIND:
        name, reverse = criteria[0]
        held = ranks.get(KIND[name])
        if held is not None and not reverse and len(held.order) == len(uids):
            return list(held.order)
    result = list(uids)
    for name, reverse in reversed(criteria):
        kind = KIND.get(name)
        if kind is not None and kind in ranks:
            result.sort(key=ranks[kind].rank.__getitem__, reverse=reverse)
        elif kind is not None and kind != D.DATE:
            result.sort(key=cols[kind].__getitem__, reverse=reverse)
        else:
            keys = _numbers(result, name, info_of, cols.get(kind) if kind else None)
            idx = sorted(range(len(result)), key=keys.__getitem__, reverse=reverse)
            result = list(map(result.__getitem__, idx))
    return result


def _kinds(criteria: Sequence[C.SortCriterion]) -> list[str]:
    return sorted({KIND[name] for name, _ in criteria if name in KIND})


async def sort_uids(folder: IFolder, uids: list[int], criteria: Sequence[C.SortCriterion],
                    reactor: IReactorTime, progress: Callable[[], None] | None = None,
                    whole: bool = False) -> list[int]:
    """:func:`order` with the columns read (or computed, a slice at a time)
    and rankings used where the folder is big.  ``whole``: ``uids`` are
    every message of the view, so a packed ranking of exactly them answers
    a one-key forward sort without reading any value."""
    if whole and len(criteria) == 1 and criteria[0][0] in KIND and not criteria[0][1]:
        ready = K.whole_order(folder, KIND[criteria[0][0]], uids)
        if ready is not None:
            return ready
    kinds = _kinds(criteria)
    cols = {kind: await K.column(folder, uids, kind, reactor, progress) for kind in kinds}
    needs_info = any(name in ("ARRIVAL", "SIZE", "DATE") for name, _ in criteria)
    info_of = info_lookup(folder, len(uids)) if needs_info else folder.get
    ranks: dict[str, Ranking] = {}
    def dates() -> Mapping[int, Any]:
        return dict(zip(uids, _numbers(uids, "DATE", info_of, cols[D.DATE]), strict=True))

    for kind in kinds:
        r = K.ranking(folder, kind, uids, dates if kind == D.DATE else None)
        if r is not None:
            ranks[kind] = r
    return order(uids, criteria, info_of, cols, ranks)


def sort_uids_now(folder: IFolder, uids: list[int], criteria: Sequence[C.SortCriterion]) -> list[int]:
    """:func:`sort_uids` without yielding: a SORT context placing a few new messages."""
    ordered = sorted(uids)
    cols = {kind: K.column_now(folder, ordered, kind) for kind in _kinds(criteria)}
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
    bound, found = await matches(sel, cmd)
    folder = sel.folder
    sorted_uids = await sort_uids(folder, found.uids, cmd.criteria, ctx.reactor, ctx.reset_timeout,
                                  whole=len(found.uids) == len(sel.uids))
    criteria = list(cmd.criteria)
    assert isinstance(bound, C.Sort)
    answer(ctx, bound, found.reordered(sorted_uids), lambda us: sort_uids_now(folder, us, criteria))
    return found.result()


HANDLERS: Handlers = {
    "SORT": (sort, SELECTED_ONLY),
}
