"""The handler context: everything a command handler may do, and the
session state it works on.

A handler is ``async def h(ctx: Context, cmd: SomeCommand) -> Result |
None``.  It never sees the protocol object: it writes through
:meth:`Context.send`, waits for the transport with :meth:`Context.drained`,
reads a raw line (SASL, IDLE) with :meth:`Context.next_line`, and changes
the session through :meth:`select`, :meth:`unselect`,
:meth:`login_succeeded`, :meth:`start_tls` and :meth:`logout`.  The
connection side of those calls is the small :class:`Connection` protocol
that :class:`mailsrv.imap.server.IMAPServer` implements, so a handler can
be driven in a test with any object that has those methods.

Per-session state of a later extension (CONDSTORE's highest reported
modseq, QRESYNC's known UIDs, a COMPRESS stream flag...) does not need a
new attribute here: ``ctx.session_data(Contexts)`` creates an
instance of that class on first use and returns the same one for the rest
of the session.  Extensions advertise themselves by adding to
:data:`AUTHENTICATED_CAPABILITIES` (or via :attr:`Context.enabled` once
ENABLEd), and register handlers in :mod:`mailsrv.imap.dispatch`.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from typing import Any, Protocol, TypeVar

from twisted.cred.portal import Portal
from twisted.internet import defer
from twisted.internet.interfaces import IReactorTime

from mailsrv.auth.cred import plaintext_allowed
from mailsrv.config import Config
from mailsrv.imap import render
from mailsrv.imap.reader import Dialect
from mailsrv.imap.results import AUTH, LOGOUT, NOT_AUTH, SELECTED, Result, State
from mailsrv.imap.session import SelectedMailbox
from mailsrv.ops.sessions import NO_SESSION, SessionHooks
from mailsrv.store.interfaces import IAccount, IFolder
from mailsrv.wire import Wire

T = TypeVar("T")

BASE_CAPABILITIES = ("IMAP4rev1", "IMAP4rev2", "LITERAL+", "SASL-IR", "ID", "ENABLE", "IDLE")
AUTHENTICATED_CAPABILITIES = ("NAMESPACE", "UNSELECT", "CHILDREN", "UIDPLUS", "MOVE", "SPECIAL-USE",
                              "LIST-EXTENDED", "LIST-STATUS", "MULTIAPPEND", "APPENDLIMIT", "ESEARCH",
                              "COMPRESS=DEFLATE", "UTF8=ACCEPT", "NOTIFY", "UNAUTHENTICATE",
                              "STATUS=SIZE", "CREATE-SPECIAL-USE", "OBJECTID", "SAVEDATE", "PREVIEW",
                              "ACL", "RIGHTS=texk", "LIST-MYRIGHTS", "QUOTA", "QUOTA=RES-STORAGE", "QUOTA=RES-MESSAGE",
                              "CONDSTORE", "QRESYNC",
                              # SORT, THREAD, contexts, SEARCHRES, BINARY, CATENATE (issue 9)
                              "SORT", "SORT=DISPLAY", "THREAD=ORDEREDSUBJECT", "THREAD=REFERENCES", "THREAD=REFS",
                              "ESORT", "CONTEXT=SEARCH", "CONTEXT=SORT", "SEARCHRES", "BINARY", "CATENATE")


Handler = Callable[["Context", Any], Awaitable[Result | None]]
"""``async def h(ctx, cmd) -> Result | None``: None when the handler wrote
its own tagged response (LOGOUT, STARTTLS) or the connection is gone."""

Handlers = dict[str, tuple[Handler, frozenset[State]]]
"""A command module's table: command name -> (handler, states it may run in)."""

FlushHook = Callable[[SelectedMailbox, bool, Callable[[], list[bytes]]], list[bytes]]
"""``hook(selected, allow_expunge, flush) -> lines``: wraps the report of
other sessions' changes (it calls ``flush`` and may add lines before and
after, as RFC 5267's ADDTO/REMOVEFROM must); see :meth:`Context.flush_pending`."""


class Connection(Protocol):
    """What the connection does for its session (IMAPServer implements it)."""

    @property
    def closed(self) -> bool:
        """True once the connection is closing or gone."""

    @property
    def peer_host(self) -> str | None:
        """The client's address, when it has one."""

    def write(self, data: bytes) -> None:
        """Send bytes (dropped once closed)."""

    def write_many(self, lines: list[bytes]) -> None:
        """Send several byte strings in one transport call."""

    def drained(self) -> defer.Deferred[None]:
        """Fires when the transport wants more output."""

    def next_line(self) -> defer.Deferred[bytes | None]:
        """The client's next line, raw; None if it was too long.  Errback
        ConnectionError when the connection goes first."""

    def input_buffered(self) -> int:
        """Bytes received and not yet consumed."""

    def start_tls(self, tls_context: Any) -> None:
        """Drop buffered input and switch the transport to TLS."""

    def start_compression(self) -> None:
        """Deflate output and inflate input from now on (RFC 4978)."""

    def reset_timeout(self) -> None:
        """The session is busy, not idle: restart the autologout timer."""

    def close(self) -> None:
        """Close after pending output."""


