"""CATENATE (RFC 4469) with IMAP URLs (RFC 5092): parts from literals and
from the user's messages, MULTIAPPEND all or nothing, the bound, and every
error path; the URL parser."""

from __future__ import annotations

import pytest

from mailsrv.config import Config
from mailsrv.imap import imapurl
from tests.imap.harness import Client, tagged

M1 = b"From: foo@example.com\r\n\r\nHello world body\r\n"
M2 = (b"From: bar@example.com\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\n"
      b"Content-Type: text/plain\r\n\r\npart one\r\n--b--\r\n")


def session(config: Config | None = None) -> Client:
    c = Client(config=config)
    c.login()
    inbox = c.account.folders["INBOX"]
    inbox.add(M1)
    inbox.add(M2)
    c.cmd("c CREATE Out")
    return c


def out_box(c: Client) -> list[bytes]:
    box = c.account.folders["Out"]
    return [box.raw(u) for u in box.uids()]


def cat(c: Client, spec: str, *literals: bytes, mailbox: str = "Out") -> bytes:
    """APPEND with CATENATE; ``{}`` in spec are replaced by the literals (LITERAL+)."""
    line = f"a APPEND {mailbox} " + spec
    out = b""
    pieces = line.split("{}")
    data = pieces[0].encode()
    for lit, rest in zip(literals, pieces[1:], strict=True):
        data += b"{%d+}\r\n" % len(lit) + lit + rest.encode()
    out = c.send(data + b"\r\n")
    return tagged(out, "a")


def test_text_and_url_parts() -> None:
    c = session()
    assert cat(c, 'CATENATE (URL "/INBOX/;uid=1/;section=header" TEXT {})', b"body1\r\n").startswith(
        b"a OK [APPENDUID ")
    assert cat(c, 'CATENATE (TEXT {} URL "/INBOX;UIDVALIDITY=1000/;UID=1/;SECTION=TEXT")', b"X: y\r\n\r\n").startswith(
        b"a OK ")
    assert cat(c, 'CATENATE (URL "/INBOX/;uid=2/;section=1" URL "/INBOX/;uid=1/;partial=6.3")').startswith(b"a OK ")
    assert cat(c, 'CATENATE (URL "/INBOX/;uid=1")').startswith(b"a OK ")
    assert cat(c, 'CATENATE (URL "/INBOX/;uid=2/;partial=100000.1" TEXT {})', b"Hdr: x\r\n\r\nb\r\n").startswith(
        b"a OK ")
    assert cat(c, 'CATENATE (URL "imap://joe@localhost/INBOX/;uid=1/;section=HEADER.FIELDS%20(FROM)" TEXT {})',
               b"x\r\n").startswith(b"a OK ")
    assert out_box(c) == [
        b"From: foo@example.com\r\n\r\nbody1\r\n",
        b"X: y\r\n\r\nHello world body\r\n",
        b"part onefoo",
        M1,
        b"Hdr: x\r\n\r\nb\r\n",
        b"From: foo@example.com\r\n\r\nx\r\n",
    ]


def test_flags_date_and_multiappend() -> None:
    c = session()
    res = cat(c, '(\\Seen) "01-Jan-2020 10:00:00 +0000" CATENATE (TEXT {}) (\\Flagged) {}', b"A: 1\r\n\r\na\r\n",
              b"B: 2\r\n\r\nb\r\n")
    assert res.startswith(b"a OK [APPENDUID ") and res.endswith(b" 1:2] APPEND completed\r\n")
    box = c.account.folders["Out"]
    one, two = box.messages()
    assert one.flags == {"\\Seen"} and one.internaldate == 1577872800.0 and two.flags == {"\\Flagged"}
    assert out_box(c) == [b"A: 1\r\n\r\na\r\n", b"B: 2\r\n\r\nb\r\n"]


@pytest.mark.parametrize("url", [
    "/INBOX;uidvalidity=12345/;uid=1/;section=header",  # UIDVALIDITY changed
    "/INBOX/;uid=99",  # no such message
    "/Nope/;uid=1",  # no such mailbox
    "/INBOX/;uid=2/;section=7",  # no such part
    "/INBOX",  # not a message
    "imap://someone-else@localhost/INBOX/;uid=1",  # another user's
    "http://example.org/",
    "/INBOX/;uid=1/;section=bogus",
])
def test_bad_urls(url: str) -> None:
    c = session()
    res = cat(c, f'CATENATE (TEXT {{}} URL "{url}")', b"h: 1\r\n\r\n")
    assert res.startswith(b"a NO [BADURL " + url.encode() + b"] APPEND Bad URL: ")  # unquoted (RFC 4469)
    assert out_box(c) == []


