import io
import os

from twisted.internet import defer

from mailsrv.store.flags import InvalidFlag
from mailsrv.store.interfaces import MessageGone
from mailsrv.store.uidlist import parse_uidlist, read_uidlist

from .behaviour import FolderBehaviour
from .helpers import Recorder, StoreCase, files_in

MSG = b"From: a@example.com\nSubject: hi\n\nhello\n"


class FolderTests(StoreCase, FolderBehaviour):
    @defer.inlineCallbacks
    def setUp(self):
        super().setUp()
        self.account = self.store.account("alice")
        self.inbox = yield self.account.open_folder("INBOX")
        self.rec = Recorder()
        self.inbox.add_listener(self.rec)

    @defer.inlineCallbacks
    def test_append_bytes_and_file(self):
        uid1 = yield self.inbox.append(MSG, ["\\Seen"], internaldate=1700000000.0)
        uid2 = yield self.inbox.append(io.BytesIO(b"a\r\nb\r\n"))
        self.assertEqual((uid1, uid2), (1, 2))
        self.assertEqual(self.rec.take(), [("added", [1]), ("added", [2])])
        m1, m2 = self.inbox.messages()
        self.assertEqual(m1.size, len(MSG) + MSG.count(b"\n"))
        self.assertEqual(m2.size, 6)
        self.assertEqual(m1.flags, {"\\Seen"})
        self.assertEqual(m1.internaldate, 1700000000.0)
        self.assertEqual(self.inbox.open_message(1).read(), MSG)
        name = os.path.basename(self.inbox.message_path(1))
        self.assertTrue(name.endswith(f",S={len(MSG)},W={m1.size}:2,S"), name)
        self.assertEqual(os.listdir(os.path.join(self.inbox.path, "tmp")), [])
        ul, _ = read_uidlist(self.inbox.path)
        self.assertEqual(ul.uids, {m1.key: 1, m2.key: 2})
        self.assertEqual((ul.uidnext, self.inbox.uidnext), (3, 3))
        self.assertEqual(self.inbox.claim_recent(), {1, 2})
        self.assertEqual(self.inbox.claim_recent(), set())
        self.assertEqual(self.inbox.total_size(), m1.size + 6)

    @defer.inlineCallbacks
    def test_tmp_file_is_renamed_not_copied(self):
        t = self.inbox.tmp_file()
        self.assertEqual(os.path.dirname(t.name), os.path.join(self.inbox.path, "tmp"))
        t.write(b"Subject: streamed\n\n")
        t.write(b"x" * 100000)
        ino = os.fstat(t.fileno()).st_ino
        uid = yield self.inbox.append(t, ["$Streamed"])
        t.discard()  # too late to matter: it was appended
        self.assertEqual(os.listdir(os.path.join(self.inbox.path, "tmp")), [])
        path = self.inbox.message_path(uid)
        self.assertEqual(os.stat(path).st_ino, ino)
        self.assertEqual(self.inbox.get(uid).flags, {"$Streamed"})
        with self.inbox.tmp_file() as unused:
            unused.write(b"abandoned")
        self.assertEqual(os.listdir(os.path.join(self.inbox.path, "tmp")), [])

    @defer.inlineCallbacks
    def test_store_flags_modes_and_keywords(self):
        yield self.inbox.append(MSG)
        yield self.inbox.append(MSG, ["\\Seen"])
        self.rec.take()
        changed = yield self.inbox.store_flags([1, 2, 99], ["\\Seen"], "+")
        self.assertEqual(changed, [1])
        self.assertEqual(self.rec.take(), [("flags", [1])])
        before = self.inbox.get(1)
        changed = yield self.inbox.store_flags([1, 2], ["\\Flagged", "$Work"], "=")
        self.assertEqual(changed, [1, 2])
        self.assertEqual(before.flags, {"\\Seen"})  # snapshots stay snapshots
        self.assertEqual(self.inbox.get(1).flags, {"\\Flagged", "$Work"})
        self.assertGreater(self.inbox.get(1).modseq, before.modseq)
        self.assertEqual(self.inbox.keywords(), ["$Work"])
        yield self.inbox.quiesce()  # the file names follow in the background (answered from memory)
        self.assertTrue(all(n.endswith(":2,Fa") for n in files_in(self.inbox.path)))
        changed = yield self.inbox.store_flags([2], ["$work"], "-")
        self.assertEqual(changed, [2])
        self.assertEqual(self.inbox.get(2).flags, {"\\Flagged"})
        yield self.assertFailure(self.inbox.store_flags([1], ["\\Bogus"], "+"), InvalidFlag)

    @defer.inlineCallbacks
    def test_expunge(self):
        for _ in range(4):
            yield self.inbox.append(MSG)
        yield self.inbox.store_flags([2, 3], ["\\Deleted"], "+")
        self.inbox.set_cached(2, "envelope", b"env")
        self.rec.take()
        gone = yield self.inbox.expunge()
        self.assertEqual(gone, [2, 3])
        self.assertEqual(self.rec.take(), [("expunged", [2, 3])])
        self.assertEqual(self.inbox.uids(), [1, 4])
        self.assertIsNone(self.inbox.get(2))
        self.assertIsNone(self.inbox.get_cached(2, "envelope"))
        self.assertRaises(MessageGone, self.inbox.open_message, 2)
        self.assertRaises(MessageGone, self.inbox.pop3_uidl, 2)
        gone = yield self.inbox.expunge([4, 4, 77])
        self.assertEqual(gone, [4])
        self.assertEqual(len(files_in(self.inbox.path)), 1)
        ul, _ = read_uidlist(self.inbox.path)
        self.assertEqual(list(ul.uids.values()), [1])
        self.assertEqual(ul.uidnext, 5)
        uid = yield self.inbox.append(MSG)
        self.assertEqual(uid, 5)  # never reused

    @defer.inlineCallbacks
    def test_copy_keeps_flags_and_maps_keywords(self):
        trash = yield self.account.open_folder("Trash")
        yield trash.append(MSG, ["$Other"])  # $Other takes letter a in Trash
        yield self.inbox.append(MSG, ["\\Seen", "$Tag"])
        yield self.inbox.append(MSG)
        trec = Recorder()
        trash.add_listener(trec)
        pairs = yield self.inbox.copy_to([2, 1, 42], trash)
        self.assertEqual(pairs, [(1, 2), (2, 3)])
        self.assertEqual(trec.take(), [("added", [2, 3])])
        self.assertEqual(trash.get(2).flags, {"\\Seen", "$Tag"})
        self.assertTrue(any(n.endswith(":2,Sb") for n in files_in(trash.path)))
        self.assertEqual(trash.open_message(2).read(), MSG)
        self.assertEqual(trash.get(2).size, self.inbox.get(1).size)
        self.assertEqual(self.inbox.uids(), [1, 2])

    @defer.inlineCallbacks
    def test_external_delivery_removal_and_rename_noticed(self):
        yield self.inbox.append(MSG)
        yield self.inbox.refresh()
        self.rec.take()
        calls = []
        disk = self.inbox._disk
        orig, orig_new = disk.sync, disk.sync_new
        disk.sync = lambda: calls.append("full") or orig()
        disk.sync_new = lambda: calls.append("new") or orig_new()
        self.inbox._unsure = self.inbox._cur_recheck = self.inbox._new_recheck = False  # old mtimes
        yield self.inbox.refresh()
        self.assertEqual(calls, [])  # nothing changed: no scan
        # Postfix-style delivery: bare LF, no size fields in the name
        name = "1700000000.V801I1M2.mx.example.com"
        with open(os.path.join(self.inbox.path, "tmp", name), "wb") as f:
            f.write(b"Subject: ext\n\nline\n")
        os.rename(os.path.join(self.inbox.path, "tmp", name), os.path.join(self.inbox.path, "new", name))
        yield self.inbox.refresh()
        self.assertEqual(calls, ["new"])  # only new/ changed: only new/ is listed
        self.assertEqual(self.rec.take(), [("added", [2])])
        self.assertEqual(self.inbox.get(2).size, 22)
        self.assertIn(2, self.inbox.claim_recent())
        ul, _ = read_uidlist(self.inbox.path)
        self.assertEqual(ul.exts[name], {"W": "22"})  # size remembered, not re-read
        # another process (mutt, Dovecot) sets flags and deletes a message
        cur = os.path.join(self.inbox.path, "cur")
        os.rename(os.path.join(self.inbox.path, "new", name), os.path.join(cur, name + ":2,RS"))
        first = [n for n in files_in(self.inbox.path) if not n.startswith(name)][0]
        os.unlink(os.path.join(cur, first))
        yield self.inbox.refresh()
        self.assertEqual(self.rec.take(), [("expunged", [1]), ("flags", [2])])
        self.assertEqual(self.inbox.get(2).flags, {"\\Answered", "\\Seen"})
        self.assertEqual(self.inbox.open_message(2).read(), b"Subject: ext\n\nline\n")

    @defer.inlineCallbacks
    def test_message_vanishing_is_messagegone(self):
        uid = yield self.inbox.append(MSG)
        os.unlink(self.inbox.message_path(uid))
        self.assertRaises(MessageGone, self.inbox.open_message, uid)
        yield self.inbox.refresh()
        self.assertEqual(self.rec.take()[-1], ("expunged", [uid]))

    @defer.inlineCallbacks
    def test_renamed_file_still_found(self):
        uid = yield self.inbox.append(MSG)
        p = self.inbox.message_path(uid)
        os.rename(p, p[: p.index(":2,")] + ":2,T")
        self.assertEqual(self.inbox.open_message(uid).read(), MSG)
        changed = yield self.inbox.store_flags([uid], ["\\Seen"], "+")
        self.assertEqual(changed, [uid])
        self.assertEqual(len(files_in(self.inbox.path)), 1)

    @defer.inlineCallbacks
    def test_cache_batched_and_persistent(self):
        uid = yield self.inbox.append(MSG)
        self.inbox.set_cached(uid, "envelope", b"(ENV)")
        self.inbox.set_cached(999, "envelope", b"ignored")
        self.assertEqual(self.inbox.get_cached(uid, "envelope"), b"(ENV)")
        self.assertIsNone(self.inbox.get_cached(999, "envelope"))
        self.assertIsNotNone(self.inbox._cache._timer)  # not committed per call
        self.inbox.close()
        self.assertIsNone(self.inbox._cache._timer)
        other = self.fresh_store()
        f = yield other.account("alice").open_folder("INBOX")
        self.assertEqual(f.get_cached(uid, "envelope"), b"(ENV)")
        self.assertIsNone(f.get_cached(uid, "bodystructure"))


