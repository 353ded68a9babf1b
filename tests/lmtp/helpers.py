"""A transcript driver for LMTP tests (over the shared fake store of
:mod:`tests.fakestore` unless given another) and the client side of DATA."""

from __future__ import annotations

from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport

from mailsrv.config import Config
from mailsrv.lmtp import LMTPFactory
from tests.fakestore import FakeStore

USERS = {"alice", "bob", "carol"}


class Session:
    """One LMTP connection over a StringTransport, with a fake clock."""

    def __init__(self, store=None, users=USERS, **config) -> None:
        self.store = store if store is not None else FakeStore()
        self.config = Config(hostname="mx.test", **config)
        self.clock = Clock()
        self.users = users
        self.factory = LMTPFactory(self.store, self.config, self._exists, reactor=self.clock)
        self.proto = self.factory.buildProtocol(None)
        self.transport = StringTransport()
        self.proto.makeConnection(self.transport)
        self.greeting = self.take()

    def _exists(self, name: str):
        if callable(self.users):
            return self.users(name)
        return name in self.users

    def take(self) -> list[bytes]:
        """Reply lines written since the last take()."""
        out = self.transport.value()
        self.transport.clear()
        assert out == b"" or out.endswith(b"\r\n"), out
        return out.split(b"\r\n")[:-1] if out else []

    def send(self, data: bytes) -> list[bytes]:
        self.proto.dataReceived(data)
        return self.take()

    def cmd(self, line: str) -> list[bytes]:
        return self.send(line.encode() + b"\r\n")

    def codes(self, data: bytes) -> list[bytes]:
        return [line[:9] for line in self.send(data)]

    def start(self, *rcpts: str, sender: str = "<s@example.org>") -> None:
        """LHLO, MAIL and accepted RCPTs, replies checked."""
        assert self.cmd("LHLO client.test")[-1].startswith(b"250 ")
        assert self.cmd(f"MAIL FROM:{sender}") == [b"250 2.1.0 Sender OK"]
        for r in rcpts:
            assert self.cmd(f"RCPT TO:<{r}>")[0].startswith(b"250 2.1.5"), r


def stuff(body: bytes) -> bytes:
    """Dot-stuff a CRLF message and add the terminator (what a client sends)."""
    if body and not body.endswith(b"\r\n"):
        body += b"\r\n"
    lines = body.split(b"\r\n")[:-1] if body else []
    return b"".join((b"." + ln if ln.startswith(b".") else ln) + b"\r\n" for ln in lines) + b".\r\n"


def headers(sender: str, rcpt: str) -> bytes:
    return f"Return-Path: <{sender}>\r\nDelivered-To: {rcpt}\r\n".encode()
