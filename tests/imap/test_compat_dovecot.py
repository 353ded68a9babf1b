"""Regressions for differences found by bench/imap_compare.py (mailsrv
side by side with Dovecot 2.3): each test pins the answer a client or a
strict suite (imaptest) relies on, on the in-memory store."""

from tests.imap.harness import MSG1, MSG2, Client, inbox_with, tagged


def authed(**kw):
    c = Client(**kw)
    c.login()
    return c


def second(c: Client) -> Client:
    """Another session of the same user on the same account."""
    c2 = Client(account=c.account)
    c2.login()
    return c2


def test_examine_reports_recent_without_claiming_it():
    c = authed()
    inbox_with(c, MSG1, MSG2)
    out = c.cmd("a EXAMINE INBOX")
    assert b"* 2 RECENT\r\n" in out
    assert b"* 1 FETCH (FLAGS (\\Recent))\r\n" in c.cmd("b FETCH 1 FLAGS")
    # EXAMINE left them for the first SELECT, which claims them
    c2 = second(c)
    assert b"* 2 RECENT\r\n" in c2.cmd("c SELECT INBOX")
    c3 = second(c)
    assert b"* 0 RECENT\r\n" in c3.cmd("d SELECT INBOX")


def test_examine_sees_recent_of_new_arrivals():
    c = authed()
    inbox = inbox_with(c, MSG1)
    c.cmd("a EXAMINE INBOX")
    inbox.drop_external(MSG2)
    out = c.cmd("b NOOP")
    assert b"* 2 EXISTS\r\n* 2 RECENT\r\n" in out


def test_status_recent_counts_unclaimed_messages():
    c = authed()
    inbox_with(c, MSG1, MSG2)
    out = c.cmd("a STATUS INBOX (RECENT MESSAGES)")
    assert out.startswith(b'* STATUS "INBOX" (RECENT 2 MESSAGES 2)\r\n')
    c2 = second(c)
    c2.cmd("b SELECT INBOX")  # claims them
    assert c.cmd("c STATUS INBOX (RECENT)").startswith(b'* STATUS "INBOX" (RECENT 0)\r\n')
    # the selecting session counts its own
    assert c2.cmd("d STATUS INBOX (RECENT)").startswith(b'* STATUS "INBOX" (RECENT 2)\r\n')


def test_store_new_keyword_sends_flags_before_fetch():
    c = authed()
    inbox_with(c, MSG1)
    c.select()
    out = c.cmd("a STORE 1 +FLAGS ($Label)")
    flags_at = out.index(b"* FLAGS (")
    fetch_at = out.index(b"* 1 FETCH (FLAGS (")
    assert flags_at < fetch_at, out
    assert b"$Label" in out[flags_at:fetch_at]
    assert b"[PERMANENTFLAGS (" in out[flags_at:fetch_at]
    # announced once: a later STORE of the same keyword says nothing new
    out = c.cmd("b STORE 1 -FLAGS ($Label)")
    assert b"* FLAGS" not in out and tagged(out, "b") == b"b OK STORE completed\r\n"


def test_store_silent_new_keyword_still_announces_flags():
    c = authed()
    inbox_with(c, MSG1)
    c.select()
    out = c.cmd("a STORE 1 +FLAGS.SILENT (NewKw)")
    assert b"* FLAGS (" in out and b"NewKw" in out and b"FETCH" not in out


def test_fetch_flags_is_not_followed_by_duplicate_unsolicited_fetch():
    c = authed()
    inbox_with(c, MSG1, MSG2)
    c.select()
    c2 = second(c)
    c2.cmd("a SELECT INBOX")
    c2.cmd("b STORE 2 +FLAGS.SILENT (\\Flagged)")
    out = c.cmd("c FETCH 2 FLAGS")
    assert out.count(b"* 2 FETCH") == 1, out
    assert b"\\Flagged" in out
    assert c.cmd("d NOOP") == b"d OK NOOP completed\r\n"


def test_other_sessions_flag_change_reported_once_without_flags_item():
    c = authed()
    inbox_with(c, MSG1)
    c.select()
    c2 = second(c)
    c2.cmd("a SELECT INBOX")
    c2.cmd("b STORE 1 +FLAGS.SILENT (\\Answered)")
    out = c.cmd("c FETCH 1 UID")
    assert b"* 1 FETCH (UID 1)\r\n" in out
    assert out.count(b"FLAGS (") == 1 and b"\\Answered" in out  # the unsolicited update


def test_lsub_star_does_not_invent_noselect_parents():
    c = authed()
    c.account.create_folder("a/b/c")
    c.cmd("s SUBSCRIBE a/b/c")
    out = c.cmd('a LSUB "" "*"')
    assert b'* LSUB () "/" "a/b/c"\r\n' in out
    assert b'"a"' not in out and b'"a/b"' not in out, out
    # with % the pattern stops at "a": the parent stands in, \Noselect
    out = c.cmd('b LSUB "" "%"')
    assert b'* LSUB (\\Noselect) "/" "a"\r\n' in out
    out = c.cmd('c LSUB "" "a/%"')
    assert b'* LSUB (\\Noselect) "/" "a/b"\r\n' in out
    assert b'"a/b/c"' not in out


def test_list_empty_pattern_returns_reference_root():
    c = authed()
    assert c.cmd('a LIST "" ""') == b'* LIST (\\Noselect) "/" ""\r\na OK LIST completed\r\n'
    out = c.cmd('b LIST "foo/bar" ""')
    assert out.startswith(b'* LIST (\\Noselect) "/" "foo/"\r\n'), out
    out = c.cmd('c LIST "foo" ""')
    assert out.startswith(b'* LIST (\\Noselect) "/" ""\r\n'), out


def test_list_pattern_not_modified_utf7_is_no_match_not_bad():
    c = authed()
    out = c.cmd('a LIST "" "&Jjo"')
    assert out == b"a OK LIST completed\r\n"
    # valid modified UTF-7 still matches
    c.account.create_folder("caf\u00e9")
    out = c.cmd('b LIST "" "caf&AOk-"')
    assert b'"caf&AOk-"' in out


def test_copy_racing_an_expunge_is_no_and_copies_nothing():
    c = authed()
    inbox = inbox_with(c, MSG1, MSG2)
    c.account.create_folder("Dest")
    c.select()
    real_copy = inbox.copy_to

    def copy_after_other_session_expunged(uids, target):
        inbox.expunge([2])  # another session wins the race
        return real_copy(uids, target)

    inbox.copy_to = copy_after_other_session_expunged
    out = c.cmd("a COPY 1:2 Dest")
    assert tagged(out, "a").startswith(b"a NO [EXPUNGEISSUED]"), out
    assert c.account.folders["Dest"].messages() == []
