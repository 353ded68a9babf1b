"""LMTP end to end on real loopback sockets with real clients: Python's
``smtplib.LMTP`` (TCP and a unix socket) and ``swaks --protocol LMTP``.

Run against the in-memory store and against the real Maildir store.
"""

from __future__ import annotations

import os
import shutil
import smtplib
import tempfile

from twisted.internet import defer, reactor, threads, utils
from twisted.trial import unittest

from mailsrv.config import Config
from mailsrv.lmtp import LMTPFactory
from mailsrv.store import Store
from tests.fakestore import FakeStore
from tests.lmtp.helpers import USERS, headers

SWAKS = shutil.which("swaks")
BODY = b"Subject: e2e\r\n\r\nhello\r\n.dotted line\r\n"


def big_message(size: int) -> bytes:
    """~``size`` bytes of realistic lines, some starting with dots."""
    line = b"." + b"0123456789abcdefghijklmnopqrstuvwxyz" * 2 + b"\r\n"
    body = line * (size // len(line))
    return b"Subject: big\r\nX-Pad: y\r\n\r\n" + body


class _Base:
    timeout = 60

    def make_store(self):
        raise NotImplementedError

    def stored(self, user: str, folder: str = "INBOX") -> defer.Deferred:
        raise NotImplementedError

    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="lmtp-e2e-")
        self.addCleanup(shutil.rmtree, self.tmp, True)
        self.store = self.make_store()
        self.config = Config(data_dir=self.tmp, hostname="mx.test", lmtp_max_size=40 * 1024 * 1024)
        self.factory = LMTPFactory(self.store, self.config, USERS.__contains__)
        self.port = reactor.listenTCP(0, self.factory, interface="127.0.0.1")
        self.addCleanup(self.port.stopListening)
        self.portnum = self.port.getHost().port

    def client(self, host=None) -> smtplib.LMTP:
        if host is None:
            return smtplib.LMTP("127.0.0.1", self.portnum, local_hostname="client.test", timeout=30)
        return smtplib.LMTP(host, local_hostname="client.test", timeout=30)

    async def test_smtplib_single_recipient(self):
        def send():
            with self.client() as c:
                refused = c.sendmail("s@example.org", ["alice@x.org"], BODY)
                assert "size" in c.esmtp_features and "pipelining" in c.esmtp_features
                return refused

        refused = await threads.deferToThread(send)
        self.assertEqual(refused, {})
        msgs = await self.stored("alice")
        self.assertEqual(msgs, [headers("s@example.org", "alice@x.org") + BODY])

    async def test_smtplib_mixed_recipients(self):
        """smtplib reads one DATA reply; read the others as LMTP requires."""

        def send():
            with self.client() as c:
                c.ehlo()
                c.mail("s@example.org")
                codes = [c.rcpt(r)[0] for r in ("alice@x.org", "nobody@x.org", "bob@x.org")]
                first = c.data(BODY)
                second = c.getreply()
                return codes, first, second

        codes, first, second = await threads.deferToThread(send)
        self.assertEqual(codes, [250, 550, 250])
        self.assertEqual(first, (250, b"2.0.0 <alice@x.org> Saved"))
        self.assertEqual(second, (250, b"2.0.0 <bob@x.org> Saved"))
        for user in ("alice", "bob"):
            msgs = await self.stored(user)
            self.assertEqual(msgs, [headers("s@example.org", f"{user}@x.org") + BODY])

    async def test_size_refused_up_front(self):
        self.config.lmtp_max_size = 1000

        def send():
            with self.client() as c:
                try:
                    c.sendmail("s@example.org", ["alice@x.org"], b"Subject: x\r\n\r\n" + b"y" * 2000)
                except smtplib.SMTPSenderRefused as e:
                    return e.smtp_code, e.smtp_error
                return None

        result = await threads.deferToThread(send)
        self.assertEqual(result, (552, b"5.3.4 Message size exceeds fixed maximum message size"))

    async def test_unix_socket(self):
        path = os.path.join(self.tmp, "lmtp.sock")
        port = reactor.listenUNIX(path, self.factory)
        self.addCleanup(port.stopListening)

        def send():
            with self.client(path) as c:
                return c.sendmail("s@example.org", ["bob@x.org"], BODY)

        self.assertEqual(await threads.deferToThread(send), {})
        self.assertEqual(len(await self.stored("bob")), 1)

    async def test_30mb_message_byte_exact(self):
        msg = big_message(30 * 1024 * 1024)

        def send():
            with self.client() as c:
                return c.sendmail("s@example.org", ["carol@x.org"], msg)

        self.assertEqual(await threads.deferToThread(send), {})
        (stored,) = await self.stored("carol")
        expected = headers("s@example.org", "carol@x.org") + msg
        self.assertEqual(len(stored), len(expected))
        self.assertTrue(stored == expected)

    async def test_swaks(self):
        if SWAKS is None:
            raise unittest.SkipTest("swaks not installed")
        args = ["--protocol", "LMTP", "--server", "127.0.0.1", "--port", str(self.portnum),
                "--from", "s@example.org", "--helo", "client.test", "--header", "Subject: swaks"]
        out, err, code = await utils.getProcessOutputAndValue(SWAKS, args + ["--to", "alice@x.org,bob@x.org"])
        self.assertEqual(code, 0, out + err)
        self.assertIn(b"<-  250 2.0.0 <alice@x.org> Saved", out)
        self.assertIn(b"<-  250 2.0.0 <bob@x.org> Saved", out)
        (msg,) = await self.stored("bob")
        self.assertTrue(msg.startswith(headers("s@example.org", "bob@x.org")))
        self.assertIn(b"Subject: swaks", msg)
        out, err, code = await utils.getProcessOutputAndValue(SWAKS, args + ["--to", "nobody@x.org"])
        self.assertNotEqual(code, 0)
        self.assertIn(b"550 5.1.1 <nobody@x.org> User unknown", out)


class SharedFakeStoreEndToEnd(_Base, unittest.TestCase):
    def make_store(self):
        return FakeStore()

    def stored(self, user, folder="INBOX"):
        return defer.succeed(self.store.account(user).contents(folder))


class RealStoreEndToEnd(_Base, unittest.TestCase):

    def make_store(self):
        return Store(self.tmp)

    async def stored(self, user, folder="INBOX"):
        f = await self.store.account(user).open_folder(folder)
        await f.refresh()
        out = []
        for m in f.messages():
            fh = f.open_message(m.uid)
            try:
                out.append(fh.read())
            finally:
                fh.close()
        return out
