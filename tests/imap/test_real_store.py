"""The protocol over the real Maildir store (mailsrv.store.Store), driven
by imaplib over loopback TCP: what the transcript tests check on the fake
must hold on disk too."""

import imaplib
import shutil
import tempfile

from twisted.internet import reactor, threads
from twisted.trial import unittest

from mailsrv.config import Config
from mailsrv.imap import IMAPFactory
from tests.imap.fakes import make_portal
from tests.imap.harness import MSG1, MSG2, MSG3


class RealStoreTest(unittest.TestCase):
    timeout = 60

    def setUp(self):
        from mailsrv.store import Store
        self.tmp = tempfile.mkdtemp()
        self.store = Store(self.tmp)
        portal = make_portal({"joe": self.store.account("joe")})
        self.port = reactor.listenTCP(0, IMAPFactory(portal, Config(data_dir=self.tmp, auth_fail_delay=0)),
                                      interface="127.0.0.1")

    def tearDown(self):
        d = self.port.stopListening()
        d.addCallback(lambda _: shutil.rmtree(self.tmp, ignore_errors=True))
        return d

    def test_round_trip(self):
        port = self.port.getHost().port

        def run():
            m = imaplib.IMAP4("127.0.0.1", port, timeout=20)
            m.login("joe", "secret")
            typ, data = m.list()
            names = b" ".join(data)
            assert b'"INBOX"' in names, data
            for msg in (MSG1, MSG2, MSG3):
                typ, data = m.append("INBOX", None, None, msg)
                assert typ == "OK" and b"APPENDUID" in data[0], data
            typ, data = m.select("INBOX")
            assert data == [b"3"], data
            typ, data = m.fetch("3", "(RFC822.SIZE BODY.PEEK[])")
            crlf = MSG3.replace(b"\n", b"\r\n")
            assert data[0][1] == crlf and b"RFC822.SIZE %d" % len(crlf) in data[0][0], data
            typ, data = m.fetch("1", "(BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
            assert data[0][1] == b"Subject: Hello\r\n\r\n", data
            m.store("2", "+FLAGS", "(\\Flagged $Work)")
            typ, data = m.fetch("2", "(FLAGS)")
            assert b"\\Flagged" in data[0] and b"$Work" in data[0], data
            typ, data = m.uid("COPY", "1", "Trash")
            assert typ == "OK", data
            assert m.status("Trash", "(MESSAGES)")[1] == [b'"Trash" (MESSAGES 1)']
            typ, data = m.uid("MOVE", "2", "Archive")
            assert typ == "OK", data
            typ, data = m.status("Archive", "(MESSAGES)")
            assert data == [b'"Archive" (MESSAGES 1)'], data
            m.store("1", "+FLAGS", "(\\Deleted)")
            typ, data = m.expunge()
            assert data == [b"2", b"1"], data  # imaplib also keeps MOVE's "* 2 EXPUNGE"
            typ, data = m.search(None, "ALL")
            assert data == [b"1"], data
            m.logout()

            m = imaplib.IMAP4("127.0.0.1", port, timeout=20)
            m.login("joe", "secret")
            typ, data = m.select("Archive")
            assert data == [b"1"], data
            typ, data = m.fetch("1", "(FLAGS)")
            assert b"\\Flagged" in data[0] and b"$Work" in data[0], data
            m.logout()

        return threads.deferToThread(run)
