"""COMPRESS=DEFLATE (RFC 4978): the sans-IO pieces, the transport wrapper,
and transcripts where the client deflates its commands and inflates our
answers."""

from __future__ import annotations

import zlib

import pytest

from mailsrv.imap.compress import (
    CHUNK,
    PARSER_HIGH_WATER,
    CompressingTransport,
    CompressionError,
    CompressionLayer,
    Deflater,
    Inflater,
)
from tests.imap.harness import MSG1, Client, inbox_with, tagged


class Peer:
    """The client's half: deflates what it sends, inflates what it gets."""

    def __init__(self) -> None:
        self.out = zlib.compressobj(6, zlib.DEFLATED, -15)
        self.inp = zlib.decompressobj(-15)

    def pack(self, data: bytes) -> bytes:
        return self.out.compress(data) + self.out.flush(zlib.Z_SYNC_FLUSH)

    def unpack(self, data: bytes) -> bytes:
        return self.inp.decompress(data)


def compressed(c: Client) -> Peer:
    out = c.cmd("z COMPRESS DEFLATE")
    assert out == b"z OK Begin compression\r\n"
    return Peer()


def ccmd(c: Client, peer: Peer, line: str) -> bytes:
    return peer.unpack(c.send(peer.pack(line.encode() + b"\r\n")))


# -- sans-IO


def test_every_flush_decodes_to_everything_written() -> None:
    d = Deflater()
    z = zlib.decompressobj(-15)
    got = b""
    for part in (b"* 1 EXISTS\r\n", b"a OK done\r\n", b"x" * 100_000):
        got += z.decompress(d.compress([part]))
        assert got.endswith(part)  # nothing waits in the compressor
    assert d.bytes_in == 12 + 11 + 100_000 and d.bytes_out < d.bytes_in


def test_inflater_hands_out_bounded_chunks_of_a_bomb() -> None:
    bomb = zlib.compressobj(9, zlib.DEFLATED, -15)
    data = bomb.compress(b"\0" * (50 << 20)) + bomb.flush(zlib.Z_SYNC_FLUSH)
    assert len(data) < 100_000
    inf = Inflater()
    inf.feed(data)
    total = 0
    while inf.pending():
        chunk = inf.read()
        assert len(chunk) <= CHUNK
        total += len(chunk)
    assert total == 50 << 20


def test_inflater_refuses_garbage_and_data_after_the_end() -> None:
    inf = Inflater()
    inf.feed(b"\xff\xff\xff\xff garbage")
    with pytest.raises(CompressionError):
        inf.read()
    ended = zlib.compressobj(6, zlib.DEFLATED, -15)
    inf = Inflater()
    inf.feed(ended.compress(b"a NOOP\r\n") + ended.flush() + b"more")
    with pytest.raises(CompressionError):
        inf.read()


class _Inner:
    def __init__(self) -> None:
        self.written: list[bytes] = []
        self.paused = 0
        self.producer = None

    def write(self, data: bytes) -> None:
        self.written.append(data)

    def pauseProducing(self) -> None:
        self.paused += 1

    def resumeProducing(self) -> None:
        self.paused -= 1

    def registerProducer(self, p: object, streaming: bool) -> None:
        self.producer = p

    def unregisterProducer(self) -> None:
        self.producer = None

    def getPeer(self) -> str:
        return "peer"


def test_wrapper_compresses_writes_and_forwards_the_rest() -> None:
    inner = _Inner()
    t = CompressingTransport(inner, Deflater())
    t.write(b"one ")
    t.writeSequence([b"two ", b"three"])
    t.write(b"")
    z = zlib.decompressobj(-15)
    assert b"".join(z.decompress(w) for w in inner.written) == b"one two three"
    producer = object()
    t.registerProducer(producer, True)
    assert inner.producer is producer
    t.unregisterProducer()
    assert inner.producer is None
    assert t.getPeer() == "peer"  # forwarded


class _Parser:
    def __init__(self) -> None:
        self.buf = bytearray()

    def push(self, data: bytes) -> None:
        self.buf += data

    def buffered(self) -> int:
        return len(self.buf)


class _Pump:
    closed = False

    def __init__(self) -> None:
        self.pumps = 0

    def pump(self) -> None:
        self.pumps += 1


