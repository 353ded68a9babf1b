"""LMTP transcripts over StringTransport: every reply code path."""

from __future__ import annotations

import pytest

from mailsrv.lmtp.protocol import MAX_PENDING_INPUT
from mailsrv.store.interfaces import StoreError, TooBig
from tests.fakestore import FakeStore
from tests.lmtp.helpers import USERS, Session, headers, stuff

MSG = b"Subject: hi\r\n\r\nbody line\r\n.leading dot\r\n..two dots\r\n"


def test_greeting_and_lhlo():
    s = Session(lmtp_max_size=1000)
    assert s.greeting == [b"220 mx.test LMTP mailsrv ready"]
    assert s.cmd("LHLO client.test") == [
        b"250-mx.test",
        b"250-PIPELINING",
        b"250-8BITMIME",
        b"250-ENHANCEDSTATUSCODES",
        b"250-SMTPUTF8",
        b"250 SIZE 1000",
    ]


@pytest.mark.parametrize(
    "line, reply",
    [
        ("HELO x", b"500 5.5.1 This is LMTP: use LHLO"),
        ("EHLO x", b"500 5.5.1 This is LMTP: use LHLO"),
        ("FOO", b"500 5.5.2 Command unrecognized"),
        ("STARTTLS", b"500 5.5.2 Command unrecognized"),
        ("LHLO", b"501 5.5.4 Syntax: LHLO hostname"),
        ("MAIL FROM:<a@b.c>", b"503 5.5.1 Send LHLO first"),
        ("RCPT TO:<alice@b.c>", b"503 5.5.1 Need MAIL command first"),
        ("DATA", b"503 5.5.1 Need MAIL command first"),
        ("VRFY", b"501 5.5.4 Syntax: VRFY address"),
        ("RSET x", b"501 5.5.4 Syntax: RSET"),
    ],
)
def test_errors_before_transaction(line, reply):
    s = Session()
    assert s.cmd(line) == [reply]


def test_simple_commands():
    s = Session()
    assert s.cmd("NOOP") == [b"250 2.0.0 OK"]
    assert s.cmd("noop whatever") == [b"250 2.0.0 OK"]
    assert s.cmd("VRFY alice")[0].startswith(b"252 2.5.0 ")
    assert s.cmd("HELP")[0].startswith(b"214 ")
    assert s.cmd("QUIT") == [b"221 2.0.0 mx.test Bye"]
    assert s.transport.disconnecting
    assert s.send(b"NOOP\r\n") == []  # nothing after QUIT


@pytest.mark.parametrize(
    "arg, reply",
    [
        ("FROM:<a@example.org>", b"250 2.1.0 Sender OK"),
        ("from: <a@example.org>", b"250 2.1.0 Sender OK"),
        ("FROM:<>", b"250 2.1.0 Sender OK"),
        ("FROM:a@example.org", b"250 2.1.0 Sender OK"),
        ('FROM:<"a b>"@example.org>', b"250 2.1.0 Sender OK"),
        ("FROM:<a@example.org> SIZE=100 BODY=8BITMIME", b"250 2.1.0 Sender OK"),
        ("FROM:<a@example.org> BODY=7bit", b"250 2.1.0 Sender OK"),
        ("TO:<a@example.org>", b"501 5.5.4 Syntax: MAIL FROM:<address>"),
        ("FROM:<a@exa mple.org>", b"501 5.1.7 Bad sender address syntax"),
        ("FROM:<a\r@example.org>", b"501 5.1.7 Bad sender address syntax"),
        ("FROM:<a@example.org", b"501 5.1.7 Bad sender address syntax"),
        ("FROM:<a@example.org>x", b"501 5.1.7 Bad sender address syntax"),
        ("FROM:<a@-bad-.org>", b"501 5.1.7 Bad sender address syntax"),
        ("FROM:<a..b@example.org>", b"501 5.1.7 Bad sender address syntax"),
        ("FROM:<\xe9@example.org>", b"553 5.6.7 Non-ASCII address needs SMTPUTF8"),
        ("FROM:<\xe9@example.org> SMTPUTF8", b"501 5.1.7 Bad sender address syntax"),  # not UTF-8
        ("FROM:<a@example.org> SIZE=1001", b"552 5.3.4 Message size exceeds fixed maximum message size"),
        ("FROM:<a@example.org> SIZE=abc", b"501 5.5.4 Bad SIZE value"),
        ("FROM:<a@example.org> SIZE", b"501 5.5.4 Bad SIZE value"),
        ("FROM:<a@example.org> BODY=BINARYMIME", b"501 5.5.4 Unsupported BODY type"),
        ("FROM:<a@example.org> SMTPUTF8", b"250 2.1.0 Sender OK"),
        ("FROM:<a@example.org> SMTPUTF8=yes", b"501 5.5.4 SMTPUTF8 takes no value"),
        ("FROM:<a@example.org> =x", b"501 5.5.4 Bad MAIL parameter syntax"),
    ],
)
def test_mail_from(arg, reply):
    s = Session(lmtp_max_size=1000)
    s.cmd("LHLO c")
    assert s.send(b"MAIL " + arg.encode("latin-1") + b"\r\n") == [reply]


