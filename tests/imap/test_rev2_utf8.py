"""IMAP4rev2 (RFC 9051) beside IMAP4rev1, and UTF8=ACCEPT (RFC 6855) with
the downgrade a client that never enables it gets (RFC 6857)."""

from __future__ import annotations

import email.header

from tests.fakestore import FakeAccount
from tests.imap.harness import MSG1, MSG2, Client, inbox_with, tagged

UTF8_MSG = ("From: Jürgen Müller <j@example.de>\r\nTo: b@example.org\r\n"
            "Subject: Grüße aus München\r\n\r\nHallo\r\n").encode()


def authed(**kw) -> Client:
    c = Client(**kw)
    c.login()
    return c


def rev2(**kw) -> Client:
    c = authed(**kw)
    assert c.cmd("e ENABLE IMAP4rev2") == b"* ENABLED IMAP4rev2\r\ne OK ENABLE completed\r\n"
    return c


def test_both_revisions_are_advertised() -> None:
    c = Client()
    assert c.greeting.startswith(b"* OK [CAPABILITY IMAP4rev1 IMAP4rev2 ")
    out = c.login()
    assert b"UTF8=ACCEPT" in out


def test_enable_rev2_once_and_not_while_selected() -> None:
    c = rev2()
    assert c.cmd("f ENABLE IMAP4rev2") == b"* ENABLED\r\nf OK ENABLE completed\r\n"
    c2 = authed(account=c.account)
    c2.select()
    assert c2.cmd("g ENABLE IMAP4rev2 UTF8=ACCEPT X-UNKNOWN") == b"* ENABLED\r\ng OK ENABLE completed\r\n"


def test_rev2_select_has_no_recent_and_sends_list() -> None:
    c = rev2()
    inbox_with(c, MSG1, MSG2)
    out = c.cmd("a SELECT INBOX")
    assert b"* 2 EXISTS\r\n" in out
    assert b"RECENT" not in out and b"UNSEEN" not in out
    assert b'* LIST (\\HasNoChildren) "/" "INBOX"\r\n' in out
    assert b"CLOSED" not in out
    out = c.cmd("b EXAMINE Sent")
    assert out.startswith(b"* OK [CLOSED] Previous mailbox closed.\r\n")
    assert b'* LIST (\\HasNoChildren \\Sent) "/" "Sent"\r\n' in out


def test_rev2_never_shows_recent() -> None:
    c = rev2()
    inbox_with(c, MSG1)
    c.select()
    assert b"\\Recent" not in c.cmd("f FETCH 1 FLAGS")
    c.account.inbox.append(MSG2)
    out = c.cmd("n NOOP")
    assert out == b"* 2 EXISTS\r\nn OK NOOP completed\r\n"
    assert c.cmd("f FETCH 2 FLAGS").startswith(b"* 2 FETCH (FLAGS ())")


def test_rev1_session_beside_rev2_keeps_recent() -> None:
    c1 = authed()
    inbox_with(c1, MSG1)
    c2 = rev2(account=c1.account)
    out = c1.cmd("a SELECT INBOX")
    assert b"* 1 RECENT" in out and b"[UNSEEN 1]" in out
    c2.cmd("b SELECT INBOX")
    c1.account.inbox.append(MSG2)
    assert c1.cmd("n NOOP") == b"* 2 EXISTS\r\n* 2 RECENT\r\nn OK NOOP completed\r\n"


def test_rev2_search_answers_esearch() -> None:
    c = rev2()
    inbox_with(c, MSG1, MSG2)
    c.select()
    assert c.cmd("s SEARCH ALL") == b'* ESEARCH (TAG "s") ALL 1:2\r\ns OK SEARCH completed\r\n'
    assert c.cmd("u UID SEARCH SUBJECT nothing") == b'* ESEARCH (TAG "u") UID\r\nu OK SEARCH completed\r\n'
    assert c.cmd("r SEARCH RETURN (COUNT) ALL") == b'* ESEARCH (TAG "r") COUNT 2\r\nr OK SEARCH completed\r\n'


