"""FETCH data (ENVELOPE, BODYSTRUCTURE, BODY[section]) against Dovecot's
answers for tricky messages, plus the cache and read-only-the-header rules."""

from __future__ import annotations

import re

import pytest
from twisted.internet import defer
from twisted.trial import unittest

from mailsrv.imap import fetchdata as fd
from mailsrv.store import Store
from mailsrv.store.crlf import to_crlf
from tests.fakestore import FakeFolder
from tests.imap.tricky_messages import DOVECOT, TRICKY

_ITEM = re.compile(r"BODY\.PEEK\[([\d.]*?)\.?(MIME|HEADER\.FIELDS\.NOT|HEADER\.FIELDS|HEADER|TEXT)?"
                   r"(?: \((.*)\))?\]$")


def _render(folder, info, item: str) -> bytes:
    """What our server would put in the FETCH response for ``item``."""
    if item == "ENVELOPE":
        return b"ENVELOPE " + fd.envelope(folder, info)
    if item == "BODYSTRUCTURE":
        return b"BODYSTRUCTURE " + fd.bodystructure(folder, info, True)
    if item == "BODY":
        return b"BODY " + fd.bodystructure(folder, info, False)
    m = _ITEM.match(item)
    part = tuple(int(x) for x in m.group(1).split(".") if x)
    fields = tuple(m.group(3).split()) if m.group(3) else ()
    data = fd.section(folder, info, part, m.group(2), fields)
    label = re.sub(r"\((.*)\)", lambda mm: "(" + mm.group(1).upper() + ")", item.replace(".PEEK", ""))
    return label.encode() + b" {%d}\r\n" % len(data) + data


@pytest.mark.parametrize("name,item", sorted(DOVECOT))
def test_same_as_dovecot(name, item):
    folder = FakeFolder()
    info = folder.add(TRICKY[name], uid=7)
    assert _render(folder, info, item) == DOVECOT[(name, item)]


@pytest.mark.parametrize("name,item", [k for k in sorted(DOVECOT) if k[1] in ("ENVELOPE", "BODYSTRUCTURE", "BODY")])
def test_same_from_cache(name, item):
    folder = FakeFolder()
    info = folder.add(TRICKY[name], uid=7)
    _render(folder, info, item)
    opens = folder.opens
    assert _render(folder, info, item) == DOVECOT[(name, item)]
    assert folder.opens == opens


def test_warm_envelope_never_opens_a_file():
    folder = FakeFolder()
    infos = [folder.add(raw, uid=uid) for uid, raw in enumerate(TRICKY.values(), 1)]
    cold = [fd.envelope(folder, i) + fd.bodystructure(folder, i, True) + fd.bodystructure(folder, i, False)
            for i in infos]
    folder.opens = 0
    warm = [fd.envelope(folder, i) + fd.bodystructure(folder, i, True) + fd.bodystructure(folder, i, False)
            for i in infos]
    assert warm == cold
    assert folder.opens == 0
    assert {k for _, k in folder.cache} == {fd.HEADER, fd.ENVELOPE, fd.BODYSTRUCTURE, fd.BODY}


def test_envelope_reads_only_the_header():
    folder = FakeFolder()
    raw = b"From: a@example.com\nSubject: big\n\n" + b"x" * 76 + b"\n"
    info = folder.add(raw * 1 + (b"y" * 99 + b"\n") * 10000, uid=1)
    assert b'"big"' in fd.envelope(folder, info)
    assert folder.bytes_read <= fd.CHUNK
    assert fd.section(folder, info, (), "HEADER", ()) == b"From: a@example.com\r\nSubject: big\r\n\r\n"
    assert fd.section(folder, info, (), "HEADER.FIELDS", ("subject",)) == b"Subject: big\r\n\r\n"
    assert folder.opens == 1


