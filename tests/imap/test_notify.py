"""NOTIFY (RFC 5465) transcripts: the grammar and every refusal, STATUS
for other mailboxes, the selected mailbox between commands, MailboxName
and SubscriptionChange, and where notifications wait while a command runs."""

from __future__ import annotations

from tests.imap.harness import MSG1, MSG2, Client, inbox_with, tagged


def pair() -> tuple[Client, Client]:
    """Two sessions of joe on one account: ``a`` follows, ``b`` changes."""
    a = Client()
    a.login()
    b = Client(account=a.account)
    b.login()
    return a, b


# -- grammar and refusals


def test_notify_syntax_errors_are_bad() -> None:
    a, _ = pair()
    for line in ("NOTIFY", "NOTIFY SET", "NOTIFY SET STATUS", "NOTIFY SET (personal)",
                 "NOTIFY SET (nowhere (MessageNew))", "NOTIFY SET (personal ())",
                 "NOTIFY SET (mailboxes (MessageNew))", "NOTIFY SET (personal (MessageNew (UID)))",
                 "NOTIFY NONE extra", "NOTIFY SET (personal (MessageNew)) junk"):
        assert tagged(a.cmd("x " + line), "x").startswith(b"x BAD"), line


def test_notify_refusals() -> None:
    a, _ = pair()
    supported = b"(MessageNew MessageExpunge FlagChange MailboxName SubscriptionChange)"
    out = a.cmd("a NOTIFY SET (personal (MessageNew AnnotationChange))")
    assert out == b"a NO [BADEVENT " + supported + b"] NOTIFY Unsupported NOTIFY events: AnnotationChange\r\n"
    assert a.cmd("b NOTIFY SET (selected (XFoo))").startswith(b"b NO [BADEVENT ")
    assert a.cmd("c NOTIFY SET (selected (MessageNew))").startswith(b"c BAD")
    assert a.cmd("d NOTIFY SET (selected (FlagChange))").startswith(b"d BAD")
    assert a.cmd("e NOTIFY SET (selected (MessageNew MessageExpunge)) (selected-delayed NONE)").startswith(b"e BAD")
    names = " ".join(f"m{i}" for i in range(101))
    assert a.cmd(f"f NOTIFY SET (mailboxes ({names}) (MessageNew))") == (
        b"f NO [NOTIFICATIONOVERFLOW] NOTIFY Too many mailbox names\r\n")
    c = Client()
    assert c.cmd("g NOTIFY NONE").startswith(b"g BAD")  # not before login
    assert b" NOTIFY" in a.cmd("h CAPABILITY")


# -- other mailboxes


def test_notify_set_status_sends_initial_status() -> None:
    a, _ = pair()
    a.account.folders["Sent"].add(MSG1, ["\\Seen"])
    a.account.folders["Sent"].add(MSG2)
    out = a.cmd("a NOTIFY SET STATUS (mailboxes Sent (MessageNew MessageExpunge))")
    assert out == (b'* STATUS "Sent" (MESSAGES 2 UIDNEXT 3 UIDVALIDITY 2001 UNSEEN 1)\r\n'
                   b"a OK NOTIFY completed\r\n")
    out = a.cmd("b NOTIFY SET STATUS (mailboxes Sent (FlagChange))")
    assert out.startswith(b'* STATUS "Sent" (MESSAGES 2 UIDNEXT 3 UIDVALIDITY 2001 UNSEEN 1 HIGHESTMODSEQ 1)')
    assert a.cmd("c NOTIFY SET (mailboxes Sent (MessageNew MessageExpunge))") == b"c OK NOTIFY completed\r\n"
    a.select()
    out = a.cmd("d NOTIFY SET STATUS (personal (MessageNew MessageExpunge))")
    assert b'STATUS "INBOX"' not in out  # never for the selected mailbox
    assert out.count(b"* STATUS ") == len(a.account.folders) - 1


def test_changes_elsewhere_arrive_between_commands_as_status() -> None:
    a, b = pair()
    a.cmd("n NOTIFY SET (personal (MessageNew MessageExpunge FlagChange))")
    b.cmd('x APPEND Sent {%d+}\r\n' % len(MSG1) + MSG1.decode())
    assert a.take() == b'* STATUS "Sent" (MESSAGES 1 UIDNEXT 2 UNSEEN 1)\r\n'
    b.cmd("s SELECT Sent")
    b.cmd("f STORE 1 +FLAGS (\\Seen)")
    assert a.take() == b'* STATUS "Sent" (UNSEEN 0)\r\n'
    b.cmd("f STORE 1 +FLAGS (\\Flagged)")
    assert a.take() == b""  # nothing a non-CONDSTORE client is shown changed
    b.cmd("f STORE 1 +FLAGS (\\Deleted)")
    b.cmd("e EXPUNGE")
    assert a.take() == b'* STATUS "Sent" (MESSAGES 0 UIDNEXT 2 UNSEEN 0)\r\n'


