"""The client hangs up while a command waits on the store (imaptest's
stress run does this at its end): the command is dropped quietly, never
logged as a server bug, and nothing is written to the gone connection."""

from __future__ import annotations

import pytest
from twisted.internet import defer
from twisted.logger import globalLogPublisher

from tests.imap.harness import MSG1, MSG2, Client, inbox_with

SELECTED_COMMANDS = [
    "FETCH 1:* (FLAGS)",
    "UID FETCH 1:* (FLAGS)",
    "STORE 1 +FLAGS (\\Seen)",
    "SEARCH ALL",
    "SORT (DATE) UTF-8 ALL",
    "THREAD REFERENCES UTF-8 ALL",
    "COPY 1 INBOX",
    "EXPUNGE",
    "CLOSE",
]


@pytest.mark.parametrize("line", SELECTED_COMMANDS)
def test_hangup_while_the_folder_refreshes(line: str) -> None:
    c = Client()
    inbox = inbox_with(c, MSG1, MSG2)
    c.login()
    c.select()
    pending: defer.Deferred[None] = defer.Deferred()
    inbox.refresh = lambda: pending  # type: ignore[method-assign]
    failures: list[dict] = []
    globalLogPublisher.addObserver(failures.append)
    try:
        assert c.cmd(f"t {line}") == b""
        c.proto.connectionLost(None)
        pending.callback(None)
    finally:
        globalLogPublisher.removeObserver(failures.append)
    assert [e for e in failures if "log_failure" in e] == []
    assert c.take() == b""
    assert c.portal.realm.logouts == 1


MID_COMMAND_WAITS = [
    ("store_flags", "STORE 1 +FLAGS (\\Seen)"),
    ("store_flags", "UID STORE 1:* -FLAGS (\\Seen)"),
    ("expunge", "EXPUNGE"),
    ("expunge", "UID EXPUNGE 1"),
    ("expunge", "CLOSE"),
    ("copy_to", "COPY 1 INBOX"),
    ("copy_to", "MOVE 1 INBOX"),
    ("prefetch", "FETCH 1:* (BODY.PEEK[])"),
    ("prefetch", "SEARCH BODY lunch"),
]


@pytest.mark.parametrize(("method", "line"), MID_COMMAND_WAITS)
def test_hangup_while_a_command_waits_on_the_store(method: str, line: str) -> None:
    """The wait is inside the handler; the handler then finds no session."""
    c = Client()
    inbox = inbox_with(c, MSG1, MSG2)
    c.login()
    c.select()
    c.cmd("f STORE 1 +FLAGS.SILENT (\\Deleted)")
    pending: defer.Deferred[None] = defer.Deferred()
    original = getattr(inbox, method)

    def held(*args, **kwargs):
        return pending.addCallback(lambda _: original(*args, **kwargs))

    setattr(inbox, method, held)
    failures: list[dict] = []
    globalLogPublisher.addObserver(failures.append)
    try:
        c.cmd(f"t {line}")
        c.proto.connectionLost(None)
        pending.callback(None)
    finally:
        globalLogPublisher.removeObserver(failures.append)
    assert [e["log_failure"] for e in failures if "log_failure" in e] == []
    assert c.take() == b""