class CrashTests(StoreCase):
    """Simulated crashes at each step of a write."""

    @defer.inlineCallbacks
    def _inbox(self, store=None):
        store = store or self.store
        f = yield store.account("bob").open_folder("INBOX")
        return f

    @defer.inlineCallbacks
    def test_file_left_in_tmp_is_not_listed(self):
        f = yield self._inbox()
        yield f.append(MSG)
        # crash after writing tmp/, before the rename
        with open(os.path.join(f.path, "tmp", "1700000000.M1P99Q1.host"), "wb") as t:
            t.write(b"half a mess")
        f2 = yield self._inbox(self.fresh_store())
        self.assertEqual([m.uid for m in f2.messages()], [1])
        self.assertEqual(f2.open_message(1).read(), MSG)

    @defer.inlineCallbacks
    def test_crash_during_uidlist_replace_keeps_old_list(self):
        f = yield self._inbox()
        yield f.append(MSG)
        yield f.append(MSG)
        valid = f.uidvalidity
        # the crashed writer left its temp file and its lock (dead pid)
        with open(os.path.join(f.path, "dovecot-uidlist.4242.abcd.tmp"), "wb") as t:
            t.write(b"3 V1 N1\n1 :trunc")
        with open(os.path.join(f.path, "dovecot-uidlist.lock"), "w") as t:
            t.write("999999999:" + os.uname().nodename)
        f2 = yield self._inbox(self.fresh_store())
        self.assertEqual(f2.uidvalidity, valid)
        self.assertEqual([(m.uid, m.key) for m in f2.messages()], [(m.uid, m.key) for m in f.messages()])
        uid = yield f2.append(MSG)
        self.assertEqual(uid, 3)

    @defer.inlineCallbacks
    def test_renamed_but_unassigned_gets_uid_once(self):
        f = yield self._inbox()
        yield f.append(MSG)
        # crash after rename into cur/, before the uid list was written
        name = "1700000001.M5P77Q1.host,S=3,W=4"
        with open(os.path.join(f.path, "cur", name + ":2,S"), "wb") as t:
            t.write(b"ab\n")
        f2 = yield self._inbox(self.fresh_store())
        self.assertEqual([(m.uid, m.flags) for m in f2.messages()], [(1, frozenset()), (2, {"\\Seen"})])
        f3 = yield self._inbox(self.fresh_store())
        self.assertEqual(f3.uids(), [1, 2])
        ul, _ = read_uidlist(f.path)
        self.assertEqual(sorted(ul.uids.values()), [1, 2])
        self.assertEqual(ul.uidnext, 3)

    @defer.inlineCallbacks
    def test_lost_or_corrupt_uidlist_gets_new_uidvalidity(self):
        f = yield self._inbox()
        yield f.append(MSG)
        old = f.uidvalidity
        os.unlink(os.path.join(f.path, "dovecot-uidlist"))
        f2 = yield self._inbox(self.fresh_store())
        self.assertNotEqual(f2.uidvalidity, old)
        self.assertEqual(len(f2.messages()), 1)
        with open(os.path.join(f.path, "dovecot-uidlist"), "wb") as t:
            t.write(b"\x00\x00garbage")
        f3 = yield self._inbox(self.fresh_store())
        self.assertNotIn(f3.uidvalidity, (old, f2.uidvalidity))
        self.assertEqual(len(f3.messages()), 1)
        self.assertEqual(self.flushLoggedErrors(), [])

    @defer.inlineCallbacks
    def test_other_process_assigning_uids_meanwhile(self):
        """Another process (Dovecot) gave a new file a UID while we were
        open: our next append gets a higher one, both reach listeners in order."""
        f = yield self._inbox()
        yield f.append(MSG)
        rec = Recorder()
        f.add_listener(rec)
        f2 = yield self._inbox(self.fresh_store())
        u2 = yield f2.append(MSG)
        u3 = yield f.append(MSG)
        self.assertEqual((u2, u3), (2, 3))
        self.assertEqual(rec.take(), [("added", [2, 3])])
        self.assertEqual(f.uids(), [1, 2, 3])
        text = open(os.path.join(f.path, "dovecot-uidlist"), "rb").read()
        self.assertEqual(sorted(parse_uidlist(text).uids.values()), [1, 2, 3])