def test_nested_mail_and_rset():
    s = Session()
    s.start()
    assert s.cmd("MAIL FROM:<x@y.z>") == [b"503 5.5.1 Sender already specified"]
    assert s.cmd("RSET") == [b"250 2.0.0 OK"]
    assert s.cmd("RCPT TO:<alice@x.org>") == [b"503 5.5.1 Need MAIL command first"]
    assert s.cmd("MAIL FROM:<x@y.z>") == [b"250 2.1.0 Sender OK"]


def test_lhlo_resets_transaction():
    s = Session()
    s.start("alice@x.org")
    s.cmd("LHLO again")
    assert s.cmd("DATA") == [b"503 5.5.1 Need MAIL command first"]


@pytest.mark.parametrize(
    "rcpt, reply",
    [
        ("TO:<alice@x.org>", b"250 2.1.5 <alice@x.org> Recipient OK"),
        ("to: <Alice@X.ORG>", b"250 2.1.5 <Alice@x.org> Recipient OK"),
        ("TO:<nobody@x.org>", b"550 5.1.1 <nobody@x.org> User unknown"),
        ("TO:<+alice@x.org>", b"550 5.1.1 <+alice@x.org> User unknown"),
        ("TO:<postmaster>", b"550 5.1.1 <postmaster> User unknown"),
        ("TO:<>", b"501 5.1.3 Bad recipient address syntax"),
        ("TO:<alice>", b"501 5.1.3 Bad recipient address syntax"),
        ("TO:<al ice@x.org>", b"501 5.1.3 Bad recipient address syntax"),
        ("FROM:<alice@x.org>", b"501 5.5.4 Syntax: RCPT TO:<address>"),
        ("TO:<alice@x.org> NOTIFY=NEVER", b"555 5.5.4 RCPT parameters not supported"),
    ],
)
def test_rcpt_to(rcpt, reply):
    s = Session()
    s.start()
    assert s.send(b"RCPT " + rcpt.encode() + b"\r\n") == [reply]


def test_rcpt_local_domains():
    s = Session(local_domains=["x.org", "y.org"])
    s.start("alice@x.org", "bob@Y.org")
    assert s.cmd("RCPT TO:<alice@z.org>") == [b"550 5.1.2 <alice@z.org> Domain not served here"]
    assert s.cmd("RCPT TO:<nobody@x.org>") == [b"550 5.1.1 <nobody@x.org> User unknown"]


def test_rcpt_lookup_trouble():
    def broken(name):
        raise OSError("passwd file unreadable")

    s = Session(users=broken)
    s.start()
    assert s.cmd("RCPT TO:<alice@x.org>") == [b"451 4.3.0 <alice@x.org> Temporary lookup failure"]
    store = FakeStore()
    store.fail["account"] = OSError(5, "Input/output error")
    s = Session(store=store)
    s.start()
    assert s.cmd("RCPT TO:<alice@x.org>") == [b"451 4.3.0 <alice@x.org> Temporary lookup failure"]
    assert s.cmd("DATA") == [b"503 5.5.1 No valid recipients"]


