"""Message data to the client in big writes: straight to a plain TCP socket
(scatter-gather ``sendmsg``, ``sendfile`` for files stored with CRLF), or
through the transport on anything else (TLS, a wrapping transport, tests).

Why not only ``transport.write``: Twisted joins every buffered piece into
one bytes object (a copy of each message body) and sends at most 128 KiB
per reactor turn.  A FETCH of bodies is a few big buffers per message; on a
plain TCP connection we hand them to the kernel as they are, as much as it
takes in one call, and a message stored with CRLF line ends goes from the
page cache to the socket with ``os.sendfile`` without entering Python.

Direct writes are only made while Twisted's own buffer is empty, so output
stays in order; while this wire still holds data, the connection must send
its other output through :meth:`Wire.hold` (IMAPServer does).  When the
kernel's buffer is full we wait for the socket to become writable through a
``dup()`` of its descriptor registered with the reactor (the transport
itself stays registered for its own reading and writing); the duplicate
lives only while we wait and is closed on completion and on
:meth:`Wire.abort`, so it never keeps a closed connection open.

A connection that transforms its output (TLS, COMPRESS) has no direct
socket: the owner's ``direct_socket()`` returns None and everything goes
through ``write_many`` with ``drained`` as back-pressure.
"""

from __future__ import annotations

import os
import socket
from collections import deque
from collections.abc import Callable
from typing import Any

from twisted.internet import defer, tcp
from twisted.internet.interfaces import ISSLTransport
from twisted.logger import Logger
from twisted.python.failure import Failure

log = Logger()

IOV_MAX = 512  # pieces per sendmsg (Linux allows 1024)
SEND_MAX = 4 << 20  # octets offered per sendmsg call
SENDFILE_MAX = 4 << 20  # octets per sendfile call

Piece = bytes | memoryview


class FileRange:
    """``length`` octets of an open file descriptor from ``offset``, sent with
    ``sendfile``; the range owns the descriptor and closes it when sent or
    dropped."""

    __slots__ = ("fd", "offset", "length")

    def __init__(self, fd: int, offset: int, length: int) -> None:
        self.fd, self.offset, self.length = fd, offset, length

    def close(self) -> None:
        if self.fd >= 0:
            fd, self.fd = self.fd, -1
            try:
                os.close(fd)
            except OSError:
                pass

    def read_all(self) -> bytes:
        """The range's bytes (for a connection without a direct socket)."""
        out = []
        off, left = self.offset, self.length
        while left > 0:
            chunk = os.pread(self.fd, min(left, SENDFILE_MAX), off)
            if not chunk:
                break
            out.append(chunk)
            off += len(chunk)
            left -= len(chunk)
        self.close()
        return b"".join(out)


Item = Piece | FileRange


_TCP_TYPES: dict[type, bool] = {}


def _plain_tcp_type(cls: type) -> bool:
    """Whether ``cls`` is a Twisted TCP connection (memoised: asked per write)."""
    known = _TCP_TYPES.get(cls)
    if known is None:
        known = _TCP_TYPES[cls] = issubclass(cls, tcp.Connection)
    return known


def plain_tcp_socket(transport: Any) -> socket.socket | None:
    """The socket of a Twisted TCP transport whose output is not transformed
    (no TLS started on it), else None.  The transport itself must be the
    TCP connection: wrappers (implicit TLS's TLSMemoryBIOProtocol) forward
    attribute reads to the transport under them, so ``.socket`` alone
    proves nothing."""
    if not _plain_tcp_type(type(transport)) or ISSLTransport.providedBy(transport):
        return None
    sock = getattr(transport, "socket", None)
    if not isinstance(sock, socket.socket) or getattr(transport, "TLS", False):
        return None
    if sock.family not in (socket.AF_INET, socket.AF_INET6) or not hasattr(sock, "sendmsg"):
        return None
    if not getattr(transport, "connected", False) or getattr(transport, "disconnecting", False):
        return None
    return sock


def twisted_buffer_empty(transport: Any) -> bool:
    """Nothing of the transport's own output is waiting to be sent."""
    try:
        return len(transport.dataBuffer) == transport.offset and not transport._tempDataLen
    except AttributeError:
        return False


def send_now(transport: Any, pieces: list[bytes]) -> int:
    """Hand ``pieces`` straight to the kernel if the transport is plain TCP
    with nothing of its own waiting: octets sent (0 when not possible).  The
    caller writes the rest through the transport, which keeps the order.
    Saves a reactor turn before the first byte and Twisted's join of the
    pieces (POP3's RETR)."""
    sock = plain_tcp_socket(transport)
    if sock is None or not twisted_buffer_empty(transport):
        return 0
    try:
        return sock.sendmsg(pieces[:IOV_MAX])
    except OSError:  # EAGAIN, or an error the transport will notice itself
        return 0


def unsent(pieces: list[bytes], sent: int) -> list[bytes]:
    """What is left of ``pieces`` after the first ``sent`` octets went."""
    out: list[bytes] = []
    for p in pieces:
        if sent >= len(p):
            sent -= len(p)
            continue
        out.append(p[sent:] if sent else p)
        sent = 0
    return out


class _Writable:
    """IWriteDescriptor on a duplicate of the socket's descriptor: tells the
    wire when the kernel takes more."""

    def __init__(self, fd: int, wire: Wire) -> None:
        self.fd = fd
        self.wire = wire

    def fileno(self) -> int:
        return self.fd

    def doWrite(self) -> None:
        self.wire._writable()

    def doRead(self) -> None:  # registered for writing only
        return None

    def connectionLost(self, reason: Failure) -> None:
        self.wire.abort(ConnectionError("connection lost"))

    def logPrefix(self) -> str:
        return "mailsrv.wire"


