import os

from twisted.internet import defer

from mailsrv.store import layout
from mailsrv.store.interfaces import (
    FolderExists,
    IAccount,
    InvalidFolderName,
    IStore,
    NoSuchFolder,
)

from .behaviour import AccountBehaviour
from .helpers import Recorder, StoreCase, files_in

MSG = b"Subject: x\n\nbody\n"


class AccountTests(StoreCase, AccountBehaviour):
    def setUp(self):
        super().setUp()
        self.account = self.store.account("carol")

    def stored(self, message):
        return message  # kept as delivered

    def settled(self, folder):
        return folder.quiesce()

    @defer.inlineCallbacks
    def test_delivery_lands_in_new(self):
        yield self.account.deliver("INBOX", MSG)
        inbox = yield self.account.open_folder("INBOX")
        self.assertEqual(len(files_in(inbox.path, "new")), 1)

    def test_interfaces_and_new_user_defaults(self):
        self.assertTrue(IStore.providedBy(self.store))
        self.assertTrue(IAccount.providedBy(self.account))
        self.assertIs(self.store.account("carol"), self.account)
        self.assertEqual(self.account.list_folders(), ["INBOX", "Archive", "Drafts", "Junk", "Sent", "Trash"])
        self.assertEqual(self.account.special_use("Sent"), "\\Sent")
        self.assertEqual(self.account.special_use("Trash"), "\\Trash")
        self.assertIsNone(self.account.special_use("INBOX"))
        self.assertEqual(sorted(self.account.subscriptions()), ["Archive", "Drafts", "Junk", "Sent", "Trash"])
        root = os.path.join(self.data, "carol", "Maildir")
        for sub in ("cur", "new", "tmp"):
            self.assertTrue(os.path.isdir(os.path.join(root, sub)))
            self.assertTrue(os.path.isdir(os.path.join(root, ".Sent", sub)))
        self.assertTrue(os.path.exists(os.path.join(root, ".Sent", "maildirfolder")))
        self.assertTrue(self.account.folder_exists("inbox"))
        self.assertFalse(self.account.folder_exists("Nope"))
        self.assertFalse(self.account.folder_exists("a.b"))
        self.assertRaises(ValueError, self.store.account, "../evil")

    @defer.inlineCallbacks
    def test_create_nested_non_ascii(self):
        yield self.account.create_folder("Entwürfe/Ärger/日本")
        self.assertTrue(self.account.folder_exists("Entwürfe"))
        self.assertIn("Entwürfe/Ärger/日本", self.account.list_folders())
        root = os.path.join(self.data, "carol", "Maildir")
        self.assertTrue(os.path.isdir(os.path.join(root, ".Entw&APw-rfe.&AMQ-rger.&ZeVnLA-")))
        yield self.assertFailure(self.account.create_folder("Entwürfe/Ärger/日本"), FolderExists)
        yield self.assertFailure(self.account.create_folder("INBOX"), FolderExists)
        for bad in ("a.b", "a//b", "/a", "a/", "", "x\ty"):
            yield self.assertFailure(self.account.create_folder(bad), InvalidFolderName)
        f = yield self.account.open_folder("Entwürfe/Ärger/日本")
        uid = yield f.append(MSG)
        self.assertEqual(uid, 1)
        yield self.account.create_folder("INBOX/Child")
        self.assertTrue(os.path.isdir(os.path.join(root, ".INBOX.Child")))

    @defer.inlineCallbacks
    def test_delete(self):
        yield self.account.create_folder("Work/Old")
        # a folder with children goes, its messages with it; the children stay (RFC 3501 6.3.4)
        yield self.account.create_folder("Work/Old/Deep")
        parent = yield self.account.open_folder("Work/Old")
        yield parent.append(MSG)
        prec = Recorder()
        parent.add_listener(prec)
        yield self.account.delete_folder("Work/Old")
        self.assertEqual(prec.take(), [("expunged", [1])])
        self.assertFalse(self.account.folder_exists("Work/Old"))
        self.assertTrue(self.account.folder_exists("Work/Old/Deep"))
        self.assertIn("Work/Old/Deep", self.account.list_folders())
        self.assertNotIn("Work/Old", self.account.list_folders())
        yield self.assertFailure(self.account.open_folder("Work/Old"), NoSuchFolder)
        yield self.assertFailure(self.account.delete_folder("Work/Old"), NoSuchFolder)
        yield self.account.create_folder("Work/Old")  # the name can be a mailbox again, a new one
        again = yield self.account.open_folder("Work/Old")
        self.assertEqual(again.messages(), [])
        yield self.account.delete_folder("Work/Old/Deep")
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
        self.assertEqual(sorted(os.listdir(os.path.join(self.data, "carol"))), ["Maildir"])
        # a new folder of the same name is a new mailbox
        yield self.account.create_folder("Work")
        g = yield self.account.open_folder("Work")
        self.assertIsNot(g, f)
        self.assertEqual(g.messages(), [])

    def test_subscriptions(self):
        self.account.subscribe("Not/There/Yet")
        self.account.subscribe("Entwürfe")
        self.account.subscribe("Entwürfe")
        self.assertIn("Not/There/Yet", self.account.subscriptions())
        self.assertEqual(self.account.subscriptions().count("Entwürfe"), 1)
        self.account.unsubscribe("Entwürfe")
        self.assertNotIn("Entwürfe", self.account.subscriptions())
        self.assertRaises(InvalidFolderName, self.account.subscribe, "a..b")
        raw = open(os.path.join(self.data, "carol", "Maildir", "subscriptions"), "rb").read()
        self.assertTrue(raw.startswith(b"V\t2\n\n"))
        self.assertIn(b"Not\tThere\tYet\n", raw)

    @defer.inlineCallbacks
    def test_pop3_lock(self):
        self.assertIs((yield self.account.acquire_pop3_lock()), True)
        self.assertIs((yield self.account.acquire_pop3_lock()), False)
        self.assertIs((yield self.store.account("dave").acquire_pop3_lock()), True)
        yield self.account.release_pop3_lock()
        self.assertIs((yield self.account.acquire_pop3_lock()), True)

    def test_layout_helpers(self):
        self.assertTrue(layout.user_exists_dir(self.data, "carol"))
        self.assertEqual(layout.folder_dir(self.data, "carol", "Sent"),
                         os.path.join(self.data, "carol", "Maildir", ".Sent"))
