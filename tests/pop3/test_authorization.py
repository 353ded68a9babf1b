"""AUTHORIZATION state: greeting, CAPA, USER/PASS, APOP, AUTH PLAIN, locks, STLS."""

import base64
import hashlib
import re

from twisted.cred import portal as portalmod
from twisted.internet.task import Clock
from twisted.trial import unittest

from mailsrv.config import Config
from mailsrv.pop3 import POP3Factory
from mailsrv.store.interfaces import StoreError
from tests.fakestore import FakeRealm, FakeStore
from tests.pop3.helpers import Session, SlowChecker, make_factory


def b64(s: bytes) -> str:
    return base64.b64encode(s).decode()


class GreetingAndCapa(unittest.TestCase):
    def test_greeting_without_apop(self):
        s = Session()
        self.assertEqual(s.read(), b"+OK mailsrv ready.\r\n")

    def test_greeting_with_apop_timestamp(self):
        s = Session(apop=True, hostname="mail.example")
        self.assertRegex(s.read(), rb"^\+OK mailsrv ready\. <\d+\.[0-9a-f]+@mail\.example>\r\n$")

    def test_tcp_nodelay(self):
        s = Session()
        self.assertIs(s.transport.nodelay, True)

    def test_capa_before_login(self):
        out = Session().cmd("CAPA")
        lines = out.split(b"\r\n")
        self.assertEqual(lines[0][:3], b"+OK")
        self.assertEqual(lines[-2:], [b".", b""])
        caps = set(lines[1:-2])
        self.assertEqual(
            caps,
            {b"TOP", b"UIDL", b"RESP-CODES", b"AUTH-RESP-CODE", b"PIPELINING", b"EXPIRE NEVER",
             b"LOGIN-DELAY 0", b"USER", b"SASL PLAIN", b"STLS", b"UTF8", b"LANG", b"IMPLEMENTATION mailsrv"},
        )

    def test_capa_without_plaintext_hides_user_and_sasl(self):
        out = Session(plaintext=False).cmd("CAPA")
        self.assertNotIn(b"\r\nUSER\r\n", out)
        self.assertNotIn(b"SASL", out)
        self.assertIn(b"\r\nSTLS\r\n", out)

    def test_capa_without_tls_context_has_no_stls(self):
        self.assertNotIn(b"STLS", Session(tls_context=None).cmd("CAPA"))

    def test_capa_implicit_tls_has_no_stls_but_user(self):
        out = Session(implicit_tls=True, plaintext=False).cmd("CAPA")
        self.assertNotIn(b"STLS", out)
        self.assertIn(b"\r\nUSER\r\n", out)

    def test_capa_in_transaction(self):
        s = Session()
        s.login()
        out = s.cmd("CAPA")
        self.assertIn(b"\r\nTOP\r\n", out)
        self.assertNotIn(b"STLS", out)
        self.assertNotIn(b"\r\nUSER\r\n", out)


