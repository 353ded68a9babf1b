"""PgFolder: the IFolder contract on PostgreSQL (the same behaviour the
Maildir store tests pin, where it is backend-neutral)."""

import io

from twisted.internet import defer

from mailsrv.store.flags import InvalidFlag
from mailsrv.store.interfaces import IFolder, MessageGone
from mailsrv.store.pg import folder_sql
from mailsrv.store.pg.errors import TooManyKeywords
from mailsrv.store.pg.folder_sql import MAX_KEYWORDS
from tests.store.behaviour import FolderBehaviour

from .helpers import PgStoreCase, Recorder, sleep

MSG = b"From: a@example.com\nSubject: hi\n\nhello\n"
CRLF_MSG = MSG.replace(b"\n", b"\r\n")


class FolderTests(PgStoreCase, FolderBehaviour):
    @defer.inlineCallbacks
    def setUp(self):
        super().setUp()
        self.account = yield self.store.open_account("alice")
        self.inbox = yield self.account.open_folder("INBOX")
        self.rec = Recorder()
        self.inbox.add_listener(self.rec)

    @defer.inlineCallbacks
    def test_append_bytes_and_file(self):
        self.assertTrue(IFolder.providedBy(self.inbox))
        uid1 = yield self.inbox.append(MSG, ["\\Seen"], internaldate=1700000000.0)
        uid2 = yield self.inbox.append(io.BytesIO(b"a\r\nb\r\n"))
        self.assertEqual((uid1, uid2), (1, 2))
        self.assertEqual(self.rec.take(), [("added", [1]), ("added", [2])])
        m1, m2 = self.inbox.messages()
        self.assertEqual(m1.size, len(CRLF_MSG))
        self.assertEqual(m2.size, 6)
        self.assertEqual(m1.flags, {"\\Seen"})
        self.assertEqual(m1.internaldate, 1700000000.0)
        self.assertEqual(self.inbox.open_message(1).read(), CRLF_MSG)  # stored as sent: CRLF
        self.assertEqual(self.inbox.uidnext, 3)
        self.assertEqual(self.inbox.claim_recent(), {1, 2})
        self.assertEqual(self.inbox.claim_recent(), set())
        self.assertEqual(self.inbox.total_size(), m1.size + 6)
        self.assertEqual(self.store.stats["blocking"], 0)  # the appended bodies are kept here

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
        self.assertEqual(self.inbox.get(1).modseq, self.inbox.highestmodseq)
        self.assertEqual(self.inbox.keywords(), ["$Work"])
        changed = yield self.inbox.store_flags([2], ["$work"], "-")  # keywords match case-insensitively
        self.assertEqual(changed, [2])
        self.assertEqual(self.inbox.get(2).flags, {"\\Flagged"})
        changed = yield self.inbox.store_flags([2], ["\\Flagged"], "+")
        self.assertEqual(changed, [])  # nothing to change: no write, no event
        self.assertEqual(self.rec.take(), [("flags", [1, 2]), ("flags", [2])])
        yield self.assertFailure(self.inbox.store_flags([1], ["\\Bogus"], "+"), InvalidFlag)
        yield self.assertFailure(self.inbox.store_flags([1], ["a b"], "+"), InvalidFlag)

    @defer.inlineCallbacks
    def test_keyword_limit(self):
        uid = yield self.inbox.append(MSG)
        many = [f"$k{i}" for i in range(MAX_KEYWORDS)]
        yield self.inbox.store_flags([uid], many, "+")
        yield self.assertFailure(self.inbox.store_flags([uid], ["$one-too-many"], "+"), TooManyKeywords)
        self.assertEqual(len(self.inbox.get(uid).flags), MAX_KEYWORDS)

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
        nothing = yield self.inbox.expunge()
        self.assertEqual(nothing, [])
        uid = yield self.inbox.append(MSG)
        self.assertEqual(uid, 5)  # never reused
        other = yield self.fresh_store().account("alice").open_folder("INBOX")
        self.assertEqual(other.uids(), [1, 5])
        self.assertEqual(other.uidnext, 6)

    @defer.inlineCallbacks
    def test_copy_keeps_flags_dates_and_keywords(self):
        trash = yield self.account.open_folder("Trash")
        yield trash.append(MSG, ["$Other"])
        yield self.inbox.append(MSG, ["\\Seen", "$Tag"], internaldate=1600000000.0)
        yield self.inbox.append(MSG)
        trec = Recorder()
        trash.add_listener(trec)
        pairs = yield self.inbox.copy_to([2, 1, 42], trash)
        self.assertEqual(pairs, [(1, 2), (2, 3)])
        self.assertEqual(trec.take(), [("added", [2, 3])])
        self.assertEqual(trash.get(2).flags, {"\\Seen", "$Tag"})
        self.assertEqual(trash.get(2).internaldate, 1600000000.0)
        self.assertEqual(sorted(trash.keywords()), ["$Other", "$Tag"])
        self.assertEqual(trash.open_message(2).read(), CRLF_MSG)
        self.assertEqual(trash.get(2).size, self.inbox.get(1).size)
        self.assertEqual(self.inbox.uids(), [1, 2])
        self.assertEqual(trash.claim_recent(), {1, 2, 3})

    @defer.inlineCallbacks
    def test_recent_is_claimed_once_across_processes(self):
        uid = yield self.inbox.append(MSG)
        self.assertEqual(self.inbox.claim_recent(), {uid})
        yield until_claimed(self.store, self.inbox.id, uid + 1)  # written in the background
        other = yield self.fresh_store().account("alice").open_folder("INBOX")
        self.assertEqual(other.peek_recent(), set())

    @defer.inlineCallbacks
    def test_large_message_streams_and_reads_back(self):
        body = b"Subject: big\r\n\r\n" + b"0123456789abcdef" * (3 << 16)  # 3 MiB
        uid = yield self.inbox.append(io.BytesIO(body))
        self.assertEqual(self.inbox.get(uid).size, len(body))
        fresh = self.fresh_store()
        f = yield fresh.account("alice").open_folder("INBOX")
        yield f.prefetch([uid], body="full")
        with f.open_message(uid) as fh:
            self.assertEqual(fh.read(), body)
        self.assertEqual(fresh.stats["blocking"], 0)

    @defer.inlineCallbacks
    def test_refresh_without_changes_is_quiet(self):
        yield self.inbox.append(MSG)
        self.rec.take()
        yield self.inbox.refresh()
        yield self.inbox.refresh()
        self.assertEqual(self.rec.take(), [])


