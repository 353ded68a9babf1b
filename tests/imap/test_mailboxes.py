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
    # not modified UTF-7: no such mailbox can exist; NO as Dovecot (issue 9), nothing created
    assert c.cmd('c CREATE "bad&-name&Jjo"') == b"c NO Mailbox name is not valid mUTF-7\r\n"
    assert not any("Jjo" in n for n in c.account.folders)


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
    assert c.cmd("b ENABLE CONDSTORE") == b"* ENABLED CONDSTORE\r\nb OK ENABLE completed\r\n"
    assert c.cmd("c ENABLE X-UNKNOWN") == b"* ENABLED\r\nc OK ENABLE completed\r\n"


ATOMS = "!#$&'+,-.0123456789:;<=>?@^_`|[}"


def test_names_that_are_not_modified_utf7_are_refused_with_no():
    """imaptest's atoms: SELECT of such a name is NO (and leaves no mailbox
    selected), LIST with it as a pattern answers normally, and none of it
    counts towards the bad-command limit."""
    c = authed()
    c.account.folders["INBOX"].add(b"Subject: x\r\n\r\nx\r\n")
    assert b"s OK" in c.cmd("s SELECT INBOX")
    assert c.cmd("a SELECT " + ATOMS) == b"a NO Mailbox name is not valid mUTF-7\r\n"
    assert c.cmd("b FETCH 1 FLAGS").startswith(b"b BAD")  # the failed SELECT unselected INBOX
    assert c.cmd('c LIST "" ' + ATOMS + "%*") == b"c OK LIST completed\r\n"
    for i, cmd in enumerate(["EXAMINE &Jjo", "CREATE a&b", "DELETE &Jjo", "RENAME &Jjo x", "RENAME INBOX &Jjo",
                             "STATUS &Jjo (MESSAGES)", "SUBSCRIBE &Jjo", "UNSUBSCRIBE &Jjo"] * 3):
        assert c.cmd(f"d{i} {cmd}") == b"d%d NO Mailbox name is not valid mUTF-7\r\n" % i
    assert c.send(b"e APPEND &Jjo {3+}\r\nabc\r\n") == b"e NO Mailbox name is not valid mUTF-7\r\n"
    assert c.cmd("f NOOP") == b"f OK NOOP completed\r\n"  # 26 refusals, the session is still up
    assert c.cmd("g SELECT &Jjo-").startswith(b"g NO [NONEXISTENT]")  # valid: just no such mailbox


def test_invalid_name_in_the_wrong_state_is_bad():
    c = Client()
    assert c.cmd("a SELECT &Jjo") == b"a BAD SELECT is not permitted in this state\r\n"
    c.login()
    assert c.cmd("b COPY 1 &Jjo") == b"b BAD COPY is not permitted in this state\r\n"
    assert c.cmd("c UID MOVE 1 &Jjo") == b"c BAD MOVE is not permitted in this state\r\n"


def _listext_tree() -> Client:
    """imaptest listext's folders: t1, t2/t1, t7/t7, t8/t8, t8/t9
    subscribed; t6 subscribed and then deleted."""
    c = authed()
    for name in ("m/t1", "m/t2/t1", "m/t3", "m/t6", "m/t7/t7", "m/t8/t8", "m/t8/t9"):
        assert b" OK" in c.cmd(f"a CREATE {name}")
    for name in ("m/t1", "m/t2/t1", "m/t6", "m/t7/t7", "m/t8/t8", "m/t8/t9"):
        assert b" OK" in c.cmd(f"a SUBSCRIBE {name}")
    assert b" OK" in c.cmd("a DELETE m/t6")
    return c


def _lines(out: bytes) -> list[bytes]:
    return [ln for ln in out.split(b"\r\n") if ln.startswith(b"* ")]


