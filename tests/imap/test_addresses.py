"""Address headers as Dovecot reads them (issue 9, section 1): ENVELOPE
address lists with groups and hostile syntax, and the FROM/TO/CC/BCC
search keys over the parsed addresses.

``tests/fixtures/dovecot-addresses.json`` holds what the reference
Dovecot 2.3 answered for 520 To: values (hand-written hostile ones, the
reference corpus's, random combinations), recorded with
``bench/address_compare.py --record``."""

from __future__ import annotations

import json
import os

import pytest

from mailsrv.imap import addresses as A
from mailsrv.imap import envelope as E
from mailsrv.imap import headers
from mailsrv.imap import searchkeys as K
from mailsrv.imap.search import search
from tests.fakestore import FakeFolder
from tests.imap.harness import Client, tagged

FIXTURE = os.path.join(os.path.dirname(os.path.dirname(__file__)), "fixtures", "dovecot-addresses.json")


@pytest.fixture(scope="module")
def recorded() -> dict:
    with open(FIXTURE) as f:
        return json.load(f)


def message(i: int, value: bytes) -> bytes:
    """The message bench/address_compare.py sent to Dovecot."""
    return (b"From: sender@example.org\r\nSubject: addr %d\r\nTo: " % i) + value + b"\r\n\r\nbody\r\n"


def envelope_of(raw: bytes) -> bytes:
    return E.envelope(headers.parse_fields(raw[:headers.header_end(raw)]))


def _to_list(env: bytes) -> bytes:
    from bench.address_compare import envelope_to
    return envelope_to(b"* 1 FETCH (ENVELOPE " + env + b")")


def test_envelope_to_lists_equal_dovecots(recorded):
    differ = []
    for i, (value, want) in enumerate(zip(recorded["values"], recorded["envelope_to"], strict=True), 1):
        got = _to_list(envelope_of(message(i, value.encode("latin-1"))))
        if got != want.encode("latin-1"):
            differ.append((value, want, got))
    assert len(recorded["values"]) == 520
    assert differ == []


def test_search_to_equals_dovecots(recorded):
    """Every recorded UID SEARCH TO answer, over the messages whose To: is
    ASCII (Dovecot also folds accents away, ``ba`` finding ``bä``; mailsrv's
    search compares case-folded text only)."""
    folder = FakeFolder()
    ascii_uids = set()
    for i, value in enumerate(recorded["values"], 1):
        raw = value.encode("latin-1")
        folder.add(message(i, raw))
        if raw.isascii():
            ascii_uids.add(i)
    view = folder.messages()
    differ = []
    for needle, want in recorded["search_to"]:
        got = [view[s - 1].uid for s in search(folder, view, K.Address("To", needle), set())]
        if [u for u in got if u in ascii_uids] != [u for u in want if u in ascii_uids]:
            differ.append((needle, sorted(set(got) ^ set(want))))
    assert len(recorded["search_to"]) > 250
    assert differ == []


@pytest.mark.parametrize("value,expected", [
    # the example: two groups, each closed by a (NIL NIL NIL NIL)
    (b"group: g1@d1.org, g2@d2.org;, group2: g3@d3.org;",
     [(None, None, b"group", None), (None, None, b"g1", b"d1.org"), (None, None, b"g2", b"d2.org"), A.GROUP_END,
      (None, None, b"group2", None), (None, None, b"g3", b"d3.org"), A.GROUP_END]),
    # an empty group, and one holding only a comment: no phantom address
    (b"group:;, group2: (foo) ;", [(None, None, b"group", None), A.GROUP_END, (None, None, b"group2", None),
                                   A.GROUP_END]),
    (b"<user-from (comment)@ (comment) domain.org>", [(None, None, b"user-from", b"domain.org")]),
    (b"user@domain (Real (nested) Name)", [(b"Real (nested) Name", None, b"user", b"domain")]),
    (b"<@r1,@r2:u@h>", [(None, b"@r1,@r2", b"u", b"h")]),
    (b"<@r1 u@h>", [(None, b"INVALID_ROUTE", b"u", b"h")]),  # a broken route, the rest still read
    (b"a b c", [(b"a b c", None, b"MISSING_MAILBOX", b"MISSING_DOMAIN")]),
    (b"a@b.", [(None, None, b"a", b"MISSING_DOMAIN")]),
    (b".a..b.@c", [(None, None, b".a..b.", b"c")]),
    (b"a@b,", [(None, None, b"a", b"b")]),
    (b"", []),
    (b" (only a comment) ", []),
])
def test_parse(value, expected):
    assert A.parse(value) == expected


def test_parse_without_filling_in():
    assert A.parse(b"Name <>, x", fill_missing=False) == [(b"Name", None, b"", b""), (None, None, b"x", b"")]


@pytest.mark.parametrize("value,written", [
    (b"a@b", b"<a@b>"),
    (b"Real Name <a@b>", b'"Real Name" <a@b>'),
    (b"a@b (RealFrom)", b"RealFrom <a@b>"),
    (b"=?utf-8?q?J=C3=BC?= <j@x>", b"=?utf-8?q?J=C3=BC?= <j@x>"),
    (b"it's <\"a b\"@c>", b"it's <\"a b\"@c>"),
    (b'"say \\"hi\\"" <a@b>', b'"say \\"hi\\"" <a@b>'),
    (b"g: a@b, c@d;, h:;", b"g: <a@b>, <c@d>;, h:;"),
    (b"<@r:u@h>", b"<@r:u@h>"),
])
def test_written_as_dovecot_writes_it(value, written):
    assert A.written(A.parse(value)) == written


