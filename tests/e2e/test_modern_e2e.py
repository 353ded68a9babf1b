"""Issue 12 end to end with real clients over real sockets: COMPRESS over
TLS with imapclient, UTF-8 folder names between a UTF8=ACCEPT client and
one that never enables it, NOTIFY between two sessions."""

from __future__ import annotations

import hashlib
import imaplib
import os
import smtplib
import time

import imapclient
import pytest

from tests.e2e.deflate_client import start_compression
from tests.e2e.harness import Server
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


def _read_until(m, needle: bytes, timeout: float = 20.0) -> list[bytes]:
    """Lines from an imaplib connection until one contains ``needle``."""
    m.sock.settimeout(timeout)
    lines = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = m.readline()
        lines.append(line)
        if needle in line:
            return lines
    raise AssertionError(f"{needle!r} not seen in {timeout}s: {lines}")


@pytest.fixture
def lmtp_server(tmp_path):
    srv = Server(str(tmp_path / "data"), kinds=("imap", "lmtp"))
    srv.add_user("alice", PW)
    srv.start()
    yield srv
    srv.stop()


def test_notify_one_session_follows_every_folder(lmtp_server):
    watcher = imaplib.IMAP4("127.0.0.1", lmtp_server.ports["imap"], timeout=30)
    watcher.login("alice", PW)
    tag = watcher._new_tag()
    watcher.send(tag + b" NOTIFY SET STATUS (personal (MessageNew MessageExpunge FlagChange MailboxName))\r\n")
    lines = _read_until(watcher, tag + b" OK")
    assert any(b'* STATUS "Trash" (MESSAGES 0' in ln for ln in lines), lines

    other = imaplib.IMAP4("127.0.0.1", lmtp_server.ports["imap"], timeout=30)
    other.login("alice", PW)
    other.create("Projects")
    assert _read_until(watcher, b'"Projects"')[-1] == b'* LIST (\\HasNoChildren) "/" "Projects"\r\n'
    other.append("Projects", None, None, b"Subject: one\r\n\r\nbody\r\n")
    assert _read_until(watcher, b'STATUS "Projects"')[-1] == (
        b'* STATUS "Projects" (MESSAGES 1 UIDNEXT 2 UNSEEN 1)\r\n')
    other.select("Projects")
    other.store("1", "+FLAGS", "\\Seen")
    assert _read_until(watcher, b'STATUS "Projects"')[-1] == b'* STATUS "Projects" (UNSEEN 0)\r\n'

    # LMTP into a folder no session has open: told at once
    lmtp = smtplib.LMTP("127.0.0.1", lmtp_server.ports["lmtp"], timeout=30)
    lmtp.sendmail("sender@example.org", ["alice+Junk@localhost"], b"Subject: spam\r\n\r\nbuy\r\n")
    lmtp.quit()
    assert _read_until(watcher, b'STATUS "Junk"')[-1] == b'* STATUS "Junk" (MESSAGES 1 UIDNEXT 2 UNSEEN 1)\r\n'

    # another process (an MTA writing the Maildir): found by the poll
    lmtp_server.deliver("alice", b"Subject: outside\r\n\r\nhi\r\n", folder="Trash")
    status = _read_until(watcher, b'STATUS "Trash"', timeout=30)[-1]
    assert status.startswith(b'* STATUS "Trash" (MESSAGES 1 UIDNEXT 2 ')

    other.store("1", "+FLAGS", "\\Deleted")
    other.expunge()
    assert _read_until(watcher, b'STATUS "Projects"')[-1] == (
        b'* STATUS "Projects" (MESSAGES 0 UIDNEXT 2 UNSEEN 0)\r\n')
    other.logout()
    watcher.logout()


def test_utf8_folder_from_an_utf8_client_listed_by_a_legacy_one(server):
    u = imaplib.IMAP4("127.0.0.1", server.ports["imap"], timeout=30)
    u.login("alice", PW)
    typ, data = u.enable("UTF8=ACCEPT")
    assert typ == "OK" and u.untagged_responses.get("ENABLED") == [b"UTF8=ACCEPT"], data
    assert u.create('"Entwürfe/Größe"')[0] == "OK"
    typ, data = u.list('""', '"Entw*"')
    assert 'Entwürfe/Größe'.encode() in b"\n".join(data), data
    assert u.append('"Entwürfe/Größe"', None, None,
                    "Subject: Grüße\r\nFrom: Jörg <j@example.de>\r\n\r\nHallo\r\n".encode())[0] == "OK"
    u.logout()
    if server.backend == "maildir":  # the on-disk name is the Maildir store's business
        assert os.path.isdir(os.path.join(server.data, "alice", "Maildir", ".Entw&APw-rfe.Gr&APYA3w-e"))

    legacy = imaplib.IMAP4("127.0.0.1", server.ports["imap"], timeout=30)
    legacy.login("alice", PW)
    typ, data = legacy.list('""', '"Entw*"')
    names = b"\n".join(data)
    assert b'"Entw&APw-rfe/Gr&APYA3w-e"' in names and b'"Entw&APw-rfe"' in names, data
    assert legacy.select('"Entw&APw-rfe/Gr&APYA3w-e"')[1] == [b"1"]
    typ, data = legacy.fetch("1", "(ENVELOPE)")
    assert typ == "OK" and data[0].isascii() and b"=?UTF-8?B?" in data[0], data
    legacy.logout()