def test_multiappend_is_all_or_nothing() -> None:
    c = session()
    res = cat(c, 'CATENATE (URL "/INBOX/;uid=1") CATENATE (URL "/INBOX/;uid=77")')
    assert res.startswith(b"a NO [BADURL /INBOX/;uid=77]")
    assert out_box(c) == []


def test_nonexistent_target_is_trycreate_before_urls() -> None:
    c = session()
    res = cat(c, 'CATENATE (URL "/INBOX;uidvalidity=1/;uid=1")', mailbox="Missing")
    assert res.startswith(b"a NO [TRYCREATE]")


def test_too_big() -> None:
    c = session(Config(auth_fail_delay=0, append_limit=60))
    assert cat(c, 'CATENATE (URL "/INBOX/;uid=1" URL "/INBOX/;uid=1")').startswith(b"a NO [TOOBIG]")
    assert cat(c, 'CATENATE (TEXT {} URL "/INBOX/;uid=1")', b"x" * 30).startswith(b"a NO [TOOBIG]")
    assert out_box(c) == []


def test_literal8_rules() -> None:
    c = session()
    assert cat(c, 'CATENATE (TEXT {} TEXT ~{})', b"A: 1\r\n\r\n", b"\x00x").startswith(b"a NO [UNKNOWN-CTE]")
    body = b"Content-Transfer-Encoding: binary\r\n\r\n\x00\x01"
    assert cat(c, 'CATENATE (TEXT ~{} URL "/INBOX/;uid=1/;section=text")', body).startswith(b"a OK ")
    assert out_box(c) == [b"Content-Transfer-Encoding: base64\r\n\r\nAAFIZWxsbyB3b3JsZCBib2R5DQo="]


@pytest.mark.parametrize("line", ["a APPEND Out CATENATE ()", "a APPEND Out CATENATE (TEXT)",
                                  'a APPEND Out CATENATE (FOO "x")', "a APPEND Out CATENATE TEXT",
                                  'a APPEND Out CATENATE (URL "/INBOX/;uid=1"'])
def test_syntax(line: str) -> None:
    c = session()
    assert c.cmd(line).startswith(b"a BAD ")


def test_capability() -> None:
    c = session()
    assert b" CATENATE" in c.cmd("c CAPABILITY") and b" BINARY" in c.cmd("c CAPABILITY")


# ---------------------------------------------------------------- URLs

def test_url_parts() -> None:
    u = imapurl.parse("imap://fred;AUTH=*@mail.example.org:993/Lists%2Fpy;UIDVALIDITY=7/;UID=20/;SECTION=1.2.MIME"
                      "/;PARTIAL=10.20;EXPIRE=2026-01-01T00:00:00Z;URLAUTH=user+fred:internal:0123abcd")
    assert (u.user, u.host, u.port, u.mailbox, u.uidvalidity, u.uid) == ("fred", "mail.example.org", 993, "Lists/py",
                                                                          7, 20)
    assert (u.part, u.text, u.partial) == ((1, 2), "MIME", (10, 20))
    assert (u.expire, u.access, u.mechanism, u.token) == ("2026-01-01T00:00:00Z", "user+fred", "internal", "0123abcd")
    assert imapurl.rump("imap://a@b/X/;uid=1;urlauth=anonymous:internal:00") == "imap://a@b/X/;uid=1;urlauth=anonymous"
    h = imapurl.parse("/INBOX/;uid=1/;section=HEADER.FIELDS%20(From%20To)")
    assert (h.part, h.text, h.fields, h.partial) == ((), "HEADER.FIELDS", ("FROM", "TO"), None)
    assert imapurl.parse("/&AOQ-/;uid=1").mailbox == "\u00e4"
    assert imapurl.parse("/INBOX/;uid=1/;partial=5").partial == (5, None)


@pytest.mark.parametrize("url", ["", "/", "/INBOX", "/INBOX/;uid=0", "/INBOX/;uid=x", "/INBOX/;uid=1/;uid=2",
                                 "/INBOX/;uid=1/;section=1.0", "/INBOX/;uid=1/;section=MIME",
                                 "/INBOX/;uid=1/;partial=.5", "/INBOX/;uid=1/;foo=1", "imap://host",
                                 "/INBOX;uidvalidity=0/;uid=1", "/INBOX/;uid=1/;section=HEADER.FIELDS",
                                 "/&Jjo!/;uid=1", "ftp://host/INBOX/;uid=1"])
def test_bad_url_syntax(url: str) -> None:
    with pytest.raises(imapurl.BadUrl):
        imapurl.parse(url)
