"""Arbitrary bytes into the POP3 protocol: never an exception, never an
internal error, and the connection only closes by the documented rules
(QUIT, too many bad commands)."""

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.pop3.helpers import Session, make_factory

COMMANDS = [b"USER alice", b"PASS secret", b"STAT", b"LIST", b"LIST 1", b"UIDL", b"RETR 1", b"TOP 1 0",
            b"TOP 2 99999999", b"DELE 1", b"RSET", b"NOOP", b"CAPA", b"AUTH", b"AUTH PLAIN", b"STLS",
            b"APOP alice 0123456789abcdef0123456789abcdef", b"*", b"RETR 99", b"LIST x", b"QUIT"]

chunks = st.lists(
    st.one_of(
        st.binary(max_size=40),
        st.sampled_from(COMMANDS).map(lambda c: c + b"\r\n"),
        st.sampled_from([b"\r\n", b"\n", b"\r", b".", b" ", b"\0", b"\xff", b"A" * 1500]),
    ),
    max_size=40,
)


def run(pieces, logged_in: bool):
    f = make_factory(apop=True)
    inbox = f.store.account("alice").inbox
    inbox.add(b"Subject: a\n\n.x\n")
    inbox.add(b"Subject: b\r\n\r\n..\r\n")
    s = Session(f)
    if logged_in:
        s.login()
    out = s.read()
    for piece in pieces:
        out += s.send(piece)  # an exception here fails the test
    assert b"[SYS/TEMP]" not in out, out
    if s.closed:
        assert b"Too many bad commands" in out or b"+OK Logging out" in out, out
        assert out.endswith(b"\r\n")
    else:
        assert s.proto.bad_commands < 10
    s.drop()  # the transport reports the end of the connection either way
    assert not f.store.account("alice").pop3_locked
    if b"+OK Logging out, " not in out:
        assert inbox.calls_to("expunge") == []


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(chunks, st.booleans())
def test_arbitrary_chunks(pieces, logged_in):
    run(pieces, logged_in)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(chunks, st.booleans(), st.randoms(use_true_random=False))
def test_same_bytes_split_randomly(pieces, logged_in, rnd):
    data = b"".join(pieces)
    split = []
    i = 0
    while i < len(data):
        n = rnd.randint(1, 16)
        split.append(data[i : i + n])
        i += n
    run([data], logged_in)
    run(split, logged_in)