def test_data_errors():
    s = Session()
    s.start()
    assert s.cmd("DATA") == [b"503 5.5.1 No valid recipients"]
    s.cmd("RCPT TO:<alice@x.org>")
    assert s.cmd("DATA now") == [b"501 5.5.4 Syntax: DATA"]


def test_delivery_headers_and_unstuffing():
    s = Session()
    s.start("alice@x.org")
    assert s.cmd("DATA") == [b"354 Start mail input; end with <CRLF>.<CRLF>"]
    assert s.send(stuff(MSG)) == [b"250 2.0.0 <alice@x.org> Saved"]
    assert s.store.accounts["alice"].contents() == [headers("s@example.org", "alice@x.org") + MSG]
    # the session goes on: a second transaction, null sender, 8-bit body
    s.cmd("MAIL FROM:<>")
    s.cmd("RCPT TO:<bob@x.org>")
    s.cmd("DATA")
    body = "Subject: \u00e9t\u00e9\r\n\r\n\u00fcber\r\n".encode()
    assert s.send(stuff(body)) == [b"250 2.0.0 <bob@x.org> Saved"]
    assert s.store.accounts["bob"].contents() == [headers("", "bob@x.org") + body]


def test_empty_message_and_lone_dot_lines():
    s = Session()
    s.start("alice@x.org")
    s.cmd("DATA")
    assert s.send(b".\r\n") == [b"250 2.0.0 <alice@x.org> Saved"]
    assert s.store.accounts["alice"].contents() == [headers("s@example.org", "alice@x.org")]
    s.start("alice@x.org")
    s.cmd("DATA")
    s.send(b"..\r\n.\r\n")
    assert s.store.accounts["alice"].contents()[1].endswith(b"alice@x.org\r\n.\r\n")


def test_detail_folders():
    store = FakeStore(alice=["Lists", "Work/Projects"])
    s = Session(store=store)
    s.start("alice+lists@x.org", "alice+Work/Projects@x.org", "alice+nothere@x.org", "ALICE@x.org")
    s.cmd("DATA")
    assert len(s.send(stuff(MSG))) == 4
    acct = store.accounts["alice"]
    assert len(acct.contents("Lists")) == 1
    assert len(acct.contents("Work/Projects")) == 1
    assert len(acct.contents("INBOX")) == 2
    assert acct.contents("Lists")[0].startswith(b"Return-Path: <s@example.org>\r\nDelivered-To: alice+lists@x.org\r\n")


def test_detail_folders_disabled():
    store = FakeStore(alice=["Lists"])
    s = Session(store=store, lmtp_detail_folders=False)
    s.start("alice+Lists@x.org")
    s.cmd("DATA")
    s.send(stuff(MSG))
    assert store.accounts["alice"].contents("Lists") == []
    assert len(store.accounts["alice"].contents("INBOX")) == 1


def test_detail_folder_vanished_before_data():
    store = FakeStore(alice=["Lists"])
    s = Session(store=store)
    s.start("alice+Lists@x.org")
    failed = []
    store.accounts["alice"].delete_folder("Lists").addErrback(failed.append)
    assert failed == [] and not store.accounts["alice"].folder_exists("Lists")
    s.cmd("DATA")
    assert s.send(stuff(MSG)) == [b"250 2.0.0 <alice+Lists@x.org> Saved"]
    assert len(store.accounts["alice"].contents("INBOX")) == 1


class Quota(StoreError):
    code = "OVERQUOTA"


