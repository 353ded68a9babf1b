"""SEARCH keys over a fake folder: every key, decoded headers, nesting, '*',
and the rule that cheap keys never touch message files."""

from __future__ import annotations

import calendar
import datetime
import time

import pytest

from mailsrv.imap.search import search
from tests.imap.content_fakes import TRICKY, FakeFolder


def _ts(y, m, d, hh=12):
    return float(calendar.timegm((y, m, d, hh, 0, 0)))


MSGS = [
    # uid, raw, internaldate, flags
    (3, b"From: Alice <alice@example.com>\nTo: bob@example.org\nSubject: Quarterly report\n"
        b"Date: Tue, 1 Feb 2022 23:30:00 -0800\n\nThe numbers are in.\n",
     _ts(2022, 2, 2), {"\\Seen"}),
    (5, b"From: =?utf-8?q?J=C3=BCrgen_M=C3=BCller?= <jm@example.de>\nSubject: =?utf-8?b?R3LDvMOfZQ==?=\n"
        b"Date: 3 Feb 2022 10:00:00 +0000\nContent-Type: text/plain; charset=utf-8\n"
        b"Content-Transfer-Encoding: quoted-printable\n\nSch=C3=B6ne Gr=C3=BC=C3=9Fe\n",
     _ts(2022, 2, 3), {"\\Flagged", "$Work"}),
    (9, b"From: Zo\xc3\xab <zoe@example.net>\nSubject: caf\xc3\xa9 menu\nX-Empty:\n\n"
        b"raw utf-8 body: na\xc3\xafve\n",
     _ts(2022, 2, 4), set()),
    (10, b"From: list@example.com\nSubject: digest\nContent-Type: multipart/mixed; boundary=b\n\n--b\n"
         b"Content-Type: text/html; charset=utf-8\nContent-Transfer-Encoding: base64\n\n"
         b"PHA+SGlkZGVuIHRyZWFzdXJlPC9wPg==\n--b\nContent-Type: application/octet-stream\n"
         b"Content-Transfer-Encoding: base64\n\nc2VjcmV0IGJpbmFyeQ==\n--b--\n",
     _ts(2022, 2, 5), {"\\Deleted", "\\Seen"}),
]


@pytest.fixture
def box():
    folder = FakeFolder()
    view = [folder.add(uid, raw, internaldate=t, flags=fl) for uid, raw, t, fl in MSGS]
    return folder, view


def run(box, key, recent=frozenset({9, 10})):
    folder, view = box
    return search(folder, view, key, set(recent), None)


D = datetime.date


@pytest.mark.parametrize("key,expected", [
    (("ALL",), [1, 2, 3, 4]),
    (("RECENT",), [3, 4]),
    (("OLD",), [1, 2]),
    (("NEW",), [3]),
    (("FLAG", "\\Seen"), [1, 4]),
    (("UNFLAG", "\\Seen"), [2, 3]),
    (("FLAG", "$work"), [2]),
    (("UNFLAG", "$Work"), [1, 3, 4]),
    (("FLAG", "\\Draft"), []),
    (("BEFORE", D(2022, 2, 3)), [1]),
    (("ON", D(2022, 2, 3)), [2]),
    (("SINCE", D(2022, 2, 4)), [3, 4]),
    (("SENTON", D(2022, 2, 1)), [1]),  # the date as written, not converted to UTC
    (("SENTBEFORE", D(2022, 2, 3)), [1]),
    (("SENTSINCE", D(2022, 2, 2)), [2]),  # messages without Date: never match
    (("LARGER", 300), [4]),
    (("SMALLER", 142), [3]),
    (("SMALLER", 143), [1, 3]),
    (("LARGER", 313), []),
    (("SEQ", [(2, 3)]), [2, 3]),
    (("SEQ", [(None, None)]), [4]),
    (("SEQ", [(3, None)]), [3, 4]),
    (("SEQ", [(None, 3)]), [3, 4]),  # reversed range normalised
    (("SEQ", [(1, 1), (4, 4), (2, 1)]), [1, 2, 4]),
    (("SEQ", [(7, 9)]), []),
    (("UID", [(5, 9)]), [2, 3]),
    (("UID", [(None, None)]), [4]),
    (("UID", [(20, None)]), [4]),  # 20:* is 10:20 when the largest uid is 10
    (("UID", [(4, 4), (11, 12)]), []),
    (("HEADER", "From", "alice"), [1]),
    (("HEADER", "from", "MÜLLER"), [2]),  # RFC 2047 decoded, case-insensitive
    (("HEADER", "SUBJECT", "grüße"), [2]),
    (("HEADER", "Subject", "CAFÉ"), [3]),  # raw UTF-8 header
    (("HEADER", "From", "zoë"), [3]),
    (("HEADER", "To", ""), [1]),  # empty value: the field exists
    (("HEADER", "X-Empty", ""), [3]),
    (("HEADER", "Subject", "report quarterly"), []),
    (("HEADER", "Subject", "rly rep"), [1]),
    (("BODY", "numbers"), [1]),
    (("BODY", "schöne"), [2]),  # quoted-printable + charset
    (("BODY", "NAÏVE"), [3]),
    (("BODY", "hidden treasure"), [4]),  # base64 text/html part
    (("BODY", "secret binary"), []),  # attachments are not text
    (("BODY", "Quarterly"), []),  # BODY does not look at the header
    (("TEXT", "Quarterly"), [1]),
    (("TEXT", "jürgen"), [2]),
    (("TEXT", "schöne"), [2]),
    (("NOT", ("FLAG", "\\Seen")), [2, 3]),
    (("OR", ("SEQ", [(1, 1)]), ("UID", [(9, 9)])), [1, 3]),
    (("OR", ("HEADER", "From", "alice"), ("OR", ("BODY", "naïve"), ("FLAG", "\\Deleted"))), [1, 3, 4]),
    (("NOT", ("OR", ("RECENT",), ("NOT", ("FLAG", "\\Seen")))), [1]),
    (("AND", [("FLAG", "\\Seen"), ("RECENT",)]), [4]),
    (("AND", [("SINCE", D(2022, 2, 3)), ("NOT", ("DELETED_PLACEHOLDER",))]), None),
    (("AND", [("BODY", "e"), ("SEQ", [(2, 2)]), ("ALL",)]), [2]),
    (("AND", [("AND", [("OR", ("SEQ", [(1, 2)]), ("SEQ", [(4, 4)]))]), ("NOT", ("SEQ", [(None, None)]))]), [1, 2]),
])
def test_keys(box, key, expected):
    if expected is None:
        with pytest.raises(ValueError):
            run(box, key)
        return
    assert run(box, key) == expected


