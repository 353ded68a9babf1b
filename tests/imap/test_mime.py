"""The MIME structure parser: offsets, boundaries, addresses, decoding; a
1,000-message realistic corpus; arbitrary bytes never raise."""

from __future__ import annotations

import email
import email.policy
import mailbox
import os
import re
import subprocess
import sys

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mailsrv.imap import envelope, headers, mime
from mailsrv.imap import fetchdata as fd
from mailsrv.store.crlf import to_crlf
from tests.fakestore import FakeFolder
from tests.imap.tricky_messages import TRICKY

MAKE_MBOX = "/work/shared/reference/make-mbox.py"


# --- an IMAP s-expression reader, to check what we render ------------------------------

_ATOM = re.compile(rb"[^\s()\"{}]+")


def sexp(data: bytes):
    """Parse one parenthesised IMAP value; raise ValueError if unbalanced or
    if anything is left over."""
    value, i = _value(data, 0)
    if i != len(data):
        raise ValueError("trailing bytes at %d" % i)
    return value


def _value(d: bytes, i: int):
    c = d[i:i + 1]
    if c == b"(":
        out = []
        i += 1
        while True:
            if d[i:i + 1] == b")":
                return out, i + 1
            if out:
                if d[i:i + 1] == b" ":
                    i += 1
                elif d[i - 1:i] != b")":
                    raise ValueError("missing space at %d" % i)
            v, i = _value(d, i)
            out.append(v)
    if c == b'"':
        j = i + 1
        buf = bytearray()
        while d[j:j + 1] != b'"':
            if d[j:j + 1] in (b"", b"\r", b"\n"):
                raise ValueError("bad quoted string")
            if d[j:j + 1] == b"\\":
                j += 1
            buf += d[j:j + 1]
            j += 1
        return bytes(buf), j + 1
    if c == b"{":
        m = re.compile(rb"\{(\d+)\}\r\n").match(d, i)
        n = int(m.group(1))
        start = m.end()
        if start + n > len(d):
            raise ValueError("short literal")
        return d[start:start + n], start + n
    m = _ATOM.match(d, i)
    if not m:
        raise ValueError("unexpected %r at %d" % (c, i))
    v = m.group(0)
    if v != b"NIL" and not v.isdigit():
        raise ValueError("bad atom %r" % v)
    return (None if v == b"NIL" else int(v)), m.end()


# --- unit tests --------------------------------------------------------------------------

def test_offsets_of_nested_parts():
    data = to_crlf(TRICKY["nested"])
    root = mime.parse(data)
    assert root.is_multipart and len(root.children) == 3
    alt, fwd, pdf = root.children
    assert [c.subtype for c in alt.children] == ["plain", "html"]
    assert data[alt.children[0].bstart:alt.children[0].end] == b"plain text\r\ntwo lines"
    assert data[alt.bstart:alt.end].endswith(b"--inner--\r\n")  # Dovecot keeps the close line's CRLF
    assert fwd.message is not None and fwd.message.hstart == fwd.bstart
    assert [c.maintype for c in fwd.message.children] == ["text", "application"]
    assert data[pdf.hstart:pdf.bstart].startswith(b"Content-Type: application/pdf")
    assert data[pdf.bstart:pdf.end] == b"JVBERi0="


def test_boundary_must_be_followed_by_padding_only():
    data = to_crlf(b"Content-Type: multipart/mixed; boundary=ab\n\n--ab\n\nx\n--abc\n\ny\n--ab  \n\nz\n--ab--\n")
    root = mime.parse(data)
    assert [data[c.bstart:c.end] for c in root.children] == [b"x\r\n--abc\r\n\r\ny", b"z"]


def test_multipart_without_usable_boundary_has_one_empty_part():
    for name in ("no_boundary", "boundary_absent"):
        data = to_crlf(TRICKY[name])
        root = mime.parse(data)
        assert len(root.children) == 1
        c = root.children[0]
        assert c.bstart == c.end == len(data)


def test_parse_fields_keeps_raw_and_unfolds_value():
    h = b"A: 1\r\nB:  two\r\n  lines \r\n\tmore\r\njunk line\r\nA: 3\r\n\r\n"
    f = headers.parse_fields(h)
    assert [n for n, _, _ in f] == ["a", "b", "", "a"]
    assert f[1] == ("b", b"B:  two\r\n  lines \r\n\tmore\r\n", b"two lines more")
    assert b"".join(r for _, r, _ in f) + b"\r\n" == h


def test_header_fields_not():
    h = b"A: 1\r\nB: 2\r\n x\r\nC: 3\r\n\r\n"
    assert headers.header_fields(h, ["b"], False) == b"B: 2\r\n x\r\n\r\n"
    assert headers.header_fields(h, ["B", "a"], True) == b"C: 3\r\n\r\n"


