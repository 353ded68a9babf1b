"""RFC 5267 contexts (PARTIAL, UPDATE with ADDTO/REMOVEFROM, CANCELUPDATE)
and RFC 5182 SEARCHRES (SAVE, ``$``): every notification point and every
error path."""

from __future__ import annotations

import re

import pytest

from mailsrv.imap import contextsearch
from tests.imap.harness import MSG1, MSG2, MSG3, Client, inbox_with, tagged


def session(*msgs: bytes, flags=()) -> Client:
    c = Client()
    c.login()
    inbox_with(c, *msgs, flags=flags)
    c.select()
    return c


def other(c: Client) -> Client:
    b = Client(account=c.account, clock=c.clock)
    b.login()
    b.select()
    return b


def lines(out: bytes) -> list[bytes]:
    return [ln for ln in out.split(b"\r\n") if ln]


# ---------------------------------------------------------------- PARTIAL

def test_search_partial() -> None:
    c = session(MSG1, MSG2, MSG3, MSG1, MSG2)
    assert c.cmd("p SEARCH RETURN (PARTIAL 2:4) ALL") == (
        b'* ESEARCH (TAG "p") PARTIAL (2:4 2:4)\r\np OK SEARCH completed\r\n')
    assert c.cmd("p SEARCH RETURN (PARTIAL 4:2) NOT 3") == (
        b'* ESEARCH (TAG "p") PARTIAL (2:4 2,4:5)\r\np OK SEARCH completed\r\n')
    assert c.cmd("p SEARCH RETURN (PARTIAL 6:9 MIN COUNT) ALL") == (
        b'* ESEARCH (TAG "p") MIN 1 PARTIAL (6:9 NIL) COUNT 5\r\np OK SEARCH completed\r\n')
    assert c.cmd("p UID SEARCH RETURN (PARTIAL 1:1) 2:*") == (
        b'* ESEARCH (TAG "p") UID PARTIAL (1:1 2)\r\np OK SEARCH completed\r\n')


@pytest.mark.parametrize("opts", ["PARTIAL 1", "PARTIAL 1:*", "PARTIAL *:1", "PARTIAL 0:2", "PARTIAL",
                                  "PARTIAL 1:2 ALL", "PARTIAL 1:2 PARTIAL 3:4", "UPDATE UPDATE", "BOGUS"])
def test_bad_return_options(opts: str) -> None:
    c = session(MSG1)
    assert c.cmd(f"p SEARCH RETURN ({opts}) ALL").startswith(b"p BAD "), opts


def test_context_is_a_hint_and_alone_means_all() -> None:
    c = session(MSG1, MSG2)
    assert c.cmd("p SEARCH RETURN (CONTEXT) ALL") == b'* ESEARCH (TAG "p") ALL 1:2\r\np OK SEARCH completed\r\n'
    assert c.cmd("p SEARCH RETURN (CONTEXT COUNT) ALL") == b'* ESEARCH (TAG "p") COUNT 2\r\np OK SEARCH completed\r\n'


# ---------------------------------------------------------------- UPDATE

def test_own_flag_changes_add_and_remove() -> None:
    c = session(MSG1, MSG2, MSG3)
    assert c.cmd("u SEARCH RETURN (UPDATE) SEEN") == b'* ESEARCH (TAG "u")\r\nu OK SEARCH completed\r\n'
    out = c.cmd("a STORE 1,3 +FLAGS (\\Seen)")
    assert lines(out)[-2:] == [b'* ESEARCH (TAG "u") ADDTO (0 1,3)', b"a OK STORE completed"]
    out = c.cmd("b STORE 1:2 -FLAGS.SILENT (\\Seen)")
    assert out == b'* ESEARCH (TAG "u") REMOVEFROM (0 1)\r\nb OK STORE completed\r\n'
    assert c.cmd("n NOOP") == b"n OK NOOP completed\r\n"  # nothing twice


