"""Drive an IMAPServer over StringTransport: bytes in, bytes out."""

from __future__ import annotations

import re

from twisted.internet.address import IPv4Address
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport

from mailsrv.config import Config
from mailsrv.imap import IMAPFactory
from tests.fakestore import FakeAccount, FakeFolder, FakeStore, make_portal

MSG1 = (b"From: Alice <alice@example.org>\r\nTo: joe@example.org\r\nSubject: Hello\r\n"
        b"Date: Mon, 1 Jan 2024 10:00:00 +0000\r\nMessage-ID: <1@example.org>\r\n\r\nHi Joe,\r\nhow are you?\r\n")
MSG2 = (b"From: Bob <bob@example.org>\r\nTo: joe@example.org\r\nSubject: Lunch\r\n"
        b"X-Tag: two\r\n\r\nLunch at noon.\r\n")
MSG3 = b"Subject: bare LF\nFrom: carol@example.org\n\nline one\nline two\n"


class Client:
    def __init__(self, account: FakeAccount | None = None, config: Config | None = None,
                 peer: str = "127.0.0.1", tls_context=None, clock=None) -> None:
        self.store = FakeStore()
        self.account = self.store.add(account or FakeAccount("joe"))
        self.config = config or Config(auth_fail_delay=0)
        self.clock = clock or Clock()
        self.portal = make_portal(self.store)
        self.factory = IMAPFactory(self.portal, self.config, tls_context=tls_context, reactor=self.clock)
        self.proto = self.factory.buildProtocol(None)
        self.transport = StringTransport(peerAddress=IPv4Address("TCP", peer, 40000))
        self.proto.makeConnection(self.transport)
        self.greeting = self.take()

    def take(self) -> bytes:
        out = self.transport.value()
        self.transport.clear()
        return out

    def send(self, data: bytes) -> bytes:
        self.proto.dataReceived(data)
        return self.take()

    def cmd(self, line: str) -> bytes:
        return self.send(line.encode() + b"\r\n")

    def login(self) -> bytes:
        out = self.cmd("l1 LOGIN joe secret")
        assert b"l1 OK" in out, out
        return out

    def select(self, name: str = "INBOX") -> bytes:
        out = self.cmd(f"s1 SELECT {name}")
        assert b"s1 OK" in out, out
        return out


def tagged(out: bytes, tag: str) -> bytes:
    m = re.search(rb"(?m)^" + re.escape(tag.encode()) + rb" .*\r\n", out)
    assert m, out
    return m.group(0)


def inbox_with(client: Client, *msgs: bytes, flags=()) -> FakeFolder:
    inbox = client.account.folders["INBOX"]
    for m in msgs:
        inbox.add(m, flags)
    return inbox
