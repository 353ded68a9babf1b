"""The shared fake store (tests/fakestore.py) is held to the interfaces
(verifyObject) and to the same behaviour contract as the real Maildir
store: every test below runs against both, so the fake cannot drift from
what the protocols meet in production."""

from __future__ import annotations

import io
import os
import re
import shutil
import tempfile
import time
from typing import Any

from twisted.internet import defer
from twisted.trial import unittest
from zope.interface import implementer
from zope.interface.verify import verifyClass, verifyObject

from mailsrv.store import Store, layout, maildir
from mailsrv.store.crlf import to_crlf
from mailsrv.store.interfaces import (
    FlagsChanged,
    FolderChanged,
    FolderCreated,
    FolderDeleted,
    FolderExists,
    FolderRenamed,
    IAccount,
    IAccountListener,
    IFolder,
    InvalidFolderName,
    IStore,
    MessageGone,
    MessagesAdded,
    MessagesExpunged,
    NoSuchFolder,
    StoreError,
    SubscriptionChanged,
)
from tests.fakestore import FakeAccount, FakeFolder, FakeStore, make_portal

MSG = b"From: a@example.org\nSubject: one\n\nbody\n"
MSG2 = b"From: b@example.org\r\nSubject: two\r\n\r\nother body\r\n"


class Recorder:
    """An IFolderListener that writes down what it is told."""

    def __init__(self) -> None:
        self.events: list[tuple[str, list[int]]] = []

    def messages_added(self, folder: Any, uids: list[int]) -> None:
        self.events.append(("added", list(uids)))

    def flags_changed(self, folder: Any, uids: list[int]) -> None:
        self.events.append(("flags", list(uids)))

    def messages_expunged(self, folder: Any, uids: list[int]) -> None:
        self.events.append(("expunged", list(uids)))

    def take(self) -> list[tuple[str, list[int]]]:
        ev, self.events = self.events, []
        return ev


@implementer(IAccountListener)
class AccountRecorder:
    """An IAccountListener that writes down what it is told."""

    def __init__(self) -> None:
        self.events: list[Any] = []

    def account_event(self, account: Any, event: Any) -> None:
        self.events.append(event)

    def take(self) -> list[Any]:
        ev, self.events = self.events, []
        return ev