def test_uid_context_and_other_sessions() -> None:
    c = session(MSG1, MSG2, MSG3)
    b = other(c)
    assert c.cmd("u UID SEARCH RETURN (UPDATE ALL) NOT SEEN") == (
        b'* ESEARCH (TAG "u") UID ALL 1:3\r\nu OK SEARCH completed\r\n')
    b.cmd("x STORE 2 +FLAGS.SILENT (\\Seen)")
    b.send(b"y APPEND INBOX {3+}\r\nabc\r\n")  # uid 4, not seen
    out = c.cmd("n NOOP")
    assert out.index(b"* 4 EXISTS") < out.index(b"ADDTO")  # after EXISTS (RFC 5267 4.3.3)
    assert b'* ESEARCH (TAG "u") UID REMOVEFROM (0 2) ADDTO (0 4)\r\n' in out


def test_expunged_members_leave_before_the_expunge_is_reported() -> None:
    c = session(MSG1, MSG2, MSG3, flags=("\\Seen",))
    b = other(c)
    c.cmd("u SEARCH RETURN (UPDATE) SEEN")
    b.cmd("x STORE 2:3 +FLAGS.SILENT (\\Deleted)")
    b.cmd("y EXPUNGE")
    out = c.cmd("f FETCH 1 FLAGS")  # no EXPUNGE here, so no REMOVEFROM either
    assert b"EXPUNGE" not in out and b"ESEARCH" not in out
    out = c.cmd("n NOOP")
    assert lines(out) == [b'* ESEARCH (TAG "u") REMOVEFROM (0 2:3)', b"* 3 EXPUNGE", b"* 2 EXPUNGE",
                          b"n OK NOOP completed"]


def test_sort_context_keeps_its_order() -> None:
    c = session(b"Subject: b\r\n\r\n", b"Subject: d\r\n\r\n", b"Subject: a\r\n\r\n")
    b = other(c)
    assert c.cmd("s SORT RETURN (UPDATE ALL) (SUBJECT) UTF-8 UNSEEN") == (
        b'* ESEARCH (TAG "s") ALL 3,1:2\r\ns OK SORT completed\r\n')
    b.send(b"x APPEND INBOX {14+}\r\nSubject: c\r\n\r\n\r\n")  # 4: goes between b and d
    out = c.cmd("n NOOP")
    assert b'* ESEARCH (TAG "s") ADDTO (3 4)\r\n' in out
    out = c.cmd("r STORE 3,1 +FLAGS.SILENT (\\Seen)")  # a (position 1) and b (then 2): removed from the end
    assert out == b'* ESEARCH (TAG "s") REMOVEFROM (2 1 1 3)\r\nr OK STORE completed\r\n'
    out = c.cmd("r STORE 1 -FLAGS.SILENT (\\Seen)")
    assert out == b'* ESEARCH (TAG "s") ADDTO (1 1)\r\nr OK STORE completed\r\n'


def test_updates_while_idling() -> None:
    c = session(MSG1, MSG2)
    b = other(c)
    c.cmd("u UID SEARCH RETURN (UPDATE) FLAGGED")
    assert c.cmd("i IDLE") == b"+ idling\r\n"
    b.cmd("x STORE 2 +FLAGS (\\Flagged)")
    assert b'* ESEARCH (TAG "u") UID ADDTO (0 2)\r\n' in c.take()
    assert c.send(b"DONE\r\n") == b"i OK IDLE terminated\r\n"


