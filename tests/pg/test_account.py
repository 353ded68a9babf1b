"""PgAccount and PgStore: folders, subscriptions, delivery, the POP3 lock."""

from twisted.internet import defer

from mailsrv.store.interfaces import (
    FolderExists,
    IAccount,
    IFolder,
    InvalidFolderName,
    IStore,
    NoSuchFolder,
)

from .helpers import PgStoreCase, Recorder

MSG = b"Subject: x\n\nbody\n"


class AccountTests(PgStoreCase):
    @defer.inlineCallbacks
    def setUp(self):
        super().setUp()
        self.account = yield self.store.open_account("carol")

    def test_interfaces_and_new_user_defaults(self):
        self.assertTrue(IStore.providedBy(self.store))
        self.assertTrue(IAccount.providedBy(self.account))
        self.assertIs(self.store.account("carol"), self.account)
        self.assertEqual(self.account.list_folders(), ["INBOX", "Archive", "Drafts", "Junk", "Sent", "Trash"])
        self.assertEqual(self.account.special_use("Sent"), "\\Sent")
        self.assertEqual(self.account.special_use("Trash"), "\\Trash")
        self.assertIsNone(self.account.special_use("INBOX"))
        self.assertEqual(sorted(self.account.subscriptions()), ["Archive", "Drafts", "Junk", "Sent", "Trash"])
        self.assertTrue(self.account.folder_exists("inbox"))
        self.assertFalse(self.account.folder_exists("Nope"))
        self.assertFalse(self.account.folder_exists("a.b"))
        self.assertRaises(ValueError, self.store.account, "../evil")
        self.assertEqual(self.store.stats["blocking"], 0)

    def test_account_not_opened_is_read_blocking_and_logged(self):
        other = self.store.account("dave")
        self.assertEqual(other.list_folders()[0], "INBOX")
        self.assertEqual(self.store.stats["blocking"], 1)

    @defer.inlineCallbacks
    def test_open_folder(self):
        f = yield self.account.open_folder("inbox")
        self.assertTrue(IFolder.providedBy(f))
        self.assertEqual(f.name, "INBOX")
        yield self.assertFailure(self.account.open_folder("Nope"), NoSuchFolder)
        yield self.assertFailure(self.account.open_folder("bad..name"), NoSuchFolder)

    @defer.inlineCallbacks
    def test_create_nested_non_ascii(self):
        yield self.account.create_folder("Entwürfe/Ärger/日本")
        self.assertTrue(self.account.folder_exists("Entwürfe"))
        self.assertIn("Entwürfe/Ärger/日本", self.account.list_folders())
        yield self.assertFailure(self.account.create_folder("Entwürfe/Ärger/日本"), FolderExists)
        yield self.assertFailure(self.account.create_folder("INBOX"), FolderExists)
        for bad in ("a.b", "a//b", "/a", "a/", "", "x\ty"):
            yield self.assertFailure(self.account.create_folder(bad), InvalidFolderName)
        f = yield self.account.open_folder("Entwürfe/Ärger/日本")
        uid = yield f.append(MSG)
        self.assertEqual(uid, 1)
        yield self.account.create_folder("INBOX/Child")
        self.assertIn("INBOX/Child", self.account.list_folders())

    @defer.inlineCallbacks
    def test_delete(self):
        yield self.account.create_folder("Work/Old")
        yield self.account.create_folder("Keep/Child")
        keep = yield self.account.open_folder("Keep")
        yield keep.append(MSG)
        yield self.account.delete_folder("Keep")  # with an inferior: allowed, the child stays (RFC 3501 6.3.4)
        self.assertFalse(self.account.folder_exists("Keep"))
        self.assertTrue(self.account.folder_exists("Keep/Child"))
        self.assertEqual([n for n in self.account.list_folders() if n.startswith("Keep")], ["Keep/Child"])
        yield self.assertFailure(self.account.open_folder("Keep"), NoSuchFolder)
        yield self.assertFailure(self.account.delete_folder("INBOX"), InvalidFolderName)
        yield self.assertFailure(self.account.delete_folder("Nope"), NoSuchFolder)
        f = yield self.account.open_folder("Work/Old")
        yield f.append(MSG)
        yield f.append(MSG)
        rec = Recorder()
        f.add_listener(rec)
        yield self.account.delete_folder("Work/Old")
        self.assertEqual(rec.take(), [("expunged", [1, 2])])
        self.assertFalse(self.account.folder_exists("Work/Old"))
        yield self.account.delete_folder("Work")
        self.assertNotIn("Work", self.account.list_folders())
        yield self.account.create_folder("Work")
        g = yield self.account.open_folder("Work")
        self.assertIsNot(g, f)
        self.assertEqual(g.messages(), [])
        self.assertNotEqual(g.uidvalidity, f.uidvalidity)

    @defer.inlineCallbacks
    def test_rename_with_children_and_live_folder(self):
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
        self.assertEqual(f.open_message(uid).read(), MSG.replace(b"\n", b"\r\n"))
        uid2 = yield f.append(MSG)
        self.assertEqual(uid2, uid + 1)

    @defer.inlineCallbacks
    def test_rename_inbox_moves_messages(self):
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
        self.assertEqual(uid, 3)

    @defer.inlineCallbacks
    def test_subscriptions(self):
        yield self.account.subscribe("Not/There/Yet")
        yield self.account.subscribe("Entwürfe")
        yield self.account.subscribe("Entwürfe")
        self.assertIn("Not/There/Yet", self.account.subscriptions())
        self.assertEqual(self.account.subscriptions().count("Entwürfe"), 1)
        yield self.account.unsubscribe("Entwürfe")
        self.assertNotIn("Entwürfe", self.account.subscriptions())
        self.assertRaises(InvalidFolderName, self.account.subscribe, "a..b")
        other = yield self.fresh_store().open_account("carol")
        self.assertIn("Not/There/Yet", other.subscriptions())
        self.assertNotIn("Entwürfe", other.subscriptions())

    @defer.inlineCallbacks
    def test_deliver_live_and_not_live(self):
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
    def test_group_commit_of_concurrent_deliveries(self):
        uids = yield defer.gatherResults([self.account.deliver("INBOX", MSG + b"%d" % i) for i in range(30)])
        self.assertEqual(sorted(uids), list(range(1, 31)))

    @defer.inlineCallbacks
    def test_pop3_lock(self):
        got = yield self.account.acquire_pop3_lock()
        self.assertTrue(got)
        got = yield self.account.acquire_pop3_lock()
        self.assertFalse(got)
        dave = yield self.store.open_account("dave")
        got = yield dave.acquire_pop3_lock()
        self.assertTrue(got)
        yield self.account.release_pop3_lock()
        got = yield self.account.acquire_pop3_lock()
        self.assertTrue(got)

    @defer.inlineCallbacks
    def test_idle_folder_released_and_reloaded(self):
        f = yield self.account.open_folder("INBOX")
        rec = Recorder()
        f.add_listener(rec)
        yield f.append(MSG)
        f.remove_listener(rec)
        self.assertIsNone(self.account.live_folder("INBOX"))
        g = yield self.account.open_folder("INBOX")
        self.assertIsNot(g, f)
        self.assertEqual(g.uids(), [1])
