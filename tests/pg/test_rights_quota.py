"""Quota and rights (issue 12) on the PostgreSQL store: usage from the
folders' counters, OverQuota storing nothing at every door, MOVE within an
account never refused, ignored folders; a folder shared in one process
shows up in another's view, rights enforced there."""

from __future__ import annotations

from twisted.internet import defer

from mailsrv.store.interfaces import NoPermission, OverQuota
from mailsrv.store.pg.store import PgStore
from mailsrv.store.pg.users import PgUsers

from .helpers import PgStoreCase, until

MSG = b"Subject: q\r\n\r\n" + b"x" * 300 + b"\r\n"


class QuotaTests(PgStoreCase):
    def setUp(self):
        self.store = self.make_store(quota_rules={"quota_rule": "*:bytes=1000", "quota_rule2": "Trash:ignore"})

    @defer.inlineCallbacks
    def test_limits_at_every_door(self):
        a = yield self.store.open_account("quinn")
        inbox = yield a.open_folder("INBOX")
        yield inbox.append(MSG)
        yield a.deliver("INBOX", MSG)
        root = yield a.quota()
        self.assertEqual([(r.name, r.usage, r.limit) for r in root.resources], [("STORAGE", 2 * len(MSG), 1000)])
        yield self.assertFailure(inbox.append(MSG + MSG), OverQuota)
        yield self.assertFailure(a.deliver("INBOX", MSG + MSG), OverQuota)
        self.assertEqual(len(inbox.uids()), 2)  # nothing stored
        sent = yield a.open_folder("Sent")
        yield inbox.copy_to([1], sent, move=True)  # a MOVE within the account: never refused
        yield self.assertFailure(inbox.copy_to([2], sent), OverQuota)
        trash = yield a.open_folder("Trash")
        for _ in range(5):
            yield trash.append(MSG)  # Trash is ignored: neither limited nor counted
        root = yield a.quota()
        self.assertEqual(root.resources[0].usage, 3 * len(MSG))
        yield inbox.expunge([1, 2])
        root = yield a.quota()
        self.assertEqual(root.resources[0].usage, len(MSG))

    @defer.inlineCallbacks
    def test_user_field_overrides_the_configured_rule(self):
        PgUsers(self.store.db).add_user("roomy", "{PLAIN}x", {"quota_rule": "*:bytes=100000"})
        a = yield self.store.open_account("roomy")
        inbox = yield a.open_folder("INBOX")
        for _ in range(5):
            yield inbox.append(MSG)
        root = yield a.quota()
        self.assertEqual(root.resources[0].limit, 100000)


class RightsTests(PgStoreCase):
    @defer.inlineCallbacks
    def test_share_in_one_process_seen_in_another(self):
        other = PgStore(self.dsn)
        self.addCleanup(other.close)
        bob_view = yield other.open_view("bob")
        self.assertEqual([n for n in bob_view.list_folders() if n.startswith("Shared/")], [])
        yield until(lambda: other.listener.listening)
        alice = yield self.store.open_view("alice")
        yield alice.create_folder("Projects")
        f = yield alice.open_folder("Projects")
        uid = yield f.append(MSG)
        yield alice.set_acl("Projects", "bob", "lr")
        yield until(lambda: "Shared/alice/Projects" in bob_view.list_folders())
        g = yield bob_view.open_folder("Shared/alice/Projects")
        self.assertEqual(g.uids(), [uid])
        rights = yield bob_view.my_rights("Shared/alice/Projects")
        self.assertEqual(rights, "lr")
        yield self.assertFailure(g.append(MSG), NoPermission)
        yield g.prefetch([uid], (), "full")
        self.assertEqual(g.open_message(uid).read(), MSG)
        self.assertEqual(other.stats["blocking"], 0)
