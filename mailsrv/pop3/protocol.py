"""The POP3 server protocol: RFC 1939, 2449 (CAPA), 2595 (STLS), 3206, 5034.

Parsing and dispatch only; mail comes from the store through the frozen
:class:`~mailsrv.pop3.maildrop.Maildrop`, messages go out through
:class:`~mailsrv.pop3.streaming.MessageSender`.

Input goes through the shared :class:`~mailsrv.pump.CommandPump` over a
:class:`~mailsrv.pop3.lines.LineSplitter`: commands run strictly in order,
one that is still working (a login, a RETR being streamed, the UPDATE) holds
every later pipelined command in the splitter until it is done, and reading
pauses while more than ``MAX_PENDING_INPUT`` octets wait.  AUTH PLAIN
without an initial response reads its SASL line through the pump too.

Messages fully retrieved with RETR get ``\\Seen`` in the UPDATE state, with
the deletions, so IMAP users see what POP3 read; like deletions, this never
happens for a session that drops or times out.
"""

from __future__ import annotations

import os
import secrets
import time
from collections.abc import Callable, Iterable
from typing import Any

from twisted.internet import defer
from twisted.logger import Logger
from twisted.protocols import basic, policies
from twisted.python.failure import Failure

from mailsrv.ops.sessions import NO_SESSION, SessionHooks
from mailsrv.pop3 import lines as L
from mailsrv.pop3.authorization import Authorization
from mailsrv.pop3.maildrop import Maildrop, NoSuchMessage
from mailsrv.pop3.states import (
    AUTHORIZATION,
    ERR_FLOOD,
    ERR_GONE,
    ERR_TEMP,
    MAX_BAD_COMMANDS,
    MAX_PENDING_INPUT,
    TRANSACTION,
    UPDATE,
    Bad,
    Result,
)
from mailsrv.pop3.streaming import MessageSender
from mailsrv.pump import CommandPump
from mailsrv.store.interfaces import MessageGone

log = Logger()

# keyword -> (method name, states, min args, max args); PASS takes the rest of the line.
_COMMANDS: dict[bytes, tuple[str, tuple[str, ...], int, int]] = {
    b"CAPA": ("do_CAPA", (AUTHORIZATION, TRANSACTION), 0, 0),
    b"QUIT": ("do_QUIT", (AUTHORIZATION, TRANSACTION), 0, 0),
    b"USER": ("do_USER", (AUTHORIZATION,), 1, 1),
    b"PASS": ("do_PASS", (AUTHORIZATION,), 1, -1),
    b"APOP": ("do_APOP", (AUTHORIZATION,), 2, 2),
    b"AUTH": ("do_AUTH", (AUTHORIZATION,), 0, 2),
    b"STLS": ("do_STLS", (AUTHORIZATION,), 0, 0),
    b"STAT": ("do_STAT", (TRANSACTION,), 0, 0),
    b"LIST": ("do_LIST", (TRANSACTION,), 0, 1),
    b"UIDL": ("do_UIDL", (TRANSACTION,), 0, 1),
    b"RETR": ("do_RETR", (TRANSACTION,), 1, 1),
    b"TOP": ("do_TOP", (TRANSACTION,), 2, 2),
    b"DELE": ("do_DELE", (TRANSACTION,), 1, 1),
    b"NOOP": ("do_NOOP", (TRANSACTION,), 0, 0),
    b"RSET": ("do_RSET", (TRANSACTION,), 0, 0),
    b"UTF8": ("do_UTF8", (AUTHORIZATION,), 0, 0),
    b"LANG": ("do_LANG", (AUTHORIZATION, TRANSACTION), 0, 1),
}
# RFC 6856 LANG: the languages of our response texts (tag, description).
LANGUAGES = ((b"en", b"English"),)


