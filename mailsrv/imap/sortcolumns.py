"""Sort keys by the column: what SORT and THREAD read instead of message
files, in three tiers.

1. Memory: per live folder and kind, ``{uid: value}`` (:mod:`sortdata`
   values; dates decoded to numbers), shared by every session, the least
   recently used columns dropped beyond :data:`MEMORY_VALUES` values.
   For the string kinds also a *ranking*: the folder's UIDs in key order
   and each one's rank, so sorting compares small numbers, and sorting
   the whole folder forward is the ranking itself.
2. The folder's packed column (``IFolder.get_folder_cached``): the whole
   column and its ranking in one value, read once per process, written
   when a column that covers the folder has changed by a quarter (or its
   ranking had to be rebuilt), so a restarted server reads 100,000 keys
   in one go instead of 100,000 rows.
3. The per-message cache, in one query for what is still missing; then
   computed from the headers (:func:`sortdata.keys_of`) a slice at a
   time, giving the reactor a turn every :data:`SLICE` seconds.

Values are never stale: a message's keys never change, a new message's
are added as they are computed, and a ranking is used only for UID sets
it covers.
"""

from __future__ import annotations

import bisect
import itertools
import operator
import sys
import time
import weakref
from array import array
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from twisted.internet import task
from twisted.internet.interfaces import IReactorTime

from mailsrv.imap.sortdata import DATE, HEADER_KIND, THREAD, Value, decode, decode_date, keys_of, read_header
from mailsrv.store.interfaces import IFolder, MessageGone

SLICE = 0.02  # seconds of key computation before the reactor gets a turn...
SLICE_MIN = 32  # ...once at least this many messages were done in the slice
MEMORY_VALUES = 1_200_000  # values kept in memory columns, all folders together
PACK_MIN = 4096  # smaller columns are not packed (the per-message cache is quick enough)
PACKED = "col:"  # folder-wide cache kind prefix: a whole column in one value
_MAGIC = b"SK2\n"
_NO_DATE = -(1 << 63)



class Ranking:
    """A folder's UIDs in key order (then UID) with dense ranks: a sort by
    this key compares small numbers, and a forward sort of exactly these
    UIDs is ``order`` itself."""

    __slots__ = ("order", "ranks", "sig", "_rank")

    def __init__(self, order: list[int], ranks: Sequence[int]) -> None:
        """``ranks[i]`` is the rank of ``order[i]``."""
        self.order, self.ranks = order, ranks
        self.sig = _signature(order)
        self._rank: dict[int, int] | None = None

    @property
    def rank(self) -> dict[int, int]:
        """uid -> rank (built on first use)."""
        if self._rank is None:
            self._rank = dict(zip(self.order, self.ranks, strict=True))
        return self._rank

    def covers(self, uids: Sequence[int]) -> bool:
        rank = self.rank
        return all(map(rank.__contains__, uids))


class _Columns:
    """The columns of one live folder."""

    __slots__ = ("uidvalidity", "kinds", "ranked", "tidied_at", "unpacked", "packed_sig", "blobs", "__weakref__")

    def __init__(self, uidvalidity: int) -> None:
        self.uidvalidity = uidvalidity
        self.kinds: dict[str, dict[int, Value]] = {}
        self.ranked: dict[str, Ranking] = {}
        self.tidied_at: dict[str, int] = {}  # kind -> column size when it was last tidied
        self.unpacked: set[str] = set()  # kinds whose packed column was read
        self.packed_sig: dict[str, tuple[int, int, bool]] = {}  # kind -> UIDs its packed column covers, ranked?
        self.blobs: dict[str, bytes | None] = {}  # packed columns read but whose values are not unpacked yet

    def drop(self, kind: str) -> None:
        self.kinds.pop(kind, None)
        self.ranked.pop(kind, None)
        self.tidied_at.pop(kind, None)
        self.unpacked.discard(kind)
        self.blobs.pop(kind, None)


_FOLDERS: weakref.WeakKeyDictionary[Any, _Columns] = weakref.WeakKeyDictionary()
_LRU: OrderedDict[tuple[int, str], weakref.ref[_Columns]] = OrderedDict()


def _columns(folder: IFolder) -> _Columns:
    cols = _FOLDERS.get(folder)
    if cols is None or cols.uidvalidity != folder.uidvalidity:
        cols = _FOLDERS[folder] = _Columns(folder.uidvalidity)
    return cols


