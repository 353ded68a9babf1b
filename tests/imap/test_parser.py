"""The sans-IO parser: grammar, framing, literals, bounds, fuzzing."""

import datetime

from hypothesis import given, settings
from hypothesis import strategies as st

from mailsrv.imap import commands as C
from mailsrv.imap import searchkeys as K
from mailsrv.imap.grammar import command_parser as Parser
from mailsrv.imap.reader import parse_date_time


def one(data: bytes, **kw):
    evs = Parser(**kw).feed(data)
    assert len(evs) == 1, evs
    return evs[0]


def test_simple_commands():
    for name in ("CAPABILITY", "NOOP", "LOGOUT", "IDLE", "NAMESPACE", "check", "Unselect"):
        ev = one(b"a1 " + name.encode() + b"\r\n")
        assert ev == C.Simple("a1", name.upper())


def test_noop_with_argument_is_bad():
    ev = one(b"a1 NOOP x\r\n")
    assert isinstance(ev, C.ParseError) and ev.tag == "a1"


def test_login_quoted_and_literal():
    assert one(b'a LOGIN "jo\\"e" "p w"\r\n') == C.Login("a", "LOGIN", user='jo"e', password="p w")
    evs = Parser().feed(b"a LOGIN {3}\r\njoe {2+}\r\npw\r\n")
    assert evs == [C.LiteralContinuation("a", 3), C.Login("a", "LOGIN", user="joe", password="pw")]


def test_fetch_attributes_and_macros():
    ev = one(b"t UID FETCH 1:*,3 (UID BODY.PEEK[1.2.MIME] BODY[HEADER.FIELDS.NOT (X-A Y)]<5.10> RFC822.SIZE)\r\n")
    assert ev.uid and ev.seqset == [(1, None), (3, 3)]
    assert ev.atts[1] == C.FetchAtt("BODY", C.Section((1, 2), "MIME"), None, True)
    assert ev.atts[2] == C.FetchAtt("BODY", C.Section((), "HEADER.FIELDS.NOT", ("X-A", "Y")), (5, 10), False)
    assert [a.name for a in one(b"t FETCH 1 FAST\r\n").atts] == ["FLAGS", "INTERNALDATE", "RFC822.SIZE"]
    assert one(b"t FETCH 1 BODY[]\r\n").atts == [C.FetchAtt("BODY", C.Section())]
    assert one(b"t FETCH 2 body[3]\r\n").atts == [C.FetchAtt("BODY", C.Section((3,)))]


def test_fetch_errors():
    for bad in (b"t FETCH 0 FLAGS", b"t FETCH 1 BODY[MIME]", b"t FETCH 1 BODY[1.]", b"t FETCH 1 BODY[]<1.0>",
                b"t FETCH 1 (FLAGS", b"t FETCH 1 BOGUS", b"t FETCH x FLAGS", b"t FETCH 1 BODY[HEADER.FIELDS ()]"):
        ev = one(bad + b"\r\n")
        assert isinstance(ev, C.ParseError), bad


def test_store():
    ev = one(b"s STORE 1:3 -FLAGS.SILENT (\\seen $Junk)\r\n")
    assert (ev.mode, ev.silent, ev.flags) == ("-", True, ["\\Seen", "$Junk"])
    ev = one(b"s UID STORE 4 FLAGS \\Deleted \\Flagged\r\n")
    assert (ev.uid, ev.mode, ev.flags) == (True, "=", ["\\Deleted", "\\Flagged"])
    assert isinstance(one(b"s STORE 1 FLAGZ (\\Seen)\r\n"), C.ParseError)


