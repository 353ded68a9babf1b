"""The wrapper every listener's factory gets: one :class:`Session` per
connection, bytes counted, limits applied at connect, the login deadline,
and kicks.

It sits directly around the protocol (inside any implicit TLS), so the
bytes it counts are the protocol's own, as in Dovecot's ``in=``/``out=``,
and a refusal to an implicit-TLS client is sent after the handshake, where
the client can read it.  STARTTLS still works: the protocol's transport is
this wrapper, which hands ``startTLS`` to the real transport.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.interfaces import IAddress, IDelayedCall
from twisted.internet.protocol import Protocol
from twisted.protocols.policies import ProtocolWrapper, WrappingFactory
from twisted.python.failure import Failure

from mailsrv.ops.sessions import LOGIN_PROTOCOLS, Registry, Session, family

KICK_GRACE = 2.0  # seconds a kicked or refused client has to read our goodbye

# What each protocol says when it closes a connection itself.
GOODBYE: dict[str, dict[str, bytes]] = {
    "imap": {
        "connection limit": b"* BYE [LIMIT] Too many connections from your address.\r\n",
        "banned": b"* BYE [UNAVAILABLE] Too many failed logins from your address; try again later.\r\n",
        "login timeout": b"* BYE Disconnected: no login within %d seconds.\r\n",
        "kick": b"* BYE Disconnected by the administrator.\r\n",
    },
    "pop3": {
        "connection limit": b"-ERR [SYS/TEMP] Too many connections from your address.\r\n",
        "banned": b"-ERR [SYS/TEMP] Too many failed logins from your address; try again later.\r\n",
        "login timeout": b"-ERR Disconnected: no login within %d seconds.\r\n",
        "kick": b"-ERR [SYS/TEMP] Disconnected by the administrator.\r\n",
    },
    "lmtp": {
        "kick": b"421 4.3.2 Disconnected by the administrator\r\n",
    },
}


def _addr(a: IAddress | None) -> tuple[str, int]:
    host = getattr(a, "host", None)
    if host is None:  # a UNIX socket
        return "local", 0
    return str(host), int(getattr(a, "port", 0) or 0)


class Refused(Protocol):
    """Says why, then closes: a connection over the limits."""

    transport: Any

    def __init__(self, text: bytes, reactor: Any) -> None:
        self.text = text
        self.reactor = reactor
        self._abort: IDelayedCall | None = None

    def connectionMade(self) -> None:
        self.transport.write(self.text)
        self.transport.loseConnection()
        self._abort = self.reactor.callLater(KICK_GRACE, self.transport.abortConnection)

    def connectionLost(self, reason: Failure | None = None) -> None:
        if self._abort is not None and self._abort.active():
            self._abort.cancel()


class AccountedProtocol(ProtocolWrapper):
    """One accounted connection; implements :class:`mailsrv.ops.sessions.Connection`."""

    factory: AccountingFactory
    transport: Any
    wrappedProtocol: Any
    session: Session

    def __init__(self, factory: Any, wrappedProtocol: Any) -> None:
        super().__init__(factory, wrappedProtocol)
        self._deadline: IDelayedCall | None = None
        self._abort: IDelayedCall | None = None

    def makeConnection(self, transport: Any) -> None:
        f = self.factory
        self.session = f.registry.open(f.kind, self, _addr(transport.getPeer()), _addr(transport.getHost()))
        self.wrappedProtocol.ops_session = self.session
        if self.session.protocol in LOGIN_PROTOCOLS and f.registry.limits.settings.login_timeout > 0:
            self._deadline = f.reactor.callLater(f.registry.limits.settings.login_timeout, self._too_slow)
        super().makeConnection(transport)

    # -- counting -------------------------------------------------------------

    def dataReceived(self, data: bytes) -> None:
        self.session.bytes_in += len(data)
        self.wrappedProtocol.dataReceived(data)

    def write(self, data: bytes) -> None:
        self.session.bytes_out += len(data)
        self.transport.write(data)

    def writeSequence(self, data: Any) -> None:
        if not isinstance(data, list):
            data = list(data)
        self.session.bytes_out += sum(map(len, data))
        self.transport.writeSequence(data)

    def connectionLost(self, reason: Failure | None = None) -> None:
        for call in (self._deadline, self._abort):
            if call is not None and call.active():
                call.cancel()
        try:
            super().connectionLost(reason)
        finally:
            self.factory.registry.close(self.session)

    # -- Connection ---------------------------------------------------------------

    def detail(self) -> dict[str, Any]:
        fn = getattr(self.wrappedProtocol, "ops_detail", None)
        return dict(fn()) if fn is not None else {}

    def logged_in(self) -> None:
        if self._deadline is not None and self._deadline.active():
            self._deadline.cancel()
        self._deadline = None

    def kick(self, reason: str) -> None:
        self._close_with("kick")

    def _too_slow(self) -> None:
        self._deadline = None
        if self.session.user is None:
            self.session.ending("login timeout")
            self._close_with("login timeout")

    def _close_with(self, what: str) -> None:
        text = GOODBYE.get(self.session.protocol, {}).get(what)
        if text is not None:
            if b"%d" in text:
                text = text % int(self.factory.registry.limits.settings.login_timeout)
            self.write(text)
        try:
            self.transport.loseConnection()
        finally:
            if self._abort is None:
                self._abort = self.factory.reactor.callLater(KICK_GRACE, self.transport.abortConnection)


class AccountingFactory(WrappingFactory):
    """Wraps a listener's protocol factory: ``kind`` is the listener kind
    (imap, imaps, pop3, pop3s, lmtp, or a later one)."""

    protocol = AccountedProtocol
    noisy = False

    def __init__(self, wrapped: Any, kind: str, registry: Registry, reactor: Any) -> None:
        super().__init__(wrapped)
        self.kind = kind
        self.registry = registry
        self.reactor = reactor

    def buildProtocol(self, addr: IAddress) -> Protocol | None:  # type: ignore[override]
        remote = _addr(addr)
        reason = self.registry.refusal(self.kind, remote[0])
        if reason is not None:
            self.registry.log_refusal(self.kind, reason, remote, ("", 0))
            text = GOODBYE.get(family(self.kind)[0], {}).get(reason, b"")
            return Refused(text, self.reactor)
        return super().buildProtocol(addr)

    def logPrefix(self) -> str:
        return f"mailsrv-{self.kind}"
