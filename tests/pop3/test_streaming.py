"""RETR/TOP streaming: byte-stuffing at every position and chunk boundary,
LF and CRLF storage, exact sizes, TOP cuts, flow control."""

import io
import re

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.trial import unittest

from mailsrv.pop3 import streaming
from mailsrv.pop3.streaming import DotStuffer, MessageSender, TopLimiter
from mailsrv.store.crlf import to_crlf
from tests.pop3.helpers import PausingTransport, Session, TLSStringTransport, make_factory


def stuffed(crlf: bytes) -> bytes:
    """Reference dot-stuffing on a whole CRLF buffer."""
    return re.sub(rb"(?m)^\.", b"..", crlf)


def unstuff(wire: bytes) -> bytes:
    """What a client reconstructs from a multi-line response body (RFC 1939)."""
    assert wire.endswith(b"\r\n.\r\n") or wire == b".\r\n", wire[-20:]
    body = wire[:-3]
    return re.sub(rb"(?m)^\.", b"", body)


def send(raw: bytes, body_lines=None, chunk=7, prefix=b"") -> bytes:
    t = TLSStringTransport()
    d = MessageSender(t, io.BytesIO(raw), prefix, body_lines).start()
    results = []
    d.addBoth(results.append)
    assert results == [None], results
    assert t.producer is None
    return t.value()


def retr_body(message: bytes) -> bytes:
    return message.split(b"\r\n", 1)[1]


class Stuffing(unittest.TestCase):
    def setUp(self):
        self.patch(streaming, "CHUNK_SIZE", 3)

    def test_dot_at_every_position_every_chunk_size(self):
        lines = [b"." * k + b"x" + b"." * (k % 3) for k in range(8)] + [b".", b"..", b"", b". .", b"x.y"]
        for eol in (b"\n", b"\r\n"):
            raw = b"Subject: dots\n\n" + eol.join(lines) + eol
            expected = stuffed(to_crlf(raw)) + b".\r\n"
            for size in range(1, 12):
                self.patch(streaming, "CHUNK_SIZE", size)
                self.assertEqual(send(raw), expected, (eol, size))

    def test_dot_right_after_chunk_boundary_split_crlf(self):
        # "\r" ends one chunk, "\n." starts the next
        raw = b"ab\r\n.c\r\n"
        for size in range(1, len(raw) + 1):
            self.patch(streaming, "CHUNK_SIZE", size)
            self.assertEqual(send(raw), b"ab\r\n..c\r\n.\r\n", size)

    def test_leading_dot_and_bare_cr(self):
        self.assertEqual(send(b".start\n"), b"..start\r\n.\r\n")
        self.assertEqual(send(b"a\r.b\n"), b"a\r.b\r\n.\r\n")  # a bare CR is no line end

    def test_missing_final_newline(self):
        self.assertEqual(send(b"Subject: x\n\nno newline"), b"Subject: x\r\n\r\nno newline\r\n.\r\n")
        self.assertEqual(send(b"Subject: x\n\n."), b"Subject: x\r\n\r\n..\r\n.\r\n")

    def test_empty_message(self):
        self.assertEqual(send(b"", prefix=b"+OK 0 octets\r\n"), b"+OK 0 octets\r\n.\r\n")

    @settings(max_examples=300, deadline=None)
    @given(st.binary(max_size=200).map(lambda b: b.replace(b"x", b".")), st.integers(1, 17))
    def test_roundtrip_any_bytes(self, raw, size):
        self.patch(streaming, "CHUNK_SIZE", size)
        wire = send(raw)
        expected = to_crlf(raw)
        body = unstuff(wire)
        if not expected.endswith(b"\r\n") and expected:
            expected += b"\r\n"
        self.assertEqual(body, expected)
        self.assertNotIn(b"\r\n.\r\n", wire[:-5])

    def test_stuffer_unit(self):
        s = DotStuffer()
        out = b"".join(s.feed(bytes([c])) for c in b".a\r\n.\r\n..\r\n")
        self.assertEqual(out, b"..a\r\n..\r\n...\r\n")
        self.assertTrue(s.at_line_start)


class Top(unittest.TestCase):
    MSG = b"H1: a\nH2: b\n c\n\nl1\n.l2\nl3\n"

    def test_top_counts_at_every_chunk_size(self):
        crlf = to_crlf(self.MSG)
        head, body = crlf.split(b"\r\n\r\n", 1)
        body_lines = body.split(b"\r\n")[:-1]
        for size in range(1, 10):
            self.patch(streaming, "CHUNK_SIZE", size)
            for n in range(0, 6):
                expected = head + b"\r\n\r\n" + b"".join(ln + b"\r\n" for ln in body_lines[:n])
                self.assertEqual(send(self.MSG, body_lines=n), stuffed(expected) + b".\r\n", (size, n))

    def test_top_without_body(self):
        self.assertEqual(send(b"H: x\n", body_lines=5), b"H: x\r\n.\r\n")
        self.assertEqual(send(b"\nbody\nmore\n", body_lines=1), b"\r\nbody\r\n.\r\n")

    def test_limiter_unit(self):
        t = TopLimiter(1)
        self.assertEqual(t.feed(b"A: b\r"), (b"A: b\r", False))
        self.assertEqual(t.feed(b"\n\r"), (b"\n\r", False))
        self.assertEqual(t.feed(b"\nx\r\ny\r\n"), (b"\nx\r\n", True))