class Contract:
    """Behaviour every IStore must show; subclasses supply the store (the
    PostgreSQL store runs it in tests/pg/test_contract.py)."""

    def make_store(self) -> Any:
        raise NotImplementedError

    def stored(self, data: bytes) -> bytes:
        """What open_message gives back for ``data``: the bytes as given
        (Maildir, the fake); a backend storing the CRLF form overrides it."""
        return data

    @defer.inlineCallbacks
    def setUp(self) -> Any:
        self.store = self.make_store()
        self.account = self.store.account("alice")
        self.inbox = yield self.account.open_folder("INBOX")
        self.rec = Recorder()
        self.inbox.add_listener(self.rec)

    def test_provides_the_interfaces(self) -> None:
        assert verifyObject(IStore, self.store)
        assert verifyObject(IAccount, self.account)
        assert verifyObject(IFolder, self.inbox)

    @defer.inlineCallbacks
    def test_append_sizes_dates_and_listeners(self) -> Any:
        uid1 = yield self.inbox.append(MSG, ["\\Seen"], 1700000000.0)
        assert self.rec.take() == [("added", [uid1])]  # told before the Deferred fired
        uid2 = yield self.inbox.append(MSG2)
        assert uid1 < uid2 and self.inbox.uidnext > uid2
        m1, m2 = self.inbox.messages()
        assert (m1.uid, m1.size, m1.flags, m1.internaldate) == (uid1, len(to_crlf(MSG)), {"\\Seen"}, 1700000000.0)
        assert m2.size == len(MSG2)
        assert self.inbox.get(uid2) is not None and self.inbox.get(uid2 + 100) is None
        f = self.inbox.open_message(uid1)
        try:
            assert f.read() == self.stored(MSG)  # as stored
        finally:
            f.close()
        assert self.inbox.total_size() == m1.size + m2.size

    @defer.inlineCallbacks
    def test_store_flags_reports_real_changes_only(self) -> Any:
        a = yield self.inbox.append(MSG)
        b = yield self.inbox.append(MSG2, ["\\Seen"])
        self.rec.take()
        changed = yield self.inbox.store_flags([a, b], ["\\Seen"], "+")
        assert changed == [a] and self.rec.take() == [("flags", [a])]
        changed = yield self.inbox.store_flags([a], ["$Work", "\\Flagged"], "=")
        assert changed == [a] and self.inbox.get(a).flags == {"$Work", "\\Flagged"}
        assert "$Work" in self.inbox.keywords()
        changed = yield self.inbox.store_flags([a], ["$Work"], "-")
        assert self.inbox.get(a).flags == {"\\Flagged"}
        yield self.inbox.expunge([b])
        changed = yield self.inbox.store_flags([b], ["\\Draft"], "+")  # gone: skipped silently
        assert changed == []

    @defer.inlineCallbacks
    def test_expunge_deleted_or_exactly_these(self) -> Any:
        a = yield self.inbox.append(MSG, ["\\Deleted"])
        b = yield self.inbox.append(MSG2)
        c = yield self.inbox.append(MSG2)
        self.rec.take()
        gone = yield self.inbox.expunge(None)
        assert gone == [a] and self.rec.take() == [("expunged", [a])]
        gone = yield self.inbox.expunge([c])
        assert gone == [c] and [m.uid for m in self.inbox.messages()] == [b]
        assert self.inbox.get(a) is None
        with self.assertRaises(MessageGone):
            self.inbox.open_message(a)
        d = yield self.inbox.append(MSG)
        assert d > c  # UIDs are never reused

    @defer.inlineCallbacks
    def test_recent_is_claimed_once(self) -> Any:
        self.inbox.claim_recent()
        a = yield self.inbox.append(MSG)
        assert self.inbox.peek_recent() == {a}
        assert self.inbox.claim_recent() == {a}
        assert self.inbox.claim_recent() == set() and self.inbox.peek_recent() == set()

    @defer.inlineCallbacks
    def test_copy_keeps_flags_and_dates(self) -> Any:
        a = yield self.inbox.append(MSG, ["\\Flagged", "$Work"], 1600000000.0)
        b = yield self.inbox.append(MSG2)
        trash = yield self.account.open_folder("Trash")
        trec = Recorder()
        trash.add_listener(trec)
        pairs = yield self.inbox.copy_to([b, a], trash)
        assert [s for s, _ in pairs] == [a, b]
        da = dict(pairs)[a]
        info = trash.get(da)
        assert (info.flags, info.internaldate) == ({"\\Flagged", "$Work"}, 1600000000.0)
        assert trec.take() == [("added", [d for _, d in pairs])]
        f = trash.open_message(da)
        try:
            assert f.read() == self.stored(MSG)
        finally:
            f.close()
        trash.remove_listener(trec)

    @defer.inlineCallbacks
    def test_cached_values_die_with_the_message(self) -> Any:
        a = yield self.inbox.append(MSG)
        b = yield self.inbox.append(MSG2)
        self.inbox.set_cached(a, "envelope", b"(x)")
        self.inbox.set_cached(b, "envelope", b"(y)")
        assert self.inbox.get_cached(a, "envelope") == b"(x)"
        assert self.inbox.get_cached(a, "header") is None
        assert self.inbox.get_cached_many([a, b, 99], "envelope") == {a: b"(x)", b: b"(y)"}
        yield self.inbox.expunge([a])
        assert self.inbox.get_cached(a, "envelope") is None
        assert self.inbox.get_cached_many([a, b], "envelope") == {b: b"(y)"}

    @defer.inlineCallbacks
    def test_folder_wide_values_outlive_messages(self) -> Any:
        a = yield self.inbox.append(MSG)
        assert self.inbox.get_folder_cached("col:x") is None
        self.inbox.set_folder_cached("col:x", b"one")
        self.inbox.set_folder_cached("col:x", b"two")
        self.inbox.set_folder_cached("col:y", b"")
        yield self.inbox.expunge([a])
        assert self.inbox.get_folder_cached("col:x") == b"two"
        assert self.inbox.get_folder_cached("col:y") == b""
        assert self.inbox.get_cached_many([0], "col:x") == {}  # not a message's value

    @defer.inlineCallbacks
    def test_one_live_folder_and_inbox_any_case(self) -> Any:
        again = yield self.account.open_folder("inbox")
        assert again is self.inbox and self.account.folder_exists("InBoX")
        with self.assertRaises(NoSuchFolder):
            yield self.account.open_folder("Nope")
        assert self.inbox.name == "INBOX"

    @defer.inlineCallbacks
    def test_folders_create_rename_delete(self) -> Any:
        assert {"INBOX", "Sent", "Drafts", "Trash", "Junk", "Archive"} <= set(self.account.list_folders())
        assert self.account.special_use("Sent") == "\\Sent" and self.account.special_use("INBOX") is None
        yield self.account.create_folder("Lists/python")
        assert self.account.folder_exists("Lists") and self.account.folder_exists("Lists/python")
        with self.assertRaises(FolderExists):
            yield self.account.create_folder("Lists")
        yield self.account.create_folder("Lists2/python")
        yield self.account.delete_folder("Lists2")  # its children stay (RFC 3501 6.3.4)
        assert not self.account.folder_exists("Lists2") and self.account.folder_exists("Lists2/python")
        assert "Lists2" not in self.account.list_folders() and "Lists2/python" in self.account.list_folders()
        with self.assertRaises(NoSuchFolder):
            yield self.account.open_folder("Lists2")
        yield self.account.rename_folder("Lists", "Groups")
        assert self.account.folder_exists("Groups/python") and not self.account.folder_exists("Lists/python")
        yield self.account.delete_folder("Groups/python")
        assert not self.account.folder_exists("Groups/python")
        with self.assertRaises(InvalidFolderName):
            yield self.account.delete_folder("INBOX")
        with self.assertRaises(NoSuchFolder):
            yield self.account.delete_folder("Groups/python")

    @defer.inlineCallbacks
    def test_deleting_a_folder_expunges_it_for_its_sessions(self) -> Any:
        yield self.account.create_folder("Tmp")
        tmp = yield self.account.open_folder("Tmp")
        uid = yield tmp.append(MSG)
        rec = Recorder()
        tmp.add_listener(rec)
        yield self.account.delete_folder("Tmp")
        assert rec.take() == [("expunged", [uid])]
        tmp.remove_listener(rec)

    @defer.inlineCallbacks
    def test_rename_inbox_moves_its_messages(self) -> Any:
        yield self.inbox.append(MSG)
        yield self.account.rename_folder("INBOX", "Old")
        old = yield self.account.open_folder("Old")
        assert len(old.messages()) == 1 and self.inbox.messages() == []

    @defer.inlineCallbacks
    def test_subscriptions(self) -> Any:
        yield defer.maybeDeferred(self.account.subscribe, "Lists/x")  # a Deferred where the write is remote
        yield defer.maybeDeferred(self.account.subscribe, "Lists/x")
        assert self.account.subscriptions().count("Lists/x") == 1
        yield defer.maybeDeferred(self.account.unsubscribe, "Lists/x")
        assert "Lists/x" not in self.account.subscriptions()

    @defer.inlineCallbacks
    def test_deliver_reaches_open_sessions(self) -> Any:
        uid = yield self.account.deliver("INBOX", MSG2, ["\\Flagged"])
        assert ("added", [uid]) in self.rec.take()
        assert self.inbox.get(uid).flags == {"\\Flagged"}
        with self.assertRaises(StoreError):
            yield self.account.deliver("Nope", MSG2)

    @defer.inlineCallbacks
    def test_deliver_reads_a_file_and_names_a_missing_folder(self) -> Any:
        """LMTP hands deliver its spool as a file object, and falls back to
        INBOX when a +detail folder went away after RCPT: that needs
        NoSuchFolder itself, not just some StoreError."""
        uid = yield self.account.deliver("INBOX", io.BytesIO(MSG))
        f = self.inbox.open_message(uid)
        try:
            assert f.read() == self.stored(MSG)
        finally:
            f.close()
        assert self.inbox.get(uid).size == len(to_crlf(MSG))
        yield self.account.create_folder("Lists")
        yield self.account.delete_folder("Lists")
        with self.assertRaises(NoSuchFolder):
            yield self.account.deliver("Lists", io.BytesIO(MSG2))
        assert [m.uid for m in self.inbox.messages()] == [uid]

    @defer.inlineCallbacks
    def test_pop3_lock_is_exclusive(self) -> Any:
        assert (yield self.account.acquire_pop3_lock()) is True
        assert (yield self.account.acquire_pop3_lock()) is False
        yield self.account.release_pop3_lock()
        assert (yield self.account.acquire_pop3_lock()) is True
        yield self.account.release_pop3_lock()

    @defer.inlineCallbacks
    def test_pop3_lock_calls_are_deferreds(self) -> Any:
        """POP3 awaits the lock and releases it through maybeDeferred: both
        calls answer with a Deferred, and the lock is the account's, however
        the account is reached again."""
        got = self.account.acquire_pop3_lock()
        assert isinstance(got, defer.Deferred) and (yield got) is True
        again = yield self.store.open_account("alice")
        assert (yield again.acquire_pop3_lock()) is False
        released = self.account.release_pop3_lock()
        assert isinstance(released, defer.Deferred) and (yield released) is None
        assert (yield again.acquire_pop3_lock()) is True
        yield again.release_pop3_lock()

    @defer.inlineCallbacks
    def test_what_the_protocols_await_is_a_deferred(self) -> Any:
        """POP3 and LMTP ``await`` these calls: each answers with a Deferred,
        not a plain value."""
        opened = self.account.open_folder("INBOX")
        assert isinstance(opened, defer.Deferred) and (yield opened) is self.inbox
        calls = [lambda: self.inbox.refresh(), lambda: self.inbox.append(MSG)]
        uids = []
        for call in calls:
            d = call()
            assert isinstance(d, defer.Deferred)
            uids.append((yield d))
        uid = uids[-1]
        for call in (lambda: self.inbox.prefetch([uid], (), "full"),
                     lambda: self.inbox.store_flags([uid], ["\\Seen"], "+"),
                     lambda: self.inbox.expunge([uid]),
                     lambda: self.account.deliver("INBOX", MSG2)):
            d = call()
            assert isinstance(d, defer.Deferred)
            yield d

    @defer.inlineCallbacks
    def test_expunge_skips_messages_already_gone(self) -> Any:
        """POP3 expunges at QUIT what the user deleted; another session may
        have expunged some of it meanwhile: the rest goes, nothing fails."""
        a = yield self.inbox.append(MSG)
        b = yield self.inbox.append(MSG2)
        c = yield self.inbox.append(MSG)
        yield self.inbox.expunge([a])
        self.rec.take()
        gone = yield self.inbox.expunge([a, b, c + 100])
        assert gone == [b] and self.rec.take() == [("expunged", [b])]
        assert [m.uid for m in self.inbox.messages()] == [c]
        gone = yield self.inbox.expunge([a])
        assert gone == [] and self.rec.take() == []

    @defer.inlineCallbacks
    def test_open_account_and_prefetch(self) -> Any:
        again = yield self.store.open_account("alice")
        assert again is self.account
        uid = yield self.inbox.append(MSG)
        self.inbox.set_cached(uid, "envelope", b"(e)")
        for kinds, body in (([], "full"), (["envelope", "header"], "header"), (["envelope"], None)):
            assert (yield self.inbox.prefetch([uid, uid + 1000], kinds, body)) is None
        assert self.inbox.get_cached(uid, "envelope") == b"(e)"
        f = self.inbox.open_message(uid)
        try:
            assert f.read() == self.stored(MSG)
        finally:
            f.close()

    @defer.inlineCallbacks
    def test_pop3_uidl(self) -> Any:
        uid = yield self.inbox.append(MSG)
        assert self.inbox.pop3_uidl(uid) == "%08x%08x" % (uid, self.inbox.uidvalidity)
        yield self.inbox.expunge([uid])
        with self.assertRaises(MessageGone):
            self.inbox.pop3_uidl(uid)


    # -- flag sets (issue 10)

    @defer.inlineCallbacks
    def test_uids_with_flag_follow_every_change(self) -> Any:
        a = yield self.inbox.append(MSG, ["\\Seen", "$Work"])
        b = yield self.inbox.append(MSG2, ["\\Flagged"])
        c = yield self.inbox.append(MSG)
        assert self.inbox.uids_with_flag("\\Seen") == {a} and self.inbox.uids_with_flag("\\Deleted") == set()
        assert self.inbox.uids_with_flag("$work") == {a} == self.inbox.uids_with_flag("$WORK")  # keywords: any case
        yield self.inbox.store_flags([b, c], ["\\Seen"], "+")
        yield self.inbox.store_flags([a], ["$Work"], "-")
        assert self.inbox.uids_with_flag("\\Seen") == {a, b, c} and self.inbox.uids_with_flag("$Work") == set()
        yield self.inbox.store_flags([b], ["$Late"], "=")
        assert self.inbox.uids_with_flag("\\Flagged") == set() and self.inbox.uids_with_flag("$Late") == {b}
        yield self.inbox.expunge([a])
        assert self.inbox.uids_with_flag("\\Seen") == {c}
        d = yield self.account.deliver("INBOX", MSG, ["\\Answered"])
        assert self.inbox.uids_with_flag("\\Answered") == {d}
        for flag in ("\\Seen", "\\Answered", "$Late"):
            assert self.inbox.uids_with_flag(flag) == {m.uid for m in self.inbox.messages() if flag in m.flags}

    # -- CONDSTORE/QRESYNC (issue 9)

    @defer.inlineCallbacks
    def test_every_change_takes_one_new_modseq(self) -> Any:
        seen = [self.inbox.highestmodseq]
        a = yield self.inbox.append(MSG)
        b = yield self.inbox.append(MSG2)
        assert self.inbox.get(b).modseq == self.inbox.highestmodseq > self.inbox.get(a).modseq > seen[0]
        seen.append(self.inbox.highestmodseq)
        heard: list[tuple[int, ...]] = []

        class Checker(Recorder):
            def flags_changed(s, folder: Any, uids: list[int]) -> None:  # noqa: N805
                heard.append(tuple(folder.get(u).modseq for u in uids) + (folder.highestmodseq,))

        checker = Checker()
        self.inbox.add_listener(checker)
        changed = yield self.inbox.store_flags([a, b], ["\\Flagged"], "+")
        assert changed == [a, b]
        m = self.inbox.highestmodseq
        assert m > seen[-1] and self.inbox.get(a).modseq == self.inbox.get(b).modseq == m
        assert heard == [(m, m, m)]  # listeners hear once the new values can be read
        self.inbox.remove_listener(checker)
        yield self.inbox.store_flags([a], ["\\Flagged"], "+")  # no change: no new mod-sequence
        assert self.inbox.highestmodseq == m
        yield self.inbox.expunge([a])
        assert self.inbox.highestmodseq > m and self.inbox.get(b).modseq == m
        assert self.inbox.vanished_since(m) == [a] and self.inbox.vanished_since(self.inbox.highestmodseq) == []
        assert self.inbox.vanished_since(seen[0]) == [a]
        assert self.inbox.changed_since(seen[0]) == [b] and self.inbox.changed_since(m) == []
        c = yield self.inbox.append(MSG)
        yield self.inbox.store_flags([b], ["\\Seen"], "+")
        assert self.inbox.changed_since(m) == [b, c] and self.inbox.changed_since(self.inbox.get(c).modseq) == [b]
        for since in range(0, self.inbox.highestmodseq + 1):
            assert self.inbox.changed_since(since) == [x.uid for x in self.inbox.messages() if x.modseq > since]

    @defer.inlineCallbacks
    def test_vanished_since_is_exact_and_never_names_a_present_uid(self) -> Any:
        uids = []
        for _ in range(6):
            uids.append((yield self.inbox.append(MSG)))
        marks = [self.inbox.highestmodseq]
        yield self.inbox.expunge(uids[1:3])
        marks.append(self.inbox.highestmodseq)
        yield self.inbox.store_flags([uids[0]], ["\\Seen"], "+")
        yield self.inbox.expunge([uids[4]])
        assert self.inbox.vanished_since(marks[0]) == [uids[1], uids[2], uids[4]]
        assert self.inbox.vanished_since(marks[1]) == [uids[4]]
        assert self.inbox.vanished_floor <= marks[0]
        present = set(self.inbox.uids())
        assert not present & set(self.inbox.vanished_since(0))

    @defer.inlineCallbacks
    def test_store_unchanged_since(self) -> Any:
        a = yield self.inbox.append(MSG)
        b = yield self.inbox.append(MSG2)
        mb = self.inbox.get(b).modseq
        yield self.inbox.store_flags([a], ["\\Seen"], "+")
        ma = self.inbox.get(a).modseq
        assert ma > mb
        self.rec.take()
        changed, modified = yield self.inbox.store_flags_unchanged_since([a, b, b + 50], ["\\Flagged"], "+", mb)
        assert (changed, modified) == ([b], [a])  # a changed after mb; b+50 does not exist
        assert self.inbox.get(a).flags == {"\\Seen"} and self.inbox.get(b).flags == {"\\Flagged"}
        assert self.rec.take() == [("flags", [b])]
        changed, modified = yield self.inbox.store_flags_unchanged_since([a], ["\\Seen"], "+", ma)
        assert (changed, modified) == ([], [])  # passes the test, changes nothing
        changed, modified = yield self.inbox.store_flags_unchanged_since([a, b], ["\\Seen"], "-", 0)
        assert (changed, modified) == ([], [a, b])  # 0: every message has been modified since
        yield self.inbox.expunge([a])
        changed, modified = yield self.inbox.store_flags_unchanged_since([a], ["\\Seen"], "-", 1)
        assert (changed, modified) == ([], [])
    @defer.inlineCallbacks
    def test_account_events_itemise_message_changes_in_every_folder(self) -> Any:
        rec = AccountRecorder()
        assert verifyObject(IAccountListener, rec)
        self.account.add_account_listener(rec)
        self.account.add_account_listener(rec)  # once only
        a = yield self.inbox.append(MSG)
        yield self.inbox.store_flags([a], ["\\Seen"], "+")
        yield self.inbox.expunge([a])
        # a delivery into a folder no session has open is told too
        b = yield self.account.deliver("Trash", MSG2)
        assert rec.take() == [MessagesAdded("INBOX", (a,)), FlagsChanged("INBOX", (a,)),
                              MessagesExpunged("INBOX", (a,)), MessagesAdded("Trash", (b,))]
        self.account.remove_account_listener(rec)
        yield self.inbox.append(MSG)
        assert rec.take() == []

    @defer.inlineCallbacks
    def test_account_events_for_the_folder_list_and_subscriptions(self) -> Any:
        rec = AccountRecorder()
        self.account.add_account_listener(rec)
        yield self.account.create_folder("Lists/x")
        assert rec.take() == [FolderCreated("Lists"), FolderCreated("Lists/x")]
        yield self.account.rename_folder("Lists", "Old")
        assert rec.take() == [FolderRenamed("Lists", "Old"), FolderRenamed("Lists/x", "Old/x")]
        self.account.subscribe("Old/x")
        self.account.subscribe("Old/x")
        self.account.unsubscribe("Old/x")
        assert rec.take() == [SubscriptionChanged("Old/x", True), SubscriptionChanged("Old/x", False)]
        yield self.account.delete_folder("Old/x")
        assert rec.take()[-1] == FolderDeleted("Old/x")

    @defer.inlineCallbacks
    def test_poll_folders_is_quiet_without_changes(self) -> Any:
        rec = AccountRecorder()
        self.account.add_account_listener(rec)
        yield self.account.poll_folders(["INBOX", "Trash", "Nope", "bad//name"])
        yield self.account.poll_folders(["INBOX", "Trash"])
        assert rec.take() == []


    @defer.inlineCallbacks
    def test_mailboxid_stays_through_rename_and_is_new_after_recreate(self) -> Any:
        yield self.account.create_folder("Projects")
        f = yield self.account.open_folder("Projects")
        mid = f.mailboxid
        assert re.fullmatch(r"[A-Za-z0-9_-]{1,255}", mid) and mid != self.inbox.mailboxid
        yield self.account.rename_folder("Projects", "Done")
        f2 = yield self.account.open_folder("Done")
        assert f2.mailboxid == mid
        yield self.account.delete_folder("Done")
        yield self.account.create_folder("Done")
        f3 = yield self.account.open_folder("Done")
        assert f3.mailboxid != mid

    @defer.inlineCallbacks
    def test_save_date(self) -> Any:
        before = time.time() - 2
        uid = yield self.inbox.append(MSG, [], 1000000000.0)
        saved = self.inbox.save_date(uid)
        assert saved is not None and before <= saved <= time.time() + 2  # not the internal date
        yield self.inbox.store_flags([uid], ["\\Seen"], "+")
        assert self.inbox.save_date(uid) == saved  # a flag change does not move it
        yield self.inbox.expunge([uid])
        assert self.inbox.save_date(uid) is None

    @defer.inlineCallbacks
    def test_special_use_given_follows_rename_and_goes_with_delete(self) -> Any:
        yield self.account.create_folder("Old mail")
        assert self.account.special_use("Old mail") is None
        self.account.set_special_use("Old mail", "\\archive")
        assert self.account.special_use("Old mail") == "\\Archive"
        with self.assertRaises(InvalidFolderName):
            self.account.set_special_use("Old mail", "\\Flagged")
        with self.assertRaises(NoSuchFolder):
            self.account.set_special_use("Nope", "\\Junk")
        yield self.account.rename_folder("Old mail", "Older")
        assert self.account.special_use("Older") == "\\Archive" and self.account.special_use("Old mail") is None
        yield self.account.delete_folder("Older")
        yield self.account.create_folder("Older")
        assert self.account.special_use("Older") is None
        self.account.set_special_use("Older", "\\Junk")
        self.account.set_special_use("Older", None)
        assert self.account.special_use("Older") is None