@defer.inlineCallbacks
def until_claimed(store, fid, upto):
    def value(conn):
        return conn.execute("SELECT first_recent_uid FROM folders WHERE id = %s", (fid,)).fetchone()[0]

    for _ in range(200):
        got = yield store.db.run(value)
        if got >= upto:
            return
        yield sleep(0.01)
    raise AssertionError("first_recent_uid never written")


class FolderWideValues(PgStoreCase):
    """The folder-wide derived values (SORT/THREAD's packed columns) outlive
    the process, as the Maildir store's do, and die with the folder."""

    @defer.inlineCallbacks
    def test_kept_across_a_restart_latest_wins_and_gone_with_the_folder(self):
        account = yield self.store.open_account("alice")
        yield account.create_folder("Big")
        big = yield account.open_folder("Big")
        big.set_folder_cached("col:subj", b"one")
        big.set_folder_cached("col:subj", b"two")
        big.set_folder_cached("col:date", b"")
        yield self.store.flush_values()
        # a late write of an older value (another node's, a slow batch) does not replace a newer one
        yield self.store.db.run(folder_sql.save_values, [], [(big.id, "col:subj", b"old", 1.0)])
        other = self.fresh_store()  # a restarted process, or another node
        again = yield (yield other.open_account("alice")).open_folder("Big")
        self.assertEqual((again.get_folder_cached("col:subj"), again.get_folder_cached("col:date")), (b"two", b""))
        self.assertIsNone(again.get_folder_cached("col:from"))
        fid = big.id
        yield account.delete_folder("Big")
        rows = yield self.store.db.run(lambda c: c.execute("SELECT count(*) FROM folder_values WHERE folder_id = %s",
                                                           (fid,)).fetchone()[0])
        self.assertEqual(rows, 0)
