"""BINARY (RFC 3516): decoded parts, sizes, partials, literal8, parts
inside converted, UNKNOWN-CTE, APPEND of a literal8, and every error path."""

from __future__ import annotations

import base64

import pytest

from mailsrv.imap import binary, mime
from tests.imap.harness import Client, tagged

MULTI = (b"From: a@example.org\r\nMime-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"b\"\r\n\r\n"
         b"pre\r\n--b\r\nContent-Type: text/plain\r\nContent-Transfer-Encoding: base64\r\n\r\n"
         b"aGVs\r\n bG8g d29y\r\nbGQ=\r\n"
         b"--b\r\nContent-Type: text/plain\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n"
         b"caf=C3=A9 =\r\nau  \r\nlait=\r\n\r\n"
         b"--b\r\nContent-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n\r\n"
         + base64.b64encode(b"\x00\x01\x02binary\xff") + b"\r\n"
         b"--b\r\nContent-Type: message/rfc822\r\n\r\n"
         b"Subject: inner\r\nContent-Type: text/plain\r\nContent-Transfer-Encoding: Base64\r\n\r\naW5uZXI=\r\n"
         b"--b\r\nContent-Type: text/plain\r\nContent-Transfer-Encoding: x-uuencode\r\n\r\nbegin 644\r\n"
         b"--b\r\nContent-Type: text/plain\r\n\r\nplain 7bit\r\n"
         b"--b--\r\nepilogue\r\n")


@pytest.fixture
def c() -> Client:
    client = Client()
    client.login()
    client.account.folders["INBOX"].add(MULTI)
    client.select()
    return client


@pytest.mark.parametrize("item,expected", [
    # decoded data goes as a literal8, as Dovecot sends it; plain parts as literals
    ("BINARY.PEEK[1]", b"BINARY[1] ~{11}\r\nhello world"),
    ("BINARY.PEEK[2]", b"BINARY[2] ~{14}\r\ncaf\xc3\xa9 au\r\nlait"),  # soft breaks; trailing spaces go
    ("BINARY.PEEK[3]", b"BINARY[3] ~{10}\r\n\x00\x01\x02binary\xff"),
    ("BINARY.PEEK[4.1]", b"BINARY[4.1] ~{5}\r\ninner"),  # the part inside the attached message
    ("BINARY.PEEK[6]", b"BINARY[6] {10}\r\nplain 7bit"),
    ("BINARY.PEEK[1]<3.5>", b"BINARY[1]<3> ~{5}\r\nlo wo"),
    ("BINARY.PEEK[3]<3.100>", b"BINARY[3]<3> ~{7}\r\nbinary\xff"),
    ("BINARY.PEEK[1]<50.2>", b"BINARY[1]<50> ~{0}\r\n"),
    ("BINARY.SIZE[1]", b"BINARY.SIZE[1] 11"),
    ("BINARY.SIZE[3]", b"BINARY.SIZE[3] 10"),
    ("BINARY.PEEK[9]", b"BINARY[9] {0}\r\n"),  # no such part: empty, as Dovecot
])
def test_parts(c: Client, item: str, expected: bytes) -> None:
    out = c.cmd(f"f FETCH 1 ({item})")
    assert out == b"* 1 FETCH (" + expected + b")\r\nf OK FETCH completed\r\n"


def test_a_message_part_is_converted_inside() -> None:
    data = MULTI
    root = mime.parse(data)
    four = binary.convert(data, root.children[3], False)
    assert four == (b"Subject: inner\r\nContent-Type: text/plain\r\nContent-Transfer-Encoding: binary\r\n\r\ninner")


def test_binary_of_the_whole_message(c: Client) -> None:
    # one undecodable part spoils the whole message
    assert c.cmd("f FETCH 1 (BINARY.PEEK[])") == b"f NO [UNKNOWN-CTE] FETCH Unknown Content-Transfer-Encoding\r\n"
    good = MULTI.replace(b"x-uuencode", b"7bit")
    c.account.folders["INBOX"].drop_external(good)
    c.cmd("n NOOP")
    out = c.cmd("f FETCH 2 (BINARY.SIZE[] BINARY.PEEK[])")
    converted = binary.section(good, ())
    assert converted is not None
    assert out == b"* 2 FETCH (BINARY.SIZE[] %d BINARY[] ~{%d}\r\n%s)\r\nf OK FETCH completed\r\n" % (
        len(converted), len(converted), converted)
    assert b"Content-Transfer-Encoding: binary\r\n\r\nhello world\r\n--b" in converted
    assert b"aGVs" not in converted and b"aW5uZXI=" not in converted


