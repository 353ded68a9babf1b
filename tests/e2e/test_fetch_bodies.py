"""Whole-body FETCH through the real server on every path of
mailsrv.imap.bodies / mailsrv.wire: messages stored with bare LF and with
CRLF (sendfile on plain TCP), small and over the streaming threshold, whole
and partial, over plain TCP, STARTTLS and implicit TLS, and several clients
at once; every byte compared with what the message must be."""

from __future__ import annotations

import imaplib
import multiprocessing
import random

import pytest

from tests.e2e.harness import Server
from tests.e2e.test_pop3_clients import PW, insecure


def _message(i: int, lines: int, crlf: bool) -> bytes:
    rnd = random.Random(i)
    body = b"".join(b"line %d %s\n" % (n, bytes(rnd.choice(b"abcdefgh .") for _ in range(rnd.randrange(70))))
                    for n in range(lines))
    msg = b"From: a@example.org\nSubject: body %d\n\n" % i + body + b".\n..leading dots\n"
    return msg.replace(b"\n", b"\r\n") if crlf else msg


# (lines, stored with CRLF): small and > 1 MiB (the streaming threshold), both storages
SHAPES = [(40, False), (40, True), (30000, False), (30000, True), (0, False)]
MESSAGES = [_message(i, n, c) for i, (n, c) in enumerate(SHAPES)]
WIRE = [m if c else m.replace(b"\n", b"\r\n") for m, (_, c) in zip(MESSAGES, SHAPES, strict=True)]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    srv = Server(str(tmp_path_factory.mktemp("bodies") / "data"), kinds=("imap", "imaps"))
    srv.add_user("alice", PW)
    for m in MESSAGES:
        srv.deliver("alice", m)
    srv.start()
    yield srv
    srv.stop()


def _client(server: Server, mode: str) -> imaplib.IMAP4:
    if mode == "imaps":
        c: imaplib.IMAP4 = imaplib.IMAP4_SSL("127.0.0.1", server.ports["imaps"], ssl_context=insecure(), timeout=60)
    else:
        c = imaplib.IMAP4("127.0.0.1", server.ports["imap"], timeout=60)
        if mode == "starttls":
            c.starttls(ssl_context=insecure())
    c.login("alice", PW)
    c.select("INBOX")
    return c


def _literals(data: list) -> list[bytes]:
    return [d[1] for d in data if isinstance(d, tuple)]


@pytest.mark.parametrize("mode", ["plain", "starttls", "imaps"])
def test_whole_and_partial_bodies_are_byte_exact(server, mode):
    c = _client(server, mode)
    typ, data = c.uid("FETCH", "1:*", "(BODY.PEEK[])")
    assert typ == "OK" and _literals(data) == WIRE
    typ, data = c.fetch("1:*", "(RFC822.SIZE BODY.PEEK[]<5.1000> UID)")
    assert _literals(data) == [w[5:1005] for w in WIRE]
    assert [int(d[0].split(b"RFC822.SIZE ")[1].split()[0]) for d in data if isinstance(d, tuple)] == \
        [len(w) for w in WIRE]
    for seq, w in enumerate(WIRE, 1):
        for origin, length in ((0, 1), (len(w) - 3, 10), (len(w) + 5, 4), (1 << 20, 70000)):
            typ, data = c.fetch(str(seq), f"(BODY.PEEK[]<{origin}.{length}>)")
            assert _literals(data) == [w[origin:origin + length]], (seq, origin, length)
    typ, data = c.fetch("1:2", "(BODY.PEEK[TEXT] BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
    assert typ == "OK" and len(_literals(data)) == 4
    c.logout()


def _fetch_all(port: int, q) -> None:
    try:
        c = imaplib.IMAP4("127.0.0.1", port, timeout=60)
        c.login("alice", PW)
        c.select("INBOX", readonly=True)
        for _ in range(3):
            typ, data = c.uid("FETCH", "1:*", "(BODY.PEEK[] UID)")
            assert typ == "OK" and _literals(data) == WIRE
        c.logout()
        q.put("ok")
    except Exception as e:  # reported to the test process
        q.put(repr(e))


def test_four_clients_at_once_each_get_every_byte(server):
    ctx = multiprocessing.get_context("fork")
    q = ctx.Queue()
    procs = [ctx.Process(target=_fetch_all, args=(server.ports["imap"], q)) for _ in range(4)]
    for p in procs:
        p.start()
    results = [q.get(timeout=120) for _ in procs]
    for p in procs:
        p.join(30)
    assert results == ["ok"] * 4


def test_rfc822_marks_seen_and_fetch_of_mixed_items(server):
    c = _client(server, "plain")
    typ, data = c.fetch("1", "(FLAGS RFC822 ENVELOPE)")
    assert typ == "OK" and _literals(data) == [WIRE[0]]
    assert b"\\Seen" in c.fetch("1", "(FLAGS)")[1][0]
    c.store("1", "-FLAGS", "(\\Seen)")
    c.logout()
