"""CONDSTORE and QRESYNC (RFC 7162) over the wire, every error path
included; answers checked against what the reference Dovecot 2.3 sends
where RFC 7162 leaves a choice (noted)."""

from __future__ import annotations

import re

import pytest

from tests.imap.harness import MSG1, MSG2, MSG3, Client, tagged


def session(n: int = 4, *, enable: str | None = None) -> Client:
    c = Client()
    c.login()
    inbox = c.account.folders["INBOX"]
    for i in range(n):
        inbox.add((MSG1, MSG2, MSG3)[i % 3])
    if enable:
        c.cmd(f"e ENABLE {enable}")
    return c


def lines(out: bytes) -> list[bytes]:
    return out.split(b"\r\n")[:-1]


def found(out: bytes) -> bytes:
    """The SEARCH or ESEARCH line of an answer."""
    return next(ln for ln in lines(out) if ln.startswith((b"* SEARCH", b"* ESEARCH")))


def hms(c: Client) -> int:
    return c.account.folders["INBOX"].highestmodseq


def test_capabilities_advertised():
    c = session(0)
    out = c.cmd("a CAPABILITY")
    assert b" CONDSTORE" in out and b" QRESYNC" in out


def test_enable():
    c = session(0)
    assert c.cmd("a ENABLE CONDSTORE") == b"* ENABLED CONDSTORE\r\na OK ENABLE completed\r\n"
    assert c.cmd("b ENABLE QRESYNC") == b"* ENABLED QRESYNC\r\nb OK ENABLE completed\r\n"
    # already enabled: not listed again (RFC 5161 3.1, as Dovecot)
    assert c.cmd("c ENABLE CONDSTORE QRESYNC X-FOO") == b"* ENABLED\r\nc OK ENABLE completed\r\n"
    c = session(0)
    assert c.cmd("e ENABLE X-FOO CONDSTORE QRESYNC") == b"* ENABLED CONDSTORE QRESYNC\r\ne OK ENABLE completed\r\n"
    c = session(0)  # QRESYNC switched CONDSTORE on already (Dovecot lists it again)
    assert c.cmd("f ENABLE QRESYNC CONDSTORE") == b"* ENABLED QRESYNC\r\nf OK ENABLE completed\r\n"
    assert c.cmd("d ENABLE").startswith(b"d BAD")


def test_select_reports_highestmodseq_once_enabled_and_closed_when_reselecting():
    c = session(2)
    out = c.cmd("a SELECT INBOX")
    assert b"HIGHESTMODSEQ" not in out and b"[CLOSED]" not in out
    out = c.cmd("b SELECT INBOX (CONDSTORE)")
    assert out.startswith(b"* OK [CLOSED] Previous mailbox closed.\r\n")
    assert b"* OK [HIGHESTMODSEQ %d] Highest\r\n" % hms(c) in out
    assert lines(out)[-1] == b"b OK [READ-WRITE] SELECT completed"
    out = c.cmd("c EXAMINE INBOX ()")  # empty parameters: fine; CONDSTORE stays on
    assert b"[HIGHESTMODSEQ" in out and out.endswith(b"c OK [READ-ONLY] EXAMINE completed\r\n")


@pytest.mark.parametrize("command", [
    "SELECT INBOX (FOO)", "SELECT INBOX (CONDSTORE", "SELECT INBOX CONDSTORE", "SELECT INBOX (QRESYNC)",
    "SELECT INBOX (QRESYNC (1))", "SELECT INBOX (QRESYNC (0 1))", "SELECT INBOX (QRESYNC (1 x))",
    "SELECT INBOX (QRESYNC (1 2 1:*))", "SELECT INBOX (QRESYNC (1 2 1:5 (1:* 1:5)))",
    "SELECT INBOX (QRESYNC (1 2 1:5 (1:2)))", "SELECT INBOX (QRESYNC (1 99999999999999999999))",
    "SELECT INBOX (QRESYNC (1 2) QRESYNC (1 2))",
])
def test_select_parameter_errors_are_bad(command):
    c = session(1, enable="QRESYNC")
    assert c.cmd("a " + command).startswith(b"a BAD")


def test_qresync_select_needs_enable_qresync():
    c = session(1, enable="CONDSTORE")
    assert c.cmd("a SELECT INBOX (QRESYNC (1000 1))") == b"a BAD SELECT QRESYNC not enabled\r\n"
    c.cmd("s SELECT INBOX")
    out = c.cmd("b SELECT INBOX (QRESYNC (1000 1))")  # the open mailbox is closed first, as Dovecot does
    assert out == b"* OK [CLOSED] Previous mailbox closed.\r\nb BAD SELECT QRESYNC not enabled\r\n"
    assert c.cmd("c NOOP") == b"c OK NOOP completed\r\n" and c.cmd("d FETCH 1 FLAGS").startswith(b"d BAD")


