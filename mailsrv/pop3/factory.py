"""The POP3 listener factory: shared settings for every POP3 connection."""

from __future__ import annotations

from collections.abc import Callable

from twisted.internet import protocol
from twisted.logger import Logger

from mailsrv.pop3.protocol import POP3Server, default_plaintext_allowed

log = Logger()

MIN_PRODUCTION_TIMEOUT = 600  # RFC 1939: the autologout timer is at least 10 minutes


class POP3Factory(protocol.ServerFactory):
    """Builds :class:`POP3Server` sessions.

    ``tls_context`` (an OpenSSL context factory) enables STLS unless
    ``implicit_tls`` says the listener is already TLS (POP3S, wrapped by the
    caller).  ``plaintext_allowed(config, peer_host, tls_active)`` decides
    whether USER/PASS and AUTH PLAIN are offered; tests may replace it.
    """

    protocol = POP3Server
    plaintext_allowed: Callable = staticmethod(default_plaintext_allowed)

    def __init__(self, portal, config, tls_context=None, implicit_tls: bool = False, reactor=None) -> None:
        if reactor is None:
            from twisted.internet import reactor as default_reactor

            reactor = default_reactor
        self.portal = portal
        self.config = config
        self.tls_context = tls_context
        self.implicit_tls = implicit_tls
        self.reactor = reactor
        if config.pop3_timeout < MIN_PRODUCTION_TIMEOUT:
            log.warn(
                "pop3 timeout {t}s is below the 10 minutes RFC 1939 requires",
                t=config.pop3_timeout,
            )

    def buildProtocol(self, addr) -> POP3Server | None:
        p = self.protocol(self)
        return p
