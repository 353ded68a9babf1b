"""DATA decoding: dot-unstuffing across chunk boundaries, spool and readers."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from mailsrv.lmtp.data import DotDecoder, Spool
from tests.lmtp.helpers import Session, headers, stuff

TRICKY = b"Subject: dots\r\n\r\n.\r\n..\r\n...x\r\n.\r\nend.\r\n\r\n.\r.\n\r\n"


def decode(chunks):
    """Message bytes and everything after the terminator (None: not seen)."""
    dec = DotDecoder()
    out = []
    for i, c in enumerate(chunks):
        body, leftover = dec.feed(c)
        out.append(body)
        if leftover is not None:
            return b"".join(out), leftover + b"".join(chunks[i + 1 :])
    return b"".join(out), None


def test_every_two_way_split():
    wire = stuff(TRICKY) + b"QUIT\r\n"
    for i in range(len(wire) + 1):
        assert decode([wire[:i], wire[i:]]) == (TRICKY, b"QUIT\r\n"), i


def test_byte_by_byte():
    wire = stuff(TRICKY) + b"NOOP"
    assert decode([bytes([b]) for b in wire]) == (TRICKY, b"NOOP")


def test_byte_by_byte_leftover_collected():
    wire = stuff(TRICKY)
    dec = DotDecoder()
    out = []
    for b in wire:
        body, leftover = dec.feed(bytes([b]))
        out.append(body)
    assert dec.done and leftover == b""
    assert b"".join(out) == TRICKY


def test_not_terminated_yet():
    assert decode([b"abc\r\n.", b"\r"]) == (b"abc", None)


lines = st.lists(st.binary(max_size=12).map(lambda b: b.replace(b"\r", b"").replace(b"\n", b"")), max_size=12)


@settings(max_examples=300, deadline=None)
@given(lines, st.lists(st.integers(min_value=0, max_value=400), max_size=6))
def test_roundtrip_any_chunking(body_lines, cuts):
    body = b"".join(ln + b"\r\n" for ln in body_lines)
    wire = stuff(body) + b"RSET\r\n"
    pieces, prev = [], 0
    for c in sorted(min(c, len(wire)) for c in cuts):
        pieces.append(wire[prev:c])
        prev = c
    pieces.append(wire[prev:])
    assert decode(pieces) == (body, b"RSET\r\n")


def test_protocol_chunk_boundaries():
    """The same tricky message through the protocol, split at every point."""
    wire = stuff(TRICKY)
    for i in range(0, len(wire) + 1, 3):
        s = Session()
        s.start("alice@x.org")
        s.cmd("DATA")
        assert s.send(wire[:i]) == [] or i == len(wire)
        s.send(wire[i:])
        assert s.store.accounts["alice"].contents() == [headers("s@example.org", "alice@x.org") + TRICKY], i


def test_spool_rolls_to_disk_and_readers_are_independent():
    spool = Spool(limit=0, memory=10)
    spool.write(b"0123456789abcdef")
    spool.write(b"XYZ")
    assert spool._file._rolled
    for _ in range(2):
        r = spool.reader(b"H: v\r\n")
        assert r.read(3) == b"H: "
        assert r.read() == b"v\r\n0123456789abcdefXYZ"
        assert r.read() == b""
    spool.close()


def test_spool_limit():
    spool = Spool(limit=5)
    spool.write(b"abc")
    spool.write(b"de")
    assert not spool.overflow and spool.size == 5
    spool.write(b"f")
    assert spool.overflow
    spool.write(b"g")  # ignored once over
    spool.close()
