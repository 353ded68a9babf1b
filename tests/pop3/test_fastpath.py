"""The fast RETR/TOP paths: bytes.replace CRLF encoding, CRLF-stored
passthrough, reads sized by the stored length, and flow control across
pipelined commands.  Each is checked against the slow reference at every
chunk boundary."""

import io
import re

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.trial import unittest

from mailsrv.pop3 import streaming
from mailsrv.pop3.streaming import DotStuffer, MessageSender, stored_length
from mailsrv.store.crlf import CRLFEncoder, to_crlf
from tests.pop3.helpers import PausingTransport, Session, TLSStringTransport, make_factory

# Bytes that hit every special case: CR, LF, dots, and ordinary text.
edgy = st.binary(max_size=120).map(lambda b: bytes(b"\r\n.x"[c % 4] for c in b))


def split_every(data: bytes, size: int):
    return [data[i : i + size] for i in range(0, len(data), size)] or [b""]


def reference_wire(raw: bytes, body_lines=None) -> bytes:
    """The message as RFC 1939 wants it, built line by line on the whole buffer."""
    crlf = to_crlf(raw)
    if body_lines is not None:
        lines = re.findall(rb"[^\n]*\n|[^\n]+$", crlf)
        i = 0
        while i < len(lines):
            i += 1
            if lines[i - 1] == b"\r\n":
                i += body_lines
                break
        crlf = b"".join(lines[:i])
    stuffed = re.sub(rb"(?m)^\.", b"..", crlf)
    return stuffed + (b".\r\n" if stuffed.endswith(b"\r\n") or not stuffed else b"\r\n.\r\n")


class Recording(io.BytesIO):
    """A stored message that records the read sizes asked for."""

    def __init__(self, data: bytes) -> None:
        super().__init__(data)
        self.reads = []

    def read(self, n=-1):
        self.reads.append(n)
        return super().read(n)


class Unseekable(io.RawIOBase):
    """A stream whose length cannot be known in advance."""

    def __init__(self, data: bytes) -> None:
        self._src = io.BytesIO(data)

    def readable(self) -> bool:
        return True

    def read(self, n=-1):
        return self._src.read(n)


def sender_output(f, size=None, body_lines=None, prefix=b""):
    t = TLSStringTransport()
    s = MessageSender(t, f, prefix, body_lines, size=size)
    results = []
    s.start().addBoth(results.append)
    assert results == [None], results
    assert t.producer is None
    return t.value(), s


class Encoder(unittest.TestCase):
    @settings(max_examples=400, deadline=None)
    @given(edgy, st.integers(1, 9))
    def test_same_as_the_definition_at_any_split(self, raw, size):
        """Every LF not preceded by CR becomes CRLF, whatever the chunking."""
        enc = CRLFEncoder()
        pieces = split_every(raw, size)
        definition = re.sub(rb"(?<!\r)\n", b"\r\n", raw)
        self.assertEqual(b"".join(map(enc.feed, pieces)), definition)
        self.assertEqual(to_crlf(raw), definition)

    def test_cr_lf_split_and_bare_cr(self):
        enc = CRLFEncoder()
        out = b"".join(enc.feed(p) for p in (b"a\r", b"\nb\n", b"\r", b"\r\n", b"c\rd\n"))
        self.assertEqual(out, b"a\r\nb\r\n\r\r\nc\rd\r\n")

    @settings(max_examples=400, deadline=None)
    @given(edgy, st.integers(1, 9))
    def test_stuffer_any_split_of_crlf(self, raw, size):
        crlf = to_crlf(raw)
        s = DotStuffer()
        out = b"".join(s.feed(p) for p in split_every(crlf, size))
        self.assertEqual(out, re.sub(rb"(?m)^\.", b"..", crlf))
        self.assertEqual(s.at_line_start, crlf.endswith(b"\r\n") or not crlf)


