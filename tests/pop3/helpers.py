"""Drive the POP3 protocol without sockets: a factory over the shared fake
store (:mod:`tests.fakestore`) and its portal, a session that feeds bytes
and reads replies, and transports that record STLS or push back."""

from __future__ import annotations

from twisted.internet import defer
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport

from mailsrv.config import Config
from mailsrv.pop3 import POP3Factory
from tests.fakestore import FakeRealm, FakeStore, make_portal


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


PASSWORDS = {"alice": "secret", "bob": "hunter2 with spaces"}


A_TLS_CONTEXT = object()  # stands for an OpenSSL context: STLS is offered, never really started


def make_factory(clock=None, tls_context=A_TLS_CONTEXT, implicit_tls=False, plaintext=True, store=None, **cfg):
    """A POP3Factory over ``store`` (a fresh FakeStore: accounts appear on
    first use, so ``store.accounts`` tells who was logged in); the store and
    the realm (it counts logouts) are kept on the factory for the tests."""
    store = FakeStore() if store is None else store
    p = make_portal(store, PASSWORDS)
    config = Config(**cfg)
    factory = POP3Factory(p, config, tls_context=tls_context, implicit_tls=implicit_tls, reactor=clock or Clock())
    factory.plaintext_allowed = lambda config, host, tls: plaintext or tls
    factory.store = store
    factory.realm = p.realm
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

    @property
    def store(self) -> FakeStore:
        return self.factory.store

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
