"""The small modern extensions of issue 12: UNAUTHENTICATE (RFC 8437),
LITERAL- (RFC 7888), STATUS=SIZE (RFC 8438), CREATE-SPECIAL-USE (RFC 6154),
OBJECTID (RFC 8474), SAVEDATE (RFC 8514), PREVIEW (RFC 8970)."""

from __future__ import annotations

from mailsrv.config import Config
from mailsrv.imap.render import date_time as render_date
from tests.imap.harness import MSG1, MSG2, Client, inbox_with, tagged
from tests.imap.test_compress import Peer, ccmd


def test_unauthenticate_returns_to_not_authenticated() -> None:
    c = Client()
    assert tagged(c.cmd("u UNAUTHENTICATE"), "u").startswith(b"u BAD")  # not before login
    c.login()
    inbox_with(c, MSG1)
    c.cmd("e ENABLE UTF8=ACCEPT")
    c.select()
    c.cmd("n NOTIFY SET (personal (MessageNew))")
    logouts = c.portal.realm.logouts
    assert c.cmd("u UNAUTHENTICATE") == b"u OK UNAUTHENTICATE completed\r\n"
    assert c.portal.realm.logouts == logouts + 1
    assert not c.account.account_listeners and not c.account.inbox._listeners
    assert tagged(c.cmd("f FETCH 1 FLAGS"), "f").startswith(b"f BAD")
    assert tagged(c.cmd("l LIST \"\" *"), "l").startswith(b"l BAD")
    assert b"AUTH=PLAIN" in c.cmd("c CAPABILITY")
    out = c.login()
    assert b"l1 OK" in out
    # what was ENABLEd is gone: names are modified UTF-7 again
    c.account.create_folder("Entwürfe")
    assert b'"Entw&APw-rfe"' in c.cmd('l LIST "" "Entw*"')
    c.account.inbox.append(MSG2)
    assert c.cmd("o NOOP") == b"o OK NOOP completed\r\n"  # nothing from the old NOTIFY


def test_literal_minus_when_configured() -> None:
    c = Client(config=Config(auth_fail_delay=0, literal_plus=False))
    assert b" LITERAL- " in c.greeting and b"LITERAL+" not in c.greeting
    c.login()
    out = c.send(b'a STATUS {5+}\r\nINBOX (MESSAGES)\r\n')
    assert tagged(out, "a") == b"a OK STATUS completed\r\n"
    big = b"Subject: x\r\n\r\n" + b"y" * 5000
    out = c.send(b"b APPEND INBOX {%d+}\r\n" % len(big) + big + b"\r\nc NOOP\r\n")
    assert tagged(out, "b").startswith(b"b BAD [TOOBIG]")
    assert tagged(out, "c") == b"c OK NOOP completed\r\n"  # the literal was skipped, not read as commands
    assert c.account.inbox.messages() == []
    out = c.send(b"d APPEND INBOX {%d}\r\n" % len(big))
    assert out == b"+ Ready for literal data\r\n"  # synchronizing literals as before
    assert tagged(c.send(big + b"\r\n"), "d").startswith(b"d OK")


def test_status_size() -> None:
    c = Client()
    c.login()
    inbox_with(c, MSG1, MSG2)
    assert b"STATUS=SIZE" in c.cmd("c CAPABILITY")
    out = c.cmd("s STATUS INBOX (MESSAGES SIZE)")
    assert out.startswith(b'* STATUS "INBOX" (MESSAGES 2 SIZE %d)' % (c.account.inbox.total_size()))


def test_unauthenticate_keeps_compress_and_refuses_starttls_under_it() -> None:
    c = Client(tls_context=object())
    c.login()
    assert c.cmd("z COMPRESS DEFLATE") == b"z OK Begin compression\r\n"
    peer = Peer()
    assert ccmd(c, peer, "u UNAUTHENTICATE") == b"u OK UNAUTHENTICATE completed\r\n"
    out = ccmd(c, peer, "t STARTTLS")
    assert out == b"t BAD STARTTLS TLS cannot start under COMPRESS (RFC 4978)\r\n"
    assert ccmd(c, peer, "l LOGIN joe secret").startswith(b"l OK")


# -- CREATE-SPECIAL-USE, OBJECTID, SAVEDATE, PREVIEW

REPLY = (b"From: Bob <bob@example.org>\r\nSubject: Re: Hello\r\nMessage-ID: <2@example.org>\r\n"
         b"In-Reply-To: <1@example.org>\r\nReferences: <1@example.org>\r\n\r\n> Hi Joe\r\nFine, thanks.\r\n")


