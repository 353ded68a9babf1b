"""Instant notice through inotify (mailsrv.store.watch), on a real reactor
and real directories: an outside rename reaches a listener without anyone
calling refresh(); a deleted folder does not silence the others; folders
without listeners are not watched."""

from __future__ import annotations

import os
import shutil
import tempfile

from twisted.internet import defer, reactor, task

from mailsrv.store import Store, layout, pop3lock
from mailsrv.store.watch import FolderWatcher

from .helpers import Recorder, StoreCase

MSG = b"Subject: outside\n\nbody\n"


def drop(folder_dir: str, name: str) -> None:
    """What Postfix's virtual delivery does: tmp/, then a rename into new/."""
    tmp = os.path.join(folder_dir, "tmp", name)
    with open(tmp, "wb") as f:
        f.write(MSG)
    os.rename(tmp, os.path.join(folder_dir, "new", name))


class WatchTests(StoreCase):
    def setUp(self) -> None:
        self.data = tempfile.mkdtemp(prefix="mailsrv-watch-test-")
        self.addCleanup(shutil.rmtree, self.data, True)
        self.store = Store(self.data, reactor=reactor, watch=True)
        self.addCleanup(self.store.close)
        if not self.store.watcher.available:
            self.skipTest("inotify is not available here")
        self.account = self.store.account("alice")

    @defer.inlineCallbacks
    def until(self, predicate, timeout=5.0):
        for _ in range(int(timeout / 0.01)):
            if predicate():
                return
            yield task.deferLater(reactor, 0.01, lambda: None)
        self.fail("timed out")

    @defer.inlineCallbacks
    def test_outside_delivery_reaches_a_listener_without_refresh(self):
        inbox = yield self.account.open_folder("INBOX")
        rec = Recorder()
        inbox.add_listener(rec)
        self.assertTrue(self.store.watcher.watching(inbox))
        drop(inbox.path, "1.outside.host")
        yield self.until(lambda: rec.events)
        self.assertEqual(rec.take(), [("added", [1])])
        os.rename(os.path.join(inbox.path, "new", "1.outside.host"),
                  os.path.join(inbox.path, "cur", "1.outside.host:2,S"))
        yield self.until(lambda: rec.events)
        self.assertEqual(rec.take(), [("flags", [1])])
        self.assertEqual(inbox.get(1).flags, {"\\Seen"})
        inbox.remove_listener(rec)
        self.assertFalse(self.store.watcher.watching(inbox))

    @defer.inlineCallbacks
    def test_a_deleted_folder_does_not_silence_the_others(self):
        yield self.account.create_folder("Doomed")
        doomed = yield self.account.open_folder("Doomed")
        inbox = yield self.account.open_folder("INBOX")
        rec_d, rec_i = Recorder(), Recorder()
        doomed.add_listener(rec_d)
        inbox.add_listener(rec_i)
        shutil.rmtree(doomed.path)  # behind the server's back
        yield task.deferLater(reactor, 0.05, lambda: None)
        drop(inbox.path, "2.outside.host")
        yield self.until(lambda: rec_i.events)
        self.assertEqual(rec_i.take(), [("added", [1])])
        self.assertTrue(self.store.watcher.available)
        doomed.remove_listener(rec_d)

    @defer.inlineCallbacks
    def test_a_burst_is_few_refreshes_and_all_messages(self):
        inbox = yield self.account.open_folder("INBOX")
        rec = Recorder()
        inbox.add_listener(rec)
        for i in range(50):
            drop(inbox.path, f"{i}.burst.host")
        yield self.until(lambda: sum(len(u) for _, u in rec.events) == 50)
        self.assertLess(len(rec.events), 50)  # coalesced, not one refresh per file
        self.assertGreaterEqual(self.store.watcher.events, 50)

    @defer.inlineCallbacks
    def test_folders_without_listeners_are_not_watched(self):
        inbox = yield self.account.open_folder("INBOX")
        self.assertFalse(self.store.watcher.watching(inbox))

    def test_no_inotify_means_polling(self):
        w = FolderWatcher(reactor)
        w.close()  # as on a system without inotify: nothing to read events from
        self.assertFalse(w.available)
        self.assertFalse(w.watch(object()))


class Pop3LockTests(StoreCase):
    def test_flock_excludes_a_second_holder_and_is_released_on_close(self):
        root = layout.maildir_root(self.data, "alice")
        os.makedirs(root)
        fd = pop3lock.try_lock(root)
        self.assertIsNotNone(fd)
        self.assertIsNone(pop3lock.try_lock(root))  # another open file: another holder
        pop3lock.unlock(fd)
        fd2 = pop3lock.try_lock(root)
        self.assertIsNotNone(fd2)
        pop3lock.unlock(fd2)
        self.assertTrue(os.path.exists(os.path.join(root, pop3lock.LOCK_NAME)))

    @defer.inlineCallbacks
    def test_two_stores_on_one_data_folder(self):
        """A second process's store (here: a second Store) cannot take it."""
        a = self.store.account("alice")
        b = self.fresh_store().account("alice")
        self.assertIs((yield a.acquire_pop3_lock()), True)
        self.assertIs((yield b.acquire_pop3_lock()), False)
        yield a.release_pop3_lock()
        self.assertIs((yield b.acquire_pop3_lock()), True)
        yield b.release_pop3_lock()