def test_mixed_outcomes_one_transaction():
    """One reply per accepted recipient, in RCPT order, each its own fate."""
    store = FakeStore()
    store.account("bob").fail["deliver"] = OSError(28, "No space left on device")
    store.account("carol").fail["deliver"] = Quota()
    s = Session(store=store, users=USERS | {"dave", "erin"})
    store.account("dave").fail["deliver"] = TooBig()
    s.start()
    replies = s.send(
        b"RCPT TO:<alice@x.org>\r\nRCPT TO:<nobody@x.org>\r\nRCPT TO:<bob@x.org>\r\n"
        b"RCPT TO:<carol@x.org>\r\nRCPT TO:<dave@x.org>\r\nRCPT TO:<erin@x.org>\r\nDATA\r\n"
    )
    assert [r[:9] for r in replies] == [b"250 2.1.5", b"550 5.1.1"] + [b"250 2.1.5"] * 4 + [b"354 Start"]
    assert s.send(stuff(MSG)) == [
        b"250 2.0.0 <alice@x.org> Saved",
        b"451 4.3.0 <bob@x.org> Temporary delivery failure",
        b"452 4.2.2 <carol@x.org> Mailbox full",
        b"552 5.3.4 <dave@x.org> Message too big for mailbox",
        b"250 2.0.0 <erin@x.org> Saved",
    ]
    assert len(store.accounts["alice"].contents()) == 1
    assert store.accounts["erin"].contents()[0].startswith(headers("s@example.org", "erin@x.org"))


def test_size_limit_during_data():
    s = Session(lmtp_max_size=100)
    s.start("alice@x.org", "bob@x.org")
    s.cmd("DATA")
    big = b"Subject: x\r\n\r\n" + b"y" * 70 + b"\r\n" + b"z" * 70 + b"\r\n"
    replies = s.send(stuff(big))
    assert replies == [
        b"552 5.3.4 <alice@x.org> Message too big for system",
        b"552 5.3.4 <bob@x.org> Message too big for system",
    ]
    assert s.store.accounts["alice"].contents() == []
    # exactly at the limit is fine; the session is usable afterwards
    s.start("alice@x.org")
    s.cmd("DATA")
    ok = b"Subject: x\r\n\r\n" + b"y" * (100 - 16) + b"\r\n"
    assert len(ok) == 100
    assert s.send(stuff(ok)) == [b"250 2.0.0 <alice@x.org> Saved"]


def test_pipelining_waits_for_delivery():
    """Replies stay in order and input is paused while a delivery is pending
    (once more than MAX_PENDING_INPUT octets wait: the shared pump's rule)."""
    store = FakeStore()
    store.account("alice").hold_deliveries = True
    s = Session(store=store)
    first = s.send(b"LHLO c\r\nMAIL FROM:<a@b.c>\r\nRCPT TO:<alice@x.org>\r\nRCPT TO:<bob@x.org>\r\nDATA\r\n")
    assert first[-1].startswith(b"354")
    s.send(stuff(MSG) + b"NOOP\r\nMAIL FROM:<a@b.c>\r\n")
    assert s.take() == []  # alice's copy is not fsynced yet: no reply at all
    assert s.transport.producerState == "producing"
    noops = MAX_PENDING_INPUT // len(b"NOOP\r\n") + 1
    s.send(b"NOOP\r\n" * noops + b"QUIT\r\n")
    assert s.take() == []
    assert s.transport.producerState == "paused"
    s.clock.advance(1000)  # no timeout while the store works
    assert not s.transport.disconnecting
    store.account("alice").release()
    assert s.take() == [
        b"250 2.0.0 <alice@x.org> Saved",
        b"250 2.0.0 <bob@x.org> Saved",
        b"250 2.0.0 OK",
        b"250 2.1.0 Sender OK",
        *[b"250 2.0.0 OK"] * noops,
        b"221 2.0.0 mx.test Bye",
    ]
    assert s.transport.disconnecting


def test_async_user_lookup_serializes():
    from twisted.internet import defer

    waiting = []

    def lookup(name):
        d = defer.Deferred()
        waiting.append((d, name))
        return d

    s = Session(users=lookup)
    s.send(b"LHLO c\r\nMAIL FROM:<a@b.c>\r\n")
    assert s.send(b"RCPT TO:<alice@x.org>\r\nRCPT TO:<zed@x.org>\r\nNOOP\r\n") == []
    d, name = waiting.pop()
    assert name == "alice"
    d.callback(True)
    assert s.take() == [b"250 2.1.5 <alice@x.org> Recipient OK"]
    d, name = waiting.pop()
    d.callback(False)
    assert s.take() == [b"550 5.1.1 <zed@x.org> User unknown", b"250 2.0.0 OK"]


def test_bare_lf_commands():
    s = Session()
    assert s.send(b"LHLO c\nNOOP\n")[-1] == b"250 2.0.0 OK"