class UserPass(unittest.TestCase):
    def test_login_ok(self):
        s = Session()
        s.store.account("alice").inbox.add(b"Subject: x\n\nhi\n")
        s.read()
        self.assertEqual(s.cmd("USER alice"), b"+OK\r\n")
        self.assertEqual(s.cmd("PASS secret"), b"+OK Logged in, 1 messages (18 octets).\r\n")
        self.assertTrue(s.store.account("alice").pop3_locked)
        self.assertEqual(s.store.account("alice").inbox.refresh_count, 1)

    def test_password_with_spaces(self):
        s = Session()
        s.cmd("USER bob")
        self.assertIn(b"+OK Logged in", s.cmd("PASS hunter2 with spaces"))

    def test_wrong_password(self):
        s = Session()
        s.cmd("USER alice")
        self.assertEqual(s.cmd("PASS nope"), b"-ERR [AUTH] Authentication failed.\r\n")
        self.assertFalse(s.closed)
        # USER must be given again
        self.assertEqual(s.cmd("PASS secret"), b"-ERR No username given (USER first).\r\n")
        s.cmd("USER alice")
        self.assertIn(b"+OK Logged in", s.cmd("PASS secret"))

    def test_unknown_user(self):
        s = Session()
        s.cmd("USER mallory")
        self.assertEqual(s.cmd("PASS x"), b"-ERR [AUTH] Authentication failed.\r\n")
        self.assertNotIn("mallory", s.store.accounts)

    def test_plaintext_refused(self):
        s = Session(plaintext=False)
        self.assertTrue(s.cmd("USER alice").startswith(b"-ERR [AUTH] Plaintext authentication disallowed"))
        self.assertTrue(s.cmd("PASS secret").startswith(b"-ERR No username"))
        self.assertTrue(s.cmd("AUTH PLAIN " + b64(b"\0alice\0secret")).startswith(b"-ERR [AUTH] Plaintext"))
        self.assertFalse(s.store.accounts)

    def test_plaintext_after_stls(self):
        s = Session(plaintext=False)
        self.assertEqual(s.cmd("STLS"), b"+OK Begin TLS negotiation.\r\n")
        self.assertEqual(s.cmd("USER alice"), b"+OK\r\n")
        self.assertIn(b"+OK Logged in", s.cmd("PASS secret"))

    def test_default_policy_uses_peer_host(self):
        factory = make_factory(plaintext_auth="loopback")
        del factory.plaintext_allowed  # back to the class default (mailsrv.auth policy)
        s = Session(factory)  # StringTransport's peer is 192.168.1.1: not loopback
        self.assertIn(b"disallowed", s.cmd("USER alice"))
        factory = make_factory(plaintext_auth="yes")
        del factory.plaintext_allowed
        self.assertEqual(Session(factory).cmd("USER alice"), b"+OK\r\n")

    def test_quit_in_authorization(self):
        s = Session()
        s.cmd("USER alice")
        self.assertEqual(s.cmd("QUIT"), b"+OK Logging out.\r\n")
        self.assertTrue(s.closed)

    def test_transaction_commands_refused_before_login(self):
        s = Session()
        for c in ("STAT", "LIST", "RETR 1", "DELE 1", "NOOP", "RSET", "UIDL", "TOP 1 1"):
            self.assertEqual(s.cmd(c), b"-ERR Command not valid in this state.\r\n", c)
        self.assertFalse(s.closed)

    def test_auth_commands_refused_after_login(self):
        s = Session()
        s.login()
        for c in ("USER alice", "PASS x", "APOP a b", "AUTH", "STLS"):
            self.assertEqual(s.cmd(c), b"-ERR Command not valid in this state.\r\n", c)


class Apop(unittest.TestCase):
    def _challenge(self, s):
        return re.search(rb"<[^>]+>", s.read()).group(0)

    def test_apop_ok(self):
        s = Session(apop=True)
        digest = hashlib.md5(self._challenge(s) + b"secret").hexdigest()
        self.assertIn(b"+OK Logged in", s.cmd("APOP alice " + digest))

    def test_apop_uppercase_digest(self):
        s = Session(apop=True)
        digest = hashlib.md5(self._challenge(s) + b"secret").hexdigest().upper()
        self.assertIn(b"+OK Logged in", s.cmd("APOP alice " + digest))

    def test_apop_wrong(self):
        s = Session(apop=True)
        digest = hashlib.md5(self._challenge(s) + b"wrong").hexdigest()
        self.assertEqual(s.cmd("APOP alice " + digest), b"-ERR [AUTH] Authentication failed.\r\n")

    def test_apop_malformed(self):
        s = Session(apop=True)
        self.assertEqual(s.cmd("APOP alice xyz"), b"-ERR [AUTH] Malformed APOP digest.\r\n")

    def test_apop_disabled(self):
        s = Session()
        self.assertEqual(s.cmd("APOP alice " + "0" * 32), b"-ERR APOP is not enabled.\r\n")


