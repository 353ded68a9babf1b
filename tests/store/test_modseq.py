"""Persistent mod-sequences of the Maildir store (issue 9): never going
backwards across restarts, crashes, reindexing, other programs' changes
and a lost record; reset with UIDVALIDITY; the expunge record and its
trimming."""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from typing import Any

from twisted.internet import defer

from mailsrv.admin.check import check_folder
from mailsrv.store import modseq
from mailsrv.store.diskfolder import OpResult
from mailsrv.store.folder import Folder
from mailsrv.store.modseq import MODSEQ_FILE
from mailsrv.store.uidlist import UIDLIST

from .helpers import Recorder, StoreCase, files_in

MSG = b"From: a@example.com\nSubject: hi\n\nhello\n"


def rename_flags(folder_dir: str, uid_key: str, letters: str) -> None:
    """Another program (mutt, Dovecot) sets flags by renaming in cur/."""
    for sub in ("cur", "new"):
        for n in os.listdir(os.path.join(folder_dir, sub)):
            if n.startswith(uid_key):
                os.rename(os.path.join(folder_dir, sub, n), os.path.join(folder_dir, "cur", uid_key + ":2," + letters))
                return
    raise AssertionError(f"no file for {uid_key}")


def deliver_external(folder_dir: str, name: str) -> None:
    with open(os.path.join(folder_dir, "tmp", name), "wb") as f:
        f.write(MSG)
    os.rename(os.path.join(folder_dir, "tmp", name), os.path.join(folder_dir, "new", name))


def touch_dirs(folder_dir: str) -> None:
    """Move new/ and cur/ mtimes back, so the next look trusts nothing it saw."""
    t = time.time() - 7200
    for sub in ("new", "cur"):
        os.utime(os.path.join(folder_dir, sub), (t, t))