def test_header_field_forms():
    folder = FakeFolder()
    view = [folder.add(1, b"subject : Folded\n  Line\nX-A: one\nX-A: two\nX-AB: three\n\nbody subject: no\n"),
            folder.add(2, b"X-Sub: subject: x\n\nSubject: in body\n")]
    s = lambda *k: search(folder, view, k, set(), None)
    assert s("HEADER", "SUBJECT", "folded line") == [1]
    assert s("HEADER", "x-a", "two") == [1]
    assert s("HEADER", "x-a", "three") == []
    assert s("HEADER", "subject", "no") == []
    assert s("HEADER", "Subject", "") == [1]
    assert s("HEADER", "x-sub", "SUBJECT") == [2]


def test_star_on_empty_mailbox_matches_nothing():
    folder = FakeFolder()
    assert search(folder, [], ("SEQ", [(None, None)]), set(), None) == []
    assert search(folder, [], ("UID", [(1, None)]), set(), None) == []
    assert search(folder, [], ("ALL",), set(), None) == []


def test_cheap_keys_do_not_touch_messages(box):
    folder, view = box
    run(box, ("AND", [("FLAG", "\\Seen"), ("UID", [(1, 5)]), ("LARGER", 10), ("SINCE", D(2020, 1, 1))]))
    assert folder.opens == 0 and not folder.cache
    # a header key after a failing cheap key is never evaluated
    run(box, ("AND", [("HEADER", "From", "x"), ("FLAG", "\\Draft")]))
    run(box, ("OR", ("ALL",), ("BODY", "x")))
    assert folder.opens == 0


def test_header_search_is_served_from_the_cache(box):
    folder, view = box
    first = run(box, ("HEADER", "Subject", "report"))
    assert folder.opens == len(view)
    assert run(box, ("HEADER", "Subject", "report")) == first
    assert run(box, ("HEADER", "From", "müller")) == [2]
    assert folder.opens == len(view)


def test_tricky_messages_never_raise():
    folder = FakeFolder()
    view = [folder.add(uid, raw) for uid, raw in enumerate(TRICKY.values(), 1)]
    for key in [("HEADER", "Subject", "münchen"), ("TEXT", "x"), ("BODY", "first"),
                ("SENTON", D(1994, 2, 7)), ("HEADER", "To", "")]:
        search(folder, view, key, set(), None)
    assert search(folder, view, ("HEADER", "Subject", "münchen"), set(), None) == [1]
    assert search(folder, view, ("SENTON", D(1994, 2, 7)), set(), None) == [1]
    assert search(folder, view, ("BODY", "inner part one"), set(), None) == [3]


def test_linear_in_messages():
    folder = FakeFolder()
    view = [folder.add(uid, b"Subject: s%d\n\nbody\n" % uid, flags={"\\Seen"} if uid % 2 else set())
            for uid in range(1, 100001)]
    key = ("AND", [("OR", ("UID", [(10, 20), (None, None)]), ("FLAG", "\\Seen")), ("NOT", ("SEQ", [(1, 5000)]))])
    start = time.perf_counter()
    res = search(folder, view, key, set(), None)
    took = time.perf_counter() - start
    assert len(res) == 47500 + 1  # odd uids above 5000, plus the last (even) message
    assert took < 2.0
    assert folder.opens == 0
