"""Authenticated state: SELECT/EXAMINE, CREATE/DELETE/RENAME, (UN)SUBSCRIBE,
LIST/LSUB (incl. LIST-EXTENDED, LIST-STATUS, SPECIAL-USE), STATUS, APPEND
(literals, LITERAL+, MULTIAPPEND, limits), NAMESPACE, ENABLE."""

from mailsrv.config import Config
from tests.fakestore import FakeFolder
from tests.imap.harness import MSG1, MSG2, Client, inbox_with, tagged


def authed(**kw):
    c = Client(**kw)
    c.login()
    return c


def test_select_responses():
    c = authed()
    inbox_with(c, MSG1, flags=["\\Seen"])
    inbox_with(c, MSG2)
    out = c.cmd("a SELECT INBOX")
    assert b"* FLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft)\r\n" in out
    assert b"* OK [PERMANENTFLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft \\*)]" in out
    assert b"* 2 EXISTS\r\n* 2 RECENT\r\n* OK [UNSEEN 2]" in out
    assert b"* OK [UIDVALIDITY 1000]" in out and b"* OK [UIDNEXT 3]" in out
    assert tagged(out, "a") == b"a OK [READ-WRITE] SELECT completed\r\n"
    # a second session does not see them as recent
    c2 = Client(account=c.account)
    c2.login()
    assert b"* 0 RECENT" in c2.cmd("b SELECT INBOX")


def test_examine_is_read_only():
    c = authed()
    inbox_with(c, MSG1)
    out = c.cmd("a EXAMINE inbox")
    assert tagged(out, "a") == b"a OK [READ-ONLY] EXAMINE completed\r\n"
    assert b"[PERMANENTFLAGS ()]" in out
    assert b"b NO" in c.cmd("b STORE 1 +FLAGS (\\Seen)")
    assert b"c NO" in c.cmd("c EXPUNGE")
    c.cmd("d FETCH 1 BODY[]")
    assert "\\Seen" not in c.account.folders["INBOX"].get(1).flags


def test_select_missing_mailbox_deselects():
    c = authed()
    c.select()
    assert b"a NO [NONEXISTENT]" in c.cmd("a SELECT Nope")
    assert b"b BAD" in c.cmd("b FETCH 1 FLAGS")


def test_create_delete_rename():
    c = authed()
    assert b"a OK" in c.cmd("a CREATE Lists/python/")
    assert c.account.folder_exists("Lists") and c.account.folder_exists("Lists/python")
    assert b"b NO [ALREADYEXISTS]" in c.cmd("b CREATE Lists")
    assert b"b NO [ALREADYEXISTS]" in c.cmd("b CREATE inbox")
    assert b"c NO [CANNOT]" in c.cmd("c CREATE a//b")
    assert b"d OK" in c.cmd("d RENAME Lists Archive2")
    assert c.account.folder_exists("Archive2/python") and not c.account.folder_exists("Lists")
    assert b"e NO [NONEXISTENT]" in c.cmd("e RENAME Nope X")
    assert b"e NO [ALREADYEXISTS]" in c.cmd("e RENAME Archive2 Sent")
    assert b"f OK" in c.cmd("f DELETE Archive2/python")
    assert b"g NO [NONEXISTENT]" in c.cmd("g DELETE Archive2/python")
    assert b"h NO [CANNOT]" in c.cmd("h DELETE INBOX")


def test_rename_inbox_moves_messages():
    c = authed()
    inbox_with(c, MSG1, MSG2)
    assert b"a OK" in c.cmd("a RENAME INBOX Old")
    assert len(c.account.folders["Old"].messages()) == 2
    assert c.account.folders["INBOX"].messages() == []


def test_non_ascii_names_round_trip():
    c = authed()
    assert b"a OK" in c.cmd('a CREATE "Entw&APw-rfe"')
    assert "Entw\u00fcrfe" in c.account.folders
    out = c.cmd('b LIST "" "Entw*"')
    assert b'* LIST (\\HasNoChildren) "/" "Entw&APw-rfe"\r\n' in out
    assert b"c BAD" in c.cmd('c CREATE "bad&-name&Jjo"')


def test_list_basic_and_special_use_and_children():
    c = authed()
    c.cmd("a CREATE Lists/python")
    out = c.cmd('b LIST "" *')
    assert out.index(b'"INBOX"') < out.index(b'"Archive"')
    assert b'* LIST (\\HasNoChildren \\Sent) "/" "Sent"\r\n' in out
    assert b'* LIST (\\HasChildren) "/" "Lists"\r\n' in out
    out = c.cmd('c LIST "" %')
    assert b'"Lists/python"' not in out and b'"Lists"' in out
    out = c.cmd('d LIST "Lists/" %')
    assert b'"Lists/python"' in out and b'"INBOX"' not in out
    assert c.cmd('e LIST "" ""') == b'* LIST (\\Noselect) "/" ""\r\ne OK LIST completed\r\n'
    out = c.cmd('f LIST "" inbox')
    assert b'"INBOX"' in out


def test_list_implied_parent_is_noselect():
    c = authed()
    c.account.folders.pop("Sent")
    c.account.folders["a/b"] = FakeFolder("a/b")
    out = c.cmd('x LIST "" %')
    assert b'* LIST (\\Noselect \\HasChildren) "/" "a"\r\n' in out