def test_search_key_tree():
    ev = one(b'a SEARCH CHARSET UTF-8 NOT DELETED OR FROM "a b" (TO c UNKEYWORD $x) 2:4 UID 9:* '
             b"LARGER 10 SENTON \"2-Feb-2020\" HEADER X-Y z\r\n")
    assert ev.charset == "UTF-8" and ev.return_opts is None
    assert ev.key == K.And((
        K.Not(K.Flag("\\Deleted")),
        K.Or(K.Address("From", "a b"), K.And((K.Address("To", "c"), K.Flag("$x", False)))),
        K.Seq(((2, 4),)), K.Uid(((9, None),)), K.Size("LARGER", 10),
        K.Date("sent", "ON", datetime.date(2020, 2, 2)), K.Header("X-Y", "z")))
    assert one(b"a SEARCH UNSEEN\r\n").key == K.Flag("\\Seen", False)
    ev = one(b"a UID SEARCH RETURN () NEW\r\n")
    assert ev.uid and ev.return_opts == ["ALL"] and ev.key == K.New()


def test_search_utf8_literal():
    evs = Parser().feed(b"a SEARCH CHARSET UTF-8 SUBJECT {4}\r\n\xc3\xa4\xc3\xb6\r\n")
    assert evs[1].key == K.Header("Subject", "\u00e4\u00f6")


def test_search_errors():
    for bad in (b"a SEARCH", b"a SEARCH FOO", b"a SEARCH SINCE 1-Foo-2020", b"a SEARCH OR ALL",
                b"a SEARCH " + b"NOT " * 200 + b"ALL", b"a SEARCH RETURN (BOGUS) ALL"):
        assert isinstance(one(bad + b"\r\n"), C.ParseError), bad


def test_list_variants():
    ev = one(b'a LIST "" "%"\r\n')
    assert (ev.reference, ev.patterns, ev.extended) == ("", ["%"], False)
    ev = one(b'a LIST (SUBSCRIBED RECURSIVEMATCH) "" ("INBOX" Lists/*) RETURN (CHILDREN STATUS (MESSAGES UNSEEN))\r\n')
    assert ev.select_opts == ["SUBSCRIBED", "RECURSIVEMATCH"] and ev.patterns == ["INBOX", "Lists/*"]
    assert ev.return_opts == ["CHILDREN", "STATUS"] and ev.status_atts == ["MESSAGES", "UNSEEN"]
    assert one(b"a LSUB \"\" *\r\n").name == "LSUB"
    assert isinstance(one(b'a LIST (RECURSIVEMATCH) "" *\r\n'), C.ParseError)


def test_mailbox_names_modified_utf7_and_inbox():
    assert one(b"a SELECT inbox\r\n").mailbox == "INBOX"
    assert one(b'a CREATE "Entw&APw-rfe"\r\n').mailbox == "Entw\u00fcrfe"
    ev = one(b'a CREATE "&Jjo"\r\n')
    assert isinstance(ev, C.ParseError) and (ev.status, ev.command) == ("NO", "CREATE")
    ev = one(b'a UID COPY 1 "&Jjo"\r\n')
    assert isinstance(ev, C.ParseError) and (ev.status, ev.command) == ("NO", "COPY")


def test_append_flags_date_and_multiappend():
    p = Parser()
    evs = p.feed(b'a APPEND Sent (\\Seen) "05-Jan-2024 10:00:00 +0100" {5}\r\n')
    assert evs == [C.LiteralContinuation("a", 5)]
    evs = p.feed(b"hello {3+}\r\nabc\r\n")
    ap = evs[0]
    assert ap.mailbox == "Sent" and len(ap.messages) == 2
    assert ap.messages[0].flags == ["\\Seen"] and ap.messages[0].date == parse_date_time("05-Jan-2024 09:00:00 +0000")
    assert ap.messages[0].data.read() == b"hello" and ap.messages[1].data.read() == b"abc"


def test_append_too_big_sync_is_no_before_continuation():
    p = Parser(append_limit=100)
    ev = p.feed(b"a APPEND INBOX {101}\r\n")
    assert ev == [C.ParseError("a", "Message too large", code="TOOBIG", status="NO")]
    assert p.feed(b"b NOOP\r\n") == [C.Simple("b", "NOOP")]


def test_literal_plus_too_big_is_skipped():
    p = Parser(append_limit=10)
    evs = p.feed(b"a APPEND INBOX {20+}\r\n" + b"x" * 20 + b" more {3+}\r\nabc\r\nb NOOP\r\n")
    assert evs[0].status == "BAD" and evs[0].code == "TOOBIG"
    assert evs[1:] == [C.Simple("b", "NOOP")]


