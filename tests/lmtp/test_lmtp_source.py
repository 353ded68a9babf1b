"""The sans-IO LMTP event source on its own: lines, over-long lines, the
message-data mode, and the same events whatever the chunking."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from mailsrv.lmtp.source import END_OF_DATA, TOO_LONG, Body, LMTPSource
from tests.lmtp.helpers import stuff


def drain(src: LMTPSource) -> list:
    out = []
    while (ev := src.next_event()) is not None:
        out.append(ev)
    return out


def test_lines_crlf_and_bare_lf() -> None:
    src = LMTPSource()
    src.feed(b"LHLO x\r\nNOOP\nRSET\r\npartial")
    assert drain(src) == [b"LHLO x", b"NOOP", b"RSET"]
    assert src.buffered() == len(b"partial")
    src.feed(b" line\r\n")
    assert drain(src) == [b"partial line"]
    assert src.buffered() == 0


def test_over_long_line_is_reported_before_its_end_and_skipped() -> None:
    src = LMTPSource(max_line=10)
    src.feed(b"NOOP " + b"x" * 20)
    assert drain(src) == [TOO_LONG]
    assert src.buffered() == 0  # its bytes are not kept
    src.feed(b"x" * 50)
    assert drain(src) == []
    src.feed(b"xx\r\nNOOP\r\n")
    assert drain(src) == [b"NOOP"]


def test_over_long_complete_line() -> None:
    src = LMTPSource(max_line=10)
    src.feed(b"A" * 11 + b"\r\nB\r\n")
    assert drain(src) == [TOO_LONG, b"B"]


def test_data_mode_unstuffs_and_ends_at_the_dot_line() -> None:
    src = LMTPSource(max_line=10)
    src.feed(b"DATA\r\n")
    assert drain(src) == [b"DATA"]
    src.start_data()
    body = b"Subject: a line far longer than ten octets\r\n\r\n.dot\r\n"
    src.feed(stuff(body) + b"QUIT\r\n")
    events = drain(src)
    assert events[-2:] == [END_OF_DATA, b"QUIT"]  # back in command mode after the end
    assert all(isinstance(e, Body) and e.data for e in events[:-2])
    assert b"".join(e.data for e in events[:-2]) == body


def test_back_in_command_mode_after_the_end() -> None:
    src = LMTPSource()
    src.start_data()
    src.feed(b".\r\nNOOP\r\n")
    assert src.next_event() is END_OF_DATA
    assert src.next_event() == b"NOOP"


WORDS = [b"LHLO x", b"DATA", b".", b"..", b"NOOP", b"x" * 30, b""]


@settings(max_examples=200, deadline=None)
@given(st.lists(st.one_of(st.sampled_from(WORDS), st.binary(max_size=40)), max_size=25),
       st.lists(st.integers(min_value=0, max_value=400), max_size=8))
def test_chunking_does_not_change_the_events(parts, cuts) -> None:
    wire = b"".join(p + b"\r\n" for p in parts)

    def events(pieces: list[bytes]) -> list:
        src, out = LMTPSource(max_line=20), []
        for piece in pieces:
            src.feed(piece)
            while (ev := src.next_event()) is not None:
                out.append(ev)
                if ev == b"DATA":
                    src.start_data()
        # Body chunks may be cut differently: compare what they carry.
        merged: list = []
        for ev in out:
            if isinstance(ev, Body) and merged and isinstance(merged[-1], Body):
                merged[-1] = Body(merged[-1].data + ev.data)
            else:
                merged.append(ev)
        return merged

    bounds = sorted({min(c, len(wire)) for c in cuts} | {0, len(wire)})
    pieces = [wire[a:b] for a, b in zip(bounds, bounds[1:], strict=False)]
    whole = events([wire])
    assert events(pieces) == whole
    assert events([bytes([b]) for b in wire]) == whole
