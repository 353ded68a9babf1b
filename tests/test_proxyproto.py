"""PROXY protocol wrapper: the wrapped protocol starts only after the whole
header (in any number of pieces), sees the client's address from its first
moment, and a connection without a valid header is dropped untold."""

from __future__ import annotations

import socket

from twisted.internet import protocol
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.trial import unittest

from mailsrv import proxyproto

V1 = b"PROXY TCP4 203.0.113.7 127.0.0.1 40000 110\r\n"


def v2(command: int = 0x21, src: str = "198.51.100.9") -> bytes:
    body = socket.inet_aton(src) + socket.inet_aton("127.0.0.1") + (41000).to_bytes(2, "big") + (110).to_bytes(2, "big")
    if command == 0x20:  # LOCAL: a health check of the proxy itself, no addresses
        body = b""
    fam = 0x11 if body else 0x00
    return proxyproto.V2_SIGNATURE + bytes([command, fam]) + len(body).to_bytes(2, "big") + body


class Greeter(protocol.Protocol):
    def connectionMade(self):
        self.factory.seen.append(self.transport.getPeer())
        self.transport.write(b"+OK hello\r\n")

    def dataReceived(self, data):
        self.factory.data.append(data)


class ProxyHeaderTests(unittest.TestCase):
    def setUp(self):
        inner = protocol.Factory.forProtocol(Greeter)
        inner.seen, inner.data = [], []
        self.inner = inner
        self.clock = MemoryReactorClock()
        self.factory = proxyproto.ProxyHeaderFactory(inner, timeout=5, reactor=self.clock)
        self.proto = self.factory.buildProtocol(None)
        self.transport = StringTransport()
        self.proto.makeConnection(self.transport)

    def test_split(self):
        self.assertEqual(proxyproto.split("haproxy:tcp:143"), (True, "tcp:143"))
        self.assertEqual(proxyproto.split("tcp:143"), (False, "tcp:143"))

    def test_nothing_before_the_header_then_the_real_peer(self):
        self.assertEqual(self.transport.value(), b"")
        for i in range(len(V1)):  # one byte at a time
            self.proto.dataReceived(V1[i:i + 1])
            if i < len(V1) - 1:
                self.assertEqual(self.inner.seen, [])
        self.assertEqual(self.inner.seen[0].host, "203.0.113.7")
        self.assertEqual(self.transport.value(), b"+OK hello\r\n")
        self.proto.dataReceived(b"USER x\r\n")
        self.assertEqual(self.inner.data, [b"USER x\r\n"])
        self.clock.advance(10)
        self.assertFalse(self.transport.disconnecting)

    def test_v2_with_data_behind_it(self):
        self.proto.dataReceived(v2() + b"CAPA\r\n")
        self.assertEqual(self.inner.seen[0].host, "198.51.100.9")
        self.assertEqual(self.inner.data, [b"CAPA\r\n"])

    def test_v2_local_keeps_the_connection_address(self):
        self.proto.dataReceived(v2(0x20))
        self.assertEqual(self.inner.seen, [self.transport.getPeer()])

    def test_garbage_is_dropped_untold(self):
        self.proto.dataReceived(b"USER alice\r\n")
        self.assertTrue(self.transport.disconnecting)
        self.assertEqual((self.transport.value(), self.inner.seen), (b"", []))

    def test_malformed_and_overlong_headers_are_dropped(self):
        self.proto.dataReceived(b"PROXY TCP4 not-an-address\r\n")
        self.assertTrue(self.transport.disconnecting)
        p = self.factory.buildProtocol(None)
        t = StringTransport()
        p.makeConnection(t)
        p.dataReceived(b"PROXY " + b"x" * 200)
        self.assertTrue(t.disconnecting)
        self.assertEqual(self.inner.seen, [])

    def test_silent_connection_times_out(self):
        self.proto.dataReceived(b"PROX")
        self.clock.advance(6)
        self.assertTrue(self.transport.disconnecting)
        self.assertEqual(self.inner.seen, [])
