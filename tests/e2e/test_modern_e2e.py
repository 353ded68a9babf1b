"""Issue 12 end to end with real clients over real sockets: COMPRESS over
TLS with imapclient, UTF-8 folder names between a UTF8=ACCEPT client and
one that never enables it, NOTIFY between two sessions."""

from __future__ import annotations

import hashlib

import imapclient

from tests.e2e.deflate_client import start_compression
from tests.e2e.test_pop3_clients import PW, insecure


def big_message(size: int) -> bytes:
    lines = []
    n = 0
    i = 0
    while n < size:
        line = b"line %08d: the quick brown fox jumps over the lazy dog %s\r\n" % (
            i, hashlib.sha1(b"%d" % (i // 7)).hexdigest().encode())
        lines.append(line)
        n += len(line)
        i += 1
    return b"From: a@example.org\r\nTo: b@example.org\r\nSubject: big\r\n\r\n" + b"".join(lines)


def test_imapclient_compress_over_tls_fetches_10mb(server):
    msg = big_message(10 << 20)
    server.deliver("alice", msg)
    c = imapclient.IMAPClient("127.0.0.1", port=server.ports["imaps"], ssl=True, ssl_context=insecure(), timeout=60)
    c.login("alice", PW)
    assert c.has_capability("COMPRESS=DEFLATE")
    wire = start_compression(c._imap)
    c.select_folder("INBOX")
    got = c.fetch([1], ["BODY.PEEK[]", "RFC822.SIZE"])
    (data,) = got.values()
    assert data[b"RFC822.SIZE"] == len(msg)
    assert data[b"BODY[]"] == msg
    assert wire.received < len(msg) // 2  # it really was compressed
    assert c.noop()[0].startswith(b"NOOP")
    c.logout()
