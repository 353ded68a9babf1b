"""The IMAP4rev1 protocol: framing via :mod:`parser`, one command at a time.

Commands are pulled from the parser only when the previous one finished,
so pipelined input is answered in order even though store calls are
asynchronous; the parser keeps the unread bytes.  Handlers live in the
``commands_*`` modules, grouped by the state they run in.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from twisted.internet import defer, interfaces
from twisted.internet.protocol import Protocol
from twisted.logger import Logger
from twisted.protocols.policies import TimeoutMixin
from twisted.python.failure import Failure
from zope.interface import implementer

from mailsrv.imap import commands as C
from mailsrv.imap import render
from mailsrv.imap.parser import Parser
from mailsrv.imap.session import SelectedMailbox
from mailsrv.store.interfaces import StoreError

log = Logger()

CLOSE_GRACE = 10.0  # seconds a closing connection may wait for the peer

NOT_AUTH, AUTH, SELECTED, LOGOUT = "not authenticated", "authenticated", "selected", "logout"
MAX_BAD = 20  # consecutive bad commands before we hang up
INPUT_HIGH = 1 << 20  # stop reading when this much unparsed input waits


class Result:
    """The tagged response a handler asks for."""

    def __init__(self, status: str = "OK", text: str = "completed", code: str | None = None) -> None:
        self.status, self.text, self.code = status, text, code


def ok(text: str = "completed", code: str | None = None) -> Result:
    return Result("OK", text, code)


def no(text: str, code: str | None = None) -> Result:
    return Result("NO", text, code)


def bad(text: str, code: str | None = None) -> Result:
    return Result("BAD", text, code)


@implementer(interfaces.IPushProducer)
class OutputGate:
    """Registered with the transport: tells long responses (FETCH of many
    messages) when to wait so output never piles up in memory."""

    def __init__(self) -> None:
        self.paused = False
        self.stopped = False
        self._waiters: list[defer.Deferred] = []

    def pauseProducing(self) -> None:
        self.paused = True

    def resumeProducing(self) -> None:
        self.paused = False
        waiters, self._waiters = self._waiters, []
        for d in waiters:
            d.callback(None)

    def stopProducing(self) -> None:
        self.stopped = True
        self.resumeProducing()

    def wait(self) -> defer.Deferred:
        if not self.paused or self.stopped:
            return defer.succeed(None)
        d: defer.Deferred = defer.Deferred()
        self._waiters.append(d)
        return d


def _handlers() -> dict[str, tuple[Callable, tuple[str, ...]]]:
    from mailsrv.imap import commands_any, commands_auth, commands_selected
    table: dict[str, tuple[Callable, tuple[str, ...]]] = {}
    for mod in (commands_any, commands_auth, commands_selected):
        table.update(mod.HANDLERS)
    return table


class IMAPServer(Protocol, TimeoutMixin):
    """One IMAP connection."""

    idle_keepalive = 120.0  # seconds between '* OK Still here' while idling
    idle_poll = 5.0  # seconds between folder.refresh() while idling
    yield_every = 500  # FETCH: messages per batch before yielding to the reactor

    def __init__(self, portal: Any, config: Any, tls_context: Any = None, implicit_tls: bool = False,
                 reactor: Any = None) -> None:
        if reactor is None:
            from twisted.internet import reactor as _r
            reactor = _r
        self.portal = portal
        self.config = config
        self.tls_context = tls_context
        self.tls_active = implicit_tls
        self.reactor = reactor
        self.callLater = reactor.callLater
        self.parser = Parser(append_limit=config.append_limit)
        self.state = NOT_AUTH
        self.account: Any = None
        self.selected: SelectedMailbox | None = None
        self.out = OutputGate()
        self.handlers = _handlers()
        self.enabled: set = set()
        self._logout: Callable[[], None] | None = None
        self._busy = False
        self._pumping = False
        self._raw_waiter: defer.Deferred | None = None
        self._bad_count = 0
        self._reading_paused = False
        self.closed = False
        self.idling = False
        self._abort_call: Any = None

    # -- connection
    def connectionMade(self) -> None:
        try:
            self.transport.setTcpNoDelay(True)
        except (AttributeError, OSError, NotImplementedError):
            pass
        self.transport.registerProducer(self.out, True)
        self.setTimeout(self.config.imap_timeout)
        self.send(render.untagged(f"OK [CAPABILITY {' '.join(self.capabilities())}] mailsrv ready."))

    def connectionLost(self, reason: Failure = None) -> None:
        if self._abort_call is not None and self._abort_call.active():
            self._abort_call.cancel()
        self.closed = True
        self.setTimeout(None)
        self.out.stopProducing()
        self.parser.close()
        if self._raw_waiter is not None:
            d, self._raw_waiter = self._raw_waiter, None
            d.errback(ConnectionError("connection lost"))
        self.unselect()
        if self._logout is not None:
            logout, self._logout = self._logout, None
            logout()

    def timeoutConnection(self) -> None:
        self.send(render.untagged("BYE Autologout; idle for too long"))
        self.close()

    def close(self) -> None:
        """Close after pending output, and for sure.

        Our output gate stays registered as a producer for the whole session;
        while it is, Twisted's TLS layer never sends its close alert and then
        waits for the peer's one forever (twisted#7926; mbsync waits for our
        EOF, so both sides hung).  Unregister first, and cut the connection
        if the peer has not gone after CLOSE_GRACE seconds.
        """
        if not self.closed:
            self.closed = True
            self.transport.unregisterProducer()
            self.transport.loseConnection()
            self._abort_call = self.callLater(CLOSE_GRACE, self.transport.abortConnection)

    @property
    def peer_host(self) -> str | None:
        return getattr(self.transport.getPeer(), "host", None)

    def plaintext_allowed(self) -> bool:
        from mailsrv.auth import plaintext_allowed
        return bool(plaintext_allowed(self.config, self.peer_host, self.tls_active))

    def capabilities(self) -> list[str]:
        caps = ["IMAP4rev1", "LITERAL+", "SASL-IR", "ID", "ENABLE", "IDLE"]
        if self.state == NOT_AUTH:
            if self.tls_context is not None and not self.tls_active:
                caps.append("STARTTLS")
            if self.plaintext_allowed():
                caps += ["AUTH=PLAIN", "AUTH=LOGIN"]
            else:
                caps.append("LOGINDISABLED")
        else:
            caps += ["NAMESPACE", "UNSELECT", "CHILDREN", "UIDPLUS", "MOVE", "SPECIAL-USE",
                     "LIST-EXTENDED", "LIST-STATUS", "MULTIAPPEND",
                     f"APPENDLIMIT={self.config.append_limit}", "ESEARCH"]
        return caps

    # -- output
    def send(self, data: bytes) -> None:
        if not self.closed:
            self.transport.write(data)

    def send_many(self, lines: list[bytes]) -> None:
        if lines and not self.closed:
            self.transport.writeSequence(lines)

    def drained(self) -> defer.Deferred:
        return self.out.wait()

    # -- input
    def dataReceived(self, data: bytes) -> None:
        self.resetTimeout()
        self.parser.push(data)
        self._pump()

    def read_raw_line(self) -> defer.Deferred:
        """Fires with the next input line (SASL response, IDLE DONE)."""
        self.parser.expect_raw_line()
        self._raw_waiter = defer.Deferred()
        d = self._raw_waiter
        self._pump()
        return d

    def _pump(self) -> None:
        if self._pumping:
            return
        self._pumping = True
        try:
            while not self.closed and (not self._busy or self._raw_waiter is not None):
                ev = self.parser.next_event()
                if ev is None:
                    break
                self._event(ev)
        finally:
            self._pumping = False
        self._flow_control()

    def _flow_control(self) -> None:
        if self.closed:
            return
        waiting = self.parser.buffered()
        if waiting > INPUT_HIGH and not self._reading_paused:
            self._reading_paused = True
            self.transport.pauseProducing()
        elif waiting <= INPUT_HIGH // 2 and self._reading_paused:
            self._reading_paused = False
            self.transport.resumeProducing()

    def _event(self, ev: Any) -> None:
        if isinstance(ev, C.RawLine):
            d, self._raw_waiter = self._raw_waiter, None
            if d is not None:
                d.callback(ev.data)
        elif isinstance(ev, C.LiteralContinuation):
            self.send(b"+ Ready for literal data\r\n")
        elif isinstance(ev, C.ParseError):
            if self._raw_waiter is not None:
                d, self._raw_waiter = self._raw_waiter, None
                d.callback(None)  # the waiting command answers for itself
                return
            self.send(render.tagged(ev.tag or "*", ev.status, ev.message, ev.code))
            self._count_bad()
        else:
            self._busy = True
            d = defer.ensureDeferred(self._run(ev))
            d.addErrback(self._internal_error, ev)
            d.addBoth(self._finished)

    def _count_bad(self) -> None:
        self._bad_count += 1
        if self._bad_count >= MAX_BAD:
            self.send(render.untagged("BYE Too many invalid IMAP commands."))
            self.close()

    def _finished(self, _: Any) -> None:
        self._busy = False
        if not self.closed:
            self._pump()

    def _internal_error(self, failure: Failure, cmd: C.Command) -> None:
        log.failure("IMAP command {name} failed", failure, name=cmd.name)
        self.send(render.tagged(cmd.tag, "NO", "Internal error, try again later", "SERVERBUG"))

    # -- commands
    async def _run(self, cmd: C.Command) -> None:
        entry = self.handlers.get(cmd.name)
        if entry is None or self.state not in entry[1]:
            self.send(render.tagged(cmd.tag, "BAD", f"{cmd.name} is not permitted in this state"))
            self._count_bad()
            return
        handler = entry[0]
        if self.selected is not None:
            await self.selected.folder.refresh()
        try:
            result = await handler(self, cmd)
        except StoreError as e:
            result = no(str(e) or type(e).__name__, e.code)
        finally:
            if isinstance(cmd, C.Append):
                cmd.close()
        if result is None:
            return  # the handler wrote everything (LOGOUT)
        if result.status == "BAD":
            self._count_bad()
        else:
            self._bad_count = 0
        self.flush_pending(cmd)
        self.send(render.tagged(cmd.tag, result.status, f"{cmd.name} {result.text}", result.code))

    def flush_pending(self, cmd: C.Command | None = None) -> None:
        """Report other sessions' changes where RFC 3501 7.4.1 allows."""
        if self.selected is None or self.closed:
            return
        allow_expunge = True
        if cmd is not None and cmd.name in ("FETCH", "STORE", "SEARCH") and not getattr(cmd, "uid", False):
            allow_expunge = False
        self.send_many(self.selected.flush(allow_expunge))

    # -- selection
    def select(self, folder: Any, readonly: bool) -> SelectedMailbox:
        self.unselect()
        self.selected = SelectedMailbox(folder, readonly, on_change=self._changed)
        self.state = SELECTED
        return self.selected

    def unselect(self) -> None:
        if self.selected is not None:
            self.selected.close()
            self.selected = None
        if self.state == SELECTED:
            self.state = AUTH

    def _changed(self) -> None:
        if self.idling:
            self.flush_pending()

    def login_succeeded(self, account: Any, logout: Callable[[], None]) -> None:
        self.account = account
        self._logout = logout
        self.state = AUTH