def test_status_highestmodseq_enables_condstore():
    c = session(3)
    c.cmd("s SELECT INBOX")
    out = c.cmd("a STATUS INBOX (MESSAGES HIGHESTMODSEQ)")
    n = hms(c)
    assert lines(out) == [b"* OK [HIGHESTMODSEQ %d] Highest" % n, b'* STATUS "INBOX" (MESSAGES 3 HIGHESTMODSEQ %d)' % n,
                          b"a OK STATUS completed"]
    assert b"MODSEQ" in c.cmd("b STORE 1 +FLAGS (\\Seen)")  # CONDSTORE is on now


def test_fetch_modseq_item_and_changedsince():
    c = session(4)
    c.cmd("s SELECT INBOX")
    inbox = c.account.folders["INBOX"]
    out = c.cmd("a FETCH 1 (MODSEQ)")  # a CONDSTORE-enabling command
    assert lines(out) == [b"* OK [HIGHESTMODSEQ %d] Highest" % hms(c), b"* 1 FETCH (MODSEQ (1))",
                          b"a OK FETCH completed"]
    c.cmd("b STORE 2,4 +FLAGS.SILENT (\\Flagged)")
    m = inbox.get(2).modseq
    out = c.cmd("c FETCH 1:* (FLAGS) (CHANGEDSINCE 1)")
    assert lines(out) == [b"* 2 FETCH (FLAGS (\\Flagged \\Recent) MODSEQ (%d))" % m,
                          b"* 4 FETCH (FLAGS (\\Flagged \\Recent) MODSEQ (%d))" % m, b"c OK FETCH completed"]
    assert c.cmd(f"d FETCH 1:* (FLAGS) (CHANGEDSINCE {m})") == b"d OK FETCH completed\r\n"
    out = c.cmd("e UID FETCH 1:* (MODSEQ FLAGS) (CHANGEDSINCE 1)")
    assert lines(out)[0] == b"* 2 FETCH (UID 2 MODSEQ (%d) FLAGS (\\Flagged \\Recent))" % m
    assert len(lines(c.cmd("f FETCH 1:* FLAGS (CHANGEDSINCE 0)"))) == 5  # 0 as Dovecot: everything


@pytest.mark.parametrize("command", [
    "FETCH 1 FLAGS (CHANGEDSINCE)", "FETCH 1 FLAGS (CHANGEDSINCE x)", "FETCH 1 FLAGS (CHANGEDSINCE -1)",
    "FETCH 1 FLAGS (CHANGEDSINCE 9223372036854775808)", "FETCH 1 FLAGS ()", "FETCH 1 FLAGS (FOO)",
    "FETCH 1 FLAGS (CHANGEDSINCE 1 CHANGEDSINCE 2)", "UID FETCH 1 FLAGS (VANISHED)",
    "FETCH 1 FLAGS (CHANGEDSINCE 1 VANISHED)", "UID FETCH 1 FLAGS (CHANGEDSINCE 1 VANISHED VANISHED)",
    "FETCH 1 FLAGS (CHANGEDSINCE 1", "FETCH 1 (MODSEQ.PEEK)",
])
def test_fetch_modifier_errors_are_bad(command):
    c = session(2, enable="QRESYNC")
    c.cmd("s SELECT INBOX")
    assert c.cmd("a " + command).startswith(b"a BAD")


def test_uid_fetch_vanished_needs_qresync():
    c = session(2, enable="CONDSTORE")
    c.cmd("s SELECT INBOX")
    assert c.cmd("a UID FETCH 1:* FLAGS (CHANGEDSINCE 1 VANISHED)").startswith(b"a BAD")