def _touch(cols: _Columns, kind: str) -> None:
    """Mark a column used; drop the least recently used ones beyond the bound."""
    key = (id(cols), kind)
    _LRU.pop(key, None)
    _LRU[key] = weakref.ref(cols)
    sizes: dict[tuple[int, str], int] = {}
    for k, ref in list(_LRU.items()):
        owner = ref()
        if owner is None or k[1] not in owner.kinds:
            del _LRU[k]
        else:
            sizes[k] = len(owner.kinds[k[1]])
    total = sum(sizes.values())
    while total > MEMORY_VALUES and len(_LRU) > 1:
        k, ref = _LRU.popitem(last=False)
        owner = ref()
        if owner is not None:
            owner.drop(k[1])
        total -= sizes.get(k, 0)


def release(folder: IFolder, kind: str) -> None:
    """Let a column go from memory (its packed form and the per-message
    cache stay): for data needed only to rebuild something kept elsewhere,
    like THREAD's parent chains once the answer is kept."""
    cols = _FOLDERS.get(folder)
    if cols is not None:
        cols.drop(kind)


def forget(folder: IFolder) -> None:
    """Drop a folder's memory columns (a test's restart)."""
    _FOLDERS.pop(folder, None)


def _live(folder: IFolder) -> list[int]:
    uids = getattr(folder, "uids", None)  # the Maildir store's cheap form
    return list(uids()) if uids is not None else [m.uid for m in folder.messages()]


def _signature(uids: Sequence[int]) -> tuple[int, int]:
    """Count and sum of a UID set: new UIDs are always larger than any
    before, so any change of the set (expunges, appends or both) changes
    one of the two."""
    return len(uids), sum(uids)


# ---------------------------------------------------------------- packing

def _ints(kind: str, values: Sequence[int]) -> bytes:
    a = array(kind, values)
    if sys.byteorder != "little":
        a.byteswap()
    return a.tobytes()


def _from_ints(kind: str, data: bytes) -> array[int]:
    a = array(kind)
    a.frombytes(data)
    if sys.byteorder != "little":
        a.byteswap()
    return a


def pack(kind: str, uids: Sequence[int], col: Mapping[int, Value], ranking: Ranking | None) -> bytes:
    """A column as one value: count and UIDs, the ranking (UIDs in key
    order and their ranks, if any), then the values (dates as 8-byte
    numbers, the rest LF-separated: keys_of keeps LFs out)."""
    if kind == DATE:
        body = _ints("q", [_NO_DATE if (d := col[u]) is None else d for u in uids])
    else:
        body = b"\n".join(map(col.__getitem__, uids))
    order, ranks = (ranking.order, ranking.ranks) if ranking is not None else ([], [])
    return (_MAGIC + len(uids).to_bytes(4, "little") + _ints("I", uids) + len(order).to_bytes(4, "little")
            + _ints("I", order) + _ints("I", ranks) + len(body).to_bytes(4, "little") + body)


def _layout(blob: bytes) -> tuple[int, int, int, int]:
    """(count, start of the ranking, its length, start of the values) of a
    packed column; ValueError when it does not add up."""
    if not blob.startswith(_MAGIC) or len(blob) < 12:
        raise ValueError("not a packed column")
    n = int.from_bytes(blob[4:8], "little")
    pos = 8 + 4 * n
    m = int.from_bytes(blob[pos:pos + 4], "little")
    vpos = pos + 4 + 8 * m
    if len(blob) < vpos + 4 or len(blob) - vpos - 4 != int.from_bytes(blob[vpos:vpos + 4], "little"):
        raise ValueError("packed column cut short")
    return n, pos + 4, m, vpos + 4


def unpack_ranking(blob: bytes) -> Ranking | None:
    """Only the ranking of a packed column (None: none, or damaged)."""
    try:
        _, pos, m, _ = _layout(blob)
    except ValueError:
        return None
    if not m:
        return None
    return Ranking(_from_ints("I", blob[pos:pos + 4 * m]).tolist(), _from_ints("I", blob[pos + 4 * m:pos + 8 * m]))


def unpack(kind: str, blob: bytes) -> tuple[dict[int, Value], Ranking | None]:
    """:func:`pack` undone; nothing for anything that does not add up."""
    try:
        n, _, _, vpos = _layout(blob)
        uids = _from_ints("I", blob[8:8 + 4 * n])
        body = blob[vpos:]
        if kind == DATE:
            dates = _from_ints("q", body)
            values: dict[int, Value] = dict(zip(uids, dates, strict=True))
            if _NO_DATE in dates:
                for u, d in values.items():
                    if d == _NO_DATE:
                        values[u] = None
        else:
            values = dict(zip(uids, body.split(b"\n") if n else [], strict=True))
    except ValueError:
        return {}, None
    return values, unpack_ranking(blob)