def test_only_the_followed_mailboxes_and_events() -> None:
    a, b = pair()
    a.cmd("n NOTIFY SET (mailboxes Trash (MessageExpunge)) (subtree Lists (MessageNew))")
    b.cmd("c CREATE Lists/python")
    b.cmd("x APPEND Sent {%d+}\r\n" % len(MSG1) + MSG1.decode())
    b.cmd("x APPEND Trash {%d+}\r\n" % len(MSG1) + MSG1.decode())
    assert a.take() == b""
    b.cmd("x APPEND Lists/python {%d+}\r\n" % len(MSG1) + MSG1.decode())
    assert a.take() == b'* STATUS "Lists/python" (MESSAGES 1 UIDNEXT 2 UNSEEN 1)\r\n'


def test_notifications_wait_for_the_end_of_a_running_command() -> None:
    a, _ = pair()
    a.cmd("n NOTIFY SET (personal (MessageNew))")
    out = a.cmd("x APPEND Sent {%d+}\r\n" % len(MSG1) + MSG1.decode())
    status = out.index(b'* STATUS "Sent"')
    assert status < out.index(b"x OK [APPENDUID")


def test_idle_gets_other_mailboxes_news() -> None:
    a, b = pair()
    inbox_with(a, MSG1)
    a.select()
    a.cmd("n NOTIFY SET (personal (MessageNew))")
    assert a.cmd("i IDLE") == b"+ idling\r\n"
    b.cmd("x APPEND Drafts {%d+}\r\n" % len(MSG1) + MSG1.decode())
    assert a.take() == b'* STATUS "Drafts" (MESSAGES 1 UIDNEXT 2 UNSEEN 1)\r\n'
    assert a.cmd("DONE") == b"i OK IDLE terminated\r\n"


def test_condstore_sessions_get_highestmodseq() -> None:
    a, b = pair()
    a.cmd("n NOTIFY SET (personal (MessageNew MessageExpunge FlagChange))")
    a.proto.ctx.enabled.add("CONDSTORE")  # as ENABLE CONDSTORE does
    b.cmd("x APPEND Sent {%d+}\r\n" % len(MSG1) + MSG1.decode())
    sent = a.account.folders["Sent"]
    assert a.take() == b'* STATUS "Sent" (MESSAGES 1 UIDNEXT 2 UNSEEN 1 HIGHESTMODSEQ %d)\r\n' % sent.highestmodseq
    b.cmd("s SELECT Sent")
    b.cmd("f STORE 1 +FLAGS (\\Flagged)")
    assert a.take() == b'* STATUS "Sent" (UNSEEN 1 HIGHESTMODSEQ %d)\r\n' % sent.highestmodseq


# -- mailbox names and subscriptions


def test_mailbox_name_events() -> None:
    a, b = pair()
    a.cmd("n NOTIFY SET (personal (MailboxName))")
    b.cmd("c CREATE Projects")
    assert a.take() == b'* LIST (\\HasNoChildren) "/" "Projects"\r\n'
    b.cmd("r RENAME Projects Done")
    assert a.take() == b'* LIST (\\HasNoChildren) "/" "Done" ("OLDNAME" ("Projects"))\r\n'
    b.cmd("d DELETE Done")
    assert a.take() == b'* LIST (\\NonExistent) "/" "Done"\r\n'
    b.cmd("x APPEND Sent {%d+}\r\n" % len(MSG1) + MSG1.decode())
    assert a.take() == b""  # no message events asked for


def test_subscription_events_and_the_subscribed_filter() -> None:
    a, b = pair()
    a.cmd("n NOTIFY SET (subscribed (SubscriptionChange MessageNew))")
    b.cmd("c CREATE Projects")
    b.cmd("x APPEND Projects {%d+}\r\n" % len(MSG1) + MSG1.decode())
    assert a.take() == b""  # not subscribed
    b.cmd("s SUBSCRIBE Projects")
    assert a.take() == b'* LIST (\\HasNoChildren \\Subscribed) "/" "Projects"\r\n'
    b.cmd("x APPEND Projects {%d+}\r\n" % len(MSG1) + MSG1.decode())
    assert a.take() == b'* STATUS "Projects" (MESSAGES 2 UIDNEXT 3 UNSEEN 2)\r\n'
    b.cmd("u UNSUBSCRIBE Projects")
    assert a.take() == b'* LIST (\\HasNoChildren) "/" "Projects"\r\n'
    b.cmd("x APPEND Projects {%d+}\r\n" % len(MSG1) + MSG1.decode())
    assert a.take() == b""


