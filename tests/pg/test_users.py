"""Users in the database: the passwd file's operations and schemes, the
checker and realm over them, the LMTP lookup."""

from __future__ import annotations

from twisted.cred.credentials import UsernamePassword
from twisted.cred.error import UnauthorizedLogin
from twisted.internet import defer

from mailsrv.auth.hashing import hash_password
from mailsrv.auth.passwd import InvalidUsername, NoSuchUser, UserExists
from mailsrv.config import Config
from mailsrv.store.interfaces import IAccount
from mailsrv.store.pg.users import PgUsers, lmtp_account_name, make_portal

from .helpers import PgStoreCase


class UserTests(PgStoreCase):
    def setUp(self):
        super().setUp()
        self.users = PgUsers(self.store.db)
        self.config = Config(auth_fail_delay=0)

    def test_add_lookup_change_remove(self):
        self.users.add_user("alice", hash_password("pw1", "SSHA256"))
        self.assertRaises(UserExists, self.users.add_user, "alice", "{PLAIN}x")
        self.assertRaises(InvalidUsername, self.users.add_user, "bad:name", "{PLAIN}x")
        self.assertTrue(self.users.lookup("alice").password.startswith("{SSHA256}"))
        self.assertIsNone(self.users.lookup("nobody"))
        self.users.set_password("alice", "{PLAIN}new")
        self.assertEqual(self.users.lookup("alice").password, "{PLAIN}new")
        self.assertRaises(NoSuchUser, self.users.set_password, "bob", "{PLAIN}x")
        self.users.add_user("Bob", "{PLAIN}b")
        self.assertEqual(self.users.users(), ["Bob", "alice"])
        self.assertEqual(self.users.find("bob"), "Bob")
        self.assertTrue(self.users.remove_user("alice"))  # mail kept
        self.assertFalse(self.users.remove_user("Bob", purge=True))
        self.assertRaises(NoSuchUser, self.users.remove_user, "alice")
        self.assertEqual(self.users.users(), [])

    @defer.inlineCallbacks
    def test_login_through_the_portal(self):
        self.users.add_user("carol", hash_password("secret", "SSHA512"))
        portal = make_portal(self.store, self.config)
        iface, account, logout = yield portal.login(UsernamePassword(b"carol", b"secret"), None, IAccount)
        self.assertIs(iface, IAccount)
        self.assertEqual(account.list_folders()[0], "INBOX")  # read at login: no blocking read
        self.assertEqual(self.store.stats["blocking"], 0)
        yield self.assertFailure(portal.login(UsernamePassword(b"carol", b"wrong"), None, IAccount),
                                 UnauthorizedLogin)
        yield self.assertFailure(portal.login(UsernamePassword(b"nobody", b"x"), None, IAccount),
                                 UnauthorizedLogin)

    @defer.inlineCallbacks
    def test_lmtp_lookup_reads_the_account(self):
        self.users.add_user("Dora", "{PLAIN}x")
        lookup = lmtp_account_name(self.store, self.users)
        name = yield lookup("dora")
        self.assertEqual(name, "Dora")
        self.assertTrue(self.store.account("Dora").folder_exists("Sent"))
        self.assertEqual(self.store.stats["blocking"], 0)
        missing = yield lookup("nobody")
        self.assertIs(missing, False)
