"""Python's imaplib against the real protocol over loopback TCP (port 0),
plain, STARTTLS and implicit TLS, with the in-memory store."""

import imaplib
import os
import ssl
import tempfile

from twisted.internet import reactor, threads
from twisted.trial import unittest

from mailsrv.config import Config
from mailsrv.imap import IMAPFactory
from mailsrv.tls import load_context, make_self_signed
from tests.fakestore import FakeStore, make_portal
from tests.imap.harness import MSG1, MSG2


class ImaplibTest(unittest.TestCase):
    timeout = 30

    def setUp(self):
        store = FakeStore()
        self.account = store.account("joe")
        self.account.folders["INBOX"].add(MSG1)
        self.account.folders["INBOX"].add(MSG2)
        self.tmp = tempfile.mkdtemp()
        cert, key = os.path.join(self.tmp, "c.pem"), os.path.join(self.tmp, "k.pem")
        make_self_signed(cert, key)
        self.cert = cert
        ctx = load_context(cert, key)
        portal = make_portal(store)
        config = Config(auth_fail_delay=0)
        self.port = reactor.listenTCP(0, IMAPFactory(portal, config, tls_context=ctx), interface="127.0.0.1")
        from twisted.internet import endpoints
        ep = endpoints.SSL4ServerEndpoint(reactor, 0, ctx, interface="127.0.0.1")
        d = ep.listen(IMAPFactory(portal, config, tls_context=ctx, implicit_tls=True))

        def got(p):
            self.tls_port = p
        return d.addCallback(got)

    def tearDown(self):
        return self.port.stopListening().addCallback(lambda _: self.tls_port.stopListening())

    def _client_ctx(self):
        ctx = ssl.create_default_context(cafile=self.cert)
        return ctx

    def test_session(self):
        port = self.port.getHost().port

        def run():
            m = imaplib.IMAP4("127.0.0.1", port, timeout=10)
            assert "IDLE" in m.capabilities
            m.login("joe", "secret")
            typ, data = m.select("INBOX")
            assert (typ, data) == ("OK", [b"2"]), (typ, data)
            typ, data = m.fetch("1:2", "(UID FLAGS BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
            assert typ == "OK" and data[0][1] == b"Subject: Hello\r\n\r\n", data
            typ, data = m.uid("SEARCH", None, "FROM", "bob")
            assert data == [b"2"], data
            m.append("Sent", "(\\Seen)", imaplib.Time2Internaldate(1700000000), b"Subject: x\r\n\r\ny\r\n")
            typ, data = m.status("Sent", "(MESSAGES)")
            assert data == [b'"Sent" (MESSAGES 1)'], data
            typ, data = m.store("1", "+FLAGS", "(\\Deleted)")
            assert typ == "OK"
            typ, data = m.expunge()
            assert data == [b"1"], data
            typ, data = m.list()
            assert any(b'"Trash"' in d for d in data), data
            typ, data = m.create("Entw\u00fcrfe".encode("imap4-utf-7").decode())
            assert typ == "OK"
            typ, data = m.fetch("1", "(RFC822)")
            assert data[0][1] == MSG2, data
            m.close()
            m.logout()

        return threads.deferToThread(run)

    def test_starttls(self):
        port = self.port.getHost().port

        def run():
            m = imaplib.IMAP4("127.0.0.1", port, timeout=10)
            m.starttls(ssl_context=self._client_ctx())
            assert "STARTTLS" not in m.capabilities
            m.login("joe", "secret")
            assert m.select("INBOX")[1] == [b"2"]
            m.logout()

        return threads.deferToThread(run)

    def test_implicit_tls(self):
        port = self.tls_port.getHost().port

        def run():
            m = imaplib.IMAP4_SSL("127.0.0.1", port, ssl_context=self._client_ctx(), timeout=10)
            assert "STARTTLS" not in m.capabilities
            m.login("joe", "secret")
            m.select("INBOX")
            typ, data = m.fetch("2", "(BODY.PEEK[])")
            assert data[0][1] == MSG2
            m.logout()

        return threads.deferToThread(run)
