"""Account listeners (NOTIFY, RFC 5465) hear a delivery of this account's
into a folder no session has open once, itemised, whenever its own
change notification arrives; another process's change as FolderChanged."""

from __future__ import annotations

from typing import Any

from twisted.internet import defer
from twisted.trial import unittest

from mailsrv.store.interfaces import FolderChanged, MessagesAdded
from mailsrv.store.pg.echoes import OwnWrites
from tests.test_fakestore import AccountRecorder

from .helpers import PgStoreCase, sleep, until

MSG = b"From: a@example.com\nSubject: hi\n\nhello\n"


class OwnWritesTests(unittest.TestCase):
    def test_echo_before_or_after_the_write_returns_is_dropped(self) -> None:
        own = OwnWrites()
        own.started(7)
        assert own.notified(7, 5) is False  # held while the write is in flight
        assert own.finished(7, 5) is False  # ... and it was the write's own
        own.started(7)
        assert own.finished(7, 6) is False
        assert own.notified(7, 6) is False  # the echo came after
        assert own.notified(7, 7) is True  # someone else's

    def test_a_change_in_between_is_told(self) -> None:
        own = OwnWrites()
        own.started(7)
        own.started(7)
        assert own.notified(7, 4) is False and own.notified(7, 5) is False
        assert own.finished(7, 5) is False  # one still in flight: still held
        own.notified(7, 6)
        assert own.finished(7, 6) is True  # 4 was another process's
        assert own.notified(7, -1) is True  # the folder was deleted
        own.started(8)
        assert own.finished(8, None) is False  # failed, nothing held


class Deliveries(PgStoreCase):
    @defer.inlineCallbacks
    def test_own_deliveries_told_itemised_only_and_other_nodes_as_folder_changed(self) -> Any:
        account = yield self.store.open_account("alice")
        rec = AccountRecorder()
        account.add_account_listener(rec)
        uids = []
        for _ in range(10):
            uids.append((yield account.deliver("Trash", MSG)))
        yield defer.gatherResults([account.deliver("Trash", MSG) for _ in range(5)])
        yield sleep(0.3)  # every echo has arrived
        events = rec.take()
        assert all(isinstance(e, MessagesAdded) and e.folder == "Trash" for e in events), events
        assert sorted(u for e in events for u in e.uids) == list(range(1, 16))
        other = self.fresh_store()
        yield (yield other.open_account("alice")).deliver("Trash", MSG)
        yield until(lambda: rec.events)
        yield sleep(0.1)
        assert rec.take() == [FolderChanged("Trash")]
