"""Handlers run against a Context over any Connection: no protocol object,
no transport.  This is how a new handler can be tested on its own."""

from __future__ import annotations

from typing import Any

from twisted.internet import defer
from twisted.internet.task import Clock

from mailsrv.config import Config
from mailsrv.imap import commands as C
from mailsrv.imap import searchkeys as K
from mailsrv.imap.commands_auth import idle
from mailsrv.imap.commands_selected import search
from mailsrv.imap.context import Context
from mailsrv.imap.results import State, ok
from tests.fakestore import FakeStore, make_portal
from tests.imap.harness import MSG1, MSG2


class Conn:
    """A Connection that records what the session does."""

    def __init__(self, peer: str | None = "127.0.0.1") -> None:
        self.closed = False
        self.peer_host = peer
        self.out: list[bytes] = []
        self.lines: list[defer.Deferred[bytes | None]] = []
        self.tls: list[Any] = []
        self.buffered = 0

    def write(self, data: bytes) -> None:
        if not self.closed:
            self.out.append(data)

    def write_many(self, lines: list[bytes]) -> None:
        for line in lines:
            self.write(line)

    def drained(self) -> defer.Deferred[None]:
        return defer.succeed(None)

    def next_line(self) -> defer.Deferred[bytes | None]:
        d: defer.Deferred[bytes | None] = defer.Deferred()
        self.lines.append(d)
        return d

    def input_buffered(self) -> int:
        return self.buffered

    def start_tls(self, tls_context: Any) -> None:
        self.tls.append(tls_context)

    def reset_timeout(self) -> None:
        pass

    def close(self) -> None:
        self.closed = True

    def take(self) -> bytes:
        out, self.out = b"".join(self.out), []
        return out


def session(**kw: Any) -> tuple[Context, Conn, FakeStore]:
    store = FakeStore()
    conn = Conn(**kw)
    ctx = Context(conn, make_portal(store, {"joe": "secret"}), Config(auth_fail_delay=0), Clock(),
                  tls_context=object())
    return ctx, conn, store


def test_capabilities_follow_state_and_tls() -> None:
    ctx, conn, store = session(peer="192.0.2.1")
    assert "STARTTLS" in ctx.capabilities() and "LOGINDISABLED" in ctx.capabilities()
    ctx.start_tls()
    assert conn.tls and ctx.tls_active and "AUTH=PLAIN" in ctx.capabilities()
    ctx.login_succeeded(store.account("joe"), lambda: None)
    caps = ctx.capabilities()
    assert ctx.state is State.AUTHENTICATED and "UIDPLUS" in caps and "AUTH=PLAIN" not in caps
    assert f"APPENDLIMIT={ctx.config.append_limit}" in caps


def test_select_unselect_and_end() -> None:
    ctx, conn, store = session()
    logouts: list[bool] = []
    account = store.account("joe")
    ctx.login_succeeded(account, lambda: logouts.append(True))
    sel = ctx.select(account.inbox, readonly=False)
    assert ctx.state is State.SELECTED and ctx.mailbox is sel and account.inbox._listeners == [sel]
    ctx.unselect()
    assert ctx.state is State.AUTHENTICATED and ctx.selected is None and account.inbox._listeners == []
    ctx.select(account.inbox, readonly=True)
    ctx.end()
    ctx.end()
    assert logouts == [True] and account.inbox._listeners == []


def test_session_data_is_one_object_per_kind() -> None:
    class Condstore:
        def __init__(self) -> None:
            self.highest = 0

    ctx, _, _ = session()
    ctx.session_data(Condstore).highest = 7
    assert ctx.session_data(Condstore).highest == 7
    assert ctx.session_data(dict) == {}


def test_a_handler_runs_on_a_bare_context() -> None:
    ctx, conn, store = session()
    account = store.account("joe")
    account.inbox.add(MSG1)
    account.inbox.add(MSG2, ["\\Seen"])
    ctx.login_succeeded(account, lambda: None)
    ctx.select(account.inbox, readonly=False)
    cmd = C.Search("t", "SEARCH", uid=True, key=K.Not(K.Flag("\\Seen")))
    result = defer.ensureDeferred(search(ctx, cmd))
    assert result.result == ok() and conn.take() == b"* SEARCH 1\r\n"


def test_idle_pushes_changes_until_done() -> None:
    ctx, conn, store = session()
    account = store.account("joe")
    account.inbox.add(MSG1)
    ctx.login_succeeded(account, lambda: None)
    ctx.select(account.inbox, readonly=False)
    conn.take()
    d = defer.ensureDeferred(idle(ctx, C.Simple("i", "IDLE")))
    assert conn.take() == b"+ idling\r\n" and ctx.idling
    account.inbox.store_flags([1], ["\\Flagged"], "+")
    assert conn.take() == b"* 1 FETCH (UID 1 FLAGS (\\Flagged \\Recent))\r\n"
    conn.lines.pop().callback(b"DONE")
    assert d.result == ok("terminated") and not ctx.idling
