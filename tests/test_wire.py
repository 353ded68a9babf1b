"""mailsrv.wire on real loopback TCP: scatter-gather and sendfile straight
to the socket, waiting for a slow reader, output held behind the wire's
data, the fallback through the transport, and cleanup when the peer goes."""

from __future__ import annotations

import os
import socket
import tempfile
import time

from twisted.internet import defer, protocol, reactor, threads
from twisted.trial import unittest

from mailsrv.wire import FileRange, Wire, plain_tcp_socket, send_now, unsent


class _Server(protocol.Protocol):
    def connectionMade(self) -> None:
        self.wire = Wire(reactor, lambda: plain_tcp_socket(self.transport), lambda: self.transport,
                         self.transport.writeSequence, lambda: defer.succeed(None))
        self.factory.connected.callback(self)

    def connectionLost(self, reason: object = None) -> None:
        self.wire.abort()


def _read_all(sock: socket.socket, want: int, delay: float = 0.0) -> bytes:
    """Read ``want`` octets (slowly if ``delay``), or up to EOF."""
    out = bytearray()
    while len(out) < want:
        chunk = sock.recv(min(1 << 16, want - len(out)))
        if not chunk:
            break
        out += chunk
        if delay:
            time.sleep(delay)
    return bytes(out)


def _open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


class WireTest(unittest.TestCase):
    timeout = 60

    def setUp(self) -> defer.Deferred:
        f = protocol.Factory.forProtocol(_Server)
        f.connected = defer.Deferred()  # type: ignore[attr-defined]
        self.port = reactor.listenTCP(0, f, interface="127.0.0.1")
        self.client = socket.create_connection(("127.0.0.1", self.port.getHost().port))
        self.tmp = tempfile.mkdtemp()

        def got(p: _Server) -> None:
            self.server = p
        return f.connected.addCallback(got)  # type: ignore[attr-defined,no-any-return]

    def tearDown(self) -> defer.Deferred:
        self.client.close()
        self.server.transport.loseConnection()
        return defer.maybeDeferred(self.port.stopListening)

    def _file(self, data: bytes) -> int:
        path = os.path.join(self.tmp, "m%d" % len(os.listdir(self.tmp)))
        with open(path, "wb") as f:
            f.write(data)
        return os.open(path, os.O_RDONLY)

    async def test_pieces_and_file_ranges_arrive_in_order(self) -> None:
        body = bytes(range(256)) * 400
        fd = self._file(b"xx" + body + b"yy")
        items = [b"* 1 FETCH (BODY[] {%d}\r\n" % len(body), FileRange(fd, 2, len(body)),
                 memoryview(b"..)\r\n")[2:], b"tail"]
        want = b"* 1 FETCH (BODY[] {%d}\r\n" % len(body) + body + b")\r\ntail"
        reading = threads.deferToThread(_read_all, self.client, len(want))
        await self.server.wire.send(items)
        self.assertEqual(await reading, want)
        self.assertEqual(items[1].fd, -1)  # type: ignore[union-attr]  # closed once sent

    async def test_slow_reader_waits_and_nothing_is_lost(self) -> None:
        """Far more than the socket buffers hold: the wire waits for the
        socket (a dup of its descriptor), other output waits behind it,
        and the duplicate is closed afterwards."""
        fds = _open_fds()
        big = os.urandom(1 << 20) * 12
        fd = self._file(big)
        reading = threads.deferToThread(_read_all, self.client, 2 * len(big) + 5, 0.0005)
        d = self.server.wire.send([big[:100], memoryview(big)[100:], FileRange(fd, 0, len(big))])
        self.assertTrue(self.server.wire.busy)  # the kernel could not take 24 MB at once
        self.server.wire.hold(b"after")  # what the connection writes meanwhile
        await d
        self.assertFalse(self.server.wire.busy)
        got = await reading
        self.assertEqual(len(got), 2 * len(big) + 5)
        self.assertTrue(got == big + big + b"after")
        self.assertEqual(_open_fds(), fds)

    async def test_peer_gone_fails_the_send_and_closes_files(self) -> None:
        big = b"z" * (32 << 20)
        fd = self._file(b"abc")
        r = FileRange(fd, 0, 3)
        d = self.server.wire.send([big, r])
        self.client.close()
        with self.assertRaises(ConnectionError):
            await d
        self.assertEqual(r.fd, -1)
        with self.assertRaises(ConnectionError):
            await self.server.wire.send([b"more"])

    async def test_without_a_direct_socket_the_transport_writes(self) -> None:
        written: list[bytes] = []
        wire = Wire(reactor, lambda: None, lambda: None, written.extend, lambda: defer.succeed(None))
        self.assertFalse(wire.direct)
        fd = self._file(b"0123456789")
        await wire.send([b"a", memoryview(b"bcd")[1:], FileRange(fd, 2, 5)])
        self.assertEqual(b"".join(written), b"acd23456")

    def test_send_now_and_unsent(self) -> None:
        t = self.server.transport
        self.assertEqual(send_now(t, [b"abc", b"de"]), 5)
        self.assertEqual(_read_all(self.client, 5), b"abcde")
        t.write(b"queued")  # Twisted holds output: order forbids a direct send
        self.assertEqual(send_now(t, [b"x"]), 0)
        self.assertEqual(unsent([b"abc", b"de", b"f"], 4), [b"e", b"f"])
        self.assertEqual(unsent([b"abc"], 0), [b"abc"])
        self.assertEqual(unsent([b"abc"], 3), [])

    async def test_a_file_shorter_than_its_range_is_padded(self) -> None:
        fd = self._file(b"abc")
        reading = threads.deferToThread(_read_all, self.client, 8)
        await self.server.wire.send([FileRange(fd, 1, 6), b"!!"])
        self.assertEqual(await reading, b"bc    !!")
        self.flushLoggedErrors()

    def test_a_wrapping_transport_is_never_written_around(self) -> None:
        """COMPRESS or implicit TLS put a wrapper between the protocol and
        the TCP connection; wrappers forward attribute reads (as Twisted's
        ProtocolWrapper does), so the wire must not take their .socket."""

        class Forwarding:
            def __init__(self, inner: object) -> None:
                self.transport = inner

            def __getattr__(self, name: str) -> object:
                return getattr(self.transport, name)

        t = self.server.transport
        self.assertIsNotNone(plain_tcp_socket(t))
        wrapped = Forwarding(t)
        self.assertIs(wrapped.socket, t.socket)
        self.assertIsNone(plain_tcp_socket(wrapped))
        self.assertEqual(send_now(wrapped, [b"x"]), 0)
