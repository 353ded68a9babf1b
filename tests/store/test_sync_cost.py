"""What our own changes cost: no rescan after them, an append-only uid list
(with the torn-line crash point), group-committed deliveries, compaction,
the log level of a first UID assignment, mod-sequences that never go back."""

import os
import time

from twisted.internet import defer
from twisted.logger import LogLevel, globalLogPublisher

from mailsrv.store import diskfolder, uidlist, uidstate
from mailsrv.store.uidlist import parse_uidlist, read_uidlist

from .helpers import Recorder, StoreCase

MSG = b"From: a@example.com\nSubject: hi\n\nhello\n"
COUNT = 3000


def fill(folder_dir: str, n: int, start: int = 0) -> None:
    """n small messages in cur/, Dovecot-named, made by hard links."""
    for sub in ("cur", "new", "tmp"):
        os.makedirs(os.path.join(folder_dir, sub), exist_ok=True)
    src = os.path.join(folder_dir, "tmp", "src")
    with open(src, "wb") as f:
        f.write(MSG)
    size = len(MSG) + MSG.count(b"\n")
    for i in range(start, start + n):
        os.link(src, os.path.join(folder_dir, "cur", f"1600000000.M{i}P1Q{i}.host,S={len(MSG)},W={size}:2,S"))
    os.unlink(src)


def age(folder_dir: str, seconds: float = 3600) -> None:
    """Make new/ and cur/ look untouched for a while (as in a real folder)."""
    t = time.time() - seconds
    for sub in ("new", "cur"):
        os.utime(os.path.join(folder_dir, sub), (t, t))


def drop_external(folder_dir: str, name: str, sub: str = "new") -> None:
    """A Postfix-style delivery: tmp/ then rename, no UID."""
    tmp = os.path.join(folder_dir, "tmp", name)
    with open(tmp, "wb") as f:
        f.write(b"Subject: external\n\nx\n")
    os.rename(tmp, os.path.join(folder_dir, sub, name))


class CaptureLog:
    def __init__(self, case) -> None:
        self.events = []
        globalLogPublisher.addObserver(self.events.append)
        case.addCleanup(globalLogPublisher.removeObserver, self.events.append)

    def levels(self, word: str) -> list:
        return [e["log_level"] for e in self.events
                if e.get("log_namespace") == "mailsrv.store" and word in e.get("log_format", "")]


