"""The factory on a real loopback TCP port (port 0), driven by poplib in a
thread, with the fake portal and store; one session upgrades with STLS."""

import os
import poplib
import shutil
import ssl
import tempfile

from twisted.internet import reactor, threads
from twisted.trial import unittest

from mailsrv import tls
from mailsrv.store.crlf import to_crlf
from tests.pop3.helpers import make_factory

MSG = b"From: a@example\nSubject: hi\n\n.dotted\nline two\n"


class Loopback(unittest.TestCase):
    timeout = 20

    def setUp(self):
        d = tempfile.mkdtemp()
        self.addCleanup(shutil.rmtree, d, True)
        cert, key = os.path.join(d, "cert.pem"), os.path.join(d, "key.pem")
        tls.make_self_signed(cert, key)
        self.factory = make_factory(clock=reactor, tls_context=tls.load_context(cert, key), plaintext=False)
        self.inbox = self.factory.store.account("alice").inbox
        self.inbox.add(MSG)
        self.inbox.add(b"Subject: second\r\n\r\nbody\r\n")
        self.port = reactor.listenTCP(0, self.factory, interface="127.0.0.1")
        self.addCleanup(self.port.stopListening)

    def _client(self):
        p = poplib.POP3("127.0.0.1", self.port.getHost().port, timeout=5)
        try:
            caps = p.capa()
            assert "STLS" in caps and "USER" not in caps, caps
            ctx = ssl.create_default_context()
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
            p.stls(ctx)
            caps = p.capa()
            assert "STLS" not in caps and "USER" in caps, caps
            p.user("alice")
            p.pass_("secret")
            stat = p.stat()
            listing = p.list()[1]
            uidl = p.uidl()[1]
            retr = p.retr(1)
            top = p.top(2, 0)[1]
            p.dele(2)
            after = p.stat()
            quit = p.quit()
            return stat, listing, uidl, retr, top, after, quit
        finally:
            p.close()

    def test_poplib_session_with_stls(self):
        d = threads.deferToThread(self._client)

        def check(result):
            stat, listing, uidl, retr, top, after, quit = result
            size1 = len(to_crlf(MSG))
            self.assertEqual(stat, (2, size1 + 25))
            self.assertEqual(listing, [b"1 %d" % size1, b"2 25"])
            self.assertEqual(uidl, [b"1 00000001000003e8", b"2 00000002000003e8"])
            self.assertEqual(retr[1], to_crlf(MSG).split(b"\r\n")[:-1])
            self.assertEqual(retr[2], size1)  # poplib's count of octets after un-stuffing
            self.assertEqual(top, [b"Subject: second", b""])
            self.assertEqual(after, (1, size1))
            self.assertTrue(quit.startswith(b"+OK"))
            self.assertEqual(self.inbox.calls_to("expunge"), [([2],)])
            self.assertEqual(self.inbox.calls_to("store_flags"), [([1], ["\\Seen"], "+")])
            self.assertFalse(self.factory.store.account("alice").pop3_locked)

        return d.addCallback(check)
