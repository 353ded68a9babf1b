"""SEARCH keys over a fake folder: every key, decoded headers, nesting, '*',
and the rule that cheap keys never touch message files."""

from __future__ import annotations

import calendar
import datetime
import time
from dataclasses import dataclass

import pytest

from mailsrv.imap import searchkeys as K
from mailsrv.imap.search import search
from tests.fakestore import FakeFolder
from tests.imap.tricky_messages import TRICKY


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
    view = [folder.add(raw, internaldate=t, flags=fl, uid=uid) for uid, raw, t, fl in MSGS]
    return folder, view


def run(box, key, recent=frozenset({9, 10})):
    folder, view = box
    return search(folder, view, key, set(recent), None)


D = datetime.date


@dataclass(frozen=True)
class Unknown:
    """Not a search key: search() must refuse it, not ignore it."""


@pytest.mark.parametrize("key,expected", [
    (K.All(), [1, 2, 3, 4]),
    (K.Recent(), [3, 4]),
    (K.Old(), [1, 2]),
    (K.New(), [3]),
    (K.Flag("\\Seen"), [1, 4]),
    (K.Flag("\\Seen", False), [2, 3]),
    (K.Flag("$work"), [2]),
    (K.Flag("$Work", False), [1, 3, 4]),
    (K.Flag("\\Draft"), []),
    (K.Date("internal", "BEFORE", D(2022, 2, 3)), [1]),
    (K.Date("internal", "ON", D(2022, 2, 3)), [2]),
    (K.Date("internal", "SINCE", D(2022, 2, 4)), [3, 4]),
    (K.Date("sent", "ON", D(2022, 2, 1)), [1]),  # the date as written, not converted to UTC
    (K.Date("sent", "BEFORE", D(2022, 2, 3)), [1]),
    (K.Date("sent", "SINCE", D(2022, 2, 2)), [2]),  # messages without Date: never match
    (K.Size("LARGER", 300), [4]),
    (K.Size("SMALLER", 142), [3]),
    (K.Size("SMALLER", 143), [1, 3]),
    (K.Size("LARGER", 313), []),
    (K.Seq(((2, 3),)), [2, 3]),
    (K.Seq(((None, None),)), [4]),
    (K.Seq(((3, None),)), [3, 4]),
    (K.Seq(((None, 3),)), [3, 4]),  # reversed range normalised
    (K.Seq(((1, 1), (4, 4), (2, 1))), [1, 2, 4]),
    (K.Seq(((7, 9),)), []),
    (K.Uid(((5, 9),)), [2, 3]),
    (K.Uid(((None, None),)), [4]),
    (K.Uid(((20, None),)), [4]),  # 20:* is 10:20 when the largest uid is 10
    (K.Uid(((4, 4), (11, 12))), []),
    (K.Header("From", "alice"), [1]),
    (K.Header("from", "MÜLLER"), [2]),  # RFC 2047 decoded, case-insensitive
    (K.Header("SUBJECT", "grüße"), [2]),
    (K.Header("Subject", "CAFÉ"), [3]),  # raw UTF-8 header
    (K.Header("From", "zoë"), [3]),
    (K.Header("To", ""), [1]),  # empty value: the field exists
    (K.Header("X-Empty", ""), [3]),
    (K.Header("Subject", "report quarterly"), []),
    (K.Header("Subject", "rly rep"), [1]),
    (K.Body("numbers"), [1]),
    (K.Body("schöne"), [2]),  # quoted-printable + charset
    (K.Body("NAÏVE"), [3]),
    (K.Body("hidden treasure"), [4]),  # base64 text/html part
    (K.Body("secret binary"), []),  # attachments are not text
    (K.Body("Quarterly"), []),  # BODY does not look at the header
    (K.Text("Quarterly"), [1]),
    (K.Text("jürgen"), [2]),
    (K.Text("schöne"), [2]),
    (K.Not(K.Flag("\\Seen")), [2, 3]),
    (K.Or(K.Seq(((1, 1),)), K.Uid(((9, 9),))), [1, 3]),
    (K.Or(K.Header("From", "alice"), K.Or(K.Body("naïve"), K.Flag("\\Deleted"))), [1, 3, 4]),
    (K.Not(K.Or(K.Recent(), K.Not(K.Flag("\\Seen")))), [1]),
    (K.And((K.Flag("\\Seen"), K.Recent())), [4]),
    (K.And((K.Date("internal", "SINCE", D(2022, 2, 3)), K.Not(Unknown()))), None),
    (K.And((K.Body("e"), K.Seq(((2, 2),)), K.All())), [2]),
    (K.And((K.And((K.Or(K.Seq(((1, 2),)), K.Seq(((4, 4),))),)), K.Not(K.Seq(((None, None),))))), [1, 2]),
])
def test_keys(box, key, expected):
    if expected is None:
        with pytest.raises(ValueError):
            run(box, key)
        return
    assert run(box, key) == expected


