import os

from twisted.internet import defer

from mailsrv.store import layout
from mailsrv.store.interfaces import (
    FolderExists,
    FolderNotEmpty,
    IAccount,
    IFolder,
    InvalidFolderName,
    IStore,
    NoSuchFolder,
)

from .helpers import Recorder, StoreCase, files_in

MSG = b"Subject: x\n\nbody\n"


class AccountTests(StoreCase):
    def setUp(self):
        super().setUp()
        self.account = self.store.account("carol")

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
        yield self.assertFailure(self.account.delete_folder("Work"), FolderNotEmpty)
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

    @defer.inlineCallbacks
    def test_rename_with_children_and_live_folder(self):
        yield self.account.create_folder("Proj/Sub")
        self.account.subscribe("Proj/Sub")
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
        self.assertEqual(f.open_message(uid).read(), MSG)
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
        self.assertEqual(uid, 3)  # INBOX keeps its UIDVALIDITY, UIDs are not reused

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
    def test_deliver_live_and_not_live(self):
        uid = yield self.account.deliver("INBOX", MSG)
        self.assertEqual(uid, 1)
        inbox = yield self.account.open_folder("INBOX")
        self.assertEqual(inbox.uids(), [1])
        self.assertEqual(inbox.claim_recent(), {1})
        self.assertEqual(len(files_in(inbox.path, "new")), 1)
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
    def test_pop3_lock(self):
        self.assertIs((yield self.account.acquire_pop3_lock()), True)
        self.assertIs((yield self.account.acquire_pop3_lock()), False)
        self.assertIs((yield self.store.account("dave").acquire_pop3_lock()), True)
        yield self.account.release_pop3_lock()
        self.assertIs((yield self.account.acquire_pop3_lock()), True)

    @defer.inlineCallbacks
    def test_idle_folder_released_and_reloaded(self):
        f = yield self.account.open_folder("INBOX")
        rec = Recorder()
        f.add_listener(rec)
        yield f.append(MSG)
        f.remove_listener(rec)
        yield f.quiesce()
        self.assertIsNone(self.account.live_folder("INBOX"))
        g = yield self.account.open_folder("INBOX")
        self.assertIsNot(g, f)
        self.assertEqual(g.uids(), [1])

    def test_layout_helpers(self):
        self.assertTrue(layout.user_exists_dir(self.data, "carol"))
        self.assertEqual(layout.folder_dir(self.data, "carol", "Sent"),
                         os.path.join(self.data, "carol", "Maildir", ".Sent"))
