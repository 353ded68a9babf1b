"""An in-memory store and a transcript driver for LMTP tests."""

from __future__ import annotations

from twisted.internet import defer
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport

from mailsrv.config import Config
from mailsrv.lmtp import LMTPFactory
from mailsrv.store.interfaces import NoSuchFolder


class FakeAccount:
    """Just what LMTP uses of IAccount; records what it was given."""

    def __init__(self, user: str, folders=("INBOX",)) -> None:
        self.user = user
        self.folders: dict[str, list[tuple[bytes, tuple]]] = {f: [] for f in folders}
        self.fail: Exception | None = None
        self.hold = False  # deliveries wait in ``pending`` until released
        self.pending: list[tuple[defer.Deferred, int]] = []

    def folder_exists(self, name: str) -> bool:
        return name in self.folders

    def list_folders(self) -> list:
        return sorted(self.folders)

    def deliver(self, folder: str, source, flags=()) -> defer.Deferred:
        if self.fail is not None:
            return defer.fail(self.fail)
        if folder not in self.folders:
            return defer.fail(NoSuchFolder(folder))
        data = source if isinstance(source, bytes) else source.read()
        self.folders[folder].append((data, tuple(flags)))
        uid = sum(len(v) for v in self.folders.values())
        if self.hold:
            d = defer.Deferred()
            self.pending.append((d, uid))
            return d
        return defer.succeed(uid)

    def release(self) -> None:
        pending, self.pending = self.pending, []
        for d, uid in pending:
            d.callback(uid)

    def messages(self, folder: str = "INBOX") -> list[bytes]:
        return [m for m, _ in self.folders[folder]]


class FakeStore:
    def __init__(self, **folders) -> None:
        self.accounts: dict[str, FakeAccount] = {}
        self.broken = False
        for user, names in folders.items():
            self.accounts[user] = FakeAccount(user, ("INBOX",) + tuple(names))

    def account(self, user: str) -> FakeAccount:
        if self.broken:
            raise OSError(5, "Input/output error")
        if user not in self.accounts:
            self.accounts[user] = FakeAccount(user)
        return self.accounts[user]

    def view(self, user: str) -> FakeAccount:
        """LMTP delivers through the user's view (issue 12): here the account."""
        return self.account(user)

    def public_mailbox(self, name: str) -> None:
        return None


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
