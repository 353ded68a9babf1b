"""Selected state: FETCH, STORE, COPY, MOVE, EXPUNGE, UID EXPUNGE, SEARCH
(+ESEARCH), CLOSE, UNSELECT, CHECK and their error paths."""

import re

from mailsrv.imap import bodies as bodiesmod
from tests.imap.harness import MSG1, MSG2, MSG3, Client, inbox_with, tagged


def selected(*msgs, flags=()):
    c = Client()
    c.login()
    inbox_with(c, *msgs, flags=flags)
    c.select()
    return c


def test_fetch_flags_uid_size_internaldate():
    c = selected(MSG1, MSG2)
    out = c.cmd("a FETCH 1:* (FLAGS UID RFC822.SIZE INTERNALDATE)")
    lines = out.split(b"\r\n")
    assert re.match(rb'\* 1 FETCH \(FLAGS \(\\Recent\) UID 1 RFC822.SIZE %d '
                    rb'INTERNALDATE "\d\d-\w{3}-\d{4} \d\d:\d\d:\d\d [+-]\d{4}"\)' % len(MSG1), lines[0])
    assert lines[1].startswith(b"* 2 FETCH (FLAGS (\\Recent) UID 2")
    assert lines[2] == b"a OK FETCH completed"


def test_uid_fetch_adds_uid_and_handles_star():
    c = selected(MSG1, MSG2)
    out = c.cmd("a UID FETCH 5:* FLAGS")
    assert out.startswith(b"* 2 FETCH (UID 2 FLAGS")  # n:* always matches the last message
    assert c.cmd("b UID FETCH 7 FLAGS") == b"b OK FETCH completed\r\n"


def test_fetch_bad_sequence_numbers():
    c = selected(MSG1)
    assert c.cmd("a FETCH 2 FLAGS").startswith(b"a BAD")
    assert c.cmd("b FETCH 1:3 FLAGS").startswith(b"b BAD")


def test_body_sections_exact_bytes():
    c = selected(MSG1)
    head, body = MSG1.split(b"\r\n\r\n", 1)
    out = c.cmd("a FETCH 1 (BODY.PEEK[HEADER] BODY.PEEK[TEXT])")
    assert out.startswith(b"* 1 FETCH (BODY[HEADER] {%d}\r\n%s\r\n\r\n BODY[TEXT] {%d}\r\n%s)\r\n"
                          % (len(head) + 4, head, len(body), body))
    out = c.cmd("b FETCH 1 BODY.PEEK[]<3.8>")
    assert out.startswith(b"* 1 FETCH (BODY[]<3> {8}\r\n" + MSG1[3:11] + b")\r\n")
    out = c.cmd("c FETCH 1 BODY.PEEK[]<5000.10>")
    assert out.startswith(b"* 1 FETCH (BODY[]<5000> {0}\r\n)\r\n")
    out = c.cmd("d FETCH 1 (RFC822.HEADER RFC822.SIZE)")
    assert out.startswith(b"* 1 FETCH (RFC822.HEADER {%d}\r\n" % (len(head) + 4))
    assert "\\Seen" not in c.account.folders["INBOX"].get(1).flags


def test_bare_lf_message_is_sent_with_crlf():
    c = selected(MSG3)
    crlf = MSG3.replace(b"\n", b"\r\n")
    out = c.cmd("a FETCH 1 (RFC822.SIZE BODY.PEEK[])")
    assert out.startswith(b"* 1 FETCH (RFC822.SIZE %d BODY[] {%d}\r\n%s)\r\n" % (len(crlf), len(crlf), crlf))


def test_fetch_body_sets_seen_and_reports_flags():
    c = selected(MSG1)
    out = c.cmd("a FETCH 1 BODY[HEADER.FIELDS (SUBJECT)]")
    assert b"BODY[HEADER.FIELDS (SUBJECT)] {18}\r\nSubject: Hello\r\n\r\n" in out
    assert b"FLAGS (\\Seen \\Recent)" in out
    assert "\\Seen" in c.account.folders["INBOX"].get(1).flags
    out = c.cmd("b FETCH 1 RFC822")
    assert out.startswith(b"* 1 FETCH (RFC822 {%d}\r\n%s)\r\n" % (len(MSG1), MSG1))