class Context:
    """One session as its handlers see it.

    Tunables (class defaults, per-connection overrides from the factory):
    ``idle_keepalive`` seconds between ``* OK Still here`` while idling,
    ``idle_poll`` seconds between folder refreshes while idling,
    ``yield_every`` FETCH messages per batch before the reactor gets a turn.
    """

    idle_keepalive = 120.0
    idle_poll = 5.0
    yield_every = 500

    def __init__(self, conn: Connection, portal: Portal, config: Config, reactor: IReactorTime,
                 tls_context: Any = None, tls_active: bool = False) -> None:
        self._conn = conn
        self.portal = portal
        self.config = config
        self.reactor = reactor
        self.tls_context = tls_context
        self.tls_active = tls_active
        self.state = State.NOT_AUTHENTICATED
        self.selected: SelectedMailbox | None = None
        self.enabled: set[str] = set()  # ENABLEd extensions (RFC 5161)
        self.idling = False  # changes are pushed at once (IDLE)
        self.compressed = False  # COMPRESS=DEFLATE is active
        self.dialect = Dialect()  # read by this session's parser too
        self.running = False  # a command is running (the server sets it)
        # extensions that report changes on their own (NOTIFY):
        self.unsolicited: list[Callable[[bool], list[bytes]]] = []  # queued untagged responses, by flush_pending
        self.select_hooks: list[Callable[[SelectedMailbox], None]] = []  # told of each new selection
        self.end_hooks: list[Callable[[], None]] = []  # the session is over
        self.push_selected = False  # the selected mailbox's changes go out between commands too
        self.push_expunges = True  # ... expunges included (NOTIFY SELECTED, not SELECTED-DELAYED)
        self._account: IAccount | None = None
        self._logout: Callable[[], None] | None = None
        self._data: dict[type, Any] = {}
        self.flush_hooks: list[FlushHook] = []
        self.ops: SessionHooks = NO_SESSION  # login lines, limits, metrics (mailsrv.ops)

    # -- output
    def send(self, data: bytes) -> None:
        """Write a response (no-op once the connection is closed)."""
        self._conn.write(data)

    def send_many(self, lines: list[bytes]) -> None:
        """Write several responses in one transport call."""
        if lines:
            self._conn.write_many(lines)

    def drained(self) -> defer.Deferred[None]:
        """Wait until the transport wants more (long responses)."""
        return self._conn.drained()

    @property
    def wire(self) -> Wire:
        """Big writes of message data (FETCH bodies): the connection's own
        wire, or one over send_many/drained for a connection without."""
        wire: Wire | None = getattr(self._conn, "wire", None)
        if wire is None:
            wire = self._data.get(Wire)
            if wire is None:
                wire = self._data[Wire] = Wire(self.reactor, lambda: None, lambda: None, self.send_many, self.drained)
        return wire

    @property
    def closed(self) -> bool:
        return self._conn.closed

    def close(self) -> None:
        """Hang up after pending output."""
        self._conn.close()

    def reset_timeout(self) -> None:
        """A long command is making progress: do not autologout."""
        self._conn.reset_timeout()

    # -- input
    def next_line(self) -> defer.Deferred[bytes | None]:
        """The client's next line, raw (SASL response, IDLE's DONE); None
        when it was too long."""
        return self._conn.next_line()

    def mailbox_name(self, name: str) -> bytes:
        """A mailbox name as this session wants it on the wire: modified
        UTF-7, or UTF-8 once UTF8=ACCEPT/IMAP4rev2 is enabled."""
        return render.mailbox(name, self.dialect.utf8)

    # -- session
    @property
    def account(self) -> IAccount:
        """The logged-in user's account (handlers of authenticated states only)."""
        if self._account is None:
            raise RuntimeError("not authenticated")
        return self._account

    @property
    def mailbox(self) -> SelectedMailbox:
        """The selected mailbox (handlers of the selected state only).  A
        handler that waited while the client hung up finds none: that is
        the connection's end (ConnectionError, dropped quietly), not a bug."""
        if self.selected is None:
            if self._conn.closed:
                raise ConnectionError("connection lost")
            raise RuntimeError("no mailbox selected")
        return self.selected

    def login_succeeded(self, account: IAccount, logout: Callable[[], None]) -> None:
        """Enter the authenticated state; ``logout`` runs when the session ends."""
        self._account = account
        self._logout = logout
        self.state = AUTH

    def select(self, folder: IFolder, readonly: bool) -> SelectedMailbox:
        """Enter the selected state on ``folder`` (leaving any other)."""
        self.unselect()
        self.selected = SelectedMailbox(folder, readonly, on_change=self._changed)
        self.state = SELECTED
        for hook in list(self.select_hooks):
            hook(self.selected)
        return self.selected

    def unselect(self) -> None:
        """Leave the selected state (no expunge)."""
        if self.selected is not None:
            self.selected.close()
            self.selected = None
        if self.state == SELECTED:
            self.state = AUTH

    def logout(self) -> None:
        """LOGOUT: the session is over; close the connection."""
        self.state = LOGOUT
        self.ops.ending("Logged out")
        self.close()

    def end(self) -> None:
        """The connection is gone: stop listening, release the account."""
        hooks, self.end_hooks = self.end_hooks, []
        for hook in hooks:
            hook()
        self.unselect()
        if self._logout is not None:
            logout, self._logout = self._logout, None
            logout()

    def unauthenticate(self) -> None:
        """UNAUTHENTICATE (RFC 8437): back to the not-authenticated state on
        this connection (TLS and COMPRESS stay): the account is released,
        whatever was ENABLEd or set up for the session is forgotten."""
        self.end()
        self._account = None
        self.state = NOT_AUTH
        self.enabled = set()
        self.dialect.utf8 = False  # the parser's object: changed in place
        self._data = {}
        self.unsolicited, self.select_hooks, self.flush_hooks = [], [], []
        self.push_selected, self.push_expunges = False, True

    def flush_pending(self, allow_expunge: bool = True) -> None:
        """Report other sessions' changes (RFC 3501 7.4.1 says when
        EXPUNGE may be sent: the caller knows)."""
        if self.closed:
            return
        if self.selected is not None:
            sel = self.selected

            def flush() -> list[bytes]:
                return sel.flush(allow_expunge)
            for hook in self.flush_hooks:
                flush = functools.partial(hook, sel, allow_expunge, flush)
            self.send_many(flush())
        for fn in list(self.unsolicited):
            self.send_many(fn(allow_expunge))

    def can_push(self) -> bool:
        """Untagged responses may go out now: no command is running (or it
        is IDLE, which waits for them)."""
        return not self.closed and (self.idling or not self.running)

    def _changed(self) -> None:
        if self.idling:
            self.flush_pending()
        elif self.push_selected and self.can_push():
            self.flush_pending(allow_expunge=self.push_expunges)

    def session_data(self, kind: type[T]) -> T:
        """Per-session state of an extension: ``kind()`` on first use, the
        same object afterwards."""
        value = self._data.get(kind)
        if value is None:
            value = self._data[kind] = kind()
        return value

    # -- TLS and capabilities
    @property
    def tls_available(self) -> bool:
        """STARTTLS can be offered (a certificate, not yet TLS)."""
        return self.tls_context is not None and not self.tls_active

    def input_pending(self) -> bool:
        """The client sent more after the current command (pipelining)."""
        return self._conn.input_buffered() > 0

    def start_tls(self) -> None:
        """Switch to TLS now; buffered plaintext input is discarded."""
        self._conn.start_tls(self.tls_context)
        self.tls_active = True

    def start_compression(self) -> None:
        """COMPRESS: deflate both directions from the next byte on."""
        self._conn.start_compression()
        self.compressed = True

    def plaintext_allowed(self) -> bool:
        """May a password be sent in the clear on this connection?"""
        return plaintext_allowed(self.config, self._conn.peer_host or "", self.tls_active)

    def capabilities(self) -> list[str]:
        """What CAPABILITY (and the greeting, LOGIN's OK) advertise now."""
        caps = list(BASE_CAPABILITIES)
        if not self.config.literal_plus:  # RFC 7888 5: never both
            caps[caps.index("LITERAL+")] = "LITERAL-"
        if self.state == NOT_AUTH:
            if self.tls_available:
                caps.append("STARTTLS")
            if self.plaintext_allowed():
                caps += ["AUTH=PLAIN", "AUTH=LOGIN"]
            else:
                caps.append("LOGINDISABLED")
            return caps
        for cap in AUTHENTICATED_CAPABILITIES:
            caps.append(f"APPENDLIMIT={self.config.append_limit}" if cap == "APPENDLIMIT" else cap)
        return caps