@pytest.mark.parametrize("value,expected", [
    (b"a@b.c", [(None, None, b"a", b"b.c")]),
    (b'"Last, First" <f@x.org>', [(b"Last, First", None, b"f", b"x.org")]),
    (b"John Q. Public <jqp@x>", [(b"John Q. Public", None, b"jqp", b"x")]),
    (b"a@b (Comment Name)", [(b"Comment Name", None, b"a", b"b")]),
    (b"<@r1,@r2:u@h>", [(None, b"@r1,@r2", b"u", b"h")]),
    (b"G: ;", [(None, None, b"G", None), (None, None, None, None)]),
    # no comma after the group: Dovecot stops there (tests/fixtures/dovecot-addresses.json)
    (b"G: a@b, c@d; e@f", [(None, None, b"G", None), (None, None, b"a", b"b"), (None, None, b"c", b"d"),
                          (None, None, None, None)]),
    (b"=?utf-8?q?J=C3=BC?= <j@x>", [(b"=?utf-8?q?J=C3=BC?=", None, b"j", b"x")]),
    (b"\xc3\xa9 <e@x>", [(b"\xc3\xa9", None, b"e", b"x")]),
    (b"unterminated <a@b", [(b"unterminated", None, b"a", b"SYNTAX_ERROR")]),  # as Dovecot (the fixture)
    (b"", []),
])
def test_parse_addresses(value, expected):
    assert envelope.parse_addresses(value) == expected


@pytest.mark.parametrize("raw,text", [
    (b"=?utf-8?q?Gr=C3=BC=C3=9Fe?= aus", "Grüße aus"),
    (b"=?ISO-8859-1?B?SvxyZ2Vu?=", "Jürgen"),
    (b"=?utf-8?q?a?= =?utf-8?q?b?=", "ab"),
    (b"=?utf-8?q?a_b?= c", "a b c"),
    (b"caf\xc3\xa9", "café"),
    (b"caf\xe9", "café"),
    (b"=?x-unknown?q?abc?=", "abc"),
    (b"=?utf-8?b?!!!?=", "=?utf-8?b?!!!?="),
])
def test_decode_header_value(raw, text):
    assert headers.decode_header_value(raw) == text


def test_istr_quotes_or_literals():
    assert headers.istr(None) == b"NIL"
    assert headers.istr(b"plain text") == b'"plain text"'
    assert headers.istr(b"") == b'""'
    assert headers.istr(b'a "q"') == b'{5}\r\na "q"'
    assert headers.istr(b"\xc3\xa9") == b"{2}\r\n\xc3\xa9"


def test_decode_body_transfer_encodings():
    data = to_crlf(b"Content-Type: text/plain; charset=utf-8\nContent-Transfer-Encoding: quoted-printable\n\n"
                   b"caf=C3=A9 soft=\nbreak\n")
    root = mime.parse(data)
    assert mime.decode_body(data, root) == "café softbreak\r\n"
    data = to_crlf(b"Content-Type: text/plain; charset=iso-8859-1\nContent-Transfer-Encoding: base64\n\n"
                   b"Y2Fm6Q==\n")
    assert mime.decode_body(data, mime.parse(data)) == "café"


def test_deep_nesting_is_bounded():
    depth = 300
    raw = b"".join(b"Content-Type: multipart/mixed; boundary=b%d\n\n--b%d\n" % (i, i) for i in range(depth))
    data = to_crlf(raw + b"\nleaf\n")
    root = mime.parse(data)
    bs = mime.bodystructure(data, root, True)
    sexp(bs)
    d, p = 0, root
    while p.children:
        p, d = p.children[0], d + 1
    assert d <= mime.MAX_DEPTH + 1


# --- arbitrary input ----------------------------------------------------------------------

_PIECES = st.sampled_from([
    b"Content-Type: multipart/mixed; boundary=b\r\n", b"Content-Type: message/rfc822\n",
    b"Content-Type: text/plain; charset=\"x\"\n", b"--b\n", b"--b--\n", b"\n", b"\r\n", b"From: a <b@c>, (x\n",
    b"Subject: =?utf-8?q?x?=\n", b" folded\n", b"\xff\xfe", b"To: g: a@b;\n", b"\r", b"\"", b"(", b"<", b":",
    b"Content-Disposition: attachment; filename=x\n", b"Content-Language: en\n"])


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(st.binary(max_size=400), st.lists(st.one_of(_PIECES, st.binary(max_size=8)), max_size=40)
                 .map(b"".join)))