class AuthPlain(unittest.TestCase):
    def test_list_mechanisms(self):
        self.assertEqual(Session().cmd("AUTH"), b"+OK Supported mechanisms follow.\r\nPLAIN\r\n.\r\n")
        self.assertEqual(Session(plaintext=False).cmd("AUTH"), b"+OK Supported mechanisms follow.\r\n.\r\n")

    def test_initial_response(self):
        s = Session()
        self.assertIn(b"+OK Logged in", s.cmd("AUTH PLAIN " + b64(b"\0alice\0secret")))

    def test_authzid_same_as_authcid(self):
        s = Session()
        self.assertIn(b"+OK Logged in", s.cmd("AUTH plain " + b64(b"alice\0alice\0secret")))

    def test_authzid_other_user_refused(self):
        s = Session()
        self.assertIn(b"-ERR [AUTH] Authorization identity", s.cmd("AUTH PLAIN " + b64(b"bob\0alice\0secret")))

    def test_continuation(self):
        s = Session()
        self.assertEqual(s.cmd("AUTH PLAIN"), b"+ \r\n")
        self.assertIn(b"+OK Logged in", s.cmd(b64(b"\0bob\0hunter2 with spaces")))

    def test_continuation_pipelined_with_the_command(self):
        s = Session()
        s.read()
        out = s.send(b"AUTH PLAIN\r\n" + b64(b"\0alice\0secret").encode() + b"\r\nSTAT\r\n")
        self.assertEqual(out, b"+ \r\n+OK Logged in, 0 messages (0 octets).\r\n+OK 0 0\r\n")

    def test_drop_while_waiting_for_the_continuation(self):
        s = Session()
        s.cmd("AUTH PLAIN")
        s.drop()
        self.assertEqual(s.send(b64(b"\0alice\0secret").encode() + b"\r\n"), b"")
        self.assertFalse(s.store.accounts)
        self.assertEqual(self.flushLoggedErrors(), [])

    def test_cancel(self):
        s = Session()
        s.cmd("AUTH PLAIN")
        self.assertEqual(s.cmd("*"), b"-ERR Authentication cancelled.\r\n")
        self.assertEqual(s.cmd("NOOP"), b"-ERR Command not valid in this state.\r\n")

    def test_bad_credentials(self):
        s = Session()
        self.assertEqual(s.cmd("AUTH PLAIN " + b64(b"\0alice\0bad")), b"-ERR [AUTH] Authentication failed.\r\n")

    def test_bad_base64(self):
        s = Session()
        self.assertEqual(s.cmd("AUTH PLAIN !!!"), b"-ERR [AUTH] Malformed PLAIN response.\r\n")
        s.cmd("AUTH PLAIN")
        self.assertEqual(s.cmd(b64(b"no nuls")), b"-ERR [AUTH] Malformed PLAIN response.\r\n")
        self.assertEqual(s.cmd("AUTH PLAIN ="), b"-ERR [AUTH] Malformed PLAIN response.\r\n")

    def test_unknown_mechanism(self):
        self.assertEqual(Session().cmd("AUTH CRAM-MD5"), b"-ERR Unsupported authentication mechanism.\r\n")

    def test_long_auth_line_accepted(self):
        s = Session()
        pw = b"p" * 400
        checker = list(s.factory.portal.checkers.values())[0]
        checker.addUser(b"alice", pw)
        self.assertIn(b"+OK Logged in", s.cmd("AUTH PLAIN " + b64(b"\0alice\0" + pw)))


class Locking(unittest.TestCase):
    def test_second_login_in_use(self):
        factory = make_factory()
        first = Session(factory)
        first.store.account("alice").inbox.add(b"Subject: x\n\nhi\n")
        first.login()
        second = Session(factory)
        second.cmd("USER alice")
        self.assertEqual(second.cmd("PASS secret"), b"-ERR [IN-USE] Mailbox is locked by another POP3 session.\r\n")
        self.assertFalse(second.closed)
        # the first session is unharmed
        self.assertEqual(first.cmd("STAT"), b"+OK 1 18\r\n")
        self.assertIn(b"hi", first.cmd("RETR 1"))
        self.assertEqual(factory.realm.logouts, 1)  # the refused login logged out
        first.cmd("QUIT")
        self.assertFalse(factory.store.account("alice").pop3_locked)
        second.cmd("USER alice")
        self.assertIn(b"+OK Logged in", second.cmd("PASS secret"))

    def test_lock_released_on_drop(self):
        factory = make_factory()
        s = Session(factory)
        s.login()
        s.drop()
        self.assertFalse(factory.store.account("alice").pop3_locked)
        self.assertEqual(factory.realm.logouts, 1)

    def test_store_error_on_open_is_temp(self):
        factory = make_factory()
        factory.store.account("alice").fail["open_folder"] = StoreError("cannot open")
        s = Session(factory)
        s.cmd("USER alice")
        self.assertEqual(s.cmd("PASS secret"), b"-ERR [SYS/TEMP] Temporary server failure, try again later.\r\n")
        self.assertFalse(factory.store.account("alice").pop3_locked)
        self.assertEqual(s.cmd("STAT"), b"-ERR Command not valid in this state.\r\n")
        self.flushLoggedErrors()

    def test_checker_crash_is_temp(self):
        class Broken:
            credentialInterfaces = SlowChecker.credentialInterfaces

            def requestAvatarId(self, creds):
                raise OSError("passwd unreadable")

        p = portalmod.Portal(FakeRealm(FakeStore()), [Broken()])
        s = Session(POP3Factory(p, Config(plaintext_auth="yes"), reactor=Clock()))
        s.cmd("USER alice")
        self.assertIn(b"-ERR [SYS/TEMP]", s.cmd("PASS secret"))
        self.flushLoggedErrors()


