"""Rights on the Maildir store (issue 12): Dovecot's rule for combining
dovecot-acl entries, and the user views' handling of flags - STORE, COPY
and MOVE into another user's folder, private \\Seen in public mailboxes
and the mod-sequence it bumps - down to the files."""

from __future__ import annotations

import os

import pytest
from twisted.internet import defer

from mailsrv.store import layout
from mailsrv.store.acl import Acl, BadRights, normalize, parse, render, with_virtual
from mailsrv.store.interfaces import RIGHTS, NoPermission
from mailsrv.store.sharedfiles import public_root

from .helpers import StoreCase

MSG = b"From: a@example.org\r\nSubject: x\r\n\r\nbody\r\n"


def test_entries_combine_by_kind_and_replace():
    acl = parse("anyone lrswi\nuser=bob lr\n-user=bob r\nowner lrswipkxtea\n")
    assert acl.rights_of("bob", owner=False) == "l"  # bob's entry replaces anyone's; his negative takes r
    assert acl.rights_of("carol", owner=False) == "lrswi"
    assert acl.rights_of(None, owner=False) == "lrswi"  # anonymous: anyone
    assert acl.rights_of("alice", owner=True) == RIGHTS
    assert parse("anyone l\n").rights_of("alice", owner=True) == RIGHTS  # the owner skips anyone
    assert parse("user=bob lr\n").rights_of("alice", owner=True) == RIGHTS  # no owner line: every right
    assert parse("owner lr\nuser=alice lrw\n").rights_of("alice", owner=True) == "lrw"  # user= after owner
    assert parse("authenticated lr\nanyone lrs\n").rights_of("bob", owner=False) == "lr"  # order, not lines
    assert parse("authenticated lr\n").rights_of(None, owner=False) == ""
    assert parse("-anyone r\nauthenticated lr\n-authenticated s\n").rights_of("bob", owner=False) == "lr"
    assert parse("group=staff lrs\n").rights_of("bob", owner=False) == ""  # no groups here
    assert parse("user=bob lr\nuser=bob w\n").rights_of("bob", owner=False) == "lrw"  # one identifier: merged


def test_virtual_rights_and_file_letters():
    assert normalize("lrc") == "lrkx" and normalize("d") == "te"  # as Dovecot maps them
    assert with_virtual("lrkx") == "lrkxc" and with_virtual("lrt") == "lrtd" and with_virtual("lr") == "lr"
    with pytest.raises(BadRights):
        normalize("lrz")
    acl = Acl([])
    acl.set("user=bob", "lrcd")
    assert render(acl) == "user=bob lrkxte\n"  # files never hold c or d (Dovecot's parser refuses them)