def test_cancelupdate() -> None:
    c = session(MSG1, MSG2)
    c.cmd("u SEARCH RETURN (UPDATE) SEEN")
    c.cmd("v SEARCH RETURN (UPDATE) UNSEEN")
    assert c.cmd('x CANCELUPDATE "u"') == b"x OK CANCELUPDATE completed\r\n"
    assert c.cmd("a STORE 1 +FLAGS.SILENT (\\Seen)") == (
        b'* ESEARCH (TAG "v") REMOVEFROM (0 1)\r\na OK STORE completed\r\n')
    assert c.cmd('x CANCELUPDATE "u"') == b"x NO CANCELUPDATE Unknown tag\r\n"
    assert c.cmd('x CANCELUPDATE "v" "zz"') == b"x NO CANCELUPDATE Unknown tag\r\n"
    assert c.cmd("a STORE 2 +FLAGS.SILENT (\\Seen)") == b"a OK STORE completed\r\n"  # v went too
    for bad in ("x CANCELUPDATE", "x CANCELUPDATE u", 'x CANCELUPDATE "u" v'):
        assert c.cmd(bad).startswith(b"x BAD "), bad


def test_cancelupdate_needs_a_selected_mailbox() -> None:
    c = Client()
    c.login()
    assert c.cmd('x CANCELUPDATE "u"').startswith(b"x BAD CANCELUPDATE is not permitted")


def test_a_tag_in_use_is_refused_and_contexts_are_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    c = session(MSG1)
    c.cmd("u SEARCH RETURN (UPDATE) ALL")
    assert c.cmd("u SEARCH RETURN (UPDATE) SEEN") == b"u BAD SEARCH Duplicate search update tag\r\n"
    assert c.cmd("u SORT RETURN (UPDATE) (DATE) UTF-8 SEEN") == b"u BAD SORT Duplicate search update tag\r\n"
    monkeypatch.setattr(contextsearch, "MAX_CONTEXTS", 2)
    c.cmd("v SEARCH RETURN (UPDATE) ALL")
    assert c.cmd("w SEARCH RETURN (UPDATE COUNT) ALL") == (
        b'* ESEARCH (TAG "w") COUNT 1\r\n* NO [NOUPDATE "w"] Too many update contexts\r\nw OK SEARCH completed\r\n')


def test_contexts_end_with_the_selection() -> None:
    c = session(MSG1)
    inbox = c.account.folders["INBOX"]
    c.cmd("u SEARCH RETURN (UPDATE) SEEN")
    listeners = len(inbox._listeners)
    c.cmd("s2 SELECT INBOX")
    assert len(inbox._listeners) == listeners - 1  # the old view and the contexts' listener went
    assert c.cmd("a STORE 1 +FLAGS.SILENT (\\Seen)") == b"a OK STORE completed\r\n"
    assert c.cmd("u SEARCH RETURN (UPDATE) SEEN").endswith(b"u OK SEARCH completed\r\n")  # the tag is free


def test_logout_leaves_no_listener() -> None:
    c = session(MSG1)
    inbox = c.account.folders["INBOX"]
    c.cmd("u SEARCH RETURN (UPDATE) ALL")
    c.proto.connectionLost(None)
    assert inbox._listeners == []


# ---------------------------------------------------------------- SEARCHRES

def test_save_and_use_the_result() -> None:
    c = session(MSG1, MSG2, MSG3)
    c.cmd("a STORE 1,3 +FLAGS.SILENT (\\Flagged)")
    assert c.cmd("s SEARCH RETURN (SAVE) FLAGGED") == b"s OK SEARCH completed\r\n"  # SAVE alone: no ESEARCH
    assert lines(c.cmd("f FETCH $ (UID)")) == [b"* 1 FETCH (UID 1)", b"* 3 FETCH (UID 3)", b"f OK FETCH completed"]
    assert lines(c.cmd("f UID FETCH $ FLAGS"))[:1] == [b"* 1 FETCH (UID 1 FLAGS (\\Flagged \\Recent))"]
    assert c.cmd("s SEARCH $ NOT 1") == b"* SEARCH 3\r\ns OK SEARCH completed\r\n"
    assert c.cmd("s SEARCH UID $") == b"* SEARCH 1 3\r\ns OK SEARCH completed\r\n"
    assert c.cmd("c COPY $ Trash").startswith(b"c OK [COPYUID ")
    c.cmd("d STORE $ +FLAGS.SILENT (\\Deleted)")
    assert c.cmd("s SEARCH DELETED") == b"* SEARCH 1 3\r\ns OK SEARCH completed\r\n"