def test_rev2_list_shows_nonexistent_parents() -> None:
    c = rev2(account=FakeAccount("joe", folders=["a/b"]))
    out = c.cmd('l LIST "" "*"')
    assert b'* LIST (\\NonExistent \\HasChildren) "/" "a"\r\n' in out
    c1 = authed(account=c.account)
    assert b'* LIST (\\Noselect \\HasChildren) "/" "a"\r\n' in c1.cmd('l LIST "" "*"')


def test_utf8_folder_names_round_trip_between_both_kinds_of_client() -> None:
    u = authed()
    assert u.cmd("e ENABLE UTF8=ACCEPT") == b"* ENABLED UTF8=ACCEPT\r\ne OK ENABLE completed\r\n"
    assert b"c OK" in u.send('c CREATE "Entwürfe"\r\n'.encode())
    assert b"d OK" in u.cmd('d CREATE "R&D"')
    assert "Entwürfe" in u.account.folders and "R&D" in u.account.folders
    out = u.cmd('l LIST "" "*"')
    assert '"/" "Entwürfe"\r\n'.encode() in out and b'"/" "R&D"\r\n' in out
    out = u.send('s STATUS "Entwürfe" (MESSAGES)\r\n'.encode())
    assert out.startswith('* STATUS "Entwürfe" (MESSAGES 0)\r\n'.encode())
    legacy = authed(account=u.account)
    out = legacy.cmd('l LIST "" "*"')
    assert b'"/" "Entw&APw-rfe"\r\n' in out and b'"/" "R&-D"\r\n' in out
    assert b"s OK [READ-WRITE]" in legacy.cmd("s SELECT Entw&APw-rfe")
    # and back: a name the legacy client made, seen in UTF-8
    legacy.cmd("c CREATE &AMk-t&AOk-")
    assert '"/" "Été"\r\n'.encode() in u.cmd('l LIST "" "*t*"')


def test_utf8_append_and_downgrade_for_legacy_clients() -> None:
    u = authed()
    u.cmd("e ENABLE UTF8=ACCEPT")
    out = u.send(b"a APPEND INBOX UTF8 (~{%d+}\r\n" % len(UTF8_MSG) + UTF8_MSG + b")\r\n")
    assert tagged(out, "a").startswith(b"a OK [APPENDUID 1000 1]")
    assert u.account.inbox.raw(1) == UTF8_MSG
    u.select()
    out = u.cmd("f FETCH 1 ENVELOPE")
    assert "Grüße aus München".encode() in out  # the UTF-8 client gets UTF-8
    legacy = authed(account=u.account)
    legacy.select()
    out = legacy.cmd("f FETCH 1 ENVELOPE")
    assert out.isascii()
    strings = out.split(b'"')

    def decoded(i: int) -> str:
        return str(email.header.make_header(email.header.decode_header(strings[i].decode())))

    assert decoded(1) == "Grüße aus München" and decoded(3) == "Jürgen Müller"
    assert b"=?UTF-8?B?" in out and b'"j" "example.de"' in out


def test_utf8_errors() -> None:
    c = authed()
    data = b"Subject: x\r\n\r\ny\r\n"
    out = c.send(b"a APPEND INBOX UTF8 (~{%d+}\r\n" % len(data) + data + b")\r\n")
    assert tagged(out, "a").startswith(b"a BAD")
    assert c.account.inbox.messages() == []
    out = c.send(b"b APPEND INBOX UTF8 (~{%d+}\r\n" % len(data) + data + b"\r\n")
    assert tagged(out, "b").startswith(b"b BAD")  # the closing parenthesis is missing
    c.cmd("e ENABLE UTF8=ACCEPT")
    inbox_with(c, MSG1)
    c.select()
    assert tagged(c.cmd("s SEARCH CHARSET UTF-8 ALL"), "s").startswith(b"s BAD")
    assert c.cmd("t SEARCH SUBJECT Hello") == b"* SEARCH 1\r\nt OK SEARCH completed\r\n"
    assert tagged(c.send(b"u SELECT \"\xff\xfe\"\r\n"), "u").startswith(b"u BAD")  # not UTF-8