@pytest.mark.parametrize("split", [1, 2, 3, 5, 17])
def test_header_blank_line_across_chunks(monkeypatch, split):
    monkeypatch.setattr(fd, "CHUNK", split)
    for raw in (b"A: 1\r\nB: 2\r\n\r\nbody\r\n", b"A: 1\nB: 2\n\nbody\n", b"\nbody", b"\r\nbody",
                b"A: 1\r\n\nbody", b"A: 1", b"A: 1\r", b""):
        folder = FakeFolder()
        info = folder.add(raw, uid=1)
        whole = to_crlf(raw)
        head = fd.header_bytes(folder, info)
        assert whole.startswith(head)
        assert head + fd.section(folder, info, (), "TEXT") == whole


def test_sections_of_crlf_and_lf_forms_are_equal():
    for raw in TRICKY.values():
        a, b = FakeFolder(), FakeFolder()
        ia = a.add(raw.replace(b"\r\n", b"\n"), uid=1)
        ib = b.add(to_crlf(raw.replace(b"\r\n", b"\n")), uid=1)
        for part in [(), (1,), (2,), (1, 1), (2, 1), (2, 2), (3,)]:
            for text in (None, "MIME", "HEADER", "TEXT") if part else ("HEADER", "TEXT"):
                assert fd.section(a, ia, part, text) == fd.section(b, ib, part, text)
        assert fd.bodystructure(a, ia, True) == fd.bodystructure(b, ib, True)


def test_header_fields_case_insensitive_repeats_and_folding():
    folder = FakeFolder()
    info = folder.add(TRICKY["plain_noct"], uid=1)
    got = fd.section(folder, info, (), "HEADER.FIELDS", ("X-REPEAT", "subject"))
    assert got == (b"Subject: =?utf-8?q?Gr=C3=BC=C3=9Fe?= aus\r\n  M\xc3\xbcnchen\r\n"
                   b"X-Repeat: one\r\nx-repeat: two\r\n\tfolded\r\n\r\n")
    assert fd.section(folder, info, (), "HEADER.FIELDS", ("nope",)) == b"\r\n"


def test_nonexistent_parts_are_empty():
    folder = FakeFolder()
    info = folder.add(TRICKY["nested"], uid=1)
    for part in [(4,), (0,), (1, 3), (2, 3), (3, 1, 1), (2, 1, 1, 1), (99, 1)]:
        assert fd.section(folder, info, part, None) == b""
    # Dovecot: a leaf is its own part 1, once
    assert fd.section(folder, info, (3, 1), None) == b"JVBERi0="
    assert fd.section(folder, info, (2, 1, 1), None) == b"inner part one"
    assert fd.section(folder, info, (1, 1, 1), None) == b"plain text\r\ntwo lines"
    assert fd.section(folder, info, (3,), "HEADER") == b""


class RealStoreTest(unittest.TestCase):
    """The same answers through the real Maildir store and its SQLite cache."""

    @defer.inlineCallbacks
    def test_real_store(self):
        store = Store(self.mktemp())
        folder = yield store.account("u").open_folder("INBOX")
        uids = []
        for raw in TRICKY.values():
            uids.append((yield folder.append(raw)))
        for (name, raw), uid in zip(TRICKY.items(), uids, strict=True):
            info = folder.get(uid)
            self.assertEqual(info.size, len(to_crlf(raw)))
            for item in ("ENVELOPE", "BODYSTRUCTURE", "BODY", "BODY.PEEK[2.1]", "BODY.PEEK[HEADER]",
                         "BODY.PEEK[1.MIME]"):
                self.assertEqual(_render(folder, info, item), DOVECOT[(name, item)])
            self.assertEqual(folder.get_cached(uid, fd.ENVELOPE), fd.envelope(folder, info))
            self.assertEqual(folder.get_cached(uid, fd.HEADER), fd.section(folder, info, (), "HEADER"))
        close = getattr(store, "close", None)
        if close is not None:
            yield defer.maybeDeferred(close)