def test_fetch_envelope_and_bodystructure_present():
    c = selected(MSG1)
    out = c.cmd("a FETCH 1 (ENVELOPE BODY BODYSTRUCTURE)")
    assert b"ENVELOPE (" in out and b" BODY (" in out and b"BODYSTRUCTURE (" in out
    assert tagged(out, "a") == b"a OK FETCH completed\r\n"
    out = c.cmd("b FETCH 1 ALL")
    assert b"ENVELOPE" in out and b"RFC822.SIZE" in out


def test_large_message_streams_in_chunks(monkeypatch):
    monkeypatch.setattr(bodiesmod, "STREAM_MIN", 100)
    monkeypatch.setattr(bodiesmod, "CHUNK", 7)
    big = b"Subject: big\n\n" + b"line of text\n" * 50
    c = selected(big)
    crlf = big.replace(b"\n", b"\r\n")
    out = c.cmd("a FETCH 1 (BODY.PEEK[] UID)")
    assert out.startswith(b"* 1 FETCH (BODY[] {%d}\r\n%s UID 1)\r\n" % (len(crlf), crlf))
    out = c.cmd("b FETCH 1 BODY.PEEK[]<20.30>")
    assert out.startswith(b"* 1 FETCH (BODY[]<20> {30}\r\n%s)\r\n" % crlf[20:50])


def test_fetch_waits_for_transport_backpressure():
    c = selected(MSG1, MSG2)
    c.proto.ctx.yield_every = 1
    c.proto.out.pauseProducing()
    out = c.cmd("a FETCH 1:* FLAGS")
    assert out.startswith(b"* 1 FETCH") and b"* 2 FETCH" not in out
    c.proto.out.resumeProducing()
    c.clock.advance(0)
    out = c.take()
    assert out.startswith(b"* 2 FETCH") and out.endswith(b"a OK FETCH completed\r\n")


def test_store_variants():
    c = selected(MSG1, MSG2)
    assert c.cmd("a STORE 1:2 +FLAGS (\\Seen)") == (
        b"* 1 FETCH (FLAGS (\\Seen \\Recent))\r\n* 2 FETCH (FLAGS (\\Seen \\Recent))\r\na OK STORE completed\r\n")
    assert c.cmd("b STORE 1 -FLAGS.SILENT (\\Seen)") == b"b OK STORE completed\r\n"
    out = c.cmd("c UID STORE 2 FLAGS ($Work \\Flagged)")
    assert b"* FLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft $Work)\r\n" in out
    assert b"* 2 FETCH (UID 2 FLAGS ($Work \\Flagged \\Recent))\r\n" in out
    assert c.cmd("d STORE 1 +FLAGS (\\Bogus)").startswith(b"d BAD")
    assert c.cmd("e STORE 3 +FLAGS (\\Seen)").startswith(b"e BAD")
    assert c.cmd("f STORE 1 +FLAGS (\\Recent)") == b"* 1 FETCH (FLAGS (\\Recent))\r\nf OK STORE completed\r\n"


def test_copy_and_copyuid():
    c = selected(MSG1, MSG2)
    c.cmd("a STORE 2 +FLAGS.SILENT (\\Flagged)")
    out = c.cmd("b COPY 1:2 Trash")
    assert out == b"b OK [COPYUID 2003 1:2 1:2] COPY completed\r\n"
    assert c.account.folders["Trash"].get(2).flags == {"\\Flagged"}
    assert c.cmd("c COPY 1 Nope").startswith(b"c NO [TRYCREATE]")
    assert c.cmd("d UID COPY 9 Trash") == b"d OK COPY completed (no messages)\r\n"
    out = c.cmd("e COPY 1 INBOX")
    assert b"* 3 EXISTS\r\n" in out and b"[COPYUID 1000 1 3]" in out