class CRLFStoredPassthrough(unittest.TestCase):
    MSG = b"From: a\r\nSubject: .x\r\n\r\n.one\r\n..two\r\nthree.\r\n.\r\n\r\n.end\r\n"

    def test_passthrough_output_identical_to_lf_stored_at_every_chunk_size(self):
        lf = self.MSG.replace(b"\r\n", b"\n")
        size = len(self.MSG)
        for chunk in range(1, size + 2):
            self.patch(streaming, "CHUNK_SIZE", chunk)
            for body_lines in (None, 0, 1, 2, 10):
                fast, s = sender_output(io.BytesIO(self.MSG), size=size, body_lines=body_lines)
                self.assertTrue(s.passthrough)
                slow, s2 = sender_output(io.BytesIO(lf), size=size, body_lines=body_lines)
                self.assertFalse(s2.passthrough)
                self.assertEqual(fast, slow, (chunk, body_lines))
                self.assertEqual(fast, reference_wire(lf, body_lines), (chunk, body_lines))

    def test_bare_lf_in_crlf_message_is_normalised(self):
        mixed = b"A: b\r\nC: d\n\r\nbody\nmore\r\n"
        size = len(to_crlf(mixed))
        self.assertNotEqual(size, len(mixed))
        for chunk in range(1, len(mixed) + 1):
            self.patch(streaming, "CHUNK_SIZE", chunk)
            out, s = sender_output(io.BytesIO(mixed), size=size)
            self.assertFalse(s.passthrough)
            self.assertEqual(out, reference_wire(mixed))

    def test_no_or_unknown_size_normalises(self):
        for f, size in ((io.BytesIO(self.MSG), None), (Unseekable(self.MSG), len(self.MSG))):
            out, s = sender_output(f, size=size)
            self.assertFalse(s.passthrough)
            self.assertEqual(out, reference_wire(self.MSG))

    @settings(max_examples=200, deadline=None)
    @given(edgy, st.integers(1, 13), st.one_of(st.none(), st.integers(0, 4)))
    def test_any_message_any_chunking_matches_reference(self, raw, chunk, body_lines):
        self.patch(streaming, "CHUNK_SIZE", chunk)
        crlf = to_crlf(raw)
        for stored in (raw, crlf):
            out, _ = sender_output(io.BytesIO(stored), size=len(crlf), body_lines=body_lines)
            slow, _ = sender_output(Unseekable(raw), body_lines=body_lines)
            self.assertEqual(out, slow)
            self.assertEqual(out, reference_wire(raw, body_lines))


class ReadSizes(unittest.TestCase):
    def test_known_length_reads_exactly_and_never_past_the_end(self):
        for n in (1, 4095, 4096, 4097, 8192):
            self.patch(streaming, "CHUNK_SIZE", 4096)
            data = (b"x" * 63 + b"\n") * (n // 64) + b"y" * (n % 64)
            f = Recording(data)
            out, _ = sender_output(f, size=len(to_crlf(data)))
            self.assertEqual(f.reads, [min(4096, n - i) for i in range(0, n, 4096)], n)
            self.assertEqual(out, reference_wire(data))

    def test_stored_length_from_current_position(self):
        f = io.BytesIO(b"0123456789")
        f.read(3)
        self.assertEqual(stored_length(f), 7)
        self.assertEqual(f.tell(), 3)
        self.assertIsNone(stored_length(Unseekable(b"abc")))

    def test_unknown_length_reads_until_empty(self):
        self.patch(streaming, "CHUNK_SIZE", 5)
        out, _ = sender_output(Unseekable(b"Subject: x\n\nbody\n"), prefix=b"+OK\r\n")
        self.assertEqual(out, b"+OK\r\nSubject: x\r\n\r\nbody\r\n.\r\n")


class PipelinedFlowControl(unittest.TestCase):
    def test_pipelined_retrs_wait_for_a_full_buffer_to_drain(self):
        msg = b"Subject: small\n\n" + b"z" * 200 + b"\n"
        f = make_factory()
        inbox = f.store.account("alice").inbox
        for _ in range(20):
            inbox.add(msg)
        s = Session(f)
        s.transport = PausingTransport(limit=1000)
        s.proto = f.buildProtocol(None)
        s.proto.makeConnection(s.transport)
        s.login()
        out = s.send(b"".join(b"RETR %d\r\n" % n for n in range(1, 21)) + b"STAT\r\n")
        self.assertLess(out.count(b"+OK 2"), 8)  # stopped at the full buffer
        self.assertIsNotNone(s.transport.producer)
        for _ in range(100):
            if out.endswith(b"+OK 20 %d\r\n" % (20 * len(to_crlf(msg)))):
                break
            s.transport.drain()
            out += s.read()
        self.assertEqual(out.count(b"\r\n.\r\n"), 20)
        self.assertTrue(out.endswith(b"+OK 20 %d\r\n" % (20 * len(to_crlf(msg)))), out[-40:])
        self.assertIsNone(s.transport.producer)

    def test_drop_while_waiting_for_drain_closes_the_file(self):
        f = make_factory()
        inbox = f.store.account("alice").inbox
        inbox.add(b"Subject: x\n\n" + b"y" * 500 + b"\n")
        s = Session(f)
        s.transport = PausingTransport(limit=100)
        s.proto = f.buildProtocol(None)
        s.proto.makeConnection(s.transport)
        s.login()
        out = s.send(b"RETR 1\r\nDELE 1\r\nQUIT\r\n")
        self.assertTrue(out.endswith(b"\r\n.\r\n"))  # all written, waiting for the drain
        self.assertIsNotNone(s.transport.producer)
        s.drop()
        self.assertTrue(inbox.opened[-1].closed)
        self.assertEqual(inbox.calls_to("expunge"), [])
        self.assertFalse(f.store.account("alice").pop3_locked)