class SlowLogin(unittest.TestCase):
    def setUp(self):
        self.checker = SlowChecker()
        self.store = FakeStore()
        self.realm = FakeRealm(self.store)
        self.store.account("alice").inbox.add(b"Subject: x\n\nhi\n")
        p = portalmod.Portal(self.realm, [self.checker])
        self.factory = POP3Factory(p, Config(plaintext_auth="yes"), reactor=Clock())

    def test_pipelined_commands_wait_for_login(self):
        s = Session(self.factory)
        s.read()
        out = s.send(b"USER alice\r\nPASS secret\r\nSTAT\r\nLIST\r\nQUIT\r\n")
        self.assertEqual(out, b"+OK\r\n")
        creds, d = self.checker.pending[0]
        self.assertEqual((creds.username, creds.password), (b"alice", b"secret"))
        d.callback(b"alice")
        self.assertEqual(
            s.read(),
            b"+OK Logged in, 1 messages (18 octets).\r\n+OK 1 18\r\n"
            b"+OK 1 messages (18 octets)\r\n1 18\r\n.\r\n+OK Logging out, 0 messages deleted.\r\n",
        )
        self.assertTrue(s.closed)

    def test_reading_pauses_while_waiting_with_much_input(self):
        s = Session(self.factory)
        s.cmd("USER alice")
        s.send(b"PASS secret\r\n" + b"NOOP\r\n" * 20000)
        self.assertEqual(s.transport.producerState, "paused")
        self.checker.pending[0][1].callback(b"alice")
        out = s.read()
        self.assertEqual(out.count(b"+OK\r\n"), 20000)
        self.assertEqual(s.transport.producerState, "producing")

    def test_overlong_sasl_continuation_ends_exchange(self):
        s = Session(self.factory)
        s.cmd("AUTH PLAIN")
        self.assertEqual(s.cmd("A" * 2000), b"-ERR Line too long.\r\n")
        self.assertEqual(s.cmd("USER alice"), b"+OK\r\n")

    def test_drop_during_login_takes_no_lock(self):
        s = Session(self.factory)
        s.cmd("USER alice")
        s.cmd("PASS secret")
        s.drop()
        self.checker.pending[0][1].callback(b"alice")
        self.assertFalse(self.store.account("alice").pop3_locked)
        self.assertEqual(self.realm.logouts, 1)


class Stls(unittest.TestCase):
    def test_stls_ok(self):
        ctx = object()
        s = Session(tls_context=ctx)
        s.cmd("USER alice")
        self.assertEqual(s.cmd("STLS"), b"+OK Begin TLS negotiation.\r\n")
        self.assertEqual(s.transport.tls_started, [ctx])
        # USER given in the clear is forgotten
        self.assertIn(b"No username", s.cmd("PASS secret"))
        self.assertEqual(s.cmd("STLS"), b"-ERR TLS is already active.\r\n")
        self.assertNotIn(b"STLS", s.cmd("CAPA"))

    def test_stls_refused_with_buffered_input(self):
        s = Session()
        s.read()
        out = s.send(b"STLS\r\nUSER alice\r\n")
        self.assertEqual(out, b"-ERR Pipelined input after STLS refused.\r\n+OK\r\n")
        self.assertEqual(s.transport.tls_started, [])

    def test_stls_refused_with_partial_line_buffered(self):
        s = Session()
        s.read()
        self.assertEqual(s.send(b"STLS\r\nUSER al"), b"-ERR Pipelined input after STLS refused.\r\n")
        self.assertEqual(s.transport.tls_started, [])

    def test_no_plaintext_executed_after_handshake(self):
        # Data arriving after the +OK is (in real life) TLS; nothing buffered
        # before the upgrade may be run, so STLS with pending input never upgrades.
        s = Session()
        s.read()
        s.send(b"STLS\r\n")
        self.assertEqual(len(s.transport.tls_started), 1)
        self.assertEqual(s.proto._splitter.buffered(), 0)

    def test_stls_without_context(self):
        self.assertEqual(Session(tls_context=None).cmd("STLS"), b"-ERR STLS is not available.\r\n")

    def test_stls_on_implicit_tls(self):
        s = Session(implicit_tls=True)
        self.assertEqual(s.cmd("STLS"), b"-ERR TLS is already active.\r\n")
        self.assertEqual(s.transport.tls_started, [])


class Utf8AndLang(unittest.TestCase):
    """RFC 6856."""

    def test_utf8_in_authorization_only(self):
        s = Session()
        self.assertEqual(s.cmd("UTF8"), b"+OK UTF8 enabled\r\n")
        s.login()
        self.assertTrue(s.cmd("UTF8").startswith(b"-ERR"))

    def test_lang(self):
        s = Session()
        self.assertEqual(s.cmd("LANG"), b"+OK Language listing follows\r\nen English\r\n.\r\n")
        self.assertEqual(s.cmd("LANG EN"), b"+OK en Language changed\r\n")
        self.assertEqual(s.cmd("LANG *"), b"+OK en Language changed\r\n")
        self.assertEqual(s.cmd("LANG tlh"), b"-ERR Unsupported language\r\n")
        s.login()
        self.assertEqual(s.cmd("LANG en"), b"+OK en Language changed\r\n")
        self.assertTrue(s.cmd("LANG a b").startswith(b"-ERR"))