class ViewRights(StoreCase):
    @defer.inlineCallbacks
    def setUp(self):
        super().setUp()
        self.alice = self.store.view("alice")
        self.bob = self.store.view("bob")
        yield self.alice.create_folder("Projects")

    def public_info(self):
        """The public mailbox ``info``, alice and bob with every right but admin."""
        root = public_root(self.data)
        layout.make_folder_dirs(root, is_inbox=True)
        layout.make_folder_dirs(layout.folder_path(root, "info"))
        return self.store.shares.write_acl(self.store.public_account(), "info",
                                           parse("user=alice lrswipte\nuser=bob lrswipte\n"))

    def files(self, user: str, folder: str) -> list[str]:
        path = layout.folder_path(layout.maildir_root(self.data, user), folder)
        return sorted(n for sub in ("new", "cur") for n in os.listdir(os.path.join(path, sub)))

    @defer.inlineCallbacks
    def test_copy_and_move_in_keep_only_the_flags_the_copier_may_set(self):
        yield self.alice.set_acl("Projects", "bob", "lrsi")
        inbox = yield self.bob.open_folder("INBOX")
        uid = yield inbox.append(MSG, ["\\Seen", "\\Flagged", "\\Deleted", "$Work"])
        target = yield self.bob.open_folder("Shared/alice/Projects")
        pairs = yield inbox.copy_to([uid], target)
        self.assertEqual(len(pairs), 1)
        self.assertEqual(target.get(pairs[0][1]).flags, frozenset({"\\Seen"}))
        self.assertTrue(self.files("alice", "Projects")[0].endswith(":2,S"))
        yield self.alice.set_acl("Projects", "bob", "lrwi")
        target = yield self.bob.open_folder("Shared/alice/Projects")
        pairs = yield inbox.copy_to([uid], target, move=True)
        yield inbox.expunge([uid])
        self.assertEqual(target.get(pairs[0][1]).flags, frozenset({"\\Flagged", "$Work"}))
        self.assertEqual(inbox.messages(), [])

    @defer.inlineCallbacks
    def test_store_leaves_unpermitted_flags_alone(self):
        yield self.alice.set_acl("Projects", "bob", "lrs")
        own = yield self.alice.open_folder("Projects")
        uid = yield own.append(MSG, ["\\Answered"])
        mine = yield self.bob.open_folder("Shared/alice/Projects")
        self.assertEqual((yield mine.store_flags([uid], ["\\Flagged"], "+")), [])
        self.assertEqual((yield mine.store_flags([uid], ["\\Seen"], "=")), [uid])
        self.assertEqual(own.get(uid).flags, frozenset({"\\Answered", "\\Seen"}))  # \Answered is not bob's to drop

    @defer.inlineCallbacks
    def test_conditional_store_keeps_the_rights_of_store(self):
        yield self.alice.set_acl("Projects", "bob", "lrs")
        own = yield self.alice.open_folder("Projects")
        uid = yield own.append(MSG, ["\\Answered"])
        mine = yield self.bob.open_folder("Shared/alice/Projects")
        high = own.highestmodseq
        changed, modified = yield mine.store_flags_unchanged_since([uid], ["\\Deleted", "\\Flagged"], "+", high)
        self.assertEqual((changed, modified), ([], []))
        self.assertEqual(own.get(uid).flags, frozenset({"\\Answered"}))  # t and w are not bob's
        changed, modified = yield mine.store_flags_unchanged_since([uid], ["\\Seen"], "=", high)
        self.assertEqual((changed, modified), ([uid], []))
        self.assertEqual(own.get(uid).flags, frozenset({"\\Answered", "\\Seen"}))
        changed, modified = yield mine.store_flags_unchanged_since([uid], ["\\Seen"], "-", high)
        self.assertEqual((changed, modified), ([], [uid]))  # changed since: left alone
        self.assertEqual(mine.uids_with_flag("\\Seen"), {uid})
        self.assertEqual(mine.changed_since(high), [uid])
        yield self.alice.set_acl("Projects", "bob", "l")
        mine = yield self.bob.open_folder("Shared/alice/Projects")
        for call in (lambda: mine.uids_with_flag("\\Seen"), lambda: mine.changed_since(0),
                     lambda: mine.vanished_since(0)):
            self.assertRaises(NoPermission, call)

    @defer.inlineCallbacks
    def test_private_seen_answers_flag_searches_and_conditional_stores(self):
        yield self.public_info()
        a = yield self.alice.open_folder("Public/info")
        uid = yield a.append(MSG)
        other = yield a.append(MSG)
        b = yield self.bob.open_folder("Public/info")
        changed, modified = yield a.store_flags_unchanged_since([uid], ["\\Seen"], "+", a.highestmodseq)
        self.assertEqual((changed, modified), ([uid], []))
        self.assertEqual(a.uids_with_flag("\\Seen"), {uid})
        self.assertEqual(b.uids_with_flag("\\Seen"), set())  # bob's UNSEEN still finds both
        self.assertEqual(a.unwrap().uids_with_flag("\\Seen"), set())  # not in the shared files
        yield a.expunge([uid])
        self.assertEqual(a.uids_with_flag("\\Seen"), set())
        self.assertIsNotNone(a.get(other))

    @defer.inlineCallbacks
    def test_private_seen_is_the_users_and_bumps_the_modseq(self):
        yield self.public_info()
        a = yield self.alice.open_folder("Public/info")
        uid = yield a.append(MSG)
        live = a.unwrap()
        before = live.get(uid).modseq
        yield a.store_flags([uid], ["\\Seen"], "+")
        self.assertGreater(live.get(uid).modseq, before)
        self.assertGreaterEqual(live.highestmodseq, live.get(uid).modseq)
        self.assertEqual(live.get(uid).flags, frozenset())  # not in the shared file
        self.assertFalse(any(f.endswith("S") for f in os.listdir(os.path.join(live.path, "new"))
                             + os.listdir(os.path.join(live.path, "cur"))))
        b = yield self.bob.open_folder("Public/info")
        self.assertEqual(b.get(uid).flags, frozenset())
        self.assertEqual(a.get(uid).flags, frozenset({"\\Seen"}))
        seen_file = os.path.join(layout.maildir_root(self.data, "alice"), "mailsrv-seen.info")
        with open(seen_file, encoding="ascii") as f:
            self.assertEqual(f.read(), f"V{live.uidvalidity}\n{uid}\n")
        # a copy into alice's own folder carries her \Seen; one into the public mailbox gives it to her alone
        projects = yield self.alice.open_folder("Projects")
        pairs = yield a.copy_to([uid], projects)
        self.assertEqual(projects.get(pairs[0][1]).flags, frozenset({"\\Seen"}))
        back = yield projects.copy_to([pairs[0][1]], a)
        self.assertEqual(live.get(back[0][1]).flags, frozenset())
        self.assertIn("\\Seen", a.get(back[0][1]).flags)
        self.assertNotIn("\\Seen", b.get(back[0][1]).flags)

    @defer.inlineCallbacks
    def test_acls_move_with_rename_and_dovecots_list_is_dropped(self):
        root = layout.maildir_root(self.data, "alice")
        acl_list = os.path.join(root, "dovecot-acl-list")
        yield self.alice.create_folder("Projects/Q1")
        yield self.alice.set_acl("Projects/Q1", "bob", "lr")
        with open(acl_list, "w", encoding="ascii") as f:  # as Dovecot leaves it, now stale
            f.write("1700000000 Projects.Q1\n")
        yield self.alice.rename_folder("Projects", "Work")
        self.assertFalse(os.path.exists(acl_list))  # Dovecot rebuilds it
        self.assertEqual((yield self.bob.my_rights("Shared/alice/Work/Q1")), "lr")
        self.assertIn("Shared/alice/Work/Q1", self.bob.list_folders())
        with open(os.path.join(self.data, "shared-mailboxes"), encoding="utf-8") as f:
            self.assertEqual(f.read(), "shared/shared-boxes/user/bob/alice\n1\n")