def test_layer_stops_inflating_while_the_parser_is_full_and_resumes() -> None:
    inner, parser, pump = _Inner(), _Parser(), _Pump()
    layer = CompressionLayer(inner, parser, pump)
    peer = Peer()
    layer.received(peer.pack(b"x" * (8 << 20)))
    # the parser holds about its high-water mark, not 8 MiB
    assert PARSER_HIGH_WATER <= parser.buffered() < PARSER_HIGH_WATER + CHUNK
    assert layer.inflater.pending()
    layer.transport.pauseProducing()  # what the pump does when it is full
    parser.buf.clear()
    layer.received(b"")
    assert parser.buffered() == 0  # paused: nothing inflated
    layer.transport.resumeProducing()
    assert parser.buffered() > 0 and inner.paused == 0
    while layer.inflater.pending():
        parser.buf.clear()
        layer.drain()
    assert pump.pumps > 0


# -- transcripts


def test_compress_then_commands_and_answers_are_deflated() -> None:
    c = Client()
    c.login()
    peer = compressed(c)
    out = ccmd(c, peer, "a NOOP")
    assert out == b"a OK NOOP completed\r\n"
    out = ccmd(c, peer, "b CAPABILITY")
    assert b"COMPRESS=DEFLATE" in out and b"b OK" in out


def test_second_compress_is_refused_compressed() -> None:
    c = Client()
    c.login()
    peer = compressed(c)
    out = ccmd(c, peer, "b COMPRESS DEFLATE")
    assert out == b"b NO [COMPRESSIONACTIVE] COMPRESS already active (DEFLATE)\r\n"
    assert ccmd(c, peer, "c NOOP") == b"c OK NOOP completed\r\n"


def test_compress_errors() -> None:
    c = Client()
    assert b"a BAD" in c.cmd("a COMPRESS DEFLATE")  # not before login
    c.login()
    assert c.cmd("b COMPRESS LZMA") == b"b BAD COMPRESS mechanism LZMA is not supported\r\n"
    assert b"c BAD Error in IMAP command" in c.cmd("c COMPRESS")
    assert b"d BAD Error in IMAP command" in c.cmd("d COMPRESS DEFLATE extra")
    out = c.send(b"e COMPRESS DEFLATE\r\nf NOOP\r\n")
    assert out.startswith(b"e BAD COMPRESS refused: the client did not wait")
    assert b"f OK NOOP" in out  # still uncompressed: COMPRESS was refused
    assert b"COMPRESS=DEFLATE" in c.cmd("g CAPABILITY")


def test_corrupt_compressed_input_ends_the_session_with_bye() -> None:
    c = Client()
    c.login()
    peer = compressed(c)
    out = c.send(b"\xff\xfe\xfd not deflate at all")
    assert peer.unpack(out) == b"* BYE Corrupt compressed input\r\n"
    assert c.proto.closed


def test_commands_split_across_compressed_packets() -> None:
    c = Client()
    c.login()
    peer = compressed(c)
    data = peer.pack(b"a SELECT INBOX\r\nb NOOP\r\n")
    out = b""
    for i in range(len(data)):
        out += peer.unpack(c.send(data[i:i + 1]))
    assert b"a OK [READ-WRITE]" in out and b"b OK NOOP" in out


def test_idle_pushes_compressed_updates_at_once() -> None:
    c = Client()
    c.login()
    inbox_with(c, MSG1)
    peer = compressed(c)
    ccmd(c, peer, "s SELECT INBOX")
    assert ccmd(c, peer, "i IDLE") == b"+ idling\r\n"
    inbox = c.account.folders["INBOX"]
    inbox.append(MSG1)
    assert peer.unpack(c.take()) == b"* 2 EXISTS\r\n* 2 RECENT\r\n"
    assert ccmd(c, peer, "DONE") == b"i OK IDLE terminated\r\n"


def test_large_fetch_through_compression_is_byte_exact() -> None:
    body = b"".join(b"line %07d of a large message, some text to compress\r\n" % i for i in range(200_000))
    big = b"Subject: big\r\n\r\n" + body
    assert len(big) > 10 << 20
    c = Client()
    c.login()
    inbox_with(c, big)
    peer = compressed(c)
    ccmd(c, peer, "s SELECT INBOX")
    wire = c.send(peer.pack(b"f FETCH 1 BODY.PEEK[]\r\n"))
    out = peer.unpack(wire)
    c.clock.advance(0)
    out += peer.unpack(c.take())
    head = b"* 1 FETCH (BODY[] {%d}\r\n" % len(big)
    assert out.startswith(head)
    assert out[len(head):len(head) + len(big)] == big
    assert tagged(out, "f") == b"f OK FETCH completed\r\n"
    assert len(wire) < len(big) // 5