def test_create_with_use() -> None:
    c = Client()
    c.login()
    for cap in (b"CREATE-SPECIAL-USE", b"OBJECTID", b"SAVEDATE", b"PREVIEW"):
        assert cap in c.cmd("c CAPABILITY")
    out = c.cmd("a CREATE Old (USE (\\Archive))")
    assert out.startswith(b"a OK [MAILBOXID (")
    assert b'* LIST (\\HasNoChildren \\Archive) "/" "Old"\r\n' in c.cmd('l LIST "" Old')
    assert c.cmd("b CREATE X (USE (\\Flagged))") == b"b NO [USEATTR] CREATE \\Flagged cannot be given to a mailbox\r\n"
    assert tagged(c.cmd("d CREATE Y (USE (\\Junk \\Trash))"), "d").startswith(b"d NO [USEATTR]")
    assert not c.account.folder_exists("X") and not c.account.folder_exists("Y")
    assert tagged(c.cmd("e CREATE Z (USE ())"), "e").startswith(b"e BAD")
    assert tagged(c.cmd("f CREATE Z (FOO (\\Junk))"), "f").startswith(b"f BAD")
    assert c.cmd("g RENAME Old Older").startswith(b"g OK")
    assert b"\\Archive" in c.cmd('l LIST "" Older')


def test_mailboxid_in_create_select_status_and_through_rename() -> None:
    c = Client()
    c.login()
    out = c.cmd("a CREATE Projects")
    mid = out.split(b"MAILBOXID (")[1].split(b")")[0]
    assert mid == c.account.folders["Projects"].mailboxid.encode()
    assert f"* OK [MAILBOXID ({mid.decode()})]".encode() in c.cmd("s SELECT Projects")
    c.cmd("u UNSELECT")
    c.cmd("r RENAME Projects Done")
    out = c.cmd("t STATUS Done (MESSAGES MAILBOXID)")
    assert out.startswith(b'* STATUS "Done" (MESSAGES 0 MAILBOXID (' + mid + b"))\r\n")


def test_emailid_and_threadid_survive_move_and_thread_replies() -> None:
    c = Client()
    c.login()
    inbox_with(c, MSG1, REPLY, MSG2)
    c.select()
    out = c.cmd("f FETCH 1:3 (EMAILID THREADID)")
    ids = [line.split(b"EMAILID (")[1].split(b")")[0] for line in out.splitlines() if b"EMAILID" in line]
    threads = [line.split(b"THREADID (")[1].split(b")")[0] for line in out.splitlines() if b"THREADID" in line]
    assert len(set(ids)) == 3 and all(i.startswith(b"M") and len(i) == 25 for i in ids)
    assert threads[0] == threads[1] != threads[2]  # the reply is in the first message's thread
    out = c.cmd(f"s SEARCH EMAILID {ids[1].decode()}")
    assert out.startswith(b"* SEARCH 2\r\n")
    assert c.cmd(f"t SEARCH THREADID {threads[0].decode()}").startswith(b"* SEARCH 1 2\r\n")
    c.cmd("m MOVE 2 Archive")
    c.cmd("x SELECT Archive")
    out = c.cmd("f FETCH 1 (EMAILID THREADID)")
    assert ids[1] in out and threads[1] in out


def test_savedate_fetch_and_search() -> None:
    c = Client()
    c.login()
    inbox_with(c, MSG1, MSG2)
    c.account.inbox.saved[1] = 1700000000.0  # 14-Nov-2023 22:13:20 UTC
    c.account.inbox.saved[2] = 1800000000.0  # 15-Jan-2027
    c.select()
    out = c.cmd("f FETCH 1 SAVEDATE")
    assert out.startswith(b"* 1 FETCH (SAVEDATE " + render_date(1700000000.0) + b")")
    assert c.cmd("s SEARCH SAVEDBEFORE 1-Jan-2025").startswith(b"* SEARCH 1\r\n")
    assert c.cmd("s SEARCH SAVEDSINCE 1-Jan-2025").startswith(b"* SEARCH 2\r\n")
    assert c.cmd("s SEARCH SAVEDON 14-Nov-2023").startswith(b"* SEARCH 1\r\n")
    assert c.cmd("s SEARCH SAVEDATESUPPORTED").startswith(b"* SEARCH 1 2\r\n")
    assert tagged(c.cmd("s SEARCH SAVEDON 32-Nov-2023"), "s").startswith(b"s BAD")


def test_preview_and_lazy() -> None:
    c = Client()
    c.login()
    inbox_with(c, REPLY, b"Subject: empty\r\n\r\n")
    c.select()
    assert c.cmd("l FETCH 1 (PREVIEW (LAZY))").startswith(b"* 1 FETCH (PREVIEW NIL)")
    assert c.cmd("f FETCH 1:2 (PREVIEW)").startswith(
        b'* 1 FETCH (PREVIEW "Fine, thanks.")\r\n* 2 FETCH (PREVIEW "")\r\n')
    assert c.cmd("l FETCH 1 (PREVIEW (LAZY))").startswith(b'* 1 FETCH (PREVIEW "Fine, thanks.")')
    assert tagged(c.cmd("b FETCH 1 (PREVIEW (FUZZY))"), "b").startswith(b"b BAD")
    assert "\\Seen" not in c.account.inbox.get(1).flags