def test_large_append_literal_is_spooled_not_in_memory():
    p = Parser(max_line=1024)
    data = b"y" * 5000
    evs = p.feed(b"a APPEND INBOX {5000+}\r\n" + data + b"\r\n")
    msg = evs[0].messages[0]
    assert msg.data._rolled or len(data) < 1 << 20  # SpooledTemporaryFile, spills past 1 MiB
    assert msg.data.read() == data and msg.size == 5000


def test_non_append_literal_bounded_by_line_limit():
    p = Parser(max_line=100)
    evs = p.feed(b"a LOGIN {200}\r\n")
    assert evs[0].code == "TOOBIG" and evs[0].status == "BAD"


def test_line_too_long_resyncs():
    p = Parser(max_line=100)
    evs = p.feed(b"a NOOP " + b"x" * 300)
    assert evs and evs[0].tag == "a" and evs[0].code == "TOOBIG"
    evs = p.feed(b"y" * 500 + b"\r\nb NOOP\r\n")
    assert evs == [C.Simple("b", "NOOP")]


def test_raw_line_mode():
    p = Parser()
    p.push(b"DONE\r\nb NOOP\r\n")
    p.expect_raw_line()
    assert p.next_event() == C.RawLine(b"DONE")
    assert p.next_event() == C.Simple("b", "NOOP")


def test_lf_only_and_blank_lines():
    assert Parser().feed(b"\r\na NOOP\n") == [C.Simple("a", "NOOP")]


def test_id_and_enable():
    assert one(b'a ID ("name" "x" "version" NIL)\r\n').params == {"name": "x", "version": None}
    assert one(b"a ID NIL\r\n").params is None
    assert one(b"a ENABLE CONDSTORE utf8=accept\r\n").capabilities == ["CONDSTORE", "UTF8=ACCEPT"]


COMMANDS = [
    b'a1 APPEND INBOX (\\Seen) {11}\r\nhello world\r\n',
    b'a2 SEARCH OR SUBJECT {3}\r\nabc FROM "x" NOT 1:2\r\n',
    b'a3 UID FETCH 1:* (FLAGS BODY.PEEK[HEADER.FIELDS (FROM)]<0.10>)\r\n',
    b'a4 LOGIN {3+}\r\njoe "pw"\r\n',
]


def test_split_at_every_byte_gives_same_result():
    for data in COMMANDS:
        whole = Parser().feed(data)
        p = Parser()
        pieces = []
        for i in range(len(data)):
            pieces.extend(p.feed(data[i:i + 1]))
        assert [type(e) for e in pieces] == [type(e) for e in whole]
        assert repr(pieces[-1]).split(" data=")[0] == repr(whole[-1]).split(" data=")[0]


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_fuzz_whole(data):
    evs = Parser(max_line=128, append_limit=64).feed(data)
    for e in evs:
        assert isinstance(e, (C.Command, C.ParseError, C.LiteralContinuation))


TOKENS = [b"a", b"UID", b" ", b"FETCH", b"SEARCH", b"APPEND", b"(", b")", b"[", b"]", b"{3}", b"{2+}", b"\r\n",
          b'"', b"\\", b"*", b"1:*", b"BODY[", b"HEADER.FIELDS", b"NOT", b"OR", b"<1.2>", b"\x00", b"\xff", b"INBOX"]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(TOKENS), max_size=40), st.integers(1, 7))
def test_fuzz_tokens_byte_by_byte(tokens, step):
    data = b"".join(tokens)
    p = Parser(max_line=256, append_limit=64)
    for i in range(0, len(data), step):
        for e in p.feed(data[i:i + step]):
            assert isinstance(e, (C.Command, C.ParseError, C.LiteralContinuation))


def test_raw_line_too_long_leaves_raw_mode():
    p = Parser(max_line=100)
    p.expect_raw_line()
    evs = p.feed(b"x" * 300)
    assert len(evs) == 1 and evs[0].code == "TOOBIG"
    assert p.feed(b"yyy\r\nb NOOP\r\n") == [C.Simple("b", "NOOP")]
