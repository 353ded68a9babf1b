"""Sort-key columns: computed once, then served from memory, from the
folder's packed column or its per-message cache, a slice at a time; the
rankings that make sorting a big folder cheap."""

from __future__ import annotations

import calendar
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.internet import defer
from twisted.internet.task import Clock

from mailsrv.imap import sortcolumns as K
from mailsrv.imap import sortdata as D
from tests.fakestore import FakeFolder


def _run(d: defer.Deferred, clock: Clock) -> object:
    results: list[object] = []
    d.addBoth(results.append)
    for _ in range(10000):
        if results:
            break
        clock.advance(0)
    assert results, "never finished"
    if isinstance(results[0], Exception):
        raise results[0]
    return results[0]


def _column(folder: FakeFolder, uids: list[int], kind: str, clock: Clock, progress=None) -> dict:
    d = defer.ensureDeferred(K.column(folder, uids, kind, clock, progress))
    out = _run(d, clock)
    assert isinstance(out, dict)
    return out


def test_column_is_computed_once_then_served_from_memory_then_from_the_cache() -> None:
    f = FakeFolder()
    for i in range(5):
        f.add(b"Subject: s%d\nDate: %d Jan 2020 10:00:00 +0000\n\nbody\n" % (i, 10 - i))
    clock = Clock()
    col = _column(f, [1, 2, 3, 4, 5], D.SUBJECT, clock)
    assert [col[u] for u in range(1, 6)] == [b"S0", b"S1", b"S2", b"S3", b"S4"]
    assert f.opens == 5
    assert f.cache[(3, D.DATE)] == D.encode_date(calendar.timegm((2020, 1, 8, 10, 0, 0)))  # every kind filled
    assert _column(f, [1, 5], D.SUBJECT, clock)[5] == b"S4" and f.opens == 5  # memory
    K.forget(f)
    dates = _column(f, [1, 2, 3, 4, 5], D.DATE, clock)  # the store's cache: no file opened
    assert dates[1] == calendar.timegm((2020, 1, 10, 10, 0, 0)) and f.opens == 5


def test_a_header_already_cached_is_not_read_again() -> None:
    f = FakeFolder()
    f.add(b"Subject: from the file\n\n")
    f.set_cached(1, D.HEADER_KIND, b"Subject: from the cache\r\n\r\n")
    assert _column(f, [1], D.SUBJECT, Clock())[1] == b"FROM THE CACHE"
    assert f.opens == 0


def test_a_message_gone_meanwhile_gets_an_empty_value_not_cached() -> None:
    f = FakeFolder()
    f.add(b"Subject: x\n\n")
    assert _column(f, [1, 7], D.SUBJECT, Clock()) == {1: b"X", 7: b""}
    assert (7, D.SUBJECT) not in f.cache
    assert _column(f, [7], D.THREAD, Clock())[7] == b"-"  # no Message-ID, no parents


