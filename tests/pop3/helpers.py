"""In-memory stand-ins for the store (IAccount/IFolder), the portal and the
transport, enough to drive the POP3 protocol without disk or sockets."""

from __future__ import annotations

import io

from twisted.cred import portal as portalmod
from twisted.cred.checkers import InMemoryUsernamePasswordDatabaseDontUse
from twisted.internet import defer
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from zope.interface import implementer

from mailsrv.config import Config
from mailsrv.pop3 import POP3Factory
from mailsrv.store.crlf import to_crlf
from mailsrv.store.interfaces import IAccount, IFolder, MessageGone, MessageInfo, StoreError


@implementer(IFolder)
class FakeFolder:
    name = "INBOX"
    uidvalidity = 1234
    highestmodseq = 1

    def __init__(self) -> None:
        self.raw: dict[int, bytes] = {}
        self.flags: dict[int, set] = {}
        self.uidnext = 1
        self.expunged: list[list[int]] = []  # every expunge() call
        self.flag_calls: list[tuple] = []
        self.refreshes = 0
        self.fail_expunge = False
        self.fail_open = False
        self.opened: list[io.BytesIO] = []
        self.prefetched: list[tuple] = []

    def add(self, raw: bytes) -> int:
        uid = self.uidnext
        self.uidnext += 1
        self.raw[uid] = raw
        self.flags[uid] = set()
        return uid

    def messages(self) -> list:
        return [self.get(uid) for uid in sorted(self.raw)]

    def get(self, uid: int) -> MessageInfo | None:
        if uid not in self.raw:
            return None
        return MessageInfo(uid, "key%d" % uid, len(to_crlf(self.raw[uid])), 0.0, frozenset(self.flags[uid]))

    def open_message(self, uid: int):
        if self.fail_open:
            raise StoreError("disk on fire")
        if uid not in self.raw:
            raise MessageGone(uid)
        f = io.BytesIO(self.raw[uid])
        self.opened.append(f)
        return f

    def pop3_uidl(self, uid: int) -> str:
        if uid not in self.raw:
            raise MessageGone(uid)  # as the real store does
        return "%08X%08X" % (uid, self.uidvalidity)

    def refresh(self):
        self.refreshes += 1
        return defer.succeed(None)

    def prefetch(self, uids, kinds=(), body=None):
        self.prefetched.append((list(uids), list(kinds), body))
        return defer.succeed(None)

    def store_flags(self, uids, flags, mode):
        uids = list(uids)
        self.flag_calls.append((uids, list(flags), mode))
        for uid in uids:
            if uid in self.flags:
                self.flags[uid] |= set(flags)
        return defer.succeed(uids)

    def expunge(self, uids=None):
        if self.fail_expunge:
            return defer.fail(StoreError("read-only file system"))
        uids = list(uids)
        self.expunged.append(uids)
        for uid in uids:
            self.raw.pop(uid, None)
            self.flags.pop(uid, None)
        return defer.succeed(uids)


@implementer(IAccount)
class FakeAccount:
    def __init__(self, user: str) -> None:
        self.user = user
        self.inbox = FakeFolder()
        self.locked = False
        self.fail_open = False

    def open_folder(self, name: str):
        if self.fail_open:
            return defer.fail(StoreError("cannot open"))
        return defer.succeed(self.inbox)

    def acquire_pop3_lock(self):
        if self.locked:
            return defer.succeed(False)
        self.locked = True
        return defer.succeed(True)

    def release_pop3_lock(self):
        assert self.locked, "released a lock that was not held"
        self.locked = False
        return defer.succeed(None)


@implementer(portalmod.IRealm)
class FakeRealm:
    def __init__(self) -> None:
        self.accounts: dict[bytes, FakeAccount] = {}
        self.logouts = 0

    def account(self, user: bytes) -> FakeAccount:
        if user not in self.accounts:
            self.accounts[user] = FakeAccount(user.decode())
        return self.accounts[user]

    def requestAvatar(self, avatar_id, mind, *interfaces):
        assert IAccount in interfaces

        def logout():
            self.logouts += 1

        return IAccount, self.account(avatar_id), logout


class TLSStringTransport(StringTransport):
    """A StringTransport that records STLS upgrades and TCP_NODELAY."""

    def __init__(self, *a, **kw) -> None:
        super().__init__(*a, **kw)
        self.tls_started = []
        self.nodelay = None

    def startTLS(self, ctx) -> None:
        self.tls_started.append(ctx)

    def setTcpNoDelay(self, on: bool) -> None:
        self.nodelay = on


PASSWORDS = {b"alice": b"secret", b"bob": b"hunter2 with spaces"}


A_TLS_CONTEXT = object()  # stands for an OpenSSL context: STLS is offered, never really started


def make_factory(clock=None, tls_context=A_TLS_CONTEXT, implicit_tls=False, plaintext=True, **cfg):
    realm = FakeRealm()
    checker = InMemoryUsernamePasswordDatabaseDontUse(**{k.decode(): v for k, v in PASSWORDS.items()})
    p = portalmod.Portal(realm, [checker])
    config = Config(**cfg)
    factory = POP3Factory(p, config, tls_context=tls_context, implicit_tls=implicit_tls, reactor=clock or Clock())
    factory.plaintext_allowed = lambda config, host, tls: plaintext or tls
    factory.realm = realm
    return factory


class Session:
    """One connection: feed bytes, read what the server wrote."""

    def __init__(self, factory=None, **kw) -> None:
        self.factory = factory or make_factory(**kw)
        self.clock = self.factory.reactor
        self.transport = TLSStringTransport()
        self.proto = self.factory.buildProtocol(None)
        self.proto.makeConnection(self.transport)

    @property
    def realm(self) -> FakeRealm:
        return self.factory.realm

    def send(self, data: bytes) -> bytes:
        """Feed ``data``; return everything written since the last call."""
        self.transport.clear()
        self.proto.dataReceived(data)
        return self.read()

    def cmd(self, line: str) -> bytes:
        return self.send(line.encode() + b"\r\n")

    def read(self) -> bytes:
        out = self.transport.value()
        self.transport.clear()
        return out

    def login(self, user: str = "alice", password: str = "secret") -> bytes:
        self.read()
        out = self.cmd("USER " + user) + self.cmd("PASS " + password)
        assert b"+OK Logged in" in out, out
        return out

    def drop(self) -> None:
        """The client vanishes."""
        self.transport.loseConnection()
        from twisted.internet.error import ConnectionDone
        from twisted.python.failure import Failure

        self.proto.connectionLost(Failure(ConnectionDone()))

    @property
    def closed(self) -> bool:
        return self.transport.disconnecting


class SlowChecker:
    """A credentials checker whose answers the test fires by hand."""

    from twisted.cred.credentials import IUsernamePassword as _IUP

    credentialInterfaces = (_IUP,)

    def __init__(self) -> None:
        self.pending: list[tuple] = []

    def requestAvatarId(self, credentials):
        d = defer.Deferred()
        self.pending.append((credentials, d))
        return d


class PausingTransport(TLSStringTransport):
    """Pauses a registered streaming producer after ``limit`` octets, like a
    full socket buffer does."""

    def __init__(self, limit: int) -> None:
        super().__init__()
        self.limit = limit
        self._since_resume = 0

    def write(self, data: bytes) -> None:
        super().write(data)
        self._since_resume += len(data)
        if self.producer is not None and self.streaming and self._since_resume >= self.limit:
            self.producer.pauseProducing()

    def drain(self) -> None:
        """The socket buffer emptied: let the producer go on."""
        self._since_resume = 0
        if self.producer is not None:
            self.producer.resumeProducing()