class Wire:
    """Big-write output for one connection.

    ``direct_socket()`` is asked before every write (TLS may have started,
    a wrapper may have been put in place); ``transport()`` is the current
    transport (for its buffer state); ``write_many`` and ``drained`` are the
    connection's ordinary output and back-pressure, used when there is no
    direct socket.
    """

    def __init__(self, reactor: Any, direct_socket: Callable[[], socket.socket | None],
                 transport: Callable[[], Any], write_many: Callable[[list[bytes]], None],
                 drained: Callable[[], defer.Deferred[None]]) -> None:
        self._reactor = reactor
        self._direct_socket = direct_socket
        self._transport = transport
        self._write_many = write_many
        self._drained = drained
        self._queue: deque[Item] = deque()
        self._held: list[bytes] = []
        self._waiter: defer.Deferred[None] | None = None
        self._watch: _Writable | None = None
        self._sock: socket.socket | None = None
        self._failed: BaseException | None = None

    @property
    def direct(self) -> bool:
        """Whether sendfile ranges may be queued (plain TCP now)."""
        return self._failed is None and self._direct_socket() is not None

    @property
    def busy(self) -> bool:
        """Data of ours is still waiting: other output must be held."""
        return bool(self._queue)

    def hold(self, data: bytes) -> None:
        """Output of the connection while we are busy; sent after our data."""
        self._held.append(data)

    def send(self, items: list[Item]) -> defer.Deferred[None]:
        """Queue ``items`` (after anything queued before); the Deferred fires
        once all were handed to the kernel (or to the transport, which then
        wants more), or fails with ConnectionError if the connection went."""
        if self._failed is not None:
            for it in items:
                if isinstance(it, FileRange):
                    it.close()
            return defer.fail(ConnectionError("connection lost"))
        sock = self._direct_socket()
        if sock is None:
            return self._send_through_transport(items)
        self._queue.extend(items)
        self._sock = sock
        if self._waiter is None:
            self._waiter = defer.Deferred()
        d = self._waiter
        self._pump()
        return d

    def _send_through_transport(self, items: list[Item]) -> defer.Deferred[None]:
        out: list[bytes] = []
        for it in items:
            if isinstance(it, FileRange):
                out.append(it.read_all())
            else:
                out.append(it if isinstance(it, bytes) else bytes(it))
        self._write_many(out)
        return self._drained()

    # -- the direct path

    def _pump(self) -> None:
        sock = self._sock
        q = self._queue
        try:
            while q:
                if not twisted_buffer_empty(self._transport()):
                    self._wait()  # the transport drains first (order)
                    return
                head = q[0]
                if isinstance(head, FileRange):
                    done = self._sendfile(sock, head)
                    if done is None:  # the file ended early: pad, as a stream would
                        log.error("message file shorter than its recorded size; padding the literal")
                        q[0] = b" " * head.length
                        head.close()
                        continue
                    if not done:
                        self._wait()
                        return
                    q.popleft()
                    head.close()
                elif not self._sendmsg(sock, q):
                    self._wait()
                    return
        except OSError as e:
            if not isinstance(e, (BrokenPipeError, ConnectionResetError)):
                log.error("message data could not be sent, closing the connection: {e}", e=e)
            self.abort(ConnectionError(f"send failed: {e}"))
            return
        self._done()

    @staticmethod
    def _sendfile(sock: socket.socket | None, r: FileRange) -> bool | None:
        """Send what the kernel takes of ``r``; True once all of it went,
        None if the file ended before the range did."""
        assert sock is not None
        while r.length > 0:
            try:
                n = os.sendfile(sock.fileno(), r.fd, r.offset, min(r.length, SENDFILE_MAX))
            except BlockingIOError:
                return False
            if n == 0:
                return None
            r.offset += n
            r.length -= n
        return True

    @staticmethod
    def _sendmsg(sock: socket.socket | None, q: deque[Item]) -> bool:
        """One scatter-gather send of the byte pieces at the head of ``q``;
        False when the kernel took nothing or not all."""
        assert sock is not None
        views: list[Piece] = []
        total = 0
        for it in q:
            if isinstance(it, FileRange) or len(views) >= IOV_MAX or total >= SEND_MAX:
                break
            views.append(it)
            total += len(it)
        try:
            n = sock.sendmsg(views)
        except BlockingIOError:
            return False
        sent_all = n == total
        while n > 0:
            head = q[0]
            assert not isinstance(head, FileRange)
            if n >= len(head):
                n -= len(head)
                q.popleft()
            else:
                q[0] = memoryview(head)[n:]
                n = 0
        return sent_all

    def _wait(self) -> None:
        if self._watch is not None:
            return
        sock = self._sock
        assert sock is not None
        self._watch = _Writable(os.dup(sock.fileno()), self)
        self._reactor.addWriter(self._watch)

    def _unwatch(self) -> None:
        w, self._watch = self._watch, None
        if w is not None:
            self._reactor.removeWriter(w)
            os.close(w.fd)

    def _writable(self) -> None:
        if self._queue and self._failed is None:
            self._pump()
        else:
            self._unwatch()

    def _done(self) -> None:
        self._unwatch()
        held, self._held = self._held, []
        if held:
            self._write_many(held)
        d, self._waiter = self._waiter, None
        if d is not None:
            d.callback(None)

    def abort(self, reason: BaseException | None = None) -> None:
        """The connection is gone: drop what is queued, close descriptors,
        fail the waiting send."""
        if self._failed is None:
            self._failed = reason or ConnectionError("connection lost")
        self._unwatch()
        while self._queue:
            it = self._queue.popleft()
            if isinstance(it, FileRange):
                it.close()
        self._held = []
        d, self._waiter = self._waiter, None
        if d is not None:
            d.errback(Failure(self._failed))