def test_arbitrary_bytes_never_raise(raw):
    folder = FakeFolder()
    info = folder.add(raw, uid=1)
    data = to_crlf(raw)
    env = fd.envelope(folder, info)
    bs = fd.bodystructure(folder, info, True)
    b = fd.bodystructure(folder, info, False)
    for v in (env, bs, b):
        assert isinstance(sexp(v), list)
    assert len(sexp(env)) == 10
    head = fd.section(folder, info, (), "HEADER")
    assert head + fd.section(folder, info, (), "TEXT") == data
    for part in [(1,), (2,), (1, 1), (2, 1)]:
        for text in (None, "MIME", "HEADER", "TEXT", "HEADER.FIELDS"):
            assert isinstance(fd.section(folder, info, part, text, ("from",)), bytes)
    headers.decode_header_value(data)
    for p in mime.text_parts(mime.parse(data)):
        mime.decode_body(data, p)


# --- realistic corpus ---------------------------------------------------------------------

@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    if not os.path.exists(MAKE_MBOX):
        pytest.skip("make-mbox.py not available")
    path = tmp_path_factory.mktemp("corpus") / "corpus.mbox"
    subprocess.run([sys.executable, MAKE_MBOX, "-n", "1000", "-o", str(path)], check=True,
                   capture_output=True, timeout=120)
    box = mailbox.mbox(str(path), create=False)
    try:
        return [box.get_bytes(k) for k in box.keys()]
    finally:
        box.close()


def _walk(data: bytes, p: mime.Part, num: tuple, out: list) -> None:
    out.append((num, p))
    if p.children:
        for i, c in enumerate(p.children, 1):
            _walk(data, c, num + (i,), out)
    elif p.message is not None:
        inner = p.message
        if inner.children:
            for i, c in enumerate(inner.children, 1):
                _walk(data, c, num + (i,), out)
        else:
            out.append((num + (1,), inner))


def _leaf_types(msg) -> list:
    return [part.get_content_type() for part in msg.walk() if not part.is_multipart()]


def test_corpus_sections_are_consistent(corpus):
    assert len(corpus) == 1000
    kinds = set()
    for uid, raw in enumerate(corpus, 1):
        folder = FakeFolder()
        info = folder.add(raw, uid=uid)
        data = to_crlf(raw)
        assert fd.section(folder, info, (), None) == data
        head = fd.section(folder, info, (), "HEADER")
        text = fd.section(folder, info, (), "TEXT")
        assert head + text == data and head.endswith(b"\r\n\r\n")
        env = sexp(fd.envelope(folder, info))
        assert len(env) == 10 and env[2]  # every corpus message has a From
        bs = sexp(fd.bodystructure(folder, info, True))
        sexp(fd.bodystructure(folder, info, False))
        root = mime.parse(data)
        parts: list = []
        _walk(data, root, (), parts)
        for num, p in parts:
            if not num:
                continue
            body = fd.section(folder, info, num, None)
            mime_h = fd.section(folder, info, num, "MIME")
            assert body == data[p.bstart:p.end]
            assert mime_h == data[p.hstart:p.bstart]
            assert data.find(mime_h + body, p.hstart) == p.hstart
            if p.message is not None:
                kinds.add("rfc822")
                h = fd.section(folder, info, num, "HEADER")
                assert h + fd.section(folder, info, num, "TEXT") == body
        if root.is_multipart:
            kinds.add("multipart")
            assert isinstance(bs[0], list)
            py = email.message_from_bytes(raw, policy=email.policy.compat32)
            leaves = [p for _, p in parts if not p.children and p.message is None]
            ours = ["%s/%s" % (p.maintype.lower(), p.subtype.lower()) for p in leaves]
            assert [t for t in _leaf_types(py) if t != "message/rfc822"] == \
                [t for t in ours if t != "message/rfc822"]
    assert kinds == {"rfc822", "multipart"}


def test_fast_address_path_agrees_with_full_parser(corpus, monkeypatch):
    values = [b"a@b", b"A B <a@b>", b'"X, Y" <a@b>', b"a@b, c@d", b"a@b,", b"  A   B  <a@b> , c@d",
              b'"" <a@b>', b"<a@b>", b"a@b (x)", b"J. Q <a@b>", b"x", b"A <a@b>,, c@d"]
    for raw in corpus[:300]:
        data = to_crlf(raw)
        for n, _, v in headers.parse_fields(data[:headers.header_end(data)]):
            if n in ("from", "to", "cc", "reply-to", "sender"):
                values.append(v)
    fast = [envelope.parse_addresses(v) for v in values]
    monkeypatch.setattr(envelope, "_simple_addresses", lambda v: None)
    assert [envelope.parse_addresses(v) for v in values] == fast


def test_multipart_with_only_a_close_delimiter_has_one_empty_part():
    data = to_crlf(b"Content-Type: multipart/mixed; boundary=b\r\n\n--b--\n")
    root = mime.parse(data)
    assert mime.bodystructure(data, root, False) == (
        b'(("text" "plain" ("charset" "us-ascii") NIL NIL "7bit" 0 0) "mixed")')
    assert mime.bodystructure(data, root, True).startswith(
        b'(("text" "plain" ("charset" "us-ascii") NIL NIL "7bit" 0 0 NIL NIL NIL NIL) "mixed"')
