"""RFC 2180 multi-access and IDLE: changes by other sessions reach each
session at the allowed points; pushed at once while idling."""

from mailsrv.config import Config
from tests.imap.harness import MSG1, MSG2, MSG3, Client, inbox_with


def two_sessions(*msgs):
    a = Client()
    a.login()
    inbox_with(a, *msgs)
    a.select()
    b = Client(account=a.account, clock=a.clock)
    b.login()
    b.select()
    return a, b


def test_expunge_by_other_session_not_reported_during_fetch_store_search():
    a, b = two_sessions(MSG1, MSG2, MSG3)
    b.cmd("x STORE 2 +FLAGS.SILENT (\\Deleted)")
    b.cmd("y EXPUNGE")
    out = a.cmd("f FETCH 1:3 FLAGS")
    assert b"* 2 EXPUNGE" not in out
    assert b"* 1 FETCH" in out and b"* 3 FETCH" in out
    assert out.endswith(b"f NO [EXPUNGEISSUED] FETCH Some of the requested messages no longer exist\r\n")
    assert b"* 2 EXPUNGE" not in a.cmd("s SEARCH ALL")
    assert a.cmd("n NOOP") == b"* 2 EXPUNGE\r\nn OK NOOP completed\r\n"
    assert a.cmd("f2 FETCH 2 UID") == b"* 2 FETCH (UID 3)\r\nf2 OK FETCH completed\r\n"


def test_uid_fetch_may_report_expunge():
    a, b = two_sessions(MSG1, MSG2)
    b.cmd("x STORE 1 +FLAGS.SILENT (\\Deleted)")
    b.cmd("y EXPUNGE")
    out = a.cmd("u UID FETCH 1:* FLAGS")
    assert b"* 1 EXPUNGE\r\n" in out


def test_new_mail_and_flag_changes_from_others():
    a, b = two_sessions(MSG1)
    b.send(b"x APPEND INBOX {3+}\r\nabc\r\n")
    b.cmd("y STORE 1 +FLAGS.SILENT (\\Answered)")
    out = a.cmd("n NOOP")
    assert b"* 2 EXISTS\r\n" in out and b"* 1 FETCH (UID 1 FLAGS (\\Answered \\Recent))\r\n" in out
    # the appending session got nothing recent; a claimed the new message
    assert b"* 1 RECENT\r\n" in out or b"* 2 RECENT\r\n" in out


def test_external_delivery_noticed_on_refresh():
    a, b = two_sessions(MSG1)
    a.account.folders["INBOX"].drop_external(MSG2)
    assert b"* 2 EXISTS" in a.cmd("n NOOP")


def test_idle_pushes_immediately_and_needs_strict_done():
    a, b = two_sessions(MSG1, MSG2)
    assert a.cmd("i IDLE") == b"+ idling\r\n"
    b.cmd("x STORE 1 +FLAGS.SILENT (\\Flagged)")
    assert a.take() == b"* 1 FETCH (UID 1 FLAGS (\\Flagged \\Recent))\r\n"
    b.cmd("y STORE 2 +FLAGS.SILENT (\\Deleted)")
    assert a.take() == b"* 2 FETCH (UID 2 FLAGS (\\Deleted \\Recent))\r\n"
    b.cmd("z EXPUNGE")
    assert a.take() == b"* 2 EXPUNGE\r\n"
    b.send(b"w APPEND INBOX {3+}\r\nabc\r\n")
    assert a.take().startswith(b"* 2 EXISTS\r\n")
    assert a.cmd("DONE") == b"i OK IDLE terminated\r\n"
    assert a.cmd("j IDLE") == b"+ idling\r\n"
    assert a.cmd("nope") == b"j BAD IDLE Expected DONE\r\n"