class OwnChangesTests(StoreCase):
    @defer.inlineCallbacks
    def setUp(self):
        super().setUp()
        self.account = self.store.account("bob")
        self.path = self.account._path("INBOX")
        fill(self.path, COUNT)
        diskfolder.DiskFolder(self.path).sync()
        age(self.path)
        self.inbox = yield self.account.open_folder("INBOX")
        self.rec = Recorder()
        self.inbox.add_listener(self.rec)

    @defer.inlineCallbacks
    def test_own_changes_cost_no_rescan_but_external_ones_are_seen(self):
        full = self.inbox.scans
        yield self.inbox.refresh()
        self.assertEqual(self.inbox.scans, full)
        other = yield self.account.open_folder("Trash")
        other.add_listener(Recorder())
        for _ in range(5):
            uid = yield self.inbox.append(MSG, ["\\Seen"])
            yield self.inbox.refresh()
        yield self.inbox.store_flags([1, 2, uid], ["\\Flagged"], "+")
        yield self.inbox.refresh()
        yield self.inbox.expunge([3])
        yield self.inbox.refresh()
        yield self.inbox.copy_to([4], other)
        yield self.account.deliver("INBOX", MSG)
        yield self.inbox.refresh()
        self.assertEqual(self.inbox.scans, full, "our own changes must not trigger a full rescan")
        self.assertEqual(len(self.inbox), COUNT + 5 - 1 + 1)
        self.rec.take()
        # an external delivery right after our append, same mtime tick or not
        uid = yield self.inbox.append(MSG)
        drop_external(self.path, "1700000000.V1I1M1.mx")
        yield self.inbox.refresh()
        self.assertEqual(self.rec.take(), [("added", [uid]), ("added", [uid + 1])])
        self.assertEqual(self.inbox.get(uid + 1).key, "1700000000.V1I1M1.mx")
        self.assertEqual(self.inbox.scans, full, "a change in new/ only re-lists new/")
        # another process (Dovecot, a second mailsrv) adding to cur/ under the uid list lock
        theirs = yield self.fresh_store().account("bob").open_folder("INBOX")
        their_uid = yield theirs.append(MSG, ["\\Seen"])
        yield self.inbox.refresh()
        self.assertEqual(self.rec.take(), [("added", [their_uid])])
        self.assertEqual(self.inbox.scans, full + 1)
        # nothing changed: a refresh is a few stats
        self.inbox._cur_recheck = self.inbox._new_recheck = False
        t = time.perf_counter()
        for _ in range(100):
            yield self.inbox.refresh()
        self.assertLess(time.perf_counter() - t, 0.5)
        self.assertEqual(self.inbox.scans, full + 1)

    @defer.inlineCallbacks
    def test_external_file_in_new_within_the_same_tick(self):
        # make new/'s mtime unable to change: the drop happens "in the same tick"
        yield self.account.deliver("INBOX", MSG)  # touches new/ now: recent
        self.assertTrue(self.inbox._new_recheck)
        st = os.stat(os.path.join(self.path, "new"))
        drop_external(self.path, "1700000000.V2I2M2.mx")
        os.utime(os.path.join(self.path, "new"), ns=(st.st_atime_ns, st.st_mtime_ns))
        self.rec.take()
        full = self.inbox.scans
        yield self.inbox.refresh()
        self.assertEqual(self.rec.take(), [("added", [COUNT + 2])])
        self.assertEqual(self.inbox.scans, full)

    @defer.inlineCallbacks
    def test_appends_do_not_rewrite_the_uid_list(self):
        p = os.path.join(self.path, uidlist.UIDLIST)
        before = open(p, "rb").read()
        ino = os.stat(p).st_ino
        uids = []
        for _ in range(3):
            uids.append((yield self.inbox.append(MSG)))
        uids.append((yield self.account.deliver("INBOX", MSG)))
        after = open(p, "rb").read()
        self.assertEqual(os.stat(p).st_ino, ino, "appended in place, not replaced")
        self.assertEqual(after[:len(before)], before)
        added = after[len(before):].decode().splitlines()
        self.assertEqual([int(ln.split()[0]) for ln in added], uids)
        ul = parse_uidlist(after)
        self.assertEqual(ul.uidnext, uids[-1] + 1)  # header N stale, last UID wins
        self.assertEqual(before.split(b"\n")[0], after.split(b"\n")[0])

    @defer.inlineCallbacks
    def test_torn_last_line_is_ignored_and_cut(self):
        p = os.path.join(self.path, uidlist.UIDLIST)
        with open(p, "ab") as f:
            f.write(b"99999 :1600000000.TORN")  # crash in the middle of an append
        self.assertNotIn("1600000000.TORN", parse_uidlist(open(p, "rb").read()).uids)
        again = yield self.fresh_store().account("bob").open_folder("INBOX")
        self.assertEqual(len(again), COUNT)
        self.assertEqual(again.uidnext, COUNT + 1)
        uid = yield again.append(MSG)
        self.assertEqual(uid, COUNT + 1)
        data = open(p, "rb").read()
        self.assertFalse(b"TORN" in data)
        self.assertTrue(data.endswith(b"\n"))
        self.assertEqual(data.split(b"\n")[-2].split()[0], str(uid).encode())
        self.assertEqual(len(parse_uidlist(data).uids), COUNT + 1)
        # the delivery path that reads only the file's head and tail cuts it too
        with open(p, "ab") as f:
            f.write(b"12")
        self.account._folders.clear()  # nobody has INBOX open now
        uid2 = yield self.fresh_store().account("bob").deliver("INBOX", MSG)
        data = open(p, "rb").read()
        self.assertEqual(uid2, uid + 1)
        self.assertTrue(data.endswith(b"\n"))
        self.assertEqual(len(parse_uidlist(data).uids), COUNT + 2)

    @defer.inlineCallbacks
    def test_concurrent_deliveries_share_one_uidlist_write(self):
        writes = []
        orig = uidstate.append_uidlist
        self.patch(uidstate, "append_uidlist", lambda *a: writes.append(len(a[2])) or orig(*a))
        live = yield defer.gatherResults([self.account.deliver("INBOX", MSG) for _ in range(8)])
        self.assertEqual(sorted(live), list(range(COUNT + 1, COUNT + 9)))
        self.assertEqual(sum(writes), 8)
        self.assertLess(len(writes), 8)
        self.assertEqual(len(self.inbox), COUNT + 8)
        # nobody listening: the folder-less path batches the same way
        writes.clear()
        quiet = self.fresh_store().account("bob")
        got = yield defer.gatherResults([quiet.deliver("INBOX", MSG) for _ in range(8)])
        self.assertEqual(sorted(got), list(range(COUNT + 9, COUNT + 17)))
        self.assertLess(len(writes), 8)
        ul, _ = read_uidlist(self.path)
        self.assertEqual(len(ul.uids), COUNT + 16)
        self.assertEqual(os.listdir(os.path.join(self.path, "tmp")), [])

    @defer.inlineCallbacks
    def test_expunge_compacts_only_when_enough_is_dead(self):
        p = os.path.join(self.path, uidlist.UIDLIST)
        ino = os.stat(p).st_ino
        yield self.inbox.expunge(range(1, 11))
        self.assertEqual(os.stat(p).st_ino, ino, "a few dead lines: no rewrite")
        self.assertEqual(len(parse_uidlist(open(p, "rb").read()).uids), COUNT)
        again = yield self.fresh_store().account("bob").open_folder("INBOX")
        self.assertEqual(len(again), COUNT - 10)  # dead lines name no file: ignored
        yield self.inbox.refresh()
        yield self.inbox.expunge(range(11, COUNT // 3))
        self.assertNotEqual(os.stat(p).st_ino, ino, "a third dead: compacted")
        ul = parse_uidlist(open(p, "rb").read())
        self.assertEqual(len(ul.uids), len(self.inbox))
        self.assertEqual(ul.uidnext, COUNT + 1)


class LogAndModseqTests(StoreCase):
    @defer.inlineCallbacks
    def test_first_uids_are_info_lost_list_is_critical(self):
        log = CaptureLog(self)
        account = self.store.account("carol")
        path = account._path("INBOX")
        fill(path, 3)
        f = yield account.open_folder("INBOX")
        self.assertEqual(len(f), 3)
        self.assertEqual(log.levels("first UIDs"), [LogLevel.info])
        self.assertEqual(log.levels("no usable"), [])
        with open(os.path.join(path, uidlist.UIDLIST), "wb") as fh:
            fh.write(b"garbage\n")
        yield f.refresh()  # uid list changed: rescanned
        self.assertEqual(log.levels("corrupt"), [LogLevel.critical])
        self.assertEqual(log.levels("no usable"), [LogLevel.critical])
        os.unlink(os.path.join(path, uidlist.UIDLIST))
        fill(path, 1, start=10)
        yield f.refresh()
        self.assertEqual(log.levels("no usable"), [LogLevel.critical] * 2)

    @defer.inlineCallbacks
    def test_highestmodseq_never_goes_back(self):
        account = self.store.account("dave")
        f = yield account.open_folder("INBOX")
        rec = Recorder()
        f.add_listener(rec)
        seen = [f.highestmodseq]
        uid = yield f.append(MSG)
        seen.append(f.highestmodseq)
        yield f.store_flags([uid], ["\\Seen"], "+")
        seen.append(f.highestmodseq)
        yield f.expunge([uid])
        seen.append(f.highestmodseq)
        self.assertEqual(seen, sorted(set(seen)), "every change raises it")
        f.remove_listener(rec)  # released: the next open makes a new object
        yield f.quiesce()
        g = yield account.open_folder("INBOX")
        self.assertIsNot(g, f)
        self.assertGreaterEqual(g.highestmodseq, seen[-1])
        yield account.delete_folder("Trash")
        yield account.create_folder("Trash")
        t = yield account.open_folder("Trash")
        self.assertGreaterEqual(t.highestmodseq, 1)



class IdleFolderTTL(StoreCase):
    @defer.inlineCallbacks
    def test_idle_folder_kept_for_the_ttl_then_released(self):
        """A server keeps an unused folder loaded for a while (fast next SELECT), then lets it go."""
        from twisted.internet.task import Clock

        from mailsrv.store import Store

        clock = Clock()
        store = Store(self.mktemp(), idle_ttl=60, reactor=clock)
        self.addCleanup(store.close)
        account = store.account("u")
        folder = yield account.open_folder("INBOX")
        listener = Recorder()
        folder.add_listener(listener)
        folder.remove_listener(listener)
        yield folder.quiesce()
        clock.advance(30)
        self.assertIs(account.live_folder("INBOX"), folder)
        again = yield account.open_folder("INBOX")
        self.assertIs(again, folder)  # reused, not reloaded
        clock.advance(31)
        yield folder.quiesce()
        self.assertIsNone(account.live_folder("INBOX"))
