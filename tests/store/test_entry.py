"""EntryTable: a folder's entries column by column, read back as Entry."""

import gc

from mailsrv.store.entry import Entry, EntryTable

ROWS = [Entry(1, "a", "new", None, 10, None), Entry(2, "b", "cur", "2,S", 20, "uidl-b"),
        Entry(5, "c", "cur", "", 30, None)]


def test_reads_back_as_entries():
    t = EntryTable.of(ROWS)
    assert len(t) == 3 and t
    assert list(t) == ROWS and all(type(e) is Entry for e in t)
    assert t[1] == ROWS[1] and t[1].pop3 == "uidl-b" and t[-1].uid == 5
    assert list(t[1:]) == ROWS[1:] and isinstance(t[1:], EntryTable)
    assert list(t.rows()) == [tuple(e) for e in ROWS]
    assert t == ROWS and t != ROWS[:2] and not EntryTable()


def test_holds_no_object_per_entry():
    t = EntryTable.of(Entry(i, f"k{i}", "cur", "2,S", i, None) for i in range(1000))
    assert not any(type(o) is Entry for o in gc.get_referents(*gc.get_referents(t)))
    assert sum(1 for _ in t) == 1000