def test_unknown_encoding(c: Client) -> None:
    assert c.cmd("f FETCH 1 (BINARY.PEEK[5])") == b"f NO [UNKNOWN-CTE] FETCH Unknown Content-Transfer-Encoding\r\n"
    assert c.cmd("f FETCH 1 (BINARY.SIZE[5])") == b"f NO [UNKNOWN-CTE] FETCH Unknown Content-Transfer-Encoding\r\n"
    assert c.cmd("f FETCH 1 (BODY.PEEK[5])").endswith(b"f OK FETCH completed\r\n")  # BODY is untouched


def test_broken_base64_is_undecodable() -> None:
    client = Client()
    client.login()
    client.account.folders["INBOX"].add(b"Content-Transfer-Encoding: base64\r\n\r\nno!base64*here\r\n")
    client.select()
    assert client.cmd("f FETCH 1 BINARY.PEEK[1]").startswith(b"f NO [UNKNOWN-CTE]")


def test_binary_sets_seen_and_peek_does_not(c: Client) -> None:
    out = c.cmd("f FETCH 1 (BINARY.PEEK[1] BINARY.SIZE[1])")
    assert b"FLAGS" not in out
    out = c.cmd("f FETCH 1 (BINARY[1])")
    assert b"FLAGS (\\Seen \\Recent)" in out


@pytest.mark.parametrize("item", ["BINARY", "BINARY[HEADER]", "BINARY[1.MIME]", "BINARY[1", "BINARY.SIZE[1]<0.5>",
                                  "BINARY[0]", "BINARY[1.]", "BINARY[1]<0.0>", "BINARY.FOO[1]"])
def test_bad_items(c: Client, item: str) -> None:
    assert c.cmd(f"f FETCH 1 ({item})").startswith(b"f BAD "), item


@pytest.mark.parametrize("raw,decoded", [
    (b"hello  \r\nbar=\r\n\r\nfoo\t=\r\nbar\r\nfoo\t \t= \r\n=62\r\nfoo = \t\r\nbar\r\nfoo =\r\n=62\r\nfoo  \r\n"
     b"bar=\r\n\r\nfoo_bar\r\n",
     b"hello\r\nbar\r\nfoo\tbar\r\nfoo\t \tb\r\nfoo bar\r\nfoo b\r\nfoo\r\nbar\r\nfoo_bar\r\n"),  # imaptest's case
    (b"a=3D=3d\nb", b"a==\r\nb"),  # lower-case hex allowed, bare LF becomes CRLF
    (b"bad =ZZ and =4", b"bad =ZZ and =4"),  # kept as it stands
])
def test_quoted_printable(raw: bytes, decoded: bytes) -> None:
    assert binary.qp_decode(raw) == decoded


def append(client: Client, data: bytes, literal8: bool = True) -> bytes:
    return client.send(b"a APPEND INBOX %s{%d+}\r\n" % (b"~" if literal8 else b"", len(data)) + data + b"\r\n")


BIN = (b"From: user@domain.org\r\nMime-Version: 1.0\r\nContent-Type: application/octet-stream\r\n"
       b"Content-Transfer-Encoding: binary\r\n\r\n\x00-\xe4\n\r\n")


def test_append_literal8_stores_base64_and_gives_the_octets_back() -> None:
    client = Client()
    client.login()
    assert tagged(append(client, BIN), "a").startswith(b"a OK [APPENDUID ")
    client.select()
    stored = client.account.folders["INBOX"].raw(1)
    assert b"Content-Transfer-Encoding: base64\r\n\r\nAC3kCg0K" in stored  # as Dovecot stores it
    out = client.cmd("f FETCH 1 (BINARY.SIZE[1] BINARY.PEEK[1] BODY.PEEK[1])")
    assert out == (b"* 1 FETCH (BINARY.SIZE[1] 6 BINARY[1] ~{6}\r\n\x00-\xe4\n\r\n BODY[1] {8}\r\nAC3kCg0K)\r\n"
                   b"f OK FETCH completed\r\n")


def test_a_plain_literal_is_stored_as_sent() -> None:
    client = Client()
    client.login()
    append(client, BIN.replace(b"\x00", b"0"), literal8=False)
    assert b"Content-Transfer-Encoding: binary" in client.account.folders["INBOX"].raw(1)


def test_multipart_binary_parts_are_encoded_and_others_kept() -> None:
    msg = (b"Content-Type: multipart/mixed; boundary=x\r\n\r\n--x\r\nContent-Type: text/plain\r\n\r\nkeep me\r\n"
           b"--x\r\nContent-Transfer-Encoding: binary\r\nContent-Type: image/png\r\n\r\n" + bytes(range(256)) * 2
           + b"\r\n--x--\r\n")
    stored = binary.store_form(msg)
    assert b"keep me" in stored and b"Content-Transfer-Encoding: base64\r\nContent-Type: image/png" in stored
    assert max(len(line) for line in stored.split(b"\r\n")) <= 76
    assert binary.section(stored, (2,)) == bytes(range(256)) * 2