def test_header_field_forms():
    folder = FakeFolder()
    view = [folder.add(b"subject : Folded\n  Line\nX-A: one\nX-A: two\nX-AB: three\n\nbody subject: no\n", uid=1),
            folder.add(b"X-Sub: subject: x\n\nSubject: in body\n", uid=2)]

    def s(field: str, value: str) -> list[int]:
        return search(folder, view, K.Header(field, value), set(), None)
    assert s("SUBJECT", "folded line") == [1]
    assert s("x-a", "two") == [1]
    assert s("x-a", "three") == []
    assert s("subject", "no") == []
    assert s("Subject", "") == [1]
    assert s("x-sub", "SUBJECT") == [2]


def test_star_on_empty_mailbox_matches_nothing():
    folder = FakeFolder()
    assert search(folder, [], K.Seq(((None, None),)), set(), None) == []
    assert search(folder, [], K.Uid(((1, None),)), set(), None) == []
    assert search(folder, [], K.All(), set(), None) == []


def test_cheap_keys_do_not_touch_messages(box):
    folder, view = box
    run(box, K.And((K.Flag("\\Seen"), K.Uid(((1, 5),)), K.Size("LARGER", 10),
                    K.Date("internal", "SINCE", D(2020, 1, 1)))))
    assert folder.opens == 0 and not folder.cache
    # a header key after a failing cheap key is never evaluated
    run(box, K.And((K.Header("From", "x"), K.Flag("\\Draft"))))
    run(box, K.Or(K.All(), K.Body("x")))
    assert folder.opens == 0


def test_header_search_is_served_from_the_cache(box):
    folder, view = box
    first = run(box, K.Header("Subject", "report"))
    assert folder.opens == len(view)
    assert run(box, K.Header("Subject", "report")) == first
    assert run(box, K.Header("From", "müller")) == [2]
    assert folder.opens == len(view)


def test_tricky_messages_never_raise():
    folder = FakeFolder()
    view = [folder.add(raw, uid=uid) for uid, raw in enumerate(TRICKY.values(), 1)]
    for key in [K.Header("Subject", "münchen"), K.Text("x"), K.Body("first"),
                K.Date("sent", "ON", D(1994, 2, 7)), K.Header("To", "")]:
        search(folder, view, key, set(), None)
    assert search(folder, view, K.Header("Subject", "münchen"), set(), None) == [1]
    assert search(folder, view, K.Date("sent", "ON", D(1994, 2, 7)), set(), None) == [1]
    assert search(folder, view, K.Body("inner part one"), set(), None) == [3]


def test_linear_in_messages():
    folder = FakeFolder()
    view = [folder.add(b"Subject: s%d\n\nbody\n" % uid, flags={"\\Seen"} if uid % 2 else set(), uid=uid)
            for uid in range(1, 100001)]
    key = K.And((K.Or(K.Uid(((10, 20), (None, None))), K.Flag("\\Seen")), K.Not(K.Seq(((1, 5000),)))))
    start = time.perf_counter()
    res = search(folder, view, key, set(), None)
    took = time.perf_counter() - start
    assert len(res) == 47500 + 1  # odd uids above 5000, plus the last (even) message
    assert took < 2.0
    assert folder.opens == 0