class SizesAndStorage(unittest.TestCase):
    def test_lf_and_crlf_stored_identical_and_size_exact(self):
        lf = b"From: x\nSubject: y\n\n.line\n\nend\n" * 3
        f = make_factory()
        inbox = f.store.account("alice").inbox
        inbox.add(lf)
        inbox.add(lf.replace(b"\n", b"\r\n"))
        s = Session(f)
        s.login()
        stat = s.cmd("STAT")
        r1, r2 = s.cmd("RETR 1"), s.cmd("RETR 2")
        self.assertEqual(r1, r2)
        size = int(s.cmd("LIST 1").split()[2])
        self.assertEqual(r1.split(b"\r\n", 1)[0], b"+OK %d octets" % size)
        self.assertEqual(len(unstuff(retr_body(r1))), size)
        self.assertEqual(stat, b"+OK 2 %d\r\n" % (2 * size))

    def test_big_message_streamed_with_flow_control(self):
        self.patch(streaming, "CHUNK_SIZE", 1024)
        raw = b"Subject: big\n\n" + b"".join(b".%06d line\n" % i for i in range(20000))
        f = make_factory()
        f.store.account("alice").inbox.add(raw)
        reads = []

        class Recording(io.BytesIO):
            def read(self, n=-1):
                reads.append(n)
                return super().read(n)

        inbox = f.store.account("alice").inbox
        inbox.open_message = lambda uid: Recording(inbox.raw(uid))
        s = Session(f)
        s.transport = PausingTransport(limit=8192)
        s.proto = f.buildProtocol(None)
        s.proto.makeConnection(s.transport)
        s.login()
        out = s.send(b"RETR 1\r\nSTAT\r\n")
        self.assertTrue(all(0 < n <= 1024 for n in reads), reads)
        self.assertLessEqual(len(reads), 10)  # paused: the message is not read whole
        self.assertNotIn(b"+OK 1 ", out)  # STAT waits for RETR
        for _ in range(1000):
            if s.transport.producer is None:
                break
            s.transport.drain()
            out += s.read()
        self.assertIsNone(s.transport.producer)
        body, stat = out.rsplit(b"\r\n.\r\n", 1)
        self.assertEqual(stat, b"+OK 1 %d\r\n" % len(to_crlf(raw)))
        self.assertEqual(unstuff(retr_body(body + b"\r\n.\r\n")), to_crlf(raw))

    def test_drop_while_streaming(self):
        self.patch(streaming, "CHUNK_SIZE", 16)
        f = make_factory()
        inbox = f.store.account("alice").inbox
        inbox.add(b"Subject: x\n\n" + b"y" * 1000)
        s = Session(f)
        s.transport = PausingTransport(limit=32)
        s.proto = f.buildProtocol(None)
        s.proto.makeConnection(s.transport)
        s.login()
        s.cmd("DELE 1")
        s.cmd("RSET")
        s.send(b"RETR 1\r\nDELE 1\r\nQUIT\r\n")
        self.assertIsNotNone(s.transport.producer)
        s.drop()
        self.assertTrue(inbox.opened[-1].closed)
        self.assertEqual(inbox.calls_to("expunge"), [])
        self.assertFalse(f.store.account("alice").pop3_locked)

    def test_read_error_mid_stream_aborts(self):
        class Broken(io.BytesIO):
            def read(self, n=-1):
                if self.tell() > 0:
                    raise OSError("EIO")
                return super().read(n)

        self.patch(streaming, "CHUNK_SIZE", 4)
        f = make_factory()
        inbox = f.store.account("alice").inbox
        inbox.add(b"Subject: x\n\nbody\n")
        inbox.open_message = lambda uid: Broken(inbox.raw(uid))
        s = Session(f)
        s.login()
        out = s.cmd("RETR 1")
        self.assertTrue(out.startswith(b"+OK"))
        self.assertFalse(out.endswith(b".\r\n"))
        self.assertTrue(s.transport.disconnecting)
        self.flushLoggedErrors()


class Burst(unittest.TestCase):
    def test_yields_to_reactor_when_transport_never_pushes_back(self):
        self.patch(streaming, "CHUNK_SIZE", 100)
        self.patch(streaming, "BURST_SIZE", 300)
        f = make_factory()
        raw = b"Subject: x\n\n" + b"z" * 2000 + b"\n"
        f.store.account("alice").inbox.add(raw)
        s = Session(f)
        s.login()
        out = s.send(b"RETR 1\r\nNOOP\r\n")
        self.assertLess(len(out), 1000)
        for _ in range(100):
            if out.endswith(b"+OK\r\n"):
                break
            s.clock.advance(0)
            out += s.read()
        self.assertTrue(out.endswith(b"\r\n.\r\n+OK\r\n"))
        self.assertEqual(len(unstuff(retr_body(out[: -len(b"+OK\r\n")]))), len(to_crlf(raw)))
