"""Any bytes in, in any chunking: only well-formed replies out, no exception."""

from __future__ import annotations

import re

from hypothesis import given, settings
from hypothesis import strategies as st

from tests.lmtp.helpers import Session

REPLY = re.compile(rb"\A[2-5]\d\d[ -]")
WORDS = [b"LHLO x", b"MAIL FROM:<a@b.c>", b"RCPT TO:<alice@x.org>", b"RCPT TO:<bob+z@x.org>",
         b"DATA", b".", b"..", b"RSET", b"NOOP", b"VRFY a", b"QUIT", b"Subject: x", b""]

lines = st.lists(st.one_of(st.sampled_from(WORDS), st.binary(max_size=40)), max_size=25)


@settings(max_examples=200, deadline=None)
@given(lines, st.integers(min_value=1, max_value=64), st.sampled_from([b"\r\n", b"\n"]))
def test_any_input(parts, chunk, eol):
    s = Session()
    wire = b"".join(p + eol for p in parts)
    for i in range(0, len(wire), chunk):
        s.proto.dataReceived(wire[i : i + chunk])
    out = s.transport.value()
    assert out == b"" or out.endswith(b"\r\n")
    for line in out.split(b"\r\n")[:-1]:
        assert REPLY.match(line), line