def test_uid_fetch_changedsince_vanished():
    c = session(6, enable="QRESYNC")
    c.cmd("s SELECT INBOX")
    inbox = c.account.folders["INBOX"]
    start = hms(c)
    c.cmd("a STORE 2,4 +FLAGS.SILENT (\\Deleted)")
    out = c.cmd("b EXPUNGE")
    assert lines(out) == [b"* VANISHED 2,4", b"* OK [HIGHESTMODSEQ %d] Highest" % hms(c),
                          b"b OK [HIGHESTMODSEQ %d] EXPUNGE completed" % hms(c)]
    c.cmd("c UID STORE 5 +FLAGS.SILENT (\\Seen)")
    m5 = inbox.get(5).modseq
    out = c.cmd(f"d UID FETCH 1:* (FLAGS) (CHANGEDSINCE {start} VANISHED)")
    assert lines(out) == [b"* VANISHED (EARLIER) 2,4", b"* 3 FETCH (UID 5 FLAGS (\\Seen \\Recent) MODSEQ (%d))" % m5,
                          b"d OK FETCH completed"]
    out = c.cmd(f"e UID FETCH 3:10 (FLAGS) (CHANGEDSINCE {start} VANISHED)")  # only the UIDs asked about
    assert lines(out)[0] == b"* VANISHED (EARLIER) 4"
    out = c.cmd(f"f UID FETCH 1:* (FLAGS) (CHANGEDSINCE {hms(c)} VANISHED)")
    assert out == b"f OK FETCH completed\r\n"


def test_store_under_condstore_reports_uid_and_modseq_even_when_silent():
    c = session(3, enable="CONDSTORE")
    c.cmd("s SELECT INBOX")
    out = c.cmd("a STORE 1 +FLAGS (\\Seen)")
    assert lines(out) == [b"* 1 FETCH (UID 1 FLAGS (\\Seen \\Recent) MODSEQ (%d))" % hms(c), b"a OK STORE completed"]
    out = c.cmd("b STORE 1:2 +FLAGS.SILENT (\\Seen)")  # 1 already has it: only 2 changes
    assert lines(out) == [b"* 2 FETCH (UID 2 MODSEQ (%d))" % hms(c), b"b OK STORE completed"]


def test_store_unchangedsince():
    c = session(4, enable="CONDSTORE")
    c.cmd("s SELECT INBOX")
    inbox = c.account.folders["INBOX"]
    base = hms(c)
    c.cmd("a STORE 3 +FLAGS.SILENT (\\Seen)")
    out = c.cmd(f"b STORE 1:4 (UNCHANGEDSINCE {base}) +FLAGS (\\Flagged)")
    m = hms(c)
    assert lines(out) == [b"* 1 FETCH (UID 1 FLAGS (\\Flagged \\Recent) MODSEQ (%d))" % m,
                          b"* 2 FETCH (UID 2 FLAGS (\\Flagged \\Recent) MODSEQ (%d))" % m,
                          b"* 4 FETCH (UID 4 FLAGS (\\Flagged \\Recent) MODSEQ (%d))" % m,
                          b"b OK [MODIFIED 3] STORE Conditional STORE failed"]
    assert inbox.get(3).flags == {"\\Seen"}
    out = c.cmd("c UID STORE 2:3 (UNCHANGEDSINCE 0) -FLAGS (\\Flagged)")  # 0: always modified
    assert out == b"c OK [MODIFIED 2:3] STORE Conditional STORE failed\r\n"
    assert c.cmd(f"d STORE 1 (UNCHANGEDSINCE {m}) FLAGS.SILENT (\\Flagged)") == b"d OK STORE completed\r\n"


def test_store_unchangedsince_enables_condstore_and_uses_sequence_numbers():
    c = session(3)
    c.cmd("s SELECT INBOX")
    c.cmd("a UID STORE 3 +FLAGS.SILENT (\\Seen)")
    out = c.cmd("b STORE 2:3 (UNCHANGEDSINCE 1) +FLAGS.SILENT (\\Answered)")
    assert lines(out)[0] == b"* OK [HIGHESTMODSEQ %d] Highest" % (hms(c) - 1)
    assert lines(out)[-1] == b"b OK [MODIFIED 3] STORE Conditional STORE failed"


@pytest.mark.parametrize("command", [
    "STORE 1 (UNCHANGEDSINCE) +FLAGS (\\Seen)", "STORE 1 (UNCHANGEDSINCE x) +FLAGS (\\Seen)",
    "STORE 1 (FOO 1) +FLAGS (\\Seen)", "STORE 1 () +FLAGS (\\Seen)",
    "STORE 1 (UNCHANGEDSINCE 1 UNCHANGEDSINCE 2) +FLAGS (\\Seen)", "STORE 1 (UNCHANGEDSINCE 1)+FLAGS (\\Seen)",
])
def test_store_modifier_errors_are_bad(command):
    c = session(2)
    c.cmd("s SELECT INBOX")
    assert c.cmd("a " + command).startswith(b"a BAD")


