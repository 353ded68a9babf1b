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
from tests.fakestore import make_portal
from tests.imap.harness import MSG1, MSG2, MSG3


class RealStoreTest(unittest.TestCase):
    timeout = 60

    def setUp(self):
        from mailsrv.store import Store
        self.tmp = tempfile.mkdtemp()
        self.store = Store(self.tmp)
        portal = make_portal(self.store, {"joe": "secret"})
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


ENCODED = (b"From: =?utf-8?q?J=C3=BCrgen?= <j@example.com>\r\n"
           b"Subject: =?utf-8?q?Gr=C3=BC=C3=9Fe_zum?=\r\n =?utf-8?q?_Outage?=\r\n"
           b"Subject: second subject line\r\n\r\nbody\r\n")
NO_SUBJECT = b"From: a@example.com\nTo: b@example.com\n\nno subject here\n"


class WarmPathTest(RealStoreTest):
    """Bulk cache reads and cached HEADER.FIELDS / SEARCH HEADER answers give
    exactly what the first (parsing) pass gave, in the same session and in
    a new one reading the SQLite cache."""

    def test_cold_and_warm_answers_are_identical(self):
        port = self.port.getHost().port
        queries = [("fetch", "1:*", "(BODY.PEEK[HEADER.FIELDS (SUBJECT FROM)])"),
                   ("fetch", "1:*", "(BODY.PEEK[HEADER.FIELDS (from subject)])"),
                   ("fetch", "1:*", "(BODY.PEEK[HEADER.FIELDS.NOT (SUBJECT)])"),
                   ("fetch", "1:*", "(ENVELOPE BODY.PEEK[])"),
                   ("search", "HEADER", "Subject", '"GRÜSSE zum outage"'),
                   ("search", "HEADER", "Subject", '"second"'),
                   ("search", "HEADER", "Subject", '""'),
                   ("search", "HEADER", "From", '"jürgen"')]

        def answers(m):
            out = []
            for q in queries:
                if q[0] == "fetch":
                    out.append(m.fetch(q[1], q[2]))
                else:
                    out.append(m.uid("SEARCH", "CHARSET", "UTF-8", *[x.encode() for x in q[1:]]))
            return out

        def run():
            m = imaplib.IMAP4("127.0.0.1", port, timeout=20)
            m.login("joe", "secret")
            for msg in (MSG1, ENCODED, NO_SUBJECT, MSG2):
                assert m.append("INBOX", None, None, msg)[0] == "OK"
            m.select("INBOX")
            cold = answers(m)
            warm = answers(m)
            m.logout()
            m = imaplib.IMAP4("127.0.0.1", port, timeout=20)
            m.login("joe", "secret")
            m.select("INBOX")
            again = answers(m)
            m.logout()
            return cold, warm, again

        def check(result):
            cold, warm, again = result
            self.assertEqual(cold, warm)
            self.assertEqual(cold, again)
            fields = [d for d in cold[0][1] if isinstance(d, tuple)]
            self.assertEqual(fields[1][1], ENCODED[:ENCODED.index(b"\r\n\r\n") + 2] + b"\r\n")  # stored order
            self.assertEqual(fields[2][1], b"From: a@example.com\r\n\r\n")
            other = [d[1] for d in cold[1][1] if isinstance(d, tuple)]
            self.assertEqual([d[1] for d in fields], other)  # same field set, other case and order
            whole = [d for d in cold[3][1] if isinstance(d, tuple)]
            self.assertEqual(whole[1][1], ENCODED)  # stored CRLF: sent as is
            self.assertEqual(whole[2][1], NO_SUBJECT.replace(b"\n", b"\r\n"))
            self.assertEqual(cold[4][1], [b"2"])
            self.assertEqual(cold[5][1], [b"2"])
            self.assertEqual(cold[6][1], [b"1 2 4"])
            self.assertEqual(cold[7][1], [b"2"])

        return threads.deferToThread(run).addCallback(check)
