"""Store behaviour that both backends share, written once (issue 13: one
suite, not a copy per backend).  The mixins are not test cases themselves:
``tests/store/test_account.py``/``test_folder.py`` run them on the Maildir
store and ``tests/pg/test_account.py``/``test_folder.py`` on PostgreSQL,
each giving ``self.account`` (and for folders ``self.inbox``/``self.rec``)
and the two hooks below; what only one backend does stays in its own file."""

from __future__ import annotations

from typing import Any

from twisted.internet import defer

from mailsrv.store.interfaces import FolderExists, IFolder, InvalidFolderName, NoSuchFolder

from .helpers import Recorder

MSG = b"Subject: x\n\nbody\n"


class Backend:
    """The hooks a backend's test case gives the shared tests."""

    account: Any

    def stored(self, message: bytes) -> bytes:
        """What ``open_message`` gives back for ``message`` as appended."""
        raise NotImplementedError

    def settled(self, folder: Any) -> defer.Deferred[Any]:
        """Fires once what the folder does in the background after a write is done."""
        raise NotImplementedError


class AccountBehaviour(Backend):
    @defer.inlineCallbacks
    def test_open_folder(self) -> Any:
        f = yield self.account.open_folder("inbox")
        self.assertTrue(IFolder.providedBy(f))
        self.assertEqual(f.name, "INBOX")
        yield self.assertFailure(self.account.open_folder("Nope"), NoSuchFolder)
        yield self.assertFailure(self.account.open_folder("bad..name"), NoSuchFolder)

    @defer.inlineCallbacks
    def test_rename_with_children_and_live_folder(self) -> Any:
        yield self.account.create_folder("Proj/Sub")
        yield self.account.subscribe("Proj/Sub")
        f = yield self.account.open_folder("Proj/Sub")
        f.add_listener(Recorder())
        uid = yield f.append(MSG, ["\\Seen"])
        yield self.assertFailure(self.account.rename_folder("Proj", "Proj/Inner"), InvalidFolderName)
        yield self.assertFailure(self.account.rename_folder("Proj", "Sent"), FolderExists)
        yield self.assertFailure(self.account.rename_folder("Nope", "X"), NoSuchFolder)
        yield self.account.rename_folder("Proj", "Archive/2024/Proj")
        names = self.account.list_folders()
        self.assertIn("Archive/2024/Proj/Sub", names)
        self.assertNotIn("Proj", names)
        self.assertIn("Archive/2024/Proj/Sub", self.account.subscriptions())
        self.assertEqual(f.name, "Archive/2024/Proj/Sub")
        again = yield self.account.open_folder("Archive/2024/Proj/Sub")
        self.assertIs(again, f)
        self.assertEqual(f.open_message(uid).read(), self.stored(MSG))
        uid2 = yield f.append(MSG)
        self.assertEqual(uid2, uid + 1)

    @defer.inlineCallbacks
    def test_rename_inbox_moves_messages(self) -> Any:
        inbox = yield self.account.open_folder("INBOX")
        rec = Recorder()
        inbox.add_listener(rec)
        yield inbox.append(MSG, ["\\Seen", "$Kw"])
        yield inbox.append(MSG)
        yield self.account.create_folder("INBOX/Kept")
        yield self.account.rename_folder("INBOX", "Old mail")
        self.assertEqual(rec.take()[-1], ("expunged", [1, 2]))
        self.assertEqual(inbox.messages(), [])
        self.assertIn("INBOX/Kept", self.account.list_folders())
        old = yield self.account.open_folder("Old mail")
        self.assertEqual(len(old.messages()), 2)
        self.assertIn(frozenset({"\\Seen", "$Kw"}), [m.flags for m in old.messages()])
        uid = yield inbox.append(MSG)
        self.assertEqual(uid, 3)  # INBOX keeps its UIDVALIDITY, UIDs are not reused

    @defer.inlineCallbacks
    def test_deliver_live_and_not_live(self) -> Any:
        uid = yield self.account.deliver("INBOX", MSG)
        self.assertEqual(uid, 1)
        inbox = yield self.account.open_folder("INBOX")
        self.assertEqual(inbox.uids(), [1])
        self.assertEqual(inbox.claim_recent(), {1})
        rec = Recorder()
        inbox.add_listener(rec)
        uid = yield self.account.deliver("INBOX", MSG, ["\\Flagged"])
        self.assertEqual(uid, 2)
        self.assertEqual(rec.take(), [("added", [2])])
        self.assertEqual(inbox.get(2).flags, {"\\Flagged"})
        yield self.assertFailure(self.account.deliver("Nope", MSG), NoSuchFolder)
        uid = yield self.account.deliver("Junk", MSG)
        self.assertEqual(uid, 1)

    @defer.inlineCallbacks
    def test_idle_folder_released_and_reloaded(self) -> Any:
        f = yield self.account.open_folder("INBOX")
        rec = Recorder()
        f.add_listener(rec)
        yield f.append(MSG)
        f.remove_listener(rec)
        yield self.settled(f)
        self.assertIsNone(self.account.live_folder("INBOX"))
        g = yield self.account.open_folder("INBOX")
        self.assertIsNot(g, f)
        self.assertEqual(g.uids(), [1])


class FolderBehaviour(Backend):
    inbox: Any
    rec: Recorder

    @defer.inlineCallbacks
    def test_two_sessions_share_one_folder(self) -> Any:
        other = yield self.account.open_folder("inbox")
        self.assertIs(other, self.inbox)
        rec2 = Recorder()
        other.add_listener(rec2)
        uid = yield other.append(MSG)
        yield self.inbox.store_flags([uid], ["\\Seen"], "+")
        self.assertEqual(self.rec.take(), rec2.take())
        self.assertEqual(other.claim_recent(), {uid})
        self.assertEqual(self.inbox.claim_recent(), set())
        other.remove_listener(rec2)
        again = yield self.account.open_folder("INBOX")
        self.assertIs(again, self.inbox)  # still listened to by the first session

    @defer.inlineCallbacks
    def test_pop3_uidl(self) -> Any:
        uid = yield self.inbox.append(MSG)
        self.assertEqual(self.inbox.pop3_uidl(uid), "%08x%08x" % (uid, self.inbox.uidvalidity))

    @defer.inlineCallbacks
    def test_deleted_folder_refuses(self) -> Any:
        sent = yield self.account.open_folder("Sent")
        yield self.account.delete_folder("Sent")
        yield self.assertFailure(sent.append(MSG), NoSuchFolder)
        yield self.assertFailure(sent.store_flags([1], ["\\Seen"], "+"), NoSuchFolder)