def test_search_modseq_and_esearch_as_imaptest_esearch_condstore():
    c = session(4)
    c.cmd("s SELECT INBOX")
    inbox = c.account.folders["INBOX"]
    for seq in (1, 3, 2, 4):
        c.cmd(f"x{seq} STORE {seq} +FLAGS (\\Seen)")
    m = {u: inbox.get(u).modseq for u in (1, 2, 3, 4)}
    assert m[1] < m[3] < m[2] < m[4]
    q = '"/flags/\\\\seen" all'
    assert found(c.cmd(f"a SEARCH RETURN (MIN) 1:3 MODSEQ {q} 1")) == b'* ESEARCH (TAG "a") MIN 1 MODSEQ %d' % m[1]
    assert found(c.cmd(f"b SEARCH RETURN (MAX) 1:3 MODSEQ {q} 1")) == b'* ESEARCH (TAG "b") MAX 3 MODSEQ %d' % m[3]
    assert found(c.cmd(f"c SEARCH RETURN () 1:3 MODSEQ {q} 1")) == b'* ESEARCH (TAG "c") ALL 1:3 MODSEQ %d' % m[2]
    assert found(c.cmd(f"d SEARCH RETURN (MIN MAX) 2:3 MODSEQ {q} 1")) == \
        b'* ESEARCH (TAG "d") MIN 2 MAX 3 MODSEQ %d' % m[2]
    assert found(c.cmd(f"e SEARCH RETURN (ALL) 2:3 MODSEQ {q} {m[2]}")) == \
        b'* ESEARCH (TAG "e") ALL 2 MODSEQ %d' % m[2]
    assert found(c.cmd(f"f SEARCH RETURN (ALL) 2:3 MODSEQ {m[4]}")) == b'* ESEARCH (TAG "f")'
    assert found(c.cmd(f"g SEARCH MODSEQ {m[3]}")) == b"* SEARCH 2 3 4 (MODSEQ %d)" % m[4]
    assert found(c.cmd(f"h UID SEARCH NOT MODSEQ {m[3]}")) == b"* SEARCH 1 (MODSEQ %d)" % m[1]
    assert found(c.cmd("i SEARCH MODSEQ 99999")) == b"* SEARCH"
    assert found(c.cmd(f"j SEARCH RETURN (COUNT) MODSEQ {m[1]}")) == b'* ESEARCH (TAG "j") COUNT 4 MODSEQ %d' % m[4]


@pytest.mark.parametrize("command", [
    "SEARCH MODSEQ", "SEARCH MODSEQ x", 'SEARCH MODSEQ "/flags/\\\\seen" 1', 'SEARCH MODSEQ "/flags/\\\\seen" foo 1',
    'SEARCH MODSEQ "/bogus" all 1', "SEARCH MODSEQ 99999999999999999999",
])
def test_search_modseq_errors_are_bad(command):
    c = session(1)
    c.cmd("s SELECT INBOX")
    assert c.cmd("a " + command).startswith(b"a BAD")


def two(n: int = 5, enable: str = "QRESYNC") -> tuple[Client, Client]:
    a = session(n, enable=enable)
    b = Client(account=a.account, clock=a.clock)
    b.login()
    b.cmd(f"e ENABLE {enable}")
    a.cmd("s SELECT INBOX")
    b.cmd("s SELECT INBOX")
    return a, b


def test_other_sessions_changes_carry_uid_and_modseq_and_vanished():
    a, b = two()
    b.cmd("x UID STORE 2 +FLAGS.SILENT (\\Answered)")
    m = hms(a)
    assert lines(a.cmd("n NOOP")) == [b"* 2 FETCH (UID 2 FLAGS (\\Answered \\Recent) MODSEQ (%d))" % m,
                                     b"n OK NOOP completed"]
    b.cmd("y UID STORE 3:4 +FLAGS.SILENT (\\Deleted)")
    b.cmd("z EXPUNGE")
    out = a.cmd("o NOOP")
    assert b"* VANISHED 3:4\r\n* OK [HIGHESTMODSEQ %d] Highest\r\n" % hms(a) in out and b"EXPUNGE" not in out


def test_held_back_expunges_lower_the_reported_highestmodseq():
    """RFC 5162 erratum 1810: while expunges wait (no EXPUNGE/VANISHED during
    FETCH), the client must not take a later MODSEQ as its sync point."""
    a, b = two()
    b.cmd("x UID STORE 1 +FLAGS.SILENT (\\Deleted)")
    b.cmd("y EXPUNGE")
    expunged_at = hms(a)
    b.cmd("z UID STORE 2 +FLAGS.SILENT (\\Seen)")
    out = a.cmd("f FETCH 2 (MODSEQ)")
    assert b"VANISHED" not in out and b"EXPUNGE" not in out
    assert b"* OK [HIGHESTMODSEQ %d] Highest\r\n" % (expunged_at - 1) in out
    assert b"* VANISHED 1\r\n" in a.cmd("n NOOP")


