"""Sort and thread keys: what is taken from a header."""

from __future__ import annotations

import calendar

import pytest

from mailsrv.imap import sortdata as D
from tests.fakestore import FakeFolder


def keys(header: bytes) -> dict[str, object]:
    return {k: D.decode(k, v) for k, v in D.keys_of(header).items()}


def test_every_key_from_one_header() -> None:
    k = keys(b"Date: Tue, 1 Feb 2022 23:30:00 -0800\r\n"
             b"Subject: Re: [list] Quarterly report (fwd)\r\n"
             b"From: =?utf-8?q?J=C3=BCrgen?= <Juergen@Example.DE>, other@example.org\r\n"
             b"To: group: Bob@example.org, carol@example.org;\r\n"
             b"Cc: <dave@example.org>\r\n"
             b"Message-ID: <m1@example.org>\r\nReferences: <r1@x> <r2@x>\r\n\r\n")
    assert k[D.DATE] == calendar.timegm((2022, 2, 2, 7, 30, 0))
    assert k[D.SUBJECT] == b"QUARTERLY REPORT"
    assert k[D.FROM] == b"JUERGEN"  # the addr-mailbox only, casemapped
    assert k[D.TO] == b"GROUP"  # a group's first "address" is its name, as in ENVELOPE
    assert k[D.CC] == b"DAVE"
    assert k[D.DISPLAYFROM] == "JU\u0308RGEN".encode()  # decoded, titlecased, decomposed
    assert k[D.DISPLAYTO] == b"GROUP"
    th = D.ThreadData.decode(k[D.THREAD])
    assert (th.msgid, th.refs, th.reply) == ("m1@example.org", ("r1@x", "r2@x"), True)


def test_missing_headers_give_empty_keys() -> None:
    k = keys(b"X-Other: 1\n\n")
    assert k[D.DATE] is None and k[D.SUBJECT] == b"" and k[D.FROM] == b"" and k[D.DISPLAYTO] == b""
    th = D.ThreadData.decode(k[D.THREAD])
    assert (th.msgid, th.refs, th.reply) == (None, (), False)


@pytest.mark.parametrize("value,expected", [
    (b"Tue, 1 Feb 2022 23:30:00 -0800", calendar.timegm((2022, 2, 2, 7, 30, 0))),
    (b"1 Feb 2022 23:30:00", calendar.timegm((2022, 2, 1, 23, 30, 0))),  # no zone: UTC
    (b"Tue, 1 Feb 2022 23:30:00 +0000 (UTC)", calendar.timegm((2022, 2, 1, 23, 30, 0))),
    (b"next tuesday", None),
    (b"", None),
    (None, None),
])
def test_sent_date(value: bytes | None, expected: int | None) -> None:
    assert D.sent_date(value) == expected
    assert D.decode_date(D.encode_date(expected)) == expected


def test_display_name_falls_back_to_the_address() -> None:
    assert keys(b"From: plain@example.org\n\n")[D.DISPLAYFROM] == b"PLAIN@EXAMPLE.ORG"
    assert keys(b'From: "" <quiet@example.org>\n\n')[D.DISPLAYFROM] == b"QUIET@EXAMPLE.ORG"
    assert keys(b'From: "Zed Zulu" <a@example.org>\n\n')[D.DISPLAYFROM] == b"ZED ZULU"
    assert keys(b"To: nobody\n\n")[D.DISPLAYTO] == b"NOBODY@MISSING_DOMAIN"


@pytest.mark.parametrize("value,ids", [
    (b"<a@b>", ["a@b"]),
    (b"  <a@b>  <c@d>", ["a@b", "c@d"]),
    (b"<a @ b>", ["a@b"]),  # whitespace inside removed
    (b"<no-at-sign> <x@y>", ["x@y"]),  # ids without @ are skipped
    (b'<"quoted local"@host>', ["quoted local@host"]),
    (b"<(comment)left@right>", ["left@right"]),
    (b"<broken@(oops>", []),
    (b"garbage", []),
    (b"<a@b", []),
    (b"", []),
])
def test_message_ids(value: bytes, ids: list[str]) -> None:
    assert D.message_ids(value) == ids


def test_in_reply_to_is_used_only_without_valid_references() -> None:
    th = D.ThreadData.decode(D.keys_of(b"References: <bad>\nIn-Reply-To: <p1@x> <p2@x>\n\n")[D.THREAD])
    assert th.refs == ("p1@x",)
    th = D.ThreadData.decode(D.keys_of(b"References: <r@x>\nIn-Reply-To: <p1@x>\n\n")[D.THREAD])
    assert th.refs == ("r@x",)


def test_thread_data_round_trip() -> None:
    for data in (D.ThreadData(None, (), False), D.ThreadData("a@b", ("c@d", "e@f"), True)):
        back = D.ThreadData.decode(data.encode())
        assert (back.msgid, back.refs, back.reply) == (data.msgid, data.refs, data.reply)


def test_read_header_stops_at_the_blank_line() -> None:
    f = FakeFolder()
    f.add(b"Subject: a\r\nX: b\r\n\r\n" + b"body " * 20000)
    f.add(b"\r\nno header")
    f.add(b"Subject: unterminated")
    assert D.read_header(f, 1) == b"Subject: a\r\nX: b\r\n"
    assert D.read_header(f, 2) == b""
    assert D.read_header(f, 3) == b"Subject: unterminated"
    assert f.bytes_read < 40000
