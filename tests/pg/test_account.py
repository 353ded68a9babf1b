"""PgAccount and PgStore: folders, subscriptions, delivery, the POP3 lock."""

from twisted.internet import defer

from mailsrv.store.interfaces import (
    FolderExists,
    IAccount,
    InvalidFolderName,
    IStore,
    NoSuchFolder,
)
from tests.store.behaviour import AccountBehaviour

from .helpers import PgStoreCase, Recorder

MSG = b"Subject: x\n\nbody\n"


class AccountTests(PgStoreCase, AccountBehaviour):
    @defer.inlineCallbacks
    def setUp(self):
        super().setUp()
        self.account = yield self.store.open_account("carol")

    def stored(self, message):
        return message.replace(b"\n", b"\r\n")  # bodies are kept in their CRLF form

    def settled(self, folder):
        return defer.succeed(None)  # nothing runs behind a write

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