def test_what_save_keeps() -> None:
    c = session(MSG1, MSG2, MSG3, MSG1)
    assert c.cmd("s SEARCH RETURN (SAVE MIN) ALL") == b'* ESEARCH (TAG "s") MIN 1\r\ns OK SEARCH completed\r\n'
    assert c.cmd("t SEARCH $") == b"* SEARCH 1\r\nt OK SEARCH completed\r\n"
    c.cmd("s SEARCH RETURN (SAVE MIN MAX) 2:4")
    assert c.cmd("t SEARCH $") == b"* SEARCH 2 4\r\nt OK SEARCH completed\r\n"
    c.cmd("s SEARCH RETURN (SAVE PARTIAL 2:3) ALL")
    assert c.cmd("t SEARCH $") == b"* SEARCH 2 3\r\nt OK SEARCH completed\r\n"
    c.cmd("s SEARCH RETURN (SAVE PARTIAL 2:3 COUNT) ALL")
    assert c.cmd("t SEARCH $") == b"* SEARCH 1 2 3 4\r\nt OK SEARCH completed\r\n"
    c.cmd("s SEARCH RETURN (SAVE MIN MAX COUNT) 2:3")  # MIN and MAX are in the whole result once
    assert lines(c.cmd("f FETCH $ UID")) == [b"* 2 FETCH (UID 2)", b"* 3 FETCH (UID 3)", b"f OK FETCH completed"]
    c.cmd("s SORT RETURN (SAVE MIN) (SIZE) UTF-8 ALL")  # the first in sort order: the smallest
    assert c.cmd("t SEARCH $") == b"* SEARCH 3\r\nt OK SEARCH completed\r\n"


def test_dollar_before_any_save_and_after_a_failed_save() -> None:
    c = session(MSG1, MSG2)
    assert c.cmd("t SEARCH $") == b"* SEARCH\r\nt OK SEARCH completed\r\n"
    assert c.cmd("f FETCH $ FLAGS") == b"f OK FETCH completed\r\n"
    c.cmd("s SEARCH RETURN (SAVE) ALL")
    assert c.cmd("s SEARCH RETURN (SAVE) CHARSET KOI8-R ALL").startswith(b"s NO [BADCHARSET")
    assert c.cmd("t SEARCH $") == b"* SEARCH\r\nt OK SEARCH completed\r\n"


def test_dollar_is_per_selection_and_forgets_expunged_messages() -> None:
    c = session(MSG1, MSG2, MSG3)
    c.cmd("s SEARCH RETURN (SAVE) 2:3")
    c.cmd("d STORE 2 +FLAGS.SILENT (\\Deleted)")
    c.cmd("e EXPUNGE")
    assert c.cmd("t UID SEARCH $") == b"* SEARCH 3\r\nt OK SEARCH completed\r\n"
    c.cmd("s2 SELECT INBOX")
    assert c.cmd("t SEARCH $") == b"* SEARCH\r\nt OK SEARCH completed\r\n"


@pytest.mark.parametrize("line", ["f FETCH $,1 FLAGS", "f FETCH 1,$ FLAGS", "f FETCH $$ FLAGS", "s SEARCH $:2",
                                  "s SEARCH UID $,3"])
def test_dollar_stands_alone(line: str) -> None:
    c = session(MSG1)
    assert re.match(rb"[fs] BAD ", c.cmd(line)), line


def test_esearch_keeps_its_order_of_items() -> None:
    c = session(MSG1, MSG2, MSG3)
    out = c.cmd("e SEARCH RETURN (MIN MAX COUNT ALL) ALL")
    assert tagged(out, "e") == b"e OK SEARCH completed\r\n"
    assert out.startswith(b'* ESEARCH (TAG "e") MIN 1 MAX 3 COUNT 3 ALL 1:3\r\n')
