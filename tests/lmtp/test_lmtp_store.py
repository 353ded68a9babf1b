"""LMTP and ``mailsrv deliver`` against the real Maildir store: live folders
hear of new mail at once (what IMAP IDLE relies on), +detail folders, and an
external delivery noticed by a running store."""

from __future__ import annotations

import io
import os
import shutil
import tempfile

from twisted.internet import reactor, task, threads
from twisted.trial import unittest

from mailsrv.config import Config
from mailsrv.delivery import deliver_command
from mailsrv.store import Store
from tests.lmtp.helpers import Session, headers, stuff

MSG = b"Subject: live\r\n\r\nhello\r\n"


class Recorder:
    """An IFolderListener that notes what was in the LMTP output at the time."""

    def __init__(self, transport=None) -> None:
        self.added = []
        self.transport = transport

    def messages_added(self, folder, uids):
        replied = self.transport is not None and b"Saved" in self.transport.value()
        self.added.append((list(uids), replied))

    def flags_changed(self, folder, uids):
        pass

    def messages_expunged(self, folder, uids):
        pass


class RealStoreTests(unittest.TestCase):
    timeout = 30

    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="lmtp-store-")
        self.addCleanup(shutil.rmtree, self.tmp, True)
        self.store = Store(self.tmp)
        self.addCleanup(self.store.close)

    async def wait_for(self, s: Session, count: int):
        """Poll the StringTransport until ``count`` reply lines arrived (bounded)."""
        for _ in range(500):
            if s.transport.value().count(b"\r\n") >= count:
                return s.take()
            await task.deferLater(reactor, 0.01, lambda: None)
        self.fail(f"no reply after 5 s: {s.transport.value()!r}")

    async def test_live_folder_told_before_the_reply(self):
        inbox = await self.store.account("alice").open_folder("INBOX")
        s = Session(store=self.store)
        rec = Recorder(s.transport)
        inbox.add_listener(rec)
        self.addCleanup(inbox.remove_listener, rec)
        s.start("alice@x.org")
        s.cmd("DATA")
        s.proto.dataReceived(stuff(MSG))
        replies = await self.wait_for(s, 1)
        self.assertEqual(replies, [b"250 2.0.0 <alice@x.org> Saved"])
        self.assertEqual(len(rec.added), 1)
        uids, replied_already = rec.added[0]
        self.assertFalse(replied_already)  # the session knew before the MTA did
        (info,) = inbox.messages()
        self.assertEqual(info.uid, uids[0])
        with inbox.open_message(info.uid) as f:
            self.assertEqual(f.read(), headers("s@example.org", "alice@x.org") + MSG)

    async def test_detail_folder_and_mixed_recipients(self):
        acct = self.store.account("bob")
        await acct.create_folder("Lists")
        s = Session(store=self.store)
        s.start()
        replies = s.send(b"RCPT TO:<bob+lists@x.org>\r\nRCPT TO:<nobody@x.org>\r\nRCPT TO:<bob+none@x.org>\r\n"
                         b"RCPT TO:<carol@x.org>\r\nDATA\r\n")
        self.assertEqual([r[:3] for r in replies], [b"250", b"550", b"250", b"250", b"354"])
        s.proto.dataReceived(stuff(MSG))
        replies = await self.wait_for(s, 3)
        self.assertEqual(replies, [b"250 2.0.0 <bob+lists@x.org> Saved", b"250 2.0.0 <bob+none@x.org> Saved",
                                   b"250 2.0.0 <carol@x.org> Saved"])
        lists = await acct.open_folder("Lists")
        inbox = await acct.open_folder("INBOX")
        self.assertEqual(len(lists.messages()), 1)
        self.assertEqual(len(inbox.messages()), 1)

    async def test_deliver_command_noticed_by_running_store(self):
        with open(os.path.join(self.tmp, "passwd"), "w") as f:
            f.write("alice:{PLAIN}x\n")
        inbox = await self.store.account("alice").open_folder("INBOX")
        rec = Recorder()
        inbox.add_listener(rec)
        self.addCleanup(inbox.remove_listener, rec)
        cfg = Config(data_dir=self.tmp)
        data = b"Subject: lda\n\nfrom the command line\n"
        err = io.StringIO()
        code = await threads.deferToThread(deliver_command, cfg, "alice", None, ["\\Seen"], io.BytesIO(data), err)
        self.assertEqual((code, err.getvalue()), (0, ""))
        await inbox.refresh()
        self.assertEqual(len(rec.added), 1)
        (info,) = inbox.messages()
        self.assertIn("\\Seen", info.flags)
        with inbox.open_message(info.uid) as f:
            self.assertEqual(f.read(), data)
