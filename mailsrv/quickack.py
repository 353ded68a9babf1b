"""Acknowledge received bytes at once while a command is incomplete.

Why (issue 10, seen with tcpdump on loopback): Python's ``imaplib`` sends an
APPEND literal and its closing CRLF in two writes, without TCP_NODELAY.
Nagle's algorithm holds the 2-byte CRLF until the literal is acknowledged.
The server has nothing to answer yet (the command is not complete), and its
socket is in Linux's delayed-ACK ("pingpong") mode because it answered the
previous commands quickly, so the ACK leaves only when the delayed-ACK timer
fires: every such APPEND waited ~40 ms.  The same holds for any client that
writes one command in several small pieces (a MULTIAPPEND's next literal
announcement, an LMTP DATA body and its final dot written apart).

Dovecot sets ``TCP_QUICKACK`` before every read.  We do it only when it
matters: after input was consumed, a command is still incomplete and no
answer was written that would carry the ACK.  Setting ``TCP_QUICKACK`` on
Linux sends a pending ACK now and leaves pingpong mode until our next
answer.  Elsewhere (no ``TCP_QUICKACK``), or on a transport without a TCP
socket under it (UNIX sockets, test transports), this does nothing.

The socket is found under any wrapping: a Twisted TCP connection keeps it
as ``.socket`` (after STARTTLS its ``getHandle()`` is the OpenSSL object);
the implicit-TLS protocol (``TLSMemoryBIOProtocol``) and any stream wrapper
(COMPRESS) keep the real transport as ``.transport``.
"""

from __future__ import annotations

import socket
from typing import Any

TCP_QUICKACK: int | None = getattr(socket, "TCP_QUICKACK", None)
_MAX_DEPTH = 8  # wrappers to look through before giving up


def socket_of(transport: Any) -> socket.socket | None:
    """The TCP socket under ``transport`` (through TLS or other wrappers), or None."""
    t = transport
    for _ in range(_MAX_DEPTH):
        if t is None:
            return None
        handle = getattr(t, "socket", None)  # a Twisted TCP connection
        if not isinstance(handle, socket.socket):
            handle = _handle(t)
        if isinstance(handle, socket.socket):
            return handle if handle.family in (socket.AF_INET, socket.AF_INET6) else None
        t = getattr(t, "transport", None)
    return None


def _handle(transport: Any) -> Any:
    get = getattr(transport, "getHandle", None)
    try:
        return get() if get is not None else None
    except Exception:  # noqa: BLE001  a transport without a handle
        return None


class QuickAck:
    """Per connection: ``ack_now()`` sends the ACK of what was read, if one
    is pending.  The socket is looked up on first use."""

    def __init__(self, transport: Any) -> None:
        self._transport = transport
        self._sock: socket.socket | None = None
        self._enabled = TCP_QUICKACK is not None

    def ack_now(self) -> None:
        opt = TCP_QUICKACK
        if opt is None or not self._enabled:
            return
        sock = self._sock
        if sock is None:
            sock = self._sock = socket_of(self._transport)
            if sock is None:
                self._enabled = False
                return
        try:
            sock.setsockopt(socket.IPPROTO_TCP, opt, 1)
        except OSError:
            self._enabled = False  # closed, or not TCP after all