def test_line_too_long_is_answered_and_skipped():
    s = Session()
    replies = s.send(b"NOOP " + b"x" * 5000 + b"\r\nNOOP\r\n")
    assert replies == [b"500 5.5.2 Line too long", b"250 2.0.0 OK"]
    # a long line arriving in pieces is answered once and skipped to its end
    assert s.send(b"NOOP " + b"x" * 3000) == [b"500 5.5.2 Line too long"]
    assert s.send(b"x" * 3000) == []
    assert s.send(b"xx\r\nNOOP\r\n") == [b"250 2.0.0 OK"]


def test_too_many_errors():
    s = Session()
    replies = s.send(b"BAD\r\n" * 12)
    assert replies[:9] == [b"500 5.5.2 Command unrecognized"] * 9
    assert replies[9:] == [b"500 5.5.2 Command unrecognized", b"421 4.7.0 mx.test Too many errors, closing connection"]
    assert s.transport.disconnecting


def test_idle_timeout():
    s = Session()
    s.clock.advance(299)
    s.cmd("NOOP")
    s.clock.advance(299)
    assert not s.transport.disconnecting
    s.clock.advance(2)
    assert s.take() == [b"421 4.4.2 mx.test Timeout exceeded, closing connection"]
    assert s.transport.disconnecting


def test_connection_lost_mid_data_delivers_nothing():
    s = Session()
    s.start("alice@x.org")
    s.cmd("DATA")
    s.send(b"Subject: partial\r\n\r\nhalf a message")
    s.proto.connectionLost(None)
    assert s.store.accounts["alice"].contents() == []
    assert s.proto._spool is None


def test_handler_crash_is_a_451_not_a_dropped_session():
    store = FakeStore()
    weird = FakeStore()
    weird.fail["account"] = RuntimeError("bug")
    s = Session(store=weird)
    s.start()
    assert s.cmd("RCPT TO:<alice@x.org>") == [b"451 4.3.0 <alice@x.org> Temporary lookup failure"]
    s = Session(store=store, users=lambda name: 1 / 0)
    s.start()
    assert s.cmd("RCPT TO:<alice@x.org>")[0].startswith(b"451 4.3.0")
    assert s.cmd("NOOP") == [b"250 2.0.0 OK"]


def test_smtputf8_addresses_are_delivered():
    """RFC 6531: with SMTPUTF8 a UTF-8 local part and U-label domain reach
    the mailbox, and the trace headers carry them as they were given."""
    s = Session(users={"jörg"}, local_domains=["xn--bcher-kva.example"])
    s.cmd("LHLO c")
    assert s.send("MAIL FROM:<dörte@bücher.example> SMTPUTF8\r\n".encode()) == [b"250 2.1.0 Sender OK"]
    assert s.send("RCPT TO:<jörg@bücher.example>\r\n".encode()) == [
        "250 2.1.5 <jörg@bücher.example> Recipient OK".encode()]
    assert s.send("RCPT TO:<Jörg@xn--bcher-kva.example>\r\n".encode())[0].startswith(b"250 ")
    assert s.send(b"RCPT TO:<j\xc3@b\xc3\xbccher.example>\r\n") == [b"501 5.1.3 Bad recipient address syntax"]
    assert s.send("RCPT TO:<x@bücher.other>\r\n".encode())[0].startswith(b"550 5.1.2")
    out = s.send(b"DATA\r\n")
    assert out == [b"354 Start mail input; end with <CRLF>.<CRLF>"]
    out = s.send("Subject: Grüße\r\n\r\nHallo\r\n.\r\n".encode())
    assert [line[:3] for line in out] == [b"250", b"250"]
    raw = s.store.accounts["jörg"].contents()[0]
    assert raw.startswith("Return-Path: <dörte@bücher.example>\r\nDelivered-To: jörg@bücher.example\r\n".encode())
    assert "Subject: Grüße".encode() in raw


def test_utf8_recipient_without_smtputf8_is_refused():
    s = Session()
    s.start()
    assert s.send("RCPT TO:<jörg@x.org>\r\n".encode()) == [b"553 5.6.7 Non-ASCII address needs SMTPUTF8"]