def test_utf8_session_gets_utf8_names() -> None:
    a, b = pair()
    a.cmd("e ENABLE UTF8=ACCEPT")
    a.cmd("n NOTIFY SET (personal (MailboxName MessageNew))")
    b.cmd("c CREATE Entw&APw-rfe")
    assert a.take() == '* LIST (\\HasNoChildren) "/" "Entwürfe"\r\n'.encode()


# -- the selected mailbox


def test_selected_pushes_new_messages_with_fetch_and_expunges() -> None:
    a, b = pair()
    inbox_with(a, MSG1)
    a.select()
    assert a.cmd("n NOTIFY SET (selected (MessageNew (UID FLAGS) MessageExpunge FlagChange))") == (
        b"n OK NOTIFY completed\r\n")
    b.cmd("x APPEND INBOX {%d+}\r\n" % len(MSG2) + MSG2.decode())
    assert a.take() == b"* 2 EXISTS\r\n* 2 RECENT\r\n* 2 FETCH (UID 2 FLAGS (\\Recent))\r\n"
    b.select()
    b.cmd("f STORE 1 +FLAGS (\\Seen)")
    assert a.take() == b"* 1 FETCH (UID 1 FLAGS (\\Seen \\Recent))\r\n"
    b.cmd("f STORE 1 +FLAGS (\\Deleted)")
    a.take()
    b.cmd("e EXPUNGE")
    assert a.take() == b"* 1 EXPUNGE\r\n"
    assert a.cmd("o NOOP") == b"o OK NOOP completed\r\n"


def test_selected_delayed_holds_expunges_for_the_next_command() -> None:
    a, b = pair()
    inbox_with(a, MSG1, MSG2)
    a.select()
    a.cmd("n NOTIFY SET (selected-delayed (MessageNew MessageExpunge))")
    b.select()
    b.cmd("f STORE 1 +FLAGS (\\Deleted)")
    b.cmd("e EXPUNGE")
    assert a.take() == b""
    b.cmd("x APPEND INBOX {%d+}\r\n" % len(MSG2) + MSG2.decode())
    assert a.take() == b"* 3 EXISTS\r\n* 3 RECENT\r\n"  # new messages do go out
    assert a.cmd("o NOOP") == b"* 1 EXPUNGE\r\no OK NOOP completed\r\n"


def test_without_flagchange_other_sessions_flags_are_not_reported() -> None:
    a, b = pair()
    inbox_with(a, MSG1)
    a.select()
    a.cmd("n NOTIFY SET (selected (MessageNew MessageExpunge))")
    b.select()
    b.cmd("f STORE 1 +FLAGS (\\Flagged)")
    assert a.take() == b""
    assert a.cmd("o NOOP") == b"o OK NOOP completed\r\n"
    # a later SELECT gets the same treatment
    a.cmd("s SELECT INBOX")
    b.cmd("f STORE 1 -FLAGS (\\Flagged)")
    assert a.cmd("o NOOP") == b"o OK NOOP completed\r\n"


def test_notify_none_and_logout_stop_everything() -> None:
    a, b = pair()
    inbox_with(a, MSG1)
    a.select()
    a.cmd("n NOTIFY SET (selected (MessageNew MessageExpunge)) (personal (MessageNew MailboxName))")
    assert a.cmd("m NOTIFY NONE") == b"m OK NOTIFY completed\r\n"
    b.cmd("x APPEND Sent {%d+}\r\n" % len(MSG1) + MSG1.decode())
    b.cmd("x APPEND INBOX {%d+}\r\n" % len(MSG1) + MSG1.decode())
    b.cmd("c CREATE Other")
    assert a.take() == b""
    assert a.cmd("o NOOP").startswith(b"* 2 EXISTS\r\n")  # RFC 3501 still holds
    a.cmd("n NOTIFY SET (personal (MessageNew))")
    assert a.account.account_listeners
    a.cmd("l LOGOUT")
    a.proto.connectionLost(None)
    assert not a.account.account_listeners


def test_poll_finds_deliveries_by_other_processes() -> None:
    a, _ = pair()
    a.cmd("n NOTIFY SET (personal (MessageNew))")
    a.account.folders["Junk"].drop_external(MSG1)
    assert a.take() == b""
    a.clock.advance(a.proto.ctx.idle_poll)
    assert a.take() == b'* STATUS "Junk" (MESSAGES 1 UIDNEXT 2 UNSEEN 1)\r\n'