def test_fetch_that_sets_seen_reports_uid_and_modseq():
    c = session(2, enable="CONDSTORE")
    c.cmd("s SELECT INBOX")
    out = c.cmd("a FETCH 2 (BODY[HEADER.FIELDS (SUBJECT)])")
    assert re.match(rb"\* 2 FETCH \(UID 2 BODY\[HEADER\.FIELDS \(SUBJECT\)\] \{\d+\}\r\n.*\r\n\r\n "
                    rb"FLAGS \(\\Seen \\Recent\) MODSEQ \(%d\)\)\r\n" % hms(c), out, re.S), out


def test_qresync_select_sends_vanished_earlier_and_changes():
    a, b = two(8)
    start = hms(a)
    uv = a.account.folders["INBOX"].uidvalidity
    a.cmd("c CLOSE")
    b.cmd("x UID STORE 2,5 +FLAGS.SILENT (\\Deleted)")
    b.cmd("y EXPUNGE")
    b.cmd("z UID STORE 3,7 +FLAGS.SILENT (\\Flagged)")
    m = hms(a)
    out = a.cmd(f"q SELECT INBOX (QRESYNC ({uv} {start}))")
    got = lines(out)
    i = got.index(b"* OK [HIGHESTMODSEQ %d] Highest" % m)
    assert got[i + 1:] == [b"* VANISHED (EARLIER) 2,5", b"* 2 FETCH (UID 3 FLAGS (\\Flagged) MODSEQ (%d))" % m,
                           b"* 5 FETCH (UID 7 FLAGS (\\Flagged) MODSEQ (%d))" % m,
                           b"q OK [READ-WRITE] SELECT completed"]
    out = a.cmd(f"r SELECT INBOX (QRESYNC ({uv} {start} 5:7))")  # known UIDs limit both
    got = lines(out)
    assert got[got.index(b"* OK [HIGHESTMODSEQ %d] Highest" % m) + 1:] == [
        b"* VANISHED (EARLIER) 5", b"* 5 FETCH (UID 7 FLAGS (\\Flagged) MODSEQ (%d))" % m,
        b"r OK [READ-WRITE] SELECT completed"]
    out = a.cmd(f"s EXAMINE INBOX (QRESYNC ({uv + 1} {start}))")  # another UIDVALIDITY: a plain EXAMINE
    assert b"VANISHED" not in out and b"FETCH" not in out and b"[HIGHESTMODSEQ %d]" % m in out
    out = a.cmd(f"t SELECT INBOX (QRESYNC ({uv} {m}))")
    assert b"VANISHED" not in out and b"FETCH" not in out


def test_qresync_select_after_the_expunge_record_was_trimmed():
    """The store only knows every UID that is missing now: known UIDs and
    the sequence match narrow that down (RFC 7162 3.2.5.2)."""
    a, b = two(8)
    inbox = a.account.folders["INBOX"]
    uv = inbox.uidvalidity
    b.cmd("x UID STORE 1,2,6 +FLAGS.SILENT (\\Deleted)")
    b.cmd("y EXPUNGE")
    mark = hms(a)
    b.cmd("x UID STORE 7 +FLAGS.SILENT (\\Deleted)")
    b.cmd("y EXPUNGE")
    inbox.trim_expunge_record(mark + 1)
    a.cmd("c CLOSE")
    # the client saw 1:8 = UIDs 1:8 before anything went; it knows 3:8
    out = a.cmd(f"q SELECT INBOX (QRESYNC ({uv} {mark} 3:8))")
    assert b"* VANISHED (EARLIER) 6:7\r\n" in out  # 1 and 2 it does not know
    # no known UIDs, but messages 1 and 2 are still UIDs 3 and 4: nothing below UID 4 can have gone
    out = a.cmd(f"r SELECT INBOX (QRESYNC ({uv} {mark} (1:2 3:4)))")
    assert b"* VANISHED (EARLIER) 6:7\r\n" in out
    out = a.cmd(f"s SELECT INBOX (QRESYNC ({uv} {mark}))")
    assert b"* VANISHED (EARLIER) 1:2,6:7\r\n" in out


def test_append_under_qresync_reports_highestmodseq_after_exists():
    c = session(1, enable="QRESYNC")
    c.cmd("s SELECT INBOX")
    out = c.send(b"a APPEND INBOX {3+}\r\nabc\r\n")
    assert b"* 2 EXISTS\r\n* 2 RECENT\r\n* OK [HIGHESTMODSEQ %d] Highest\r\n" % hms(c) in out
    assert tagged(out, "a").startswith(b"a OK [APPENDUID")