def _dense(order: list[int], keys: Mapping[int, Any]) -> list[int]:
    """Dense ranks of UIDs in key order: +1 wherever the key changes (C-level
    maps, no Python loop over 100,000 messages)."""
    vals = list(map(keys.__getitem__, order))
    return list(itertools.accumulate(map(operator.ne, vals, vals[1:]), initial=0)) if vals else []


def _rank(keys: Mapping[int, Any], uids: Sequence[int]) -> Ranking:
    """UIDs (ascending) in key order, then UID, with dense ranks."""
    order = sorted(uids, key=keys.__getitem__)
    return Ranking(order, _dense(order, keys))


def _rerank(held: Ranking, keys: Mapping[int, Any], live: Sequence[int]) -> Ranking | None:
    """``held`` brought up to date for the folder's messages ``live``
    (expunged ones dropped, new ones placed by binary search: a new UID is
    larger than any before, so it goes after its equals); None when too
    much changed to be worth it."""
    rank = held.rank
    fresh = [u for u in live if u not in rank]
    if len(fresh) * 8 > len(live):
        return None
    alive = set(live)
    order = list(filter(alive.__contains__, held.order)) if len(held.order) + len(fresh) != len(live) else \
        list(held.order)
    vals = list(map(keys.__getitem__, order))
    for u in sorted(fresh):
        v = keys[u]
        i = bisect.bisect_right(vals, v)
        vals.insert(i, v)
        order.insert(i, u)
    return Ranking(order, list(itertools.accumulate(map(operator.ne, vals, vals[1:]), initial=0)) if vals else [])


def _save(folder: IFolder, cols: _Columns, kind: str, live: Sequence[int]) -> None:
    """Pack the column when it covers every message and the folder changed
    since it was last packed."""
    col = cols.kinds[kind]
    sig = _signature(live)
    ranking = cols.ranked.get(kind)
    if ranking is not None and ranking.sig != sig:
        ranking = None
    held = cols.packed_sig.get(kind)
    if len(live) < PACK_MIN or (held is not None and held[:2] == sig and (held[2] or ranking is None)):
        return
    if not col.keys() >= set(live):
        return
    folder.set_folder_cached(PACKED + kind, pack(kind, live, col, ranking))
    cols.packed_sig[kind] = (*sig, ranking is not None)


def _tidy(folder: IFolder, cols: _Columns, kind: str) -> None:
    """Each time a big column has grown by a quarter since last looked at
    (so the cost is spread thin): drop expunged messages' values, pack it."""
    col = cols.kinds[kind]
    if len(col) < PACK_MIN or len(col) * 4 < cols.tidied_at.get(kind, 0) * 5:
        return
    live = _live(folder)
    alive = set(live)
    for u in [u for u in col if u not in alive]:
        del col[u]
    cols.tidied_at[kind] = len(col)
    _save(folder, cols, kind, live)


# ---------------------------------------------------------------- reading

def _lookup(folder: IFolder, uids: Sequence[int], kind: str) -> tuple[_Columns, dict[int, Value], list[int]]:
    """The memory column, topped up from the packed column (once per
    process) and the per-message cache; the UIDs still without a value."""
    cols = _columns(folder)
    col = cols.kinds.get(kind)
    if col is None:
        col = cols.kinds[kind] = {}
    if kind not in cols.unpacked:
        cols.unpacked.add(kind)
        blob = _blob(folder, cols, kind)
        cols.blobs.pop(kind, None)
        if blob:
            values, ranking = unpack(kind, blob)
            col.update(values)
            cols.packed_sig[kind] = (*_signature(list(values)), ranking is not None)
            cols.tidied_at[kind] = len(col)
            if ranking is not None and kind not in cols.ranked:
                cols.ranked[kind] = ranking
    missing = [u for u in uids if u not in col] if col else list(uids)
    if missing:
        got = folder.get_cached_many(missing, kind)
        if kind == DATE:
            col.update({u: decode_date(v) for u, v in got.items()})
        else:
            col.update(got)
        missing = [u for u in missing if u not in col] if len(got) < len(missing) else []
    return cols, col, missing