def test_envelope_strings_follow_dovecot():
    """Last Subject counts, every To adds; date and ids quoted with escapes,
    subject and names cleaned up "for humans" (a literal when changed);
    folds keep their blanks; trailing space is kept."""
    raw = (b'Date: a "q" \\b\r\nSubject: one\r\nSubject: two  spaces\r\nTo: a@b\r\nTo: "x  y" <c@d>\r\n'
           b"Message-ID: <m@x>  \r\nIn-Reply-To: <r@x>\r\n \r\n\r\n")
    env = envelope_of(raw)
    assert env == (b'("a \\"q\\" \\\\b" {10}\r\ntwo spaces NIL NIL NIL ((NIL NIL "a" "b")({3}\r\nx y NIL "c" "d")) '
                   b'NIL NIL "<r@x> " "<m@x>  ")')
    assert envelope_of(b"Subject:\r\nTo:\r\n\r\n") == b'(NIL "" NIL NIL NIL NIL NIL NIL NIL NIL)'
    assert envelope_of(b"Subject: a\r\n b\r\n\r\n").startswith(b"(NIL {3}\r\na b ")
    assert envelope_of(b'Message-ID: q"q"q"q"q"\r\n\r\n').endswith(b' {10}\r\nq"q"q"q"q")')


# --- over the wire -------------------------------------------------------------------------------

GROUPS = (b"From: user@domain (Real Name)\r\nTo: group: g1@d1.org, g2@d2.org;, group2: g3@d3.org;\r\n"
          b"Cc: group:;, group2: (foo) ;\r\nDate: Thu, 15 Feb 2007 01:02:03 +0200\r\n\r\nbody\r\n")

# the imaptest search-addresses messages
ADDRESSED = [
    b"From: user-from@domain.org\r\nTo: user-to@domain.org\r\n\r\nbody\r\n",
    b"From: RealFrom <user-from@domain.org>\r\nTo: RealTo <user-to@domain.org>\r\n\r\nbody2\r\n",
    b"From: <user-from (comment)@ (comment) domain.org>\r\nTo: <user-to@domain.org>\r\n\r\nbody3\r\n",
    b"From: user-from@domain.org (RealFrom)\r\nTo: user-to@domain.org (RealTo)\r\n\r\nbody4\r\n",
    b"From: user-from1@domain.org, user-from2@domain.org\r\nCc: user-cc@domain.org\r\n\r\nbody5\r\n",
    b"From: RealFrom <user-from@domain.org>\r\nTo: groupname: groupuser1@domain.org, groupuser2@domain.org;,\r\n"
    b"  groupname2: groupuser3@domain.org;\r\n\r\nbody6\r\n",
    b"From: RealFrom <user-from@domain.org>\r\nTo: groupname:;\r\n\r\nbody7\r\n",
    b"From: =?utf-8?q?J=C3=BCrgen_M=C3=BCller?= <jm@x.org>\r\n\r\nbody8\r\n",
]


def test_fetch_envelope_with_groups():
    c = Client()
    c.login()
    c.account.folders["INBOX"].add(GROUPS)
    c.select()
    out = c.cmd("a FETCH 1 ENVELOPE")
    assert out == (b'* 1 FETCH (ENVELOPE ("Thu, 15 Feb 2007 01:02:03 +0200" NIL (("Real Name" NIL "user" "domain")) '
                   b'(("Real Name" NIL "user" "domain")) (("Real Name" NIL "user" "domain")) '
                   b'((NIL NIL "group" NIL)(NIL NIL "g1" "d1.org")(NIL NIL "g2" "d2.org")(NIL NIL NIL NIL)'
                   b'(NIL NIL "group2" NIL)(NIL NIL "g3" "d3.org")(NIL NIL NIL NIL)) '
                   b'((NIL NIL "group" NIL)(NIL NIL NIL NIL)(NIL NIL "group2" NIL)(NIL NIL NIL NIL)) NIL NIL NIL))\r\n'
                   b"a OK FETCH completed\r\n")


@pytest.mark.parametrize("command,found", [
    ("SEARCH FROM user-from@domain.org", b"1 2 3 4 6 7"),  # 3 hides it behind comments
    ("SEARCH FROM realfrom", b"2 4 6 7"),  # display names, from a comment too
    ("SEARCH FROM ealfro", b"2 4 6 7"),
    ("SEARCH FROM user-from1", b"5"),
    ("SEARCH TO groupname", b"6 7"),
    ("SEARCH TO groupname2", b"6"),
    ("SEARCH TO groupuser3", b"6"),  # folded header
    ("SEARCH TO groupuser4", b""),
    ("SEARCH CC user-cc@domain.org", b"5"),
    ("SEARCH BCC user", b""),
    ("SEARCH CHARSET UTF-8 FROM {7+}\r\nm\xc3\xbcller", b"8"),  # RFC 2047 decoded
    ("SEARCH FROM \"<user-from@\"", b"1 2 3 4 6 7"),  # written as <mailbox@domain>
    ("SEARCH HEADER FROM \"user-from (comment)\"", b"3"),  # HEADER stays a plain text match
    ("UID SEARCH NOT FROM domain.org", b"8"),
])
def test_search_address_keys(command, found):
    c = Client()
    c.login()
    for m in ADDRESSED:
        c.account.folders["INBOX"].add(m)
    c.select()
    out = c.send(b"a " + command.encode("latin-1") + b"\r\n")
    assert out.split(b"\r\n")[0] == (b"* SEARCH " + found).rstrip(b" ")
    assert tagged(out, "a") == b"a OK SEARCH completed\r\n"