def test_list_extended_and_status():
    c = authed()
    inbox_with(c, MSG1, MSG2)
    c.cmd("a UNSUBSCRIBE Junk")
    c.cmd("a SUBSCRIBE Gone")
    out = c.cmd('b LIST (SUBSCRIBED) "" *')
    assert b'\\Subscribed' in out and b'"Junk"' not in out
    assert b'* LIST (\\NonExistent \\HasNoChildren \\Subscribed) "/" "Gone"' in out
    out = c.cmd('c LIST (SPECIAL-USE) "" *')
    assert b'"INBOX"' not in out and b'\\Trash' in out
    out = c.cmd('d LIST "" ("INBOX" "Sent") RETURN (SUBSCRIBED STATUS (MESSAGES UNSEEN UIDNEXT))')
    assert b'* STATUS "INBOX" (MESSAGES 2 UNSEEN 2 UIDNEXT 3)\r\n' in out
    assert b'* STATUS "Sent" (MESSAGES 0 UNSEEN 0 UIDNEXT 1)\r\n' in out
    assert b'"Trash"' not in out


def test_lsub_and_subscribe():
    c = authed()
    c.cmd("a SUBSCRIBE Lists/python")
    out = c.cmd('b LSUB "" *')
    assert b'* LSUB () "/" "INBOX"\r\n' in out and b'"Lists/python"' in out
    out = c.cmd('c LSUB "" %')
    assert b'* LSUB (\\Noselect) "/" "Lists"\r\n' in out
    c.cmd("d UNSUBSCRIBE Lists/python")
    assert b"Lists" not in c.cmd('e LSUB "" *')


def test_status():
    c = authed()
    inbox_with(c, MSG1, MSG2)
    c.account.folders["INBOX"].store_flags([1], ["\\Seen"], "+")
    out = c.cmd("a STATUS INBOX (MESSAGES RECENT UIDNEXT UIDVALIDITY UNSEEN)")
    # both messages are new and no session has claimed them: RECENT 2 (RFC 3501 6.3.10)
    assert out.startswith(b'* STATUS "INBOX" (MESSAGES 2 RECENT 2 UIDNEXT 3 UIDVALIDITY 1000 UNSEEN 1)\r\n')
    assert b"b NO [NONEXISTENT]" in c.cmd("b STATUS Nope (MESSAGES)")
    assert b"c BAD" in c.cmd("c STATUS INBOX (BOGUS)")


def test_append_sync_literal_and_appenduid():
    c = authed()
    msg = b"Subject: hi\r\n\r\nbody\r\n"
    out = c.send(b'a APPEND Sent (\\Seen $Work) "01-Feb-2024 12:00:00 +0000" {%d}\r\n' % len(msg))
    assert out == b"+ Ready for literal data\r\n"
    out = c.send(msg + b"\r\n")
    assert out == b"a OK [APPENDUID 2001 1] APPEND completed\r\n"
    info = c.account.folders["Sent"].get(1)
    assert info.flags == {"\\Seen", "$Work"} and info.internaldate == 1706788800
    assert c.account.folders["Sent"]._data[1] == msg


def test_append_split_at_every_byte():
    msg = b"Subject: split\r\n\r\nx\r\n"
    data = b"a APPEND INBOX {%d}\r\n" % len(msg) + msg + b"\r\nb NOOP\r\n"
    c = authed()
    out = b""
    for i in range(len(data)):
        out += c.send(data[i:i + 1])
    assert out == b"+ Ready for literal data\r\na OK [APPENDUID 1000 1] APPEND completed\r\nb OK NOOP completed\r\n"
    assert c.account.folders["INBOX"]._data[1] == msg


def test_append_literal_plus_and_multiappend():
    c = authed()
    out = c.send(b"a APPEND INBOX {3+}\r\nabc (\\Flagged) {3+}\r\ndef\r\n")
    assert out == b"a OK [APPENDUID 1000 1:2] APPEND completed\r\n"
    assert c.account.folders["INBOX"].get(2).flags == {"\\Flagged"}


def test_append_errors():
    c = authed(config=Config(append_limit=10, auth_fail_delay=0))
    assert c.send(b"a APPEND Nope {3}\r\n") == b"+ Ready for literal data\r\n"
    assert b"a NO [TRYCREATE]" in c.send(b"abc\r\n")
    assert c.send(b"b APPEND INBOX {11}\r\n") == b"b NO [TOOBIG] Message too large\r\n"
    out = c.send(b"c APPEND INBOX {11+}\r\n01234567890\r\nd NOOP\r\n")
    assert out.startswith(b"c BAD [TOOBIG]") and out.endswith(b"d OK NOOP completed\r\n")
    assert b"e BAD" in c.send(b"e APPEND INBOX (\\Bogus) {1+}\r\nx\r\n")
    assert b"f NO" in c.send(b"f APPEND INBOX {0+}\r\n\r\n")
    assert b"g BAD" in c.send(b'g APPEND INBOX "x"\r\n')
    assert c.account.folders["INBOX"].messages() == []


def test_append_to_selected_mailbox_reports_exists():
    c = authed()
    c.select()
    out = c.send(b"a APPEND INBOX {3+}\r\nabc\r\n")
    assert b"* 1 EXISTS\r\n* 1 RECENT\r\n" in out and b"a OK [APPENDUID" in out


def test_namespace_enable():
    c = authed()
    # issue 12: the other-users namespace is there for shared folders
    assert c.cmd("a NAMESPACE") == b'* NAMESPACE (("" "/")) (("Shared/" "/")) NIL\r\na OK NAMESPACE completed\r\n'
    assert c.cmd("b ENABLE CONDSTORE") == b"* ENABLED\r\nb OK ENABLE completed\r\n"
