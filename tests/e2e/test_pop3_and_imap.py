"""POP3 and IMAP on one store (issue 3, point 7), over real sockets."""

from __future__ import annotations

import poplib
import time

from tests.e2e.test_imap_clients import imap
from tests.e2e.test_pop3_clients import message, pop


def wait_for(pred, timeout=10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(0.05)
    return False


def test_pop3_delete_is_expunge_for_imap(server):
    for i in range(1, 4):
        server.deliver("alice", message(i))
    m = imap(server)
    m.select("INBOX")
    p = pop(server)
    p.dele(2)
    p.quit()
    m.noop()
    untagged = m.untagged_responses
    assert untagged.get("EXPUNGE") == [b"2"], untagged
    assert m.search(None, "ALL")[1] == [b"1 2"]
    assert m.fetch("2", "(BODY.PEEK[HEADER.FIELDS (SUBJECT)])")[1][0][1] == b"Subject: test 3\r\n\r\n"
    m.logout()


def test_imap_flags_persist_across_sessions_restart_and_protocols(server):
    server.deliver("alice", message(1))
    m = imap(server)
    m.select("INBOX")
    m.store("1", "+FLAGS", "(\\Flagged Important)")
    uidvalidity = m.status("INBOX", "(UIDVALIDITY)")[1][0]
    m.logout()
    p = pop(server)
    uidl = p.uidl(1)
    p.quit()
    server.stop()
    server.start()
    m = imap(server)
    m.select("INBOX")
    flags = m.fetch("1", "(FLAGS)")[1][0]
    assert b"\\Flagged" in flags and b"Important" in flags
    assert m.status("INBOX", "(UIDVALIDITY)")[1][0] == uidvalidity
    m.logout()
    p = pop(server)
    assert p.uidl(1) == uidl
    p.quit()


def test_pop3_lock_does_not_block_imap(server):
    server.deliver("alice", message(1))
    p = pop(server)
    m = imap(server)
    assert m.select("INBOX")[1] == [b"1"]
    m.append("INBOX", None, None, message(2).replace(b"\n", b"\r\n"))
    m.logout()
    assert p.stat()[0] == 1  # the POP3 view is frozen at login
    p.quit()


def test_imap_expunge_under_pop3_session_is_clean_err(server):
    server.deliver("alice", message(1))
    server.deliver("alice", message(2))
    p = pop(server)
    m = imap(server)
    m.select("INBOX")
    m.store("1", "+FLAGS", "\\Deleted")
    m.expunge()
    m.logout()
    try:
        p.retr(1)
        raise AssertionError("RETR of an expunged message must fail")
    except poplib.error_proto as e:
        assert e.args[0].startswith(b"-ERR")
    assert p.retr(2)[1][0].startswith(b"From: sender")
    p.quit()
    p = pop(server)
    assert p.stat()[0] == 1
    p.quit()


def test_pop3_retr_marks_seen_for_imap(server):
    server.deliver("alice", message(1))
    p = pop(server)
    p.retr(1)
    p.quit()
    m = imap(server)
    m.select("INBOX", readonly=True)
    assert b"\\Seen" in m.fetch("1", "(FLAGS)")[1][0]
    m.logout()
