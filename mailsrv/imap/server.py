"""The IMAP4rev1 connection: frame, queue, dispatch.

Bytes go into the sans-IO parser (:mod:`framing` + :mod:`grammar`); the
shared :class:`mailsrv.pump.CommandPump` pulls one event at a time and
starts the next command only when the previous one finished, so pipelined
input is answered in order although store calls are asynchronous, and
reading stops while too much unparsed input waits.  Each command is looked
up in :data:`mailsrv.imap.dispatch.TABLE`, checked against the session
state, and run with the session's :class:`~mailsrv.imap.context.Context`;
this module then writes the tagged response, counts bad commands and
reports other sessions' changes where RFC 3501 allows.

What stays here is the connection: lifecycle, TLS switch, the output gate
(transport back-pressure for long responses), the autologout timer.
Session state lives in the context; handlers in the ``commands_*`` modules.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Coroutine
from typing import Any

from twisted.cred.portal import Portal
from twisted.internet import defer, interfaces
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.internet.protocol import Protocol
from twisted.logger import Logger
from twisted.protocols.policies import TimeoutMixin
from twisted.python.failure import Failure
from zope.interface import implementer

from mailsrv.config import Config
from mailsrv.imap import commands as C
from mailsrv.imap import render
from mailsrv.imap.compress import CompressionError, CompressionLayer
from mailsrv.imap.context import Context
from mailsrv.imap.dispatch import TABLE
from mailsrv.imap.grammar import command_parser
from mailsrv.imap.results import Result, no
from mailsrv.ops.sessions import SessionHooks
from mailsrv.pump import CommandPump
from mailsrv.quickack import QuickAck
from mailsrv.store.interfaces import StoreError
from mailsrv.wire import Wire, plain_tcp_socket

log = Logger()

CLOSE_GRACE = 10.0  # seconds a closing connection may wait for the peer
MAX_BAD = 20  # consecutive bad commands before we hang up
LITERAL_MINUS_MAX = 4096  # RFC 7888 section 4

# no EXPUNGE after a non-UID FETCH/STORE/SEARCH (RFC 3501 7.4.1): the
# client may still be using the sequence numbers it sent
_NO_EXPUNGE_AFTER = (C.Fetch, C.Store, C.Search, C.Thread)  # C.Sort is a C.Search


@implementer(interfaces.IPushProducer)
class OutputGate:
    """Registered with the transport: tells long responses (FETCH of many
    messages) when to wait so output never piles up in memory."""

    def __init__(self) -> None:
        self.paused = False
        self.stopped = False
        self._waiters: list[defer.Deferred[None]] = []

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

    def wait(self) -> defer.Deferred[None]:
        if not self.paused or self.stopped:
            return defer.succeed(None)
        d: defer.Deferred[None] = defer.Deferred()
        self._waiters.append(d)
        return d


class IMAPServer(Protocol, TimeoutMixin):
    """One IMAP connection; implements :class:`context.Connection`."""

    transport: Any  # a TCP/TLS transport (ITCPTransport, ITLSTransport, IProducer)

    def __init__(self, portal: Portal, config: Config, reactor: IReactorTime, tls_context: Any = None,
                 implicit_tls: bool = False) -> None:
        self.reactor = reactor
        self.ctx = Context(self, portal, config, reactor, tls_context, implicit_tls)
        self.parser = command_parser(append_limit=config.append_limit, dialect=self.ctx.dialect)
        if not config.literal_plus:
            self.parser.nonsync_max = LITERAL_MINUS_MAX
        self.out = OutputGate()
        self.pump: CommandPump | None = None
        self.closed = False
        self.waiting_for_line = False
        self._bad_count = 0
        self._abort_call: Any = None
        self.compression: CompressionLayer | None = None
        self._wrote = False  # output since the last input (it carries the ACK)
        self._quickack: QuickAck | None = None
        self.wire = Wire(reactor, self.direct_socket, lambda: self.transport, self._write_many_now, self.drained)

    def callLater(self, period: float, func: Callable[[], object]) -> IDelayedCall:
        """TimeoutMixin's and our own timers run on the given reactor (a
        test's Clock)."""
        return self.reactor.callLater(period, func)

    # -- connection
    def connectionMade(self) -> None:
        try:
            self.transport.setTcpNoDelay(True)
        except (AttributeError, OSError, NotImplementedError):
            pass
        self.pump = CommandPump(self.parser, self._event, self.transport)
        self._quickack = QuickAck(self.transport)
        self.transport.registerProducer(self.out, True)
        self.setTimeout(self.ctx.config.imap_timeout)
        self.write(render.untagged(f"OK [CAPABILITY {' '.join(self.ctx.capabilities())}] mailsrv ready."))

    def connectionLost(self, reason: Failure | None = None) -> None:
        if self._abort_call is not None and self._abort_call.active():
            self._abort_call.cancel()
        self.closed = True
        self.setTimeout(None)
        self.wire.abort()
        self.out.stopProducing()
        self.parser.close()
        if self.pump is not None:
            self.pump.close()
        self.ctx.end()

    def timeoutConnection(self) -> None:
        self.ctx.ops.ending("Autologout")
        self.write(render.untagged("BYE Autologout; idle for too long"))
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
            if self.pump is not None:
                self.pump.close()
            self.transport.unregisterProducer()
            self.transport.loseConnection()
            self._abort_call = self.callLater(CLOSE_GRACE, self.transport.abortConnection)

    @property
    def ops_session(self) -> SessionHooks:
        """The operator's view of this connection (mailsrv.ops); set by the listener."""
        return self.ctx.ops

    @ops_session.setter
    def ops_session(self, session: SessionHooks) -> None:
        self.ctx.ops = session

    def ops_detail(self) -> dict[str, Any]:
        """For ``mailsrv who``: the selected mailbox, IDLE, TLS."""
        sel = self.ctx.selected
        return {"mailbox": sel.folder.name if sel is not None else None, "idle": self.ctx.idling,
                "tls": self.ctx.tls_active}

    @property
    def peer_host(self) -> str | None:
        host: str | None = getattr(self.transport.getPeer(), "host", None)
        return host

    def start_tls(self, tls_context: Any) -> None:
        """STARTTLS: plaintext received after the command must not survive
        into the TLS session; the producer is re-registered around the
        switch."""
        self.parser.discard_buffer()
        self.transport.unregisterProducer()
        self.transport.startTLS(tls_context)
        self.transport.registerProducer(self.out, True)

    def start_compression(self) -> None:
        """COMPRESS: from now on the transport deflates what we write and
        received bytes are inflated before the parser sees them; the pump
        pauses reading through the wrapper, which also stops inflating."""
        assert self.pump is not None
        layer = CompressionLayer(self.transport, self.parser, self.pump)
        self.compression = layer
        self.transport = layer.transport
        self.pump.transport = layer.transport

    def reset_timeout(self) -> None:
        self.resetTimeout()

    # -- output
    def write(self, data: bytes) -> None:
        if not self.closed:
            self._wrote = True
            if self.wire.busy:
                self.wire.hold(data)  # after the message data the wire still holds
            else:
                self.transport.write(data)

    def write_many(self, lines: list[bytes]) -> None:
        if lines and not self.closed:
            self._wrote = True
            if self.wire.busy:
                self.wire.hold(b"".join(lines))
            else:
                self.transport.writeSequence(lines)

    def _write_many_now(self, lines: list[bytes]) -> None:
        if lines and not self.closed:
            self.transport.writeSequence(lines)

    def direct_socket(self) -> Any:
        """The socket message data may be written to directly (plain TCP,
        output not transformed), else None (mailsrv.wire).  A layer that
        transforms output (COMPRESS) must make this None while it is on."""
        return None if self.closed else plain_tcp_socket(self.transport)

    def drained(self) -> defer.Deferred[None]:
        return self.out.wait()

    # -- input
    def dataReceived(self, data: bytes) -> None:
        self.resetTimeout()
        if self.compression is not None:
            try:
                self.compression.received(data)
            except CompressionError as e:
                log.info("IMAP client sent a corrupt compressed stream: {e}", e=e)
                self.write(render.untagged("BYE Corrupt compressed input"))
                self.close()
            return
        self.parser.push(data)
        assert self.pump is not None
        self._wrote = False
        self.pump.pump()
        if not self._wrote and self._quickack is not None and self.parser.incomplete():
            self._quickack.ack_now()  # no answer carries the ACK: a Nagle client waits for it

    def input_buffered(self) -> int:
        return self.parser.buffered()

    async def _next_line(self) -> bytes | None:
        assert self.pump is not None
        self.parser.expect_raw_line()
        self.waiting_for_line = True
        try:
            ev = await self.pump.next_event()
        finally:
            self.waiting_for_line = False
        return ev.data if isinstance(ev, C.RawLine) else None  # a ParseError: the line was too long

    def next_line(self) -> defer.Deferred[bytes | None]:
        """The next input line, raw (SASL response, IDLE DONE)."""
        return defer.ensureDeferred(self._next_line())

    # -- events and commands
    def _event(self, ev: C.Event) -> Coroutine[Any, Any, None] | None:
        """The pump's ``run``: a command is started (and the pump waits for
        it); anything else is answered at once."""
        if isinstance(ev, C.Command):
            return self._run(ev)
        if isinstance(ev, C.LiteralContinuation):
            self.write(b"+ Ready for literal data\r\n")
        elif isinstance(ev, C.ParseError) and ev.command is not None:
            self._refuse(ev)
        elif isinstance(ev, C.ParseError):
            self.write(render.tagged(ev.tag or "*", ev.status, ev.message, ev.code))
            self._count_bad()
        # a RawLine nobody waits for (its command already gave up) is dropped
        return None

    def _refuse(self, ev: C.ParseError) -> None:
        """A command the grammar refused with NO (a mailbox name that is not
        modified UTF-7 names no mailbox): answered as its handler would,
        in a state where it may run; a refused SELECT leaves no mailbox
        selected (RFC 3501 6.3.1)."""
        entry = TABLE.get(ev.command or "")
        if entry is None or self.ctx.state not in entry[1]:
            self.write(render.tagged(ev.tag or "*", "BAD", f"{ev.command} is not permitted in this state"))
            self._count_bad()
            return
        if ev.command in ("SELECT", "EXAMINE"):
            self.ctx.unselect()
        self.write(render.tagged(ev.tag or "*", ev.status, ev.message, ev.code))

    def _count_bad(self) -> None:
        self._bad_count += 1
        if self._bad_count >= MAX_BAD:
            self.write(render.untagged("BYE Too many invalid IMAP commands."))
            self.close()

    async def _run(self, cmd: C.Command) -> None:
        """Check the state, run the handler, answer; other sessions'
        changes go out just before the tagged response."""
        ctx = self.ctx
        ctx.running = True
        started = time.perf_counter()
        try:
            entry = TABLE.get(cmd.name)
            if entry is None or ctx.state not in entry[1]:
                self.write(render.tagged(cmd.tag, "BAD", f"{cmd.name} is not permitted in this state"))
                self._count_bad()
                return
            result: Result | None
            try:
                if ctx.selected is not None:
                    await ctx.selected.folder.refresh()  # a remote store may be unavailable: NO, not BAD
                    if self.closed:
                        return  # the client hung up meanwhile: its session (and mailbox) are gone
                    if getattr(cmd, "uid", False):
                        # a UID command may name a message this session has not
                        # heard of yet (its UID came from another session's
                        # APPENDUID): bring the view up to date first; EXPUNGE is
                        # allowed now (RFC 3501 7.4.1 forbids it only around
                        # sequence numbers)
                        ctx.flush_pending()
                result = await entry[0](ctx, cmd)
            except StoreError as e:
                if e.code == "SERVERBUG":  # the store failed, not the client
                    log.error("IMAP {name} of {user}: store failure: {e}", name=cmd.name, user=ctx.ops.user, e=e)
                result = no(str(e) or type(e).__name__, e.code)
            if result is None:
                return  # the handler wrote everything (LOGOUT, STARTTLS)
            if result.status == "BAD":
                self._count_bad()
            else:
                self._bad_count = 0
            ctx.flush_pending(allow_expunge=not (isinstance(cmd, _NO_EXPUNGE_AFTER) and not cmd.uid))
            self.write(render.tagged(cmd.tag, result.status, f"{cmd.name} {result.text}", result.code))
        except Exception as e:  # noqa: BLE001  a handler bug costs one NO, not the session
            if isinstance(e, ConnectionError) and self.closed:
                return  # the connection went while the command waited for input
            log.failure("IMAP command {name} failed", name=cmd.name)
            self.write(render.tagged(cmd.tag, "NO", "Internal error, try again later", "SERVERBUG"))
        finally:
            ctx.running = False
            if isinstance(cmd, C.Append):
                cmd.close()
            ctx.ops.command(cmd.name, time.perf_counter() - started)
