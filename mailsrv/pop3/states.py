"""What the POP3 session's parts share: states, the client-error exception,
the reply texts used in more than one place, and a handler's result type."""

from __future__ import annotations

from collections.abc import Coroutine
from typing import Any, TypeAlias

from twisted.internet import defer

AUTHORIZATION, TRANSACTION, UPDATE = "AUTHORIZATION", "TRANSACTION", "UPDATE"
MAX_BAD_COMMANDS = 10
# Pipelined input held while a command waits; reading pauses beyond this.
MAX_PENDING_INPUT = 64 * 1024

ERR_PLAINTEXT = b"-ERR [AUTH] Plaintext authentication disallowed on non-secure (SSL/TLS) connections."
ERR_TEMP = b"-ERR [SYS/TEMP] Temporary server failure, try again later."
ERR_GONE = b"-ERR Message was expunged by another session."
ERR_FLOOD = b"-ERR Line too long, closing connection."


class Bad(Exception):
    """A client error that counts towards MAX_BAD_COMMANDS."""

    def __init__(self, text: bytes) -> None:
        super().__init__(text)
        self.text = text


# What a command handler returns: nothing (done), or work still running.
Result: TypeAlias = defer.Deferred[Any] | Coroutine[Any, Any, None] | None