def test_idle_keepalive_and_poll():
    a, b = two_sessions(MSG1)
    a.proto.ctx.idle_keepalive = 120
    a.proto.ctx.idle_poll = 5
    a.cmd("i IDLE")
    folder = a.account.folders["INBOX"]
    before = folder.refresh_count
    folder.drop_external(MSG2)
    a.clock.advance(5)
    assert folder.refresh_count > before
    assert a.take().startswith(b"* 2 EXISTS")
    a.clock.advance(120)
    assert b"* OK Still here\r\n" in a.take()
    a.cmd("DONE")
    a.clock.advance(600)
    assert b"Still here" not in a.take()


def test_idle_polls_rarely_where_outside_changes_are_pushed():
    """A folder with instant notice (inotify in the Maildir store) is polled
    every 60 s during IDLE, as a safety net, not every 5 s."""
    a, b = two_sessions(MSG1)
    a.proto.ctx.idle_poll = 5
    folder = a.account.folders["INBOX"]
    folder.instant_notice = True
    a.cmd("i IDLE")
    before = folder.refresh_count
    a.clock.advance(55)
    assert folder.refresh_count == before
    a.clock.advance(5)
    assert folder.refresh_count == before + 1
    a.cmd("DONE")


def test_idle_in_authenticated_state_and_pipelined_done():
    c = Client()
    c.login()
    out = c.send(b"i IDLE\r\nDONE\r\nn NOOP\r\n")
    assert out == b"+ idling\r\ni OK IDLE terminated\r\nn OK NOOP completed\r\n"


def test_pipelined_selected_commands_in_order_split_at_every_byte():
    data = (b"a SELECT INBOX\r\nb FETCH 1 (FLAGS)\r\nc STORE 1 +FLAGS (\\Seen)\r\n"
            b"d SEARCH SUBJECT {5}\r\nhello\r\ne LOGOUT\r\n")
    c = Client()
    c.login()
    inbox_with(c, MSG1)
    out = b""
    for i in range(len(data)):
        out += c.send(data[i:i + 1])
    tags = [ln.split(b" ")[0] for ln in out.split(b"\r\n") if ln and ln[:1] not in (b"*", b"+")]
    assert tags == [b"a", b"b", b"c", b"d", b"e"]
    assert b"* SEARCH 1\r\n" in out


def test_flood_of_pipelined_input_pauses_reading():
    c = Client()
    c.login()
    paused = []
    c.transport.pauseProducing = lambda: paused.append(True)
    c.proto.pump.busy = True  # a command is running
    c.send(b"x NOOP\r\n" * 200000)
    assert paused
    c.transport.resumeProducing = lambda: paused.append(False)
    c.proto.pump.busy = False
    out = c.send(b"")
    assert out.count(b"OK NOOP") == 200000 and paused[-1] is False


def test_delete_selected_mailbox_by_other_session():
    a, b = two_sessions(MSG1)
    b.cmd("c CREATE Tmp")
    a.cmd("s SELECT Tmp")
    a.account.folders["Tmp"].append(MSG2)
    assert b"* 1 EXISTS" in a.cmd("m NOOP")
    b.cmd("d DELETE Tmp")
    assert a.cmd("n NOOP") == b"* 1 EXPUNGE\r\nn OK NOOP completed\r\n"


def test_session_timeout_config_used():
    c = Client(config=Config(imap_timeout=10, auth_fail_delay=0))
    c.login()
    c.clock.advance(11)
    assert c.transport.disconnecting


def test_hanging_up_during_idle_is_quiet():
    from twisted.logger import globalLogPublisher

    failures = []

    def observer(event):
        if "log_failure" in event:
            failures.append(event)

    a, b = two_sessions(MSG1)
    a.cmd("i IDLE")
    globalLogPublisher.addObserver(observer)
    try:
        a.proto.connectionLost(None)
    finally:
        globalLogPublisher.removeObserver(observer)
    assert failures == [] and not a.proto.ctx.idling and not a.proto.waiting_for_line
    assert a.portal.realm.logouts == 1
    a.clock.advance(600)  # the keepalive and poll loops are gone
    assert a.take() == b""