def test_computing_gives_the_reactor_turns(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(K, "SLICE", 0.0)
    monkeypatch.setattr(K, "SLICE_MIN", 10)
    f = FakeFolder()
    for i in range(100):
        f.add(b"Subject: %d\n\n" % i)
    clock = Clock()
    turns: list[int] = []
    d = defer.ensureDeferred(K.column(f, list(range(1, 101)), D.SUBJECT, clock, lambda: turns.append(1)))
    assert not d.called  # waiting for its turn
    col = _run(d, clock)
    assert isinstance(col, dict) and len(col) == 100 and len(turns) == 10


def test_memory_columns_are_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(K, "MEMORY_VALUES", 6)
    folders = [FakeFolder() for _ in range(3)]
    for f in folders:
        for i in range(4):
            f.add(b"Subject: %d\n\n" % i)
    clock = Clock()
    for f in folders:
        _column(f, [1, 2, 3, 4], D.SUBJECT, clock)
    held = [len(K._columns(f).kinds.get(D.SUBJECT, {})) for f in folders]
    assert sum(held) <= 8 and held[-1] == 4  # the least recently used went
    opens = folders[0].opens
    assert len(_column(folders[0], [1, 2, 3, 4], D.SUBJECT, clock)) == 4
    assert folders[0].opens == opens  # back from the store's cache, not the files


def test_a_new_uidvalidity_drops_the_columns() -> None:
    f = FakeFolder()
    f.add(b"Subject: old\n\n")
    clock = Clock()
    assert _column(f, [1], D.SUBJECT, clock)[1] == b"OLD"
    f.uidvalidity += 1
    f.cache.clear()
    f._data[1] = b"Subject: new\n\n"
    assert _column(f, [1], D.SUBJECT, clock)[1] == b"NEW"


def _big(monkeypatch: pytest.MonkeyPatch, n: int = 12) -> FakeFolder:
    """A folder counted as big (packed columns, rankings) at a test's size."""
    monkeypatch.setattr(K, "PACK_MIN", 4)
    f = FakeFolder()
    for i in range(n):
        f.add(b"Subject: s%02d\nDate: %d Jan 2020 10:00:00 +0000\n\n" % ((7 * i) % 5, 1 + i % 3))
    return f


def test_pack_round_trip() -> None:
    col = {3: b"B", 5: b"A", 9: b""}
    values, back = K.unpack(D.SUBJECT, K.pack(D.SUBJECT, [3, 5, 9], col, K.Ranking([9, 5, 3], [0, 1, 2])))
    assert values == col and back is not None
    assert (back.order, list(back.ranks), back.rank) == ([9, 5, 3], [0, 1, 2], {9: 0, 5: 1, 3: 2})
    dates = {1: None, 2: -5, 3: 1 << 40}
    assert K.unpack(D.DATE, K.pack(D.DATE, [1, 2, 3], dates, None)) == (dates, None)
    good = K.pack(D.SUBJECT, [3, 5, 9], col, None)
    for broken in (b"", b"SK2\n\x05", b"XX" * 10, good[:-1], good + b"x"):
        assert K.unpack(D.SUBJECT, broken) == ({}, None)
        assert K.unpack_ranking(broken) is None


def test_a_restart_reads_the_packed_column_and_its_ranking(monkeypatch: pytest.MonkeyPatch) -> None:
    f = _big(monkeypatch)
    clock = Clock()
    uids = list(range(1, 13))
    col = _column(f, uids, D.SUBJECT, clock)
    ranking = K.ranking(f, D.SUBJECT, uids)
    assert ranking is not None
    assert ranking.order == sorted(uids, key=lambda u: (col[u], u))
    assert [ranking.rank[u] for u in ranking.order] == [0, 0, 0, 1, 1, 2, 2, 2, 3, 3, 4, 4]
    assert (K.PACKED + D.SUBJECT) in f.folder_cache
    K.forget(f)  # a restart: nothing in memory
    f.cache = {k: v for k, v in f.cache.items() if k[1] != D.SUBJECT}  # and no per-message values
    opens = f.opens
    assert K.whole_order(f, D.SUBJECT, uids) == ranking.order  # from the ranking alone
    assert K.whole_order(f, D.SUBJECT, uids[:-1]) is None  # not exactly these messages
    assert _column(f, uids, D.SUBJECT, clock) == col
    again = K.ranking(f, D.SUBJECT, uids)
    assert again is not None and again.order == ranking.order and f.opens == opens


def test_a_ranking_is_rebuilt_when_it_does_not_cover_the_messages(monkeypatch: pytest.MonkeyPatch) -> None:
    f = _big(monkeypatch)
    clock = Clock()
    _column(f, list(range(1, 13)), D.SUBJECT, clock)
    first = K.ranking(f, D.SUBJECT, list(range(1, 13)))
    f.add(b"Subject: aaa\n\n")
    uids = list(range(1, 14))
    assert K.whole_order(f, D.SUBJECT, uids) is None
    _column(f, uids, D.SUBJECT, clock)
    again = K.ranking(f, D.SUBJECT, uids)
    assert first is not None and again is not None and again is not first
    assert again.order[0] == 13  # AAA sorts first
    assert K.whole_order(f, D.SUBJECT, uids) == again.order


def test_a_date_ranking_uses_the_keys_given(monkeypatch: pytest.MonkeyPatch) -> None:
    f = _big(monkeypatch, 6)
    uids = list(range(1, 7))
    _column(f, uids, D.DATE, Clock())
    keys = {u: -u for u in uids}  # e.g. the internal-date fallback applied
    r = K.ranking(f, D.DATE, uids, lambda: keys)
    assert r is not None and r.order == [6, 5, 4, 3, 2, 1]


def test_small_folders_get_no_ranking() -> None:
    f = FakeFolder()
    f.add(b"Subject: x\n\n")
    _column(f, [1], D.SUBJECT, Clock())
    assert K.ranking(f, D.SUBJECT, [1]) is None and K.whole_order(f, D.SUBJECT, [1]) is None
    assert not f.folder_cache


@settings(max_examples=200, deadline=None)
@given(st.lists(st.sampled_from([b"", b"A", b"B", b"C", b"D"]), min_size=1, max_size=60), st.randoms(),
       st.lists(st.sampled_from([b"", b"A", b"AA", b"C", b"Z"]), max_size=6))
def test_reranking_equals_ranking_afresh(values: list[bytes], rnd: random.Random, new: list[bytes]) -> None:
    keys = {u: v for u, v in enumerate(values, 1)}
    held = K._rank(keys, sorted(keys))
    live = [u for u in sorted(keys) if rnd.random() > 0.2]  # some expunged
    for i, v in enumerate(new, len(values) + 1):  # some new, with larger UIDs
        keys[i] = v
        live.append(i)
    again = K._rerank(held, keys, live)
    if again is not None:
        fresh = K._rank(keys, live)
        assert (again.order, list(again.ranks)) == (fresh.order, list(fresh.ranks))


def test_a_released_column_comes_back_from_its_packed_form(monkeypatch: pytest.MonkeyPatch) -> None:
    f = _big(monkeypatch)
    uids = list(range(1, 13))
    col = dict(_column(f, uids, D.THREAD, Clock()))
    K._save(f, K._columns(f), D.THREAD, uids)
    K.release(f, D.THREAD)
    assert D.THREAD not in K._columns(f).kinds
    f.cache = {k: v for k, v in f.cache.items() if k[1] != D.THREAD}
    opens = f.opens
    assert _column(f, uids, D.THREAD, Clock()) == col and f.opens == opens