async def column(folder: IFolder, uids: Sequence[int], kind: str, reactor: IReactorTime,
                 progress: Callable[[], None] | None = None) -> dict[int, Value]:
    """``{uid: value}`` of one kind for every UID asked (a message gone in
    the meantime gets an empty value); ``progress`` is called between
    slices of computing."""
    cols = _columns(folder)
    if kind not in cols.kinds or len(cols.kinds[kind]) < len(uids):
        await folder.prefetch(uids, [kind])  # a remote store's values come local first (Maildir: at once)
    cols, col, missing = _lookup(folder, uids, kind)
    step = 200
    for start in range(0, len(missing), step):
        batch = missing[start:start + step]
        await folder.prefetch(batch, [HEADER_KIND], "header")
        cached_headers = folder.get_cached_many(batch, HEADER_KIND)
        t0 = time.monotonic()
        done = 0
        for uid in batch:
            _fill_one(folder, uid, cached_headers.get(uid), cols)
            done += 1
            if done >= SLICE_MIN and time.monotonic() - t0 > SLICE:
                await task.deferLater(reactor, 0, lambda: None)
                if progress is not None:
                    progress()
                t0, done = time.monotonic(), 0
    _tidy(folder, cols, kind)
    _touch(cols, kind)
    return col


def column_now(folder: IFolder, uids: Sequence[int], kind: str) -> dict[int, Value]:
    """:func:`column` without giving the reactor a turn, for a handful of
    messages (the new ones a SORT context must place)."""
    cols, col, missing = _lookup(folder, uids, kind)
    if missing:
        cached_headers = folder.get_cached_many(missing, HEADER_KIND)
        for uid in missing:
            _fill_one(folder, uid, cached_headers.get(uid), cols)
    _touch(cols, kind)
    return col


def _blob(folder: IFolder, cols: _Columns, kind: str) -> bytes | None:
    """The packed column, read from the store once."""
    if kind not in cols.blobs:
        cols.blobs[kind] = folder.get_folder_cached(PACKED + kind)
    return cols.blobs[kind]


def _held_ranking(folder: IFolder, cols: _Columns, kind: str) -> Ranking | None:
    held = cols.ranked.get(kind)
    if held is None and kind not in cols.unpacked:
        blob = _blob(folder, cols, kind)
        if blob:
            held = unpack_ranking(blob)
            if held is not None:
                cols.ranked[kind] = held
    return held


def whole_order(folder: IFolder, kind: str, live: Sequence[int]) -> list[int] | None:
    """The forward order of every message of the folder by this key, when
    a ranking of exactly these UIDs is at hand (in memory or packed): no
    value needs to be read at all."""
    if len(live) < PACK_MIN:
        return None
    cols = _columns(folder)
    held = _held_ranking(folder, cols, kind)
    if held is None or held.sig != _signature(live):
        return None
    _touch(cols, kind)
    return list(held.order)


def ranking(folder: IFolder, kind: str, uids: Sequence[int], keys_of: Callable[[], Mapping[int, Any]] | None = None,
            live: Sequence[int] | None = None) -> Ranking | None:
    """A ranking covering every UID asked, or None for a small folder
    (its values sort fast enough).  When the one held does not cover them
    it is rebuilt for the whole folder from the keys ``keys_of`` gives
    (the column itself by default; SORT gives DATE with the internal-date
    fallback applied) and packed with the column."""
    if len(uids) < PACK_MIN:
        return None
    cols = _columns(folder)
    held = _held_ranking(folder, cols, kind)
    if held is not None and held.covers(uids):
        return held
    col = cols.kinds.get(kind)
    keys = col if keys_of is None else keys_of()
    live = _live(folder) if live is None else live
    if col is None or keys is None or not keys.keys() >= set(live) or not set(uids) <= set(live):
        return None
    fresh = _rerank(held, keys, live) if held is not None else None
    held = cols.ranked[kind] = fresh if fresh is not None else _rank(keys, live)
    packed = cols.packed_sig.get(kind)
    if packed is None or not packed[2] or abs(packed[0] - len(live)) * 8 > len(live):
        _save(folder, cols, kind, live)  # else the packed one is near enough: a restart re-ranks the few new
    return held


def _fill_one(folder: IFolder, uid: int, header: bytes | None, cols: _Columns) -> None:
    try:
        if header is None:
            header = read_header(folder, uid)
    except MessageGone:  # expunged meanwhile: an empty value, not cached
        for kind, col in cols.kinds.items():
            col[uid] = decode(kind, b"-" if kind == THREAD else b"")
        return
    for kind, v in keys_of(header).items():
        folder.set_cached(uid, kind, v)
        target = cols.kinds.get(kind)
        if target is not None:
            target[uid] = decode(kind, v)
