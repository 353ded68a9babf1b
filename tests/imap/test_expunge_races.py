"""SEARCH, SORT and THREAD while another session expunges (imaptest's
stress mix with SEARCH): the messages that are gone are left out and the
answer is ``OK [EXPUNGEISSUED]``, as Dovecot's (imap-search.c: "OK
[EXPUNGEISSUED] Search completed" when the search saw lost data), never
``NO`` and never a silent omission (imaptest then reports "SEARCH result
missing seq")."""

from __future__ import annotations

import pytest

from mailsrv.store.interfaces import MessageGone
from tests.imap.harness import MSG1, MSG2, MSG3, Client, inbox_with, tagged

BODY_MATCHES_ALL = "BODY o"  # "how are you", "noon", "line one"


def two_sessions() -> tuple[Client, Client]:
    a = Client()
    a.login()
    inbox_with(a, MSG1, MSG2, MSG3)
    a.select()
    b = Client(account=a.account, clock=a.clock)
    b.login()
    b.select()
    return a, b


def expunge_2_elsewhere(b: Client) -> None:
    b.cmd("x STORE 2 +FLAGS.SILENT (\\Deleted)")
    assert b"y OK" in b.cmd("y EXPUNGE")


@pytest.mark.parametrize(("line", "untagged"), [
    (f"SEARCH {BODY_MATCHES_ALL}", b"* SEARCH 1 3\r\n"),
    ("SEARCH TEXT o", b"* SEARCH 1 3\r\n"),
    ("SEARCH NOT BODY nowhere", b"* SEARCH 1 3\r\n"),
    ("SEARCH HEADER Subject l", b"* SEARCH 1 3\r\n"),
    ("SEARCH UNSEEN", b"* SEARCH 1 3\r\n"),
    ("SEARCH ALL", b"* SEARCH 1 3\r\n"),
    (f"SEARCH RETURN (ALL) {BODY_MATCHES_ALL}", b'* ESEARCH (TAG "t") ALL 1,3\r\n'),
    ("SORT (SUBJECT) UTF-8 ALL", b"* SORT 3 1\r\n"),
    (f"SORT (ARRIVAL) UTF-8 {BODY_MATCHES_ALL}", b"* SORT 1 3\r\n"),
    (f"THREAD ORDEREDSUBJECT UTF-8 {BODY_MATCHES_ALL}", b"* THREAD (3)(1)\r\n"),
])
def test_messages_expunged_elsewhere_are_left_out_with_expungeissued(line: str, untagged: bytes) -> None:
    a, b = two_sessions()
    expunge_2_elsewhere(b)
    out = a.cmd(f"t {line}")
    assert out.startswith(untagged), out
    assert tagged(out, "t").startswith(b"t OK [EXPUNGEISSUED] "), out
    assert b"EXPUNGE\r\n" not in out  # not reported during SEARCH (RFC 3501 7.4.1)


def test_uid_search_reports_the_expunge_first_no_code() -> None:
    """A UID command may report expunges first (RFC 3501 7.4.1): the view
    is then exact and nothing was lost."""
    a, b = two_sessions()
    expunge_2_elsewhere(b)
    out = a.cmd(f"t UID SEARCH {BODY_MATCHES_ALL}")
    assert out == b"* 2 EXPUNGE\r\n* SEARCH 1 3\r\nt OK SEARCH completed\r\n"


def test_nothing_expunged_no_code() -> None:
    a, _b = two_sessions()
    out = a.cmd(f"t SEARCH {BODY_MATCHES_ALL}")
    assert out == b"* SEARCH 1 2 3\r\nt OK SEARCH completed\r\n"
    assert a.cmd("s SORT (ARRIVAL) UTF-8 ALL") == b"* SORT 1 2 3\r\ns OK SORT completed\r\n"


def test_after_the_expunge_is_reported_no_code() -> None:
    a, b = two_sessions()
    expunge_2_elsewhere(b)
    assert a.cmd("n NOOP") == b"* 2 EXPUNGE\r\nn OK NOOP completed\r\n"
    assert a.cmd(f"t SEARCH {BODY_MATCHES_ALL}") == b"* SEARCH 1 2\r\nt OK SEARCH completed\r\n"


def test_a_message_that_goes_while_it_is_read_is_left_out() -> None:
    """The store has already dropped the file (another process, a
    Maildir rescan) though no session has heard of the expunge yet."""
    a, _b = two_sessions()
    inbox = a.account.folders["INBOX"]
    original = inbox.open_message

    def open_message(uid: int):
        if uid == 2:
            raise MessageGone(f"message {uid} was removed from disk")
        return original(uid)

    inbox.open_message = open_message  # type: ignore[method-assign]
    out = a.cmd(f"t SEARCH {BODY_MATCHES_ALL}")
    assert out == b"* SEARCH 1 3\r\nt OK [EXPUNGEISSUED] SEARCH completed\r\n"
    out = a.cmd("u SEARCH NOT BODY nowhere")
    assert out == b"* SEARCH 1 3\r\nu OK [EXPUNGEISSUED] SEARCH completed\r\n"
