"""The per-folder snapshot (mailsrv.store.index): used only when nothing
changed, never trusted over the uid list, crash-safe, and a folder opened
from it behaves like one opened by a scan."""

import os
import sqlite3
import time

from twisted.internet import defer

from mailsrv.store import folder as folder_mod
from mailsrv.store import index
from mailsrv.store.diskfolder import STATE_FILES, dir_stamps
from mailsrv.store.entry import Entry
from mailsrv.store.fsutil import clean_stale_temps
from mailsrv.store.uidlist import UIDLIST, UidList, read_uidlist, write_uidlist
from mailsrv.store.uidstate import uidlist_id

from .helpers import StoreCase
from .test_sync_cost import drop_external, fill

N = 300


def age_all(folder_dir: str, seconds: float = 3600) -> None:
    """new/, cur/ and the uid list untouched for a while, as in a real folder."""
    t = time.time() - seconds
    for name in ("new", "cur", UIDLIST):
        p = os.path.join(folder_dir, name)
        if os.path.exists(p):
            os.utime(p, (t, t))


def view(f) -> list:
    return [(m.uid, m.key, m.sub, m.info, m.size, sorted(m.flags), f.pop3_uidl(m.uid)) for m in f.messages()]


class IndexTests(StoreCase):
    def setUp(self) -> None:
        super().setUp()
        self.inbox = os.path.join(self.data, "u", "Maildir")
        fill(self.inbox, N)

    @defer.inlineCallbacks
    def indexed(self):
        """A folder whose UIDs are assigned and whose snapshot is on disk;
        returns the view a scan gave."""
        f = yield self.fresh_store().account("u").open_folder("INBOX")
        yield f.close()  # no write of this view may land after the next one
        age_all(self.inbox)
        f = yield self.fresh_store().account("u").open_folder("INBOX")
        self.assertEqual(f.scans, 1)
        self.assertFalse(f.opened_from_index)
        yield f.snapshot_idle()
        self.assertTrue(os.path.exists(os.path.join(self.inbox, index.INDEX_FILE)))
        return view(f)

    def reopen(self):
        return self.fresh_store().account("u").open_folder("INBOX")

    @defer.inlineCallbacks
    def test_used_when_nothing_changed(self):
        before = yield self.indexed()
        f = yield self.reopen()
        self.assertTrue(f.opened_from_index)
        self.assertEqual(f.scans, 0)
        self.assertEqual(view(f), before)
        self.assertEqual(len(before), N)
        yield f.refresh()
        self.assertEqual(f.scans, 0)

    @defer.inlineCallbacks
    def test_not_written_while_mtimes_too_recent(self):
        f = yield self.reopen()  # the folder was just filled: its mtimes are too recent
        yield f.snapshot_idle()
        self.assertFalse(os.path.exists(os.path.join(self.inbox, index.INDEX_FILE)))

    @defer.inlineCallbacks
    def test_external_delivery_into_new(self):
        yield self.indexed()
        drop_external(self.inbox, "1700000000.M1P2Q3.other")
        f = yield self.reopen()
        self.assertFalse(f.opened_from_index)
        self.assertEqual(f.scans, 1)
        self.assertEqual(len(f), N + 1)
        self.assertEqual(f.messages()[-1].key, "1700000000.M1P2Q3.other")

    @defer.inlineCallbacks
    def test_rename_in_cur_by_another_process(self):
        before = yield self.indexed()
        uid, key, sub, info = before[0][:4]
        cur = os.path.join(self.inbox, "cur")
        os.rename(os.path.join(cur, f"{key}:{info}"), os.path.join(cur, f"{key}:2,FS"))
        f = yield self.reopen()
        self.assertFalse(f.opened_from_index)
        self.assertEqual(f.get(uid).flags, frozenset({"\\Seen", "\\Flagged"}))

    @defer.inlineCallbacks
    def test_uidlist_rewritten_by_another_process(self):
        before = yield self.indexed()
        ul, _st = read_uidlist(self.inbox)
        renumbered = UidList(uidvalidity=ul.uidvalidity, uidnext=ul.uidnext + N, guid=ul.guid)
        for key, uid in ul.uids.items():
            renumbered.uids[key] = uid + N
        write_uidlist(self.inbox, renumbered)
        age_all(self.inbox)
        f = yield self.reopen()
        self.assertFalse(f.opened_from_index)
        self.assertEqual(f.uids(), [u + N for u, *_ in before])

    @defer.inlineCallbacks
    def test_other_uidvalidity_in_same_file(self):
        """Header changed in place, same inode, size and mtime: only the
        header check can tell, and it does."""
        yield self.indexed()
        p = os.path.join(self.inbox, UIDLIST)
        st = os.stat(p)
        with open(p, "r+b") as fh:
            data = fh.read()
            old_v = data.split(b" ")[1]
            new_v = b"V" + str(int(old_v[1:]) - 7).encode()
            self.assertEqual(len(new_v), len(old_v))
            fh.seek(0)
            fh.write(data.replace(old_v, new_v, 1))
        os.utime(p, ns=(st.st_atime_ns, st.st_mtime_ns))
        self.assertEqual(os.stat(p).st_ino, st.st_ino)
        f = yield self.reopen()
        self.assertFalse(f.opened_from_index)
        self.assertEqual(f.uidvalidity, int(new_v[1:]))

    @defer.inlineCallbacks
    def test_corrupt_index_file(self):
        before = yield self.indexed()
        with open(os.path.join(self.inbox, index.INDEX_FILE), "r+b") as fh:
            fh.seek(0)
            fh.write(b"this is not a database" * 50)
        f = yield self.reopen()
        self.assertFalse(f.opened_from_index)
        self.assertEqual(view(f), before)
        yield f.snapshot_idle()
        f2 = yield self.reopen()  # the scan wrote a good one again
        self.assertTrue(f2.opened_from_index)
        self.assertEqual(view(f2), before)

    @defer.inlineCallbacks
    def test_version_mismatch_and_wrong_count(self):
        yield self.indexed()
        p = os.path.join(self.inbox, index.INDEX_FILE)
        db = sqlite3.connect(p)
        db.execute("UPDATE meta SET v='0' WHERE k='version'")
        db.commit()
        db.close()
        self.assertIsNone(index.load(self.inbox))
        yield self.indexed()
        self.assertIsNotNone(index.load(self.inbox))
        db = sqlite3.connect(p)
        db.execute("UPDATE cols SET data = substr(data, 1, length(data) - 8) WHERE name = 'uid'")
        db.commit()
        db.close()
        self.assertIsNone(index.load(self.inbox))

    @defer.inlineCallbacks
    def test_crash_while_writing_keeps_the_old_snapshot(self):
        before = yield self.indexed()
        snap = index.load(self.inbox)

        def torn():
            yield snap.entries[0]
            raise OSError("disk full")

        self.assertFalse(index.save(self.inbox, snap.uidvalidity, snap.uidnext + 1, snap.ul_id, snap.stamps,
                                    torn()))
        leftovers = [n for n in os.listdir(self.inbox) if n.endswith(".tmp")]
        self.assertEqual(leftovers, [])
        f = yield self.reopen()
        self.assertTrue(f.opened_from_index)
        self.assertEqual(view(f), before)
        # a temp file left by a real crash is cleaned up like the uid list's
        stale = os.path.join(self.inbox, index.INDEX_FILE + ".123.abcd.tmp")
        open(stale, "wb").close()
        os.utime(stale, (time.time() - 7200,) * 2)
        clean_stale_temps(self.inbox, STATE_FILES)
        self.assertFalse(os.path.exists(stale))

    @defer.inlineCallbacks
    def test_changes_after_an_index_open(self):
        """The uid list is parsed lazily: mutations still agree with it."""
        before = yield self.indexed()
        f = yield self.reopen()
        self.assertTrue(f.opened_from_index)
        uid = yield f.append(b"Subject: new\r\n\r\nx\r\n", ["\\Seen"])
        self.assertEqual(uid, before[-1][0] + 1)
        yield f.store_flags([before[0][0]], ["\\Flagged"], "+")
        yield f.expunge([before[1][0]])
        self.assertEqual(f.scans, 0)
        ul, _st = read_uidlist(self.inbox)
        self.assertEqual(sorted(ul.uids.values()), f.uids())
        g = yield self.fresh_store().account("u").open_folder("INBOX")
        self.assertEqual(view(g), view(f))

    @defer.inlineCallbacks
    def test_uidlist_disagreeing_with_the_snapshot_wins(self):
        """A snapshot whose UIDs the uid list contradicts is caught at the
        lazy parse and the folder is rescanned from the uid list."""
        yield self.indexed()
        p = os.path.join(self.inbox, index.INDEX_FILE)
        db = sqlite3.connect(p)
        db.execute("UPDATE meta SET v=v+5 WHERE k='uidnext'")
        db.commit()
        db.close()
        f = yield self.reopen()
        self.assertTrue(f.opened_from_index)
        self.assertEqual(f.uidnext, N + 6)
        uid = yield f.append(b"Subject: new\r\n\r\nx\r\n")
        self.assertEqual(uid, N + 1)  # the uid list's next UID, not the snapshot's
        ul, _st = read_uidlist(self.inbox)
        self.assertEqual(sorted(ul.uids.values()), f.uids())

    @defer.inlineCallbacks
    def test_close_writes_the_changed_view(self):
        self.patch(index, "RECENT_NS", 0)
        self.patch(folder_mod, "RECENT_NS", 0)
        before = yield self.indexed()
        f = yield self.reopen()
        yield f.store_flags([before[0][0]], ["\\Answered"], "+")
        f.close()
        yield f.snapshot_idle()
        g = yield self.reopen()
        self.assertTrue(g.opened_from_index)
        self.assertIn("\\Answered", g.get(before[0][0]).flags)
        self.assertEqual(view(g), view(f))

    @defer.inlineCallbacks
    def test_open_builds_messages_in_a_worker_thread(self):
        calls = []
        real = folder_mod.threads.deferToThread

        def spy(fn, *a, **kw):
            calls.append(getattr(fn, "__name__", ""))
            return real(fn, *a, **kw)

        self.patch(folder_mod.threads, "deferToThread", spy)
        f = yield self.reopen()
        self.assertIn("_open_in_thread", calls)
        self.assertEqual(len(f), N)
        self.assertEqual(len(f.claim_recent()), 0)

    @defer.inlineCallbacks
    def test_disabled(self):
        yield self.indexed()
        from mailsrv.store import Store
        s = Store(self.data, use_index=False)
        self.addCleanup(s.close)
        f = yield s.account("u").open_folder("INBOX")
        self.assertFalse(f.opened_from_index)
        self.assertEqual(f.scans, 1)

    def test_round_trip_of_every_field(self):
        """new/ and cur/, no info, empty info, keyword letters, POP3 UIDLs."""
        for sub in ("new", "cur"):
            os.makedirs(os.path.join(self.inbox, sub), exist_ok=True)
        ul = UidList(uidvalidity=77, uidnext=10, guid="g")
        ul.uids.update({"a": 1, "b": 2, "c": 5})
        write_uidlist(self.inbox, ul)
        age_all(self.inbox)
        entries = [Entry(1, "a", "new", None, 10, None), Entry(2, "b", "cur", "", 20, "uidl-b"),
                   Entry(5, "c", "cur", "2,Sab", 30, None)]
        self.assertTrue(index.save(self.inbox, 77, 10, uidlist_id(self.inbox), dir_stamps(self.inbox),
                                   iter(entries)))
        snap = index.load(self.inbox)
        self.assertEqual((snap.uidvalidity, snap.uidnext, snap.entries), (77, 10, entries))
        self.assertFalse(index.save(self.inbox, 77, 10, uidlist_id(self.inbox), dir_stamps(self.inbox),
                                    [Entry(1, "a\nb", "cur", None, 1, None)]))

    @defer.inlineCallbacks
    def test_renamed_folder_keeps_its_snapshot_in_its_new_place(self):
        self.patch(index, "RECENT_NS", 0)
        self.patch(folder_mod, "RECENT_NS", 0)
        account = self.fresh_store().account("u")
        yield account.create_folder("Old")
        f = yield account.open_folder("Old")
        yield f.append(b"Subject: x\r\n\r\ny\r\n")
        yield account.rename_folder("Old", "New")
        yield f.close()
        self.assertTrue(os.path.exists(os.path.join(account._path("New"), index.INDEX_FILE)))
        g = yield self.fresh_store().account("u").open_folder("New")
        self.assertTrue(g.opened_from_index)
        self.assertEqual(view(g), view(f))

    @defer.inlineCallbacks
    def test_idle_waits_for_the_write_a_busy_writer_coalesced(self):
        self.patch(index, "RECENT_NS", 0)
        self.patch(folder_mod, "RECENT_NS", 0)
        before = yield self.indexed()
        f = yield self.reopen()
        yield f.store_flags([before[0][0]], ["\\Answered"], "+")
        f.close()  # a write starts
        yield f.store_flags([before[1][0]], ["\\Flagged"], "+")
        f.close()  # asked while it runs: one more write, after it
        yield f.snapshot_idle()
        g = yield self.reopen()
        self.assertTrue(g.opened_from_index)
        self.assertEqual(view(g), view(f))
