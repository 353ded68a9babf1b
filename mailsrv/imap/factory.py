"""The IMAP server factory the twistd service listens with."""

from __future__ import annotations

from typing import Any

from twisted.cred.portal import Portal
from twisted.internet.protocol import Factory

from mailsrv.config import Config
from mailsrv.imap.context import Context
from mailsrv.imap.server import IMAPServer


class IMAPFactory(Factory):
    """Builds one :class:`IMAPServer` per connection.  ``implicit_tls`` marks
    a listener that is already TLS (993): no STARTTLS, plaintext rules off.
    ``idle_keepalive``/``idle_poll`` exist so tests can shorten them."""

    protocol = IMAPServer

    def __init__(self, portal: Portal, config: Config, tls_context: Any | None = None,
                 implicit_tls: bool = False, reactor: Any | None = None) -> None:
        if reactor is None:  # imported late: importing it installs the default reactor
            from twisted.internet import reactor as _reactor
            reactor = _reactor
        self.portal = portal
        self.config = config
        self.tls_context = tls_context
        self.implicit_tls = implicit_tls
        self.reactor = reactor
        self.idle_keepalive = Context.idle_keepalive
        self.idle_poll = Context.idle_poll

    def buildProtocol(self, addr: Any) -> IMAPServer:
        p = IMAPServer(self.portal, self.config, self.reactor, None if self.implicit_tls else self.tls_context,
                       self.implicit_tls)
        p.factory = self
        p.ctx.idle_keepalive = self.idle_keepalive
        p.ctx.idle_poll = self.idle_poll
        return p
