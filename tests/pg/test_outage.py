"""The database goes away under a running store (restart, crash): every
operation fails with StoreUnavailable (code UNAVAILABLE) - never a crash,
never a wrong answer - and the store recovers by itself once PostgreSQL is
back: queries, the change listener and the session locks."""

from __future__ import annotations

import pytest
from twisted.internet import defer, threads
from twisted.trial import unittest

from mailsrv.store.pg.cluster import TempCluster
from mailsrv.store.pg.errors import StoreUnavailable
from mailsrv.store.pg.store import PgStore

from .helpers import Recorder, sleep, until

MSG = b"Subject: outage\r\n\r\nbody\r\n"


@pytest.fixture(scope="module")
def own_cluster(pg_cluster):
    """A cluster of this module's own: these tests stop and kill it."""
    c = TempCluster(fsync=False)
    c.start()
    yield c
    c.destroy()


class OutageTests(unittest.TestCase):
    timeout = 120

    @pytest.fixture(autouse=True)
    def _cluster(self, own_cluster):
        self.cluster = own_cluster

    def setUp(self):
        self.store = PgStore(self.cluster.dsn)
        self.other = PgStore(self.cluster.dsn)
        self.addCleanup(self.other.close)
        self.addCleanup(self.store.close)

    def _stop(self, mode: str) -> defer.Deferred:
        if mode == "kill":
            return threads.deferToThread(self.cluster.kill)
        return threads.deferToThread(self.cluster.stop, mode)

    def _start(self) -> defer.Deferred:
        return threads.deferToThread(self.cluster.pg_ctl_start)

    @defer.inlineCallbacks
    def _cycle(self, mode: str):
        account = yield self.store.open_account(f"user-{mode}")
        inbox = yield account.open_folder("INBOX")
        rec = Recorder()
        inbox.add_listener(rec)
        before = yield inbox.append(MSG)
        remote = yield (yield self.other.open_account(f"user-{mode}")).open_folder("INBOX")
        yield self._stop(mode)
        try:
            for op in (lambda: inbox.append(MSG), lambda: inbox.store_flags([before], ["\\Seen"], "+"),
                       inbox.refresh, lambda: account.create_folder("During"),
                       lambda: self.store.open_account("someone-new"), account.acquire_pop3_lock):
                f = yield self.assertFailure(op(), StoreUnavailable)
                self.assertEqual(f.code, "UNAVAILABLE")
            self.assertEqual(inbox.uids(), [before])  # the view is unchanged, not emptied
            self.assertEqual(inbox.get(before).flags, frozenset())
        finally:
            yield self._start()
        uid = yield eventually(lambda: inbox.append(MSG))
        self.assertGreater(uid, before)
        yield inbox.store_flags([before], ["\\Seen"], "+")
        self.assertEqual(inbox.get(before).flags, {"\\Seen"})
        got = yield account.acquire_pop3_lock()
        self.assertTrue(got)
        yield until(lambda: self.store.listener.listening and self.other.listener.listening, timeout=30)
        rec.take()
        uid2 = yield remote.append(MSG)
        yield until(lambda: inbox.get(uid2) is not None, timeout=5)
        self.assertEqual(rec.take(), [("added", [uid2])])

    def test_fast_restart(self):
        return self._cycle("fast")

    def test_crash_and_recovery(self):
        return self._cycle("immediate")

    def test_postmaster_killed(self):
        return self._cycle("kill")

    @defer.inlineCallbacks
    def test_acknowledged_writes_survive_a_crash_restart(self):
        account = yield self.store.open_account("durable")
        inbox = yield account.open_folder("INBOX")
        uids = yield defer.gatherResults([inbox.append(MSG + b"%d" % i) for i in range(20)])
        yield inbox.store_flags(uids[:5], ["\\Flagged"], "+")
        yield inbox.expunge(uids[5:10])
        yield self._stop("immediate")
        yield self._start()
        fresh = PgStore(self.cluster.dsn)
        self.addCleanup(fresh.close)
        f = yield (yield fresh.open_account("durable")).open_folder("INBOX")
        self.assertEqual(f.uids(), sorted(uids[:5] + uids[10:]))
        self.assertEqual([m.uid for m in f.messages() if "\\Flagged" in m.flags], sorted(uids[:5]))
        yield f.prefetch(f.uids(), body="full")
        for u in f.uids():
            self.assertTrue(f.open_message(u).read().startswith(b"Subject: outage"))


@defer.inlineCallbacks
def eventually(op, timeout: float = 10.0):
    """``op()`` until it stops failing with StoreUnavailable (the store
    looks for the database again at most every PROBE_INTERVAL)."""
    from twisted.internet import reactor

    deadline = reactor.seconds() + timeout
    while True:
        try:
            result = yield op()
            return result
        except StoreUnavailable:
            if reactor.seconds() > deadline:
                raise
            yield sleep(0.05)