def test_move():
    c = selected(MSG1, MSG2, MSG3)
    out = c.cmd("a MOVE 2:3 Trash")
    assert out == b"* OK [COPYUID 2003 2:3 1:2] Moved\r\n* 3 EXPUNGE\r\n* 2 EXPUNGE\r\na OK MOVE completed\r\n"
    out = c.cmd("b UID MOVE 1 Junk")
    assert b"* 1 EXPUNGE" in out and b"b OK" in out
    assert len(c.account.folders["Trash"].messages()) == 2


def test_expunge_and_uid_expunge():
    c = selected(MSG1, MSG2, MSG3, MSG1)
    c.cmd("a STORE 1,3,4 +FLAGS.SILENT (\\Deleted)")
    out = c.cmd("b UID EXPUNGE 1:3")
    assert out == b"* 3 EXPUNGE\r\n* 1 EXPUNGE\r\nb OK UID EXPUNGE completed\r\n"
    out = c.cmd("c EXPUNGE")
    assert out == b"* 2 EXPUNGE\r\nc OK EXPUNGE completed\r\n"
    assert [m.uid for m in c.account.folders["INBOX"].messages()] == [2]


def test_close_expunges_silently_and_unselect_does_not():
    c = selected(MSG1, MSG2)
    c.cmd("a STORE 1 +FLAGS.SILENT (\\Deleted)")
    assert c.cmd("b UNSELECT") == b"b OK UNSELECT completed\r\n"
    assert len(c.account.folders["INBOX"].messages()) == 2
    c.select()
    assert c.cmd("c CLOSE") == b"c OK CLOSE completed\r\n"
    assert len(c.account.folders["INBOX"].messages()) == 1
    assert c.cmd("d FETCH 1 FLAGS").startswith(b"d BAD")
    assert c.cmd("e CHECK").startswith(b"e BAD")


def test_search_and_esearch():
    c = selected(MSG1, MSG2, MSG3)
    c.cmd("a STORE 2 +FLAGS.SILENT (\\Seen)")
    assert c.cmd("b SEARCH UNSEEN") == b"* SEARCH 1 3\r\nb OK SEARCH completed\r\n"
    assert c.cmd("c UID SEARCH FROM bob") == b"* SEARCH 2\r\nc OK SEARCH completed\r\n"
    assert c.cmd("d SEARCH SUBJECT nothing-matches") == b"* SEARCH\r\nd OK SEARCH completed\r\n"
    out = c.cmd("e SEARCH RETURN (MIN MAX COUNT ALL) ALL")
    assert out == b'* ESEARCH (TAG "e") MIN 1 MAX 3 COUNT 3 ALL 1:3\r\ne OK SEARCH completed\r\n'
    out = c.cmd("f UID SEARCH RETURN (COUNT) SUBJECT nope")
    assert out == b'* ESEARCH (TAG "f") UID COUNT 0\r\nf OK SEARCH completed\r\n'
    assert c.cmd("g SEARCH CHARSET KOI8-R ALL") == b"g NO [BADCHARSET (UTF-8 US-ASCII)] SEARCH Unsupported charset\r\n"
    out = c.send(b"h SEARCH CHARSET UTF-8 TEXT {3}\r\n")
    assert out == b"+ Ready for literal data\r\n"
    assert c.send(b"how\r\n") == b"* SEARCH 1\r\nh OK SEARCH completed\r\n"


def test_selected_commands_need_selection():
    c = Client()
    c.login()
    for line in ("a FETCH 1 FLAGS", "b STORE 1 FLAGS ()", "c EXPUNGE", "d SEARCH ALL", "e CLOSE", "f MOVE 1 X"):
        assert b" BAD " in c.cmd(line)