class ModseqPersistence(StoreCase):
    @defer.inlineCallbacks
    def populated(self, store: Any = None, n: int = 4) -> Any:
        account = (store or self.store).account("eve")
        f = yield account.open_folder("INBOX")
        uids = []
        for _ in range(n):
            uids.append((yield f.append(MSG)))
        return f, uids

    def path(self) -> str:
        return os.path.join(self.data, "eve", "Maildir")

    @defer.inlineCallbacks
    def reopen(self) -> Any:
        """The folder as a restarted server (a new process) sees it."""
        f = yield self.fresh_store().account("eve").open_folder("INBOX")
        return f

    @defer.inlineCallbacks
    def test_a_new_folder_starts_at_one_like_dovecot(self) -> Any:
        f = yield self.store.account("eve").open_folder("INBOX")
        self.assertEqual(f.highestmodseq, 1)
        uid = yield f.append(MSG)
        self.assertEqual((f.highestmodseq, f.get(uid).modseq), (2, 2))

    @defer.inlineCallbacks
    def test_clean_restart_keeps_every_value(self) -> Any:
        f, uids = yield self.populated()
        yield f.store_flags(uids[:2], ["\\Seen"], "+")
        yield f.expunge([uids[3]])
        before = {u: f.get(u).modseq for u in f.uids()}
        highest = f.highestmodseq
        yield self.store.close()
        g = yield self.reopen()
        self.assertEqual(g.highestmodseq, highest)
        self.assertEqual({u: g.get(u).modseq for u in g.uids()}, before)
        self.assertEqual(g.vanished_since(highest - 1), [uids[3]])
        self.assertEqual(g.vanished_since(before[uids[0]]), [uids[3]])

    @defer.inlineCallbacks
    def test_touch_modseq_is_a_change_that_persists_and_keeps_flags(self) -> Any:
        f, uids = yield self.populated()
        yield f.store_flags([uids[1]], ["\\Flagged"], "+")
        highest = f.highestmodseq
        touched = yield f.touch_modseq([uids[1], 999])
        self.assertEqual(touched, [uids[1]])
        self.assertGreater(f.highestmodseq, highest)
        self.assertEqual(f.get(uids[1]).modseq, f.highestmodseq)
        self.assertEqual(f.get(uids[1]).flags, frozenset({"\\Flagged"}))
        self.assertEqual(f.changed_since(highest), [uids[1]])
        after = f.highestmodseq
        yield self.store.close()
        g = yield self.reopen()
        self.assertEqual(g.highestmodseq, after)
        self.assertEqual(g.get(uids[1]).modseq, after)
        self.assertEqual(g.get(uids[1]).flags, frozenset({"\\Flagged"}))

    @defer.inlineCallbacks
    def test_crash_continues_above_the_ceiling(self) -> Any:
        f, uids = yield self.populated()
        yield f.store_flags([uids[0]], ["\\Flagged"], "+")
        highest = f.highestmodseq
        before = {u: f.get(u).modseq for u in f.uids()}
        g = yield self.reopen()  # the first store never closed: as after kill -9
        self.assertGreater(g.highestmodseq, highest)
        self.assertEqual({u: g.get(u).modseq for u in g.uids()}, before)
        uid = yield g.append(MSG)
        self.assertGreater(g.get(uid).modseq, highest)

    @defer.inlineCallbacks
    def test_changes_lost_in_a_crash_or_made_while_down_get_new_modseqs(self) -> Any:
        f, uids = yield self.populated()
        highest = f.highestmodseq
        keys = {u: f.get(u).key for u in uids}
        yield self.store.close()
        rename_flags(self.path(), keys[uids[1]], "FS")  # flags changed by another program
        os.unlink(os.path.join(self.path(), "cur", files_in(self.path())[0]))  # uids[0] removed
        deliver_external(self.path(), "1700000000.X1.host")  # a delivery into new/
        touch_dirs(self.path())
        g = yield self.reopen()
        changed = [u for u in g.uids() if g.get(u).modseq > highest]
        self.assertEqual(len(changed), 2)  # uids[1] and the delivery
        self.assertIn(uids[1], changed)
        self.assertEqual(g.get(uids[1]).flags, {"\\Flagged", "\\Seen"})
        self.assertEqual(g.get(uids[2]).modseq, f.get(uids[2]).modseq)
        self.assertEqual(g.vanished_since(highest), [uids[0]])
        self.assertGreater(g.highestmodseq, highest)

    @defer.inlineCallbacks
    def test_other_programs_changes_while_open(self) -> Any:
        f, uids = yield self.populated()
        rec = Recorder()
        f.add_listener(rec)
        m0 = f.highestmodseq
        rename_flags(self.path(), f.get(uids[2]).key, "S")
        touch_dirs(self.path())
        yield f.refresh()
        self.assertEqual(rec.take(), [("flags", [uids[2]])])
        self.assertGreater(f.get(uids[2]).modseq, m0)
        m1 = f.highestmodseq
        deliver_external(self.path(), "1700000001.X2.host")
        yield f.refresh()
        new = f.uids()[-1]
        self.assertEqual(f.get(new).modseq, f.highestmodseq)
        self.assertGreater(f.highestmodseq, m1)
        os.unlink(os.path.join(self.path(), "cur", [n for n in files_in(self.path()) if n.startswith(
            f.get(uids[0]).key)][0]))
        touch_dirs(self.path())
        m2 = f.highestmodseq
        yield f.refresh()
        self.assertEqual(f.vanished_since(m2), [uids[0]])
        f.remove_listener(rec)

    @defer.inlineCallbacks
    def test_reindex_leaves_modseqs_alone(self) -> Any:
        f, uids = yield self.populated()
        yield f.store_flags([uids[0]], ["\\Seen"], "+")
        highest = f.highestmodseq
        yield self.store.close()
        fc = check_folder("eve", "INBOX", self.path(), repair=True, reindex=True)
        self.assertTrue(any("rescanned" in a for a in fc.actions), fc.actions)
        self.assertTrue(os.path.exists(os.path.join(self.path(), MODSEQ_FILE)))
        g = yield self.reopen()
        self.assertEqual(g.highestmodseq, highest)
        self.assertEqual(g.get(uids[0]).modseq, highest)

    @defer.inlineCallbacks
    def test_a_lost_or_damaged_record_restarts_above_everything(self) -> Any:
        f, uids = yield self.populated()
        yield self.store.close()
        for damage in ("delete", "garbage"):
            p = os.path.join(self.path(), MODSEQ_FILE)
            if damage == "delete":
                modseq.remove(self.path())
            else:
                for suffix in ("-wal", "-shm"):
                    if os.path.exists(p + suffix):
                        os.unlink(p + suffix)
                with open(p, "wb") as fh:
                    fh.write(b"not a database" * 100)
            before = time.time() * 1_000_000
            g = yield self.reopen()
            self.assertGreaterEqual(g.highestmodseq, before)
            self.assertEqual({g.get(u).modseq for u in g.uids()}, {g.highestmodseq})
            self.assertEqual(g.vanished_floor, g.highestmodseq)
            self.assertEqual(set(g.vanished_since(1)), set())  # nothing missing below uidnext
            uid = yield g.append(MSG)
            self.assertGreater(g.get(uid).modseq, before)
            yield g.quiesce()

    @defer.inlineCallbacks
    def test_new_uidvalidity_resets(self) -> Any:
        f, uids = yield self.populated()
        yield f.expunge([uids[0]])
        yield self.store.close()
        os.unlink(os.path.join(self.path(), UIDLIST))  # lost: rebuilt under a new UIDVALIDITY
        g = yield self.reopen()
        self.assertNotEqual(g.uidvalidity, f.uidvalidity)
        self.assertEqual(g.highestmodseq, 1)
        self.assertEqual(g.vanished_since(0), [])
        self.assertEqual({g.get(u).modseq for u in g.uids()}, {1})

    @defer.inlineCallbacks
    def test_expunge_record_trimmed_gives_a_superset(self) -> Any:
        self.patch(modseq, "EXPUNGE_KEEP", 10)
        f, uids = yield self.populated(n=30)
        first = f.highestmodseq
        for u in uids[:25]:
            yield f.expunge([u])
        self.assertGreater(f.vanished_floor, first)
        self.assertEqual(f.vanished_since(first), uids[:25])  # superset: everything missing
        recent = f.highestmodseq - 3
        self.assertEqual(f.vanished_since(recent), uids[22:25])
        yield self.store.close()
        g = yield self.reopen()
        self.assertEqual(g.vanished_floor, f.vanished_floor)
        self.assertEqual(g.vanished_since(recent), uids[22:25])
        self.assertEqual(g.vanished_since(first), uids[:25])
        db = sqlite3.connect(os.path.join(self.path(), MODSEQ_FILE))
        try:
            kept = db.execute("SELECT count(*) FROM gone").fetchone()[0]
        finally:
            db.close()
        self.assertLessEqual(kept, 11)

    @defer.inlineCallbacks
    def test_long_log_is_compacted_and_loads_the_same(self) -> Any:
        f, uids = yield self.populated(n=20)
        self.patch(modseq.ModseqFile, "compact_due", lambda self, count: True)
        for u in uids:
            yield f.store_flags([u], ["$K%d" % (u % 3)], "+")
        state = {u: (f.get(u).modseq, f.get(u).flags) for u in f.uids()}
        yield self.store.close()
        db = sqlite3.connect(os.path.join(self.path(), MODSEQ_FILE))
        try:
            self.assertEqual(db.execute("SELECT count(*) FROM log").fetchone()[0], 0)
        finally:
            db.close()
        g = yield self.reopen()
        self.assertEqual({u: (g.get(u).modseq, g.get(u).flags) for u in g.uids()}, state)

    @defer.inlineCallbacks
    def test_rename_and_delete_take_the_record_along(self) -> Any:
        account = self.store.account("eve")
        yield account.create_folder("Work")
        w = yield account.open_folder("Work")
        uid = yield w.append(MSG)
        yield w.store_flags([uid], ["\\Seen"], "+")
        highest = w.highestmodseq
        yield account.rename_folder("Work", "Done")
        yield w.store_flags([uid], ["\\Flagged"], "+")
        self.assertGreater(w.highestmodseq, highest)
        self.assertIsInstance(w, Folder)
        self.assertTrue(os.path.exists(os.path.join(self.data, "eve", "Maildir", ".Done", MODSEQ_FILE)))
        yield account.delete_folder("Done")
        self.assertFalse(os.path.exists(os.path.join(self.data, "eve", "Maildir", ".Done")))