class POP3Server(Authorization, basic.LineReceiver, policies.TimeoutMixin):
    """One POP3 session.

    Built on LineReceiver for its line conventions (``delimiter``,
    ``sendLine``) but with its own bounded splitter and the shared pump:
    LineReceiver closes the connection on an over-long line and throws away
    the pipelined commands behind it, while POP3 must answer ``-ERR`` and
    carry on.
    """

    # A TCP, TLS or UNIX transport: setTcpNoDelay, startTLS, abortConnection
    # and the producer methods are used where the transport has them.
    transport: Any
    _pump: CommandPump  # made in connectionMade, when the transport is known
    ops_session: SessionHooks = NO_SESSION  # login lines, limits, metrics; set by the listener (mailsrv.ops)

    def __init__(self, factory: Any) -> None:
        self.factory = factory
        self.portal = factory.portal
        self.config = factory.config
        self.reactor = factory.reactor
        self.state = AUTHORIZATION
        self.tls_active = bool(factory.implicit_tls)
        self.peer_host: str | None = None
        self.bad_commands = 0
        self.maildrop: Maildrop | None = None
        self._splitter = L.LineSplitter()
        self._closing = False
        self._user: bytes | None = None
        self.utf8 = False  # RFC 6856 UTF8 was sent
        self._apop_challenge: bytes | None = None
        self._account: Any = None
        self._logout: Callable[[], None] | None = None
        self._locked = False
        self._sender: MessageSender | None = None

    def callLater(self, period: float, func: Callable[[], object]) -> Any:
        """TimeoutMixin schedules on the factory's reactor (a Clock in tests)."""
        return self.reactor.callLater(period, func)

    # -- connection ------------------------------------------------------

    def connectionMade(self) -> None:
        self._pump = CommandPump(self._splitter, self._run, self.transport, MAX_PENDING_INPUT)
        try:
            self.transport.setTcpNoDelay(True)
        except (AttributeError, NotImplementedError, OSError):
            pass  # not a TCP transport (tests, UNIX sockets)
        try:
            self.peer_host = getattr(self.transport.getPeer(), "host", None)
        except Exception:
            self.peer_host = None
        self.setTimeout(self.config.pop3_timeout)
        greeting = b"+OK mailsrv ready."
        if self.config.apop:
            host = self.config.hostname.encode("ascii", "replace")
            self._apop_challenge = b"<%d.%s@%s>" % (os.getpid(), secrets.token_hex(8).encode(), host)
            greeting += b" " + self._apop_challenge
        self.sendLine(greeting)

    def connectionLost(self, reason: Failure | None = None) -> None:
        self._closing = True
        self._pump.close()
        self.setTimeout(None)
        if self._sender is not None:
            sender, self._sender = self._sender, None
            sender.stopProducing()
        self._release()

    def timeoutConnection(self) -> None:
        if self._closing:
            return
        log.info("POP3 autologout of {peer} after {t}s idle", peer=self.peer_host, t=self.timeOut)
        self.ops_session.ending("Autologout")
        self._closing = True
        self._pump.close()
        if self._sender is not None:
            self.transport.abortConnection()  # a stalled reader: do not wait for the producer
        else:
            self.sendLine(b"-ERR Disconnected for inactivity.")
            self.transport.loseConnection()

    def _close(self) -> None:
        self._closing = True
        self._pump.close()
        self.transport.loseConnection()

    def ops_detail(self) -> dict[str, Any]:
        """For ``mailsrv who``."""
        return {"mailbox": "INBOX" if self.maildrop is not None else None, "idle": False, "tls": self.tls_active}

    def _release(self) -> defer.Deferred[None]:
        """Give back the lock and the avatar; idempotent, deletes nothing.
        Fires once the lock is free for others (a database lock takes a
        round trip): QUIT answers after that, so a client that logs in
        again at once finds the maildrop free."""
        self.maildrop = None
        account, logout, locked = self._account, self._logout, self._locked
        self._account = self._logout = None
        self._locked = False
        done: defer.Deferred[None] = defer.succeed(None)
        if locked and account is not None:
            done = defer.maybeDeferred(account.release_pop3_lock)
            done.addErrback(lambda f: log.failure("releasing the POP3 lock failed", f))
        if logout is not None:
            try:
                logout()
            except Exception:
                log.failure("avatar logout failed")
        return done

    # -- input -----------------------------------------------------------

    def dataReceived(self, data: bytes) -> None:
        if self._closing:
            return
        self.resetTimeout()
        self._splitter.feed(data)
        self._pump.pump()

    def _run(self, line: bytes | L._TooLong | L._Flood) -> defer.Deferred[Any] | None:
        """The pump's handler for one command line: None when the command is
        done, else a Deferred the pump waits for before the next line."""
        started = time.perf_counter()
        self._keyword = b""
        try:
            if line is L.FLOOD:
                self._flood()
                return None
            if not isinstance(line, bytes):  # L.TOO_LONG
                raise Bad(b"-ERR Line too long.")
            result = self._command(line)
        except Bad as e:
            self._bad(e.text)
            return None
        except Exception:
            log.failure("POP3 command failed")
            self.sendLine(ERR_TEMP)
            return None
        keyword = self._keyword.decode("ascii")
        if result is None:
            self.ops_session.command(keyword, time.perf_counter() - started)
            return None
        d = result if isinstance(result, defer.Deferred) else defer.ensureDeferred(result)
        d.addErrback(self._async_failure)

        def timed(r: object) -> object:
            self.ops_session.command(keyword, time.perf_counter() - started)
            return r

        return d.addBoth(timed)

    def _flood(self) -> None:
        """Over FLOOD_LENGTH octets without a line end: no client means that."""
        self.ops_session.ending("Line too long")
        self.sendLine(ERR_FLOOD)
        self._close()

    def _command(self, line: bytes) -> Result:
        cmd = L.parse_command(line)
        if cmd is None:
            raise Bad(b"-ERR Unknown command.")
        if len(line) + 2 > L.MAX_COMMAND_LENGTH and cmd.keyword != b"AUTH":
            raise Bad(b"-ERR Line too long.")
        spec = _COMMANDS.get(cmd.keyword)
        if spec is None:
            raise Bad(b"-ERR Unknown command.")
        name, states, lo, hi = spec
        self._keyword = cmd.keyword
        if self.state not in states:
            raise Bad(b"-ERR Command not valid in this state.")
        if hi < 0:  # PASS: the rest of the line, spaces included
            if not cmd.rest:
                raise Bad(b"-ERR Wrong number of arguments.")
            return getattr(self, name)(cmd.rest)
        if not lo <= len(cmd.args) <= hi:
            raise Bad(b"-ERR Wrong number of arguments.")
        return getattr(self, name)(*cmd.args)

    def _bad(self, text: bytes) -> None:
        self.bad_commands += 1
        if self.bad_commands >= MAX_BAD_COMMANDS:
            self.sendLine(b"-ERR Too many bad commands, closing connection.")
            self._close()
        else:
            self.sendLine(text)

    def _async_failure(self, failure: Failure) -> None:
        if not self._closing:
            log.failure("POP3 command failed", failure)
            self.sendLine(ERR_TEMP)

    # -- helpers ---------------------------------------------------------

    @property
    def _drop(self) -> Maildrop:
        """The maildrop of a TRANSACTION-state command (the command table
        lets those run only after a login)."""
        if self.maildrop is None:
            raise RuntimeError("no maildrop outside the TRANSACTION state")
        return self.maildrop

    def plaintext_allowed(self) -> bool:
        return bool(self.factory.plaintext_allowed(self.config, self.peer_host, self.tls_active))

    def _stls_offered(self) -> bool:
        return self.state == AUTHORIZATION and not self.tls_active and self.factory.tls_context is not None

    def _number(self, arg: bytes) -> int:
        n = L.parse_number(arg)
        if n is None:
            raise Bad(b"-ERR Invalid message number.")
        return n

    def _send_multiline(self, first: bytes, body: Iterable[bytes]) -> None:
        self.transport.write(first + b"\r\n" + b"".join(line + b"\r\n" for line in body) + b".\r\n")

    # -- TRANSACTION -----------------------------------------------------

    def do_STAT(self) -> None:
        self.sendLine(b"+OK %d %d" % self._drop.stat())

    def do_LIST(self, arg: bytes | None = None) -> None:
        if arg is None:
            count, octets = self._drop.stat()
            body = [b"%d %d" % pair for pair in self._drop.sizes()]
            self._send_multiline(b"+OK %d messages (%d octets)" % (count, octets), body)
            return
        n = self._number(arg)
        try:
            self.sendLine(b"+OK %d %d" % (n, self._drop.size(n)))
        except NoSuchMessage as e:
            self.sendLine(b"-ERR " + e.text + b".")

    def do_UIDL(self, arg: bytes | None = None) -> None:
        if arg is None:
            body = [b"%d %s" % (n, u.encode("ascii")) for n, u in self._drop.uidls()]
            self._send_multiline(b"+OK Unique-ID listing follows.", body)
            return
        n = self._number(arg)
        try:
            self.sendLine(b"+OK %d %s" % (n, self._drop.uidl(n).encode("ascii")))
        except NoSuchMessage as e:
            self.sendLine(b"-ERR " + e.text + b".")

    def do_DELE(self, arg: bytes) -> None:
        n = self._number(arg)
        try:
            self._drop.delete(n)
        except NoSuchMessage as e:
            self.sendLine(b"-ERR " + e.text + b".")
            return
        self.sendLine(b"+OK Marked to be deleted.")

    def do_NOOP(self) -> None:
        self.sendLine(b"+OK")

    # -- RFC 6856: UTF8 and LANG ----------------------------------------

    def do_UTF8(self) -> None:
        """The client takes UTF-8: user names and passwords may be UTF-8
        (they always could here) and messages with UTF-8 headers (RFC 6532)
        are sent as stored - which this server does for every client, never
        downgrading a message it cannot downgrade without changing it."""
        self.utf8 = True
        self.sendLine(b"+OK UTF8 enabled")

    def do_LANG(self, tag: bytes | None = None) -> None:
        """LANG lists the languages; LANG tag (or ``*``) picks one.  Only
        English is there."""
        if tag is None:
            self._send_multiline(b"+OK Language listing follows", [t + b" " + d for t, d in LANGUAGES])
            return
        for t, _ in LANGUAGES:
            if tag == b"*" or tag.lower() == t:
                self.sendLine(b"+OK " + t + b" Language changed")
                return
        self.sendLine(b"-ERR Unsupported language")

    def do_RSET(self) -> None:
        self._drop.reset()
        self.sendLine(b"+OK %d messages (%d octets)." % self._drop.stat())

    def do_RETR(self, arg: bytes) -> Result:
        n = self._number(arg)
        return self._stream(n, None)

    def do_TOP(self, arg: bytes, lines: bytes) -> Result:
        n = self._number(arg)
        body_lines = L.parse_number(lines)
        if body_lines is None:
            raise Bad(b"-ERR Invalid number of lines.")
        return self._stream(n, body_lines)

    def _stream(self, n: int, body_lines: int | None) -> defer.Deferred[None] | None:
        drop = self._drop
        try:
            uid, size = drop.uid(n), drop.size(n)
        except NoSuchMessage as e:
            self.sendLine(b"-ERR " + e.text + b".")
            return None
        if drop.folder.get(uid) is None:
            self.sendLine(ERR_GONE)
            return None
        return defer.ensureDeferred(self._stream_loaded(n, uid, size, body_lines))

    async def _stream_loaded(self, n: int, uid: int, size: int, body_lines: int | None) -> None:
        """The message fetched from the store first (a remote store: its
        read would wait in the reactor thread otherwise), then streamed."""
        drop = self._drop
        try:
            await drop.folder.prefetch([uid], (), "full")
            message = drop.folder.open_message(uid)
        except MessageGone:
            self.sendLine(ERR_GONE)
            return None
        except Exception:
            log.failure("POP3 could not open message {uid}", uid=uid)
            self.sendLine(ERR_TEMP)
            return None
        prefix = b"+OK %d octets\r\n" % size if body_lines is None else b"+OK\r\n"
        self._sender = sender = MessageSender(
            self.transport, message, prefix, body_lines, self.reactor, self.resetTimeout, size=size
        )
        d = sender.start()

        def sent(_: object) -> None:
            self._sender = None
            if body_lines is None:
                drop.mark_retrieved(n)

        def cut(failure: Failure) -> None:
            # Part of the message is on the wire: no -ERR can follow it.
            self._sender = None
            if not self._closing:
                log.failure("POP3 stream of message {uid} failed", failure, uid=uid)
                self._closing = True
                self.transport.abortConnection()

        d.addCallbacks(sent, cut)
        await d

    def do_QUIT(self) -> Result:
        self.ops_session.ending("Logged out")
        if self.state == AUTHORIZATION:
            self.sendLine(b"+OK Logging out.")
            self._close()
            return None
        self.state = UPDATE
        return self._update()

    async def _update(self) -> None:
        """UPDATE: \\Seen for what was retrieved, then expunge what DELE marked."""
        drop = self._drop
        seen, deleted = drop.retrieved_uids(), drop.deleted_uids()
        if seen:
            try:
                await drop.folder.store_flags(seen, ["\\Seen"], "+")
            except Exception:
                log.failure("POP3 could not set \\Seen")
        ok = True
        if deleted:
            try:
                await drop.folder.expunge(deleted)
            except Exception:
                log.failure("POP3 UPDATE could not expunge {n} messages", n=len(deleted))
                ok = False
        self.ops_session.count(retrieved=len(seen), deleted=len(deleted) if ok else 0)
        await self._release()
        if self._closing:
            return
        if ok:
            self.sendLine(b"+OK Logging out, %d messages deleted." % len(deleted))
        else:
            self.sendLine(b"-ERR [SYS/TEMP] Some deleted messages were not removed.")
        self._close()

