"""The POP3 listener factory: shared settings for every POP3 connection."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from twisted.internet import protocol
from twisted.logger import Logger

from mailsrv.auth.cred import plaintext_allowed
from mailsrv.pop3.protocol import POP3Server

log = Logger()

MIN_PRODUCTION_TIMEOUT = 600  # RFC 1939: the autologout timer is at least 10 minutes


class POP3Factory(protocol.ServerFactory):
    """Builds :class:`POP3Server` sessions.

    ``tls_context`` (an OpenSSL context factory) enables STLS unless
    ``implicit_tls`` says the listener is already TLS (POP3S, wrapped by the
    caller).  ``plaintext_allowed(config, peer_host, tls_active)`` decides
    whether USER/PASS and AUTH PLAIN are offered: the one policy in
    :func:`mailsrv.auth.plaintext_allowed`, which IMAP applies too; tests
    may replace it.
    """

    protocol = POP3Server
    plaintext_allowed: Callable[[Any, str | None, bool], bool] = staticmethod(plaintext_allowed)

    def __init__(self, portal: Any, config: Any, tls_context: Any = None, implicit_tls: bool = False,
                 reactor: Any = None) -> None:
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

    def buildProtocol(self, addr: Any) -> POP3Server:
        return POP3Server(self)