def test_list_extended_recursivematch_needs_a_real_selection_option():
    c = authed()
    for opts in ("RECURSIVEMATCH", "RECURSIVEMATCH REMOTE", "REMOTE RECURSIVEMATCH"):
        out = c.cmd(f'a LIST ({opts}) "" "*"')
        assert out.startswith(b"a BAD") and not _lines(out), out
    assert c.cmd('b LIST (REMOTE) "" %').endswith(b"b OK LIST completed\r\n")
    assert c.cmd('c LIST (SUBSCRIBED RECURSIVEMATCH REMOTE) "" %').endswith(b"c OK LIST completed\r\n")


def test_list_extended_childinfo_only_for_children_the_patterns_miss():
    c = _listext_tree()
    # t2 is not subscribed, its child is: CHILDINFO while the child is not listed itself
    assert _lines(c.cmd('a LIST (SUBSCRIBED RECURSIVEMATCH) "" (m/t2)')) == [
        b'* LIST (\\HasChildren) "/" "m/t2" ("CHILDINFO" ("SUBSCRIBED"))']
    assert _lines(c.cmd('b LIST (SUBSCRIBED RECURSIVEMATCH) "" (m/t2 m/t2/t1)')) == [
        b'* LIST (\\HasNoChildren \\Subscribed) "/" "m/t2/t1"']
    assert _lines(c.cmd('c LIST (SUBSCRIBED RECURSIVEMATCH) "" m*t7')) == [
        b'* LIST (\\HasNoChildren \\Subscribed) "/" "m/t7/t7"']
    assert _lines(c.cmd('d LIST (SUBSCRIBED RECURSIVEMATCH) "" m*t8')) == [
        b'* LIST (\\HasChildren) "/" "m/t8" ("CHILDINFO" ("SUBSCRIBED"))',
        b'* LIST (\\HasNoChildren \\Subscribed) "/" "m/t8/t8"']
    assert _lines(c.cmd('e LIST (SUBSCRIBED RECURSIVEMATCH) "" m/t2% RETURN (CHILDREN)')) == [
        b'* LIST (\\HasChildren) "/" "m/t2" ("CHILDINFO" ("SUBSCRIBED"))']
    # without RECURSIVEMATCH a parent that is not subscribed is not listed at all
    out = _lines(c.cmd('f LIST (SUBSCRIBED) "" m/*'))
    assert b'* LIST (\\NonExistent \\HasNoChildren \\Subscribed) "/" "m/t6"' in out
    assert not any(b'"m/t2"' in ln for ln in out)


def test_delete_folder_with_children_keeps_them_and_leaves_a_noselect_name():
    """RFC 3501 6.3.4: the folder's messages go, its children stay, its
    name is \\Noselect from then on (Dovecot's Maildir++ does the same)."""
    c = authed()
    for cmd in ("a CREATE p/c", "b SUBSCRIBE p"):
        assert b" OK" in c.cmd(cmd)
    c.account.folders["p"].add(MSG1)
    c.account.folders["p/c"].add(MSG2)
    assert c.cmd("d DELETE p") == b"d OK DELETE completed\r\n"
    out = c.cmd('e LIST "" p*')
    assert _lines(out) == [b'* LIST (\\Noselect \\HasChildren) "/" "p"', b'* LIST (\\HasNoChildren) "/" "p/c"']
    assert c.cmd("f SELECT p").startswith(b"f NO [NONEXISTENT]")
    assert c.cmd("g STATUS p/c (MESSAGES)").startswith(b"* STATUS \"p/c\" (MESSAGES 1)")
    assert c.cmd("h DELETE p").startswith(b"h NO [NONEXISTENT]")
    assert _lines(c.cmd('i LIST (SUBSCRIBED) "" p')) == [b'* LIST (\\NonExistent \\HasChildren \\Subscribed) "/" "p"']
    assert c.cmd("j CREATE p").startswith(b"j OK [MAILBOXID")  # a new, empty mailbox of that name
    assert b"* 0 EXISTS" in c.cmd("k SELECT p")
    assert c.cmd("l DELETE INBOX").startswith(b"l NO")