class SharedFakeContract(Contract, unittest.TestCase):
    def make_store(self) -> Any:
        return FakeStore()

    def test_classes_implement_the_interfaces(self) -> None:
        assert verifyClass(IStore, FakeStore)
        assert verifyClass(IAccount, FakeAccount)
        assert verifyClass(IFolder, FakeFolder)

    @defer.inlineCallbacks
    def test_failures_can_be_injected(self) -> Any:
        self.inbox.fail["expunge"] = StoreError("read-only file system")
        with self.assertRaises(StoreError):
            yield self.inbox.expunge(None)
        del self.inbox.fail["expunge"]
        self.account.fail["open_folder"] = StoreError("cannot open")
        with self.assertRaises(StoreError):
            yield self.account.open_folder("INBOX")
        self.store.fail["account"] = OSError(5, "Input/output error")
        with self.assertRaises(OSError):
            self.store.account("bob")
        self.account.fail["acquire_pop3_lock"] = StoreError("lock file unreadable")
        d = self.account.acquire_pop3_lock()
        assert isinstance(d, defer.Deferred)  # failed, not raised: what the real store's thread gives
        with self.assertRaises(StoreError):
            yield d
        assert not self.account.pop3_locked
        self.account.fail["deliver"] = OSError(28, "No space left on device")
        with self.assertRaises(OSError):
            yield self.account.deliver("INBOX", MSG)
        assert self.account.contents() == []

    @defer.inlineCallbacks
    def test_counters_and_external_delivery(self) -> Any:
        uid = yield self.inbox.append(MSG)
        self.inbox.open_message(uid).read()
        assert self.inbox.opens == 1 and self.inbox.bytes_read == len(MSG)
        self.inbox.drop_external(MSG2)
        self.rec.take()
        yield self.inbox.refresh()
        assert self.rec.take() == [("added", [uid + 1])] and self.inbox.refresh_count == 1
        assert self.inbox.calls == [("append", ([], None))]

    @defer.inlineCallbacks
    def test_what_tests_observe(self) -> Any:
        """The files handed out, the calls as made, the stored bytes."""
        a = yield self.inbox.append(MSG)
        b = yield self.account.deliver("INBOX", MSG2, ["\\Seen"])
        assert self.inbox.contents() == [MSG, MSG2] == self.account.contents("inbox")
        assert self.account.contents("Trash") == []
        f = self.inbox.open_message(a)
        assert self.inbox.opened == [f] and not f.closed
        f.close()
        assert self.inbox.opened[0].closed
        yield self.inbox.store_flags([b, a], ["\\Seen", "\\Answered"], "+")
        yield self.inbox.expunge([b, a, b])
        yield self.inbox.expunge(None)
        assert self.inbox.calls_to("store_flags") == [([b, a], ["\\Answered", "\\Seen"], "+")]
        assert self.inbox.calls_to("expunge") == [([b, a, b],), ([],)]  # as asked, repeats and all
        assert self.inbox.contents() == [] and self.account.delivered == [("INBOX", MSG2, ("\\Seen",))]

    def test_held_deliveries(self) -> None:
        self.account.hold_deliveries = True
        d = self.account.deliver("INBOX", MSG)
        assert not d.called and len(self.inbox.messages()) == 1
        self.account.release()
        assert self.successResultOf(d) == self.inbox.messages()[0].uid

    def test_unheld_lock_release_is_a_test_bug(self) -> None:
        with self.assertRaises(AssertionError):
            self.account.release_pop3_lock()

    def test_portal_logs_in_to_store_accounts(self) -> None:
        from twisted.cred.credentials import UsernamePassword
        portal = make_portal(self.store)
        iface, avatar, logout = self.successResultOf(
            portal.login(UsernamePassword(b"alice", b"secret"), None, IAccount))
        assert avatar.own is self.account  # the user's view over their account (issue 12)
        assert self.store.views == ["alice"]
        logout()
        assert portal.realm.logouts == 1


class MaildirStoreContract(Contract, unittest.TestCase):
    def make_store(self) -> Any:
        data = tempfile.mkdtemp(prefix="mailsrv-fakestore-contract-")
        self.addCleanup(shutil.rmtree, data, True)
        store = Store(data)
        self.addCleanup(store.close)
        return store

    @defer.inlineCallbacks
    def test_poll_notices_another_process_in_a_folder_nobody_has_open(self) -> Any:
        rec = AccountRecorder()
        self.account.add_account_listener(rec)
        yield self.account.poll_folders(["Trash"])  # the first poll remembers
        path = layout.folder_dir(self.store.data_dir, "alice", "Trash")
        maildir.deliver(path, MSG)  # as `mailsrv deliver` in another process
        st = os.stat(os.path.join(path, "new"))
        os.utime(os.path.join(path, "new"), ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000))
        yield self.account.poll_folders(["Trash"])
        assert rec.take() == [FolderChanged("Trash")]
        yield self.account.poll_folders(["Trash"])
        assert rec.take() == []
