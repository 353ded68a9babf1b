"""The small modern extensions of issue 12: UNAUTHENTICATE (RFC 8437),
LITERAL- (RFC 7888), STATUS=SIZE (RFC 8438)."""

from __future__ import annotations

from mailsrv.config import Config
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
