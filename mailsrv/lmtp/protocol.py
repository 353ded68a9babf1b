"""LMTP server (RFC 2033) for Postfix ``lmtp:`` delivery into the store.

A fresh ``LineReceiver`` rather than ``twisted.mail.smtp.ESMTP``: that class
is SMTP-shaped (one reply after DATA, HELO/EHLO) and buffers whole messages
in memory.  Here commands are handled one at a time in arrival order; a
command whose work is asynchronous (a store delivery, a user lookup that
returns a Deferred) pauses the transport, so pipelined input waits in the
buffer and is answered in order once the work is done.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from twisted.internet import defer
from twisted.internet.protocol import ServerFactory
from twisted.logger import Logger
from twisted.protocols.basic import LineReceiver
from twisted.protocols.policies import TimeoutMixin
from twisted.python.failure import Failure

from mailsrv.lmtp.address import AddressError, Mailbox, parse_mailbox, parse_params, split_path
from mailsrv.lmtp.data import DotDecoder, Spool
from mailsrv.store.interfaces import NoSuchFolder, TooBig

log = Logger()

MAX_LINE = 2048  # RFC 5321 allows 512; extensions make MAIL longer
MAX_ERRORS = 10
MAX_RECIPIENTS = 1000
TIMEOUT = 300
DETAIL_SEPARATOR = "+"


@dataclass
class Recipient:
    address: str  # as given in RCPT TO (for replies and Delivered-To)
    user: str
    folder: str
    account: object  # IAccount


class LMTPServer(LineReceiver, TimeoutMixin):
    """One LMTP connection.  ``factory`` supplies store, config, user_exists."""

    MAX_LENGTH = MAX_LINE
    delimiter = b"\r\n"

    def __init__(self) -> None:
        self._lhlo: str | None = None
        self._errors = 0
        self._busy = False
        self._paused_by_us = False
        self._discarding = False
        self._pos = 0  # start of unread input in self._buffer
        self._lost = False
        self._decoder: DotDecoder | None = None
        self._spool: Spool | None = None
        self._reset_transaction()

    # -- connection ------------------------------------------------------

    def connectionMade(self) -> None:
        try:
            self.transport.setTcpNoDelay(True)
        except (AttributeError, NotImplementedError, OSError):
            pass  # unix sockets, test transports
        self.setTimeout(self.factory.timeout)
        self._reply(220, f"{self._host} LMTP mailsrv ready")

    def connectionLost(self, reason: Failure = None) -> None:  # type: ignore[assignment]
        self._lost = True
        self.setTimeout(None)
        if self._spool is not None:  # cut off inside DATA: nothing delivered
            self._spool.close()
            self._spool = None
            self._decoder = None

    def timeoutConnection(self) -> None:
        self._reply(421, f"4.4.2 {self._host} Timeout exceeded, closing connection")
        self.transport.loseConnection()

    @property
    def _host(self) -> str:
        return self.factory.config.hostname

    @property
    def _limit(self) -> int:
        return self.factory.config.lmtp_max_size

    # -- input -----------------------------------------------------------

    def dataReceived(self, data: bytes) -> None:
        """Split lines (or feed DATA) while not paused.  Own loop instead of
        LineReceiver's so that an over-long line is answered and skipped
        rather than dropping the connection or the pipelined lines after it,
        and so that many pipelined lines cost one pass (an offset into the
        buffer, not a copy of the rest per line)."""
        self.resetTimeout()
        if self._busyReceiving:
            self._buffer += data
            return
        if self._pos:
            self._buffer, self._pos = self._buffer[self._pos :], 0
        self._buffer += data
        self._busyReceiving = True
        try:
            while self._pos < len(self._buffer) and not self.paused and not self.transport.disconnecting:
                if not self.line_mode:
                    chunk = self._buffer[self._pos :] if self._pos else self._buffer
                    self._buffer, self._pos = b"", 0
                    self.rawDataReceived(chunk)
                    continue
                start = self._pos
                end = self._buffer.find(b"\n", start)
                if self._discarding:
                    if end < 0:
                        self._buffer, self._pos = b"", 0
                        break
                    self._pos = end + 1
                    self._discarding = False
                    continue
                if end < 0 and len(self._buffer) - start <= self.MAX_LENGTH:
                    break
                if end < 0 or end - start > self.MAX_LENGTH:
                    self._discarding = True
                    self._error(500, "5.5.2 Line too long")
                    continue
                self._pos = end + 1
                line = self._buffer[start:end]
                self.lineReceived(line[:-1] if line.endswith(b"\r") else line)
        finally:
            self._busyReceiving = False

    def lineReceived(self, line: bytes) -> None:
        verb, _, arg = line.partition(b" ")
        handler = self._COMMANDS.get(verb.upper())
        if handler is None:
            if verb.upper() in (b"HELO", b"EHLO"):
                self._error(500, "5.5.1 This is LMTP: use LHLO")
            else:
                self._error(500, "5.5.2 Command unrecognized")
            return
        try:
            result = handler(self, arg)
        except Exception:  # a bug or a broken store must not kill the session
            return self._internal_error(Failure())
        self._run(result)

    def rawDataReceived(self, data: bytes) -> None:
        out, leftover = self._decoder.feed(data)
        self._spool.write(out)
        if leftover is None:
            return
        self.line_mode = 1
        self._buffer, self._pos = leftover + self._buffer[self._pos :], 0
        self._run(self._end_data())

    def _run(self, result) -> None:
        """Serialize: while ``result`` (a Deferred) is pending, read nothing."""
        if not isinstance(result, defer.Deferred):
            return
        self._busy = True
        result.addErrback(self._internal_error)
        result.addBoth(self._done)
        if self._busy and not self._lost:
            self._paused_by_us = True
            self.setTimeout(None)
            self.pauseProducing()

    def _done(self, _) -> None:
        self._busy = False
        if self._paused_by_us:
            self._paused_by_us = False
            if not self._lost:
                self.setTimeout(self.factory.timeout)
                self.resumeProducing()

    def _internal_error(self, failure: Failure) -> None:
        log.failure("LMTP command failed", failure)
        self._reply(451, "4.3.0 Internal error, try again later")

    # -- output ----------------------------------------------------------

    def _reply(self, code: int, text: str) -> None:
        if not self._lost:
            self.transport.write(b"%d %s\r\n" % (code, text.encode("utf-8", "replace")))

    def _error(self, code: int, text: str) -> None:
        """A client mistake: counted; too many of them end the session."""
        self._reply(code, text)
        self._errors += 1
        if self._errors >= MAX_ERRORS:
            self._reply(421, f"4.7.0 {self._host} Too many errors, closing connection")
            self.transport.loseConnection()

    # -- commands --------------------------------------------------------

    def _reset_transaction(self) -> None:
        self._has_sender = False
        self._sender: Mailbox | None = None
        self._recipients: list[Recipient] = []

    def do_LHLO(self, arg: bytes) -> None:
        words = arg.split()
        if not words:
            return self._error(501, "5.5.4 Syntax: LHLO hostname")
        self._lhlo = words[0].decode("ascii", "replace")
        self._reset_transaction()
        size = f"SIZE {self._limit}" if self._limit > 0 else "SIZE"
        lines = [self._host, "PIPELINING", "8BITMIME", "ENHANCEDSTATUSCODES", size]
        out = b"".join(b"250-%s\r\n" % s.encode("ascii") for s in lines[:-1])
        self.transport.write(out + b"250 %s\r\n" % lines[-1].encode("ascii"))

    def do_MAIL(self, arg: bytes) -> None:
        if self._lhlo is None:
            return self._error(503, "5.5.1 Send LHLO first")
        if self._has_sender:
            return self._error(503, "5.5.1 Sender already specified")
        if arg[:5].upper() != b"FROM:":
            return self._error(501, "5.5.4 Syntax: MAIL FROM:<address>")
        try:
            path, params = split_path(arg[5:])
            sender = parse_mailbox(path, allow_null=True)
        except (AddressError, UnicodeDecodeError):
            return self._error(501, "5.1.7 Bad sender address syntax")
        try:
            params = parse_params(params)
        except AddressError:
            return self._error(501, "5.5.4 Bad MAIL parameter syntax")
        for key, value in params:
            if key == "SIZE":
                if value is None or not value.isdigit() or len(value) > 20:
                    return self._error(501, "5.5.4 Bad SIZE value")
                if self._limit > 0 and int(value) > self._limit:
                    return self._reply(552, "5.3.4 Message size exceeds fixed maximum message size")
            elif key == "BODY":
                if value is None or value.upper() not in ("7BIT", "8BITMIME"):
                    return self._error(501, "5.5.4 Unsupported BODY type")
            else:
                return self._error(555, f"5.5.4 Unsupported parameter {key}")
        self._has_sender = True
        self._sender = sender
        self._reply(250, "2.1.0 Sender OK")

    def do_RCPT(self, arg: bytes):
        if not self._has_sender:
            return self._error(503, "5.5.1 Need MAIL command first")
        if arg[:3].upper() != b"TO:":
            return self._error(501, "5.5.4 Syntax: RCPT TO:<address>")
        try:
            path, params = split_path(arg[3:])
            rcpt = parse_mailbox(path, allow_null=False)
        except (AddressError, UnicodeDecodeError):
            return self._error(501, "5.1.3 Bad recipient address syntax")
        if params:
            return self._error(555, "5.5.4 RCPT parameters not supported")
        addr = str(rcpt)
        domains = [d.lower() for d in self.factory.config.local_domains]
        if domains and rcpt.domain and rcpt.domain not in domains:
            return self._reply(550, f"5.1.2 <{addr}> Domain not served here")
        if len(self._recipients) >= MAX_RECIPIENTS:
            return self._reply(452, "4.5.3 Too many recipients")
        user, _, detail = rcpt.local.partition(DETAIL_SEPARATOR)
        user = user.lower()
        d = defer.maybeDeferred(self.factory.user_exists, user) if user else defer.succeed(False)
        d.addCallback(self._rcpt_checked, addr, user, detail)
        d.addErrback(self._rcpt_trouble, addr)
        return d

    def _rcpt_checked(self, exists, addr: str, user: str, detail: str) -> None:
        if not exists:
            return self._reply(550, f"5.1.1 <{addr}> User unknown")
        if isinstance(exists, str):
            user = exists  # the lookup knows the account's canonical spelling
        account = self.factory.store.account(user)
        folder = "INBOX"
        if detail and self.factory.config.lmtp_detail_folders:
            folder = _find_folder(account, detail) or "INBOX"
        self._recipients.append(Recipient(addr, user, folder, account))
        self._reply(250, f"2.1.5 <{addr}> Recipient OK")

    def _rcpt_trouble(self, failure: Failure, addr: str) -> None:
        log.failure("LMTP recipient lookup for {addr} failed", failure, addr=addr)
        self._reply(451, f"4.3.0 <{addr}> Temporary lookup failure")

    def do_DATA(self, arg: bytes) -> None:
        if arg.strip():
            return self._error(501, "5.5.4 Syntax: DATA")
        if not self._has_sender:
            return self._error(503, "5.5.1 Need MAIL command first")
        if not self._recipients:
            return self._error(503, "5.5.1 No valid recipients")
        try:
            self._spool = Spool(self._limit)
        except OSError as e:
            log.error("LMTP cannot create a spool file: {e}", e=e)
            return self._reply(451, "4.3.0 Temporary spool failure, try again later")
        self._decoder = DotDecoder()
        self._reply(354, "Start mail input; end with <CRLF>.<CRLF>")
        self.setRawMode()

    def _end_data(self):
        spool, recipients, sender = self._spool, self._recipients, self._sender
        self._spool = self._decoder = None
        self._reset_transaction()
        if spool.overflow or spool.error is not None:
            spool.close()
            for r in recipients:
                if spool.overflow:
                    self._reply(552, f"5.3.4 <{r.address}> Message too big for system")
                else:
                    self._reply(451, f"4.3.0 <{r.address}> Temporary spool failure")
            return None
        return self._deliver_all(spool, recipients, sender)

    @defer.inlineCallbacks
    def _deliver_all(self, spool: Spool, recipients: list[Recipient], sender: Mailbox | None):
        """One reply per recipient, in RCPT order, each sent once that
        recipient's copy is fsynced (the store's deliver fires then)."""
        return_path = str(sender) if sender is not None else ""
        try:
            for r in recipients:
                prefix = f"Return-Path: <{return_path}>\r\nDelivered-To: {r.address}\r\n".encode("ascii")
                code, text = yield self._deliver_one(spool, prefix, r)
                self._reply(code, text)
        finally:
            spool.close()

    @defer.inlineCallbacks
    def _deliver_one(self, spool: Spool, prefix: bytes, r: Recipient):
        folder = r.folder
        for _attempt in range(2):
            try:
                yield r.account.deliver(folder, spool.reader(prefix))
            except NoSuchFolder:
                if folder == "INBOX":
                    break
                folder = "INBOX"  # the +detail folder vanished since RCPT
                continue
            except TooBig:
                return 552, f"5.3.4 <{r.address}> Message too big for mailbox"
            except Exception as e:
                if getattr(e, "code", None) == "OVERQUOTA":
                    return 452, f"4.2.2 <{r.address}> Mailbox full"
                log.failure("LMTP delivery to {addr} failed", Failure(), addr=r.address)
                return 451, f"4.3.0 <{r.address}> Temporary delivery failure"
            return 250, f"2.0.0 <{r.address}> Saved"
        return 451, f"4.3.0 <{r.address}> Temporary delivery failure"

    def do_RSET(self, arg: bytes) -> None:
        if arg.strip():
            return self._error(501, "5.5.4 Syntax: RSET")
        self._reset_transaction()
        self._reply(250, "2.0.0 OK")

    def do_NOOP(self, arg: bytes) -> None:
        self._reply(250, "2.0.0 OK")

    def do_VRFY(self, arg: bytes) -> None:
        if not arg.strip():
            return self._error(501, "5.5.4 Syntax: VRFY address")
        self._reply(252, "2.5.0 Cannot VRFY user, but will accept message and attempt delivery")

    def do_HELP(self, arg: bytes) -> None:
        self._reply(214, "2.0.0 Commands: LHLO MAIL RCPT DATA RSET NOOP QUIT VRFY")

    def do_QUIT(self, arg: bytes) -> None:
        self._reply(221, f"2.0.0 {self._host} Bye")
        self.transport.loseConnection()

    _COMMANDS = {
        b"LHLO": do_LHLO,
        b"MAIL": do_MAIL,
        b"RCPT": do_RCPT,
        b"DATA": do_DATA,
        b"RSET": do_RSET,
        b"NOOP": do_NOOP,
        b"VRFY": do_VRFY,
        b"HELP": do_HELP,
        b"QUIT": do_QUIT,
    }


def _find_folder(account, name: str) -> str | None:
    """The folder ``name`` of this account if it exists; else the one
    matching it case-insensitively (addresses are case-insensitive)."""
    if name.upper() == "INBOX" or account.folder_exists(name):
        return "INBOX" if name.upper() == "INBOX" else name
    lowered = name.lower()
    for existing in account.list_folders():
        if existing.lower() == lowered:
            return existing
    return None


class LMTPFactory(ServerFactory):
    """Builds :class:`LMTPServer` connections delivering into ``store``.

    ``user_exists(name)`` decides ``550 5.1.1``: it gets the local part
    lower-cased, without ``+detail``, and returns (or fires a Deferred with)
    a bool, or the account's canonical name as a str (for passwd files that
    spell users with capitals).
    """

    protocol = LMTPServer

    def __init__(
        self,
        store,
        config,
        user_exists: Callable[[str], object],
        reactor=None,
        timeout: int = TIMEOUT,
    ) -> None:
        if reactor is None:
            from twisted.internet import reactor as _reactor

            reactor = _reactor
        self.store = store
        self.config = config
        self.user_exists = user_exists
        self.reactor = reactor
        self.timeout = timeout

    def buildProtocol(self, addr) -> LMTPServer:
        p = super().buildProtocol(addr)
        p.callLater = self.reactor.callLater
        return p
