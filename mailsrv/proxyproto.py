"""The PROXY protocol (HAProxy, v1 and v2) on mailsrv's listeners.

A listener written ``haproxy:<endpoint>`` (``haproxy:tcp:143``) expects
every connection to start with a PROXY header naming the real client; the
protocols then see that client in ``transport.getPeer()``: logs, per-IP
limits and the ``plaintext-auth loopback`` rule judge the client, not the
proxy.

This is Twisted's ``haproxy:`` endpoint wrapper with two faults fixed
(the header parsers are Twisted's): Twisted's wrapper starts the wrapped
protocol (``connectionMade``: the greeting, the peer address recorded)
*before* the header has arrived, so the protocol sees the proxy's address
(twisted/twisted#12501) - behind a local HAProxy every client would look
like loopback and get plaintext login - and it drops the connection when
the header arrives in more than one piece (twisted/twisted#8287).  Here
the wrapped protocol starts only once the whole header has been read; a
connection that sends no valid header within ``HEADER_TIMEOUT`` seconds
is dropped, having been told nothing.
"""

from __future__ import annotations

from typing import Any

from twisted.internet import interfaces
from twisted.internet.protocol import Protocol
from twisted.logger import Logger
from twisted.protocols import policies
from twisted.protocols.haproxy._exceptions import InvalidProxyHeader
from twisted.protocols.haproxy._v1parser import V1Parser
from twisted.protocols.haproxy._v2parser import V2Parser
from zope.interface import directlyProvides, providedBy

log = Logger(namespace="mailsrv.proxy")

PREFIX = "haproxy:"
HEADER_TIMEOUT = 10.0
V2_SIGNATURE = V2Parser.PREFIX  # 12 bytes
MAX_HEADER = 16 + 4096  # v2 headers with TLVs; v1 is at most 107 bytes


def split(description: str) -> tuple[bool, str]:
    """``"haproxy:tcp:143"`` -> ``(True, "tcp:143")``; others unchanged."""
    if description.startswith(PREFIX):
        return True, description[len(PREFIX):]
    return False, description


class ProxyHeaderProtocol(policies.ProtocolWrapper):
    """Reads the PROXY header, then starts the wrapped protocol."""

    def __init__(self, factory: Any, wrappedProtocol: interfaces.IProtocol) -> None:
        super().__init__(factory, wrappedProtocol)
        self.transport: Any
        self._info: Any = None
        self._parser: V1Parser | V2Parser | None = None
        self._pending = b""
        self._timer: Any = None
        self._started = False

    def makeConnection(self, transport: Any) -> None:
        directlyProvides(self, providedBy(transport))
        Protocol.makeConnection(self, transport)
        self.factory.registerProtocol(self)
        clock: Any = getattr(self.factory, "reactor", None)
        if clock is None:
            from twisted.internet import reactor as clock
        self._timer = clock.callLater(self.factory.timeout, self._no_header)

    def _no_header(self) -> None:
        self._timer = None
        log.info("no PROXY header from {peer} in time; dropping", peer=self.transport.getPeer())
        self.transport.abortConnection()

    def _bad(self, why: str) -> None:
        log.info("bad PROXY header from {peer} ({why}); dropping", peer=self.transport.getPeer(), why=why)
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None
        self.transport.abortConnection()

    def dataReceived(self, data: bytes) -> None:
        if self._started:
            self.wrappedProtocol.dataReceived(data)
            return
        if self._parser is None:
            self._pending += data
            data = self._pending
            if len(data) >= 16 and data.startswith(V2_SIGNATURE):
                self._parser = V2Parser()
            elif data.startswith(b"PROXY "):
                self._parser = V1Parser()
            elif not (V2_SIGNATURE.startswith(data[:12]) or b"PROXY ".startswith(data[:6])):
                self._bad("not a PROXY header")
                return
            else:
                return  # too short to tell yet
            self._pending = b""
        if len(self._parser.buffer) + len(data) > MAX_HEADER:
            self._bad("header too long")
            return
        try:
            info, rest = self._parser.feed(data)
        except InvalidProxyHeader:
            self._bad("malformed")
            return
        if info is not None:
            self._start(info, rest or b"")

    def _start(self, info: Any, rest: bytes) -> None:
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None
        self._info = info
        self._started = True
        self.wrappedProtocol.makeConnection(self)  # type: ignore[arg-type]  # a wrapper is a transport
        if rest:
            self.wrappedProtocol.dataReceived(rest)

    def connectionLost(self, reason: Any = None) -> None:
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None
        if self._started:
            super().connectionLost(reason)
        else:
            self.factory.unregisterProtocol(self)

    def getPeer(self) -> Any:
        if self._info is not None and self._info.source is not None:
            return self._info.source
        return self.transport.getPeer()

    def getHost(self) -> Any:
        if self._info is not None and self._info.destination is not None:
            return self._info.destination
        return self.transport.getHost()


class ProxyHeaderFactory(policies.WrappingFactory):
    """Wrap a factory's protocols so that they start after the PROXY header."""

    protocol = ProxyHeaderProtocol

    def __init__(self, wrappedFactory: Any, timeout: float = HEADER_TIMEOUT, reactor: Any = None) -> None:
        super().__init__(wrappedFactory)
        self.timeout = timeout
        self.reactor = reactor

    def logPrefix(self) -> str:
        inner = self.wrappedFactory
        name = inner.logPrefix() if interfaces.ILoggingContext.providedBy(inner) else inner.__class__.__name__
        return f"{name} (PROXY)"