class AnsweredFromMemory(StoreCase):
    """A flag change is answered once recorded and in memory; the renames
    follow in the background and are redone after a crash."""

    @defer.inlineCallbacks
    def test_answered_before_the_renames_and_redone_after_a_crash(self) -> Any:
        account = self.store.account("eve")
        f = yield account.open_folder("INBOX")
        uids = []
        for _ in range(5):
            uids.append((yield f.append(MSG)))
        path = os.path.join(self.data, "eve", "Maildir")
        blocked = threading.Event()
        self.addCleanup(blocked.set)
        real = f._disk.set_flags
        f._disk.set_flags = lambda items: (blocked.wait(30), OpResult())[1]  # the process dies before renaming
        changed = yield f.store_flags(uids[1:4], ["\\Flagged", "$Late"], "+")
        self.assertEqual(changed, uids[1:4])
        answered = f.highestmodseq
        self.assertEqual(f.get(uids[2]).flags, {"\\Flagged", "$Late"})  # readable at once
        self.assertEqual(f.uids_with_flag("$Late"), set(uids[1:4]))
        self.assertFalse(any(n.endswith("Fa") for n in files_in(path)))  # not on disk yet
        # kill -9 now: a new process opens the folder
        g = yield self.fresh_store().account("eve").open_folder("INBOX")
        self.assertEqual([g.get(u).flags for u in uids[1:4]], [{"\\Flagged", "$Late"}] * 3)
        self.assertEqual([g.get(u).modseq for u in uids[1:4]], [answered] * 3)  # nothing changed since
        self.assertEqual(sum(n.endswith(":2,Fa") for n in files_in(path)), 3)
        self.assertGreaterEqual(g.highestmodseq, answered)
        f._disk.set_flags = real

    @defer.inlineCallbacks
    def test_next_operation_waits_for_the_renames(self) -> Any:
        f = yield self.store.account("eve").open_folder("INBOX")
        uid = yield f.append(MSG)
        yield f.store_flags([uid], ["\\Seen"], "+")
        yield f.expunge([uid])  # queued behind the rename: finds the renamed file
        self.assertEqual(files_in(os.path.join(self.data, "eve", "Maildir")), [])
