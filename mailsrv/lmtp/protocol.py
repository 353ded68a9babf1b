"""LMTP server (RFC 2033) for Postfix ``lmtp:`` delivery into the store.

A fresh protocol rather than ``twisted.mail.smtp.ESMTP``: that class is
SMTP-shaped (one reply after DATA, HELO/EHLO) and buffers whole messages in
memory.  Input goes through the shared :class:`~mailsrv.pump.CommandPump`
over an :class:`~mailsrv.lmtp.source.LMTPSource`: commands are handled one
at a time in arrival order; one whose work is asynchronous (a user lookup,
the deliveries after DATA) holds the pipelined input behind it until it is
done (RFC 2033 PIPELINING), and reading pauses while more than
``MAX_PENDING_INPUT`` octets wait.  DATA is one running command: it puts the
source in message-data mode, writes the dot-unstuffed chunks it reads
through the pump into a spool, and after the terminator answers once per
recipient, in RCPT order.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from typing import Any, TypeAlias, TypeVar

from twisted.internet import defer
from twisted.internet.protocol import Protocol, ServerFactory
from twisted.logger import Logger
from twisted.protocols.policies import TimeoutMixin
from twisted.python.failure import Failure

from mailsrv.lmtp.address import (
    AddressError,
    Mailbox,
    ascii_domain,
    needs_smtputf8,
    parse_mailbox,
    parse_params,
    split_path,
)
from mailsrv.lmtp.data import Spool
from mailsrv.lmtp.source import MAX_LINE, Body, LMTPSource
from mailsrv.ops.sessions import NO_SESSION, SessionHooks
from mailsrv.pump import CommandPump
from mailsrv.store.interfaces import NoSuchFolder, OverQuota, StoreError, TooBig

log = Logger()

MAX_ERRORS = 10
MAX_RECIPIENTS = 1000
TIMEOUT = 300
DETAIL_SEPARATOR = "+"
# Pipelined input held while a command works; reading pauses beyond this.
MAX_PENDING_INPUT = 64 * 1024

# A delivery's reply code -> the outcome logged and counted (mailsrv.ops).
OUTCOMES = {250: "saved", 552: "too big", 452: "over quota", 451: "temporary failure"}

# What a command handler returns: nothing (done), or work still running.
Result: TypeAlias = "Coroutine[Any, Any, None] | None"
_T = TypeVar("_T")


@dataclass
class Recipient:
    address: str  # as given in RCPT TO (for replies and Delivered-To)
    user: str
    folder: str
    account: Any  # the user's IUserView (rights apply: delivering needs 'p')


class LMTPServer(Protocol, TimeoutMixin):
    """One LMTP connection.  ``factory`` supplies store, config, user_exists."""

    factory: LMTPFactory
    # A TCP or UNIX transport: setTcpNoDelay and the producer methods are used.
    transport: Any
    _pump: CommandPump  # made in connectionMade, when the transport is known
    ops_session: SessionHooks = NO_SESSION  # delivery lines and metrics; set by the listener (mailsrv.ops)

    def __init__(self) -> None:
        self._lhlo: str | None = None
        self._errors = 0
        self._lost = False
        self._source = LMTPSource(MAX_LINE)
        self._spool: Spool | None = None  # while DATA reads the message
        self._reset_transaction()

    def callLater(self, period: float, func: Callable[[], object]) -> Any:
        """TimeoutMixin schedules on the factory's reactor (a Clock in tests)."""
        return self.factory.reactor.callLater(period, func)

    # -- connection ------------------------------------------------------

    def connectionMade(self) -> None:
        try:
            self.transport.setTcpNoDelay(True)
        except (AttributeError, NotImplementedError, OSError):
            pass  # unix sockets, test transports
        self._pump = CommandPump(self._source, self._run, self.transport, MAX_PENDING_INPUT)
        self.setTimeout(self.factory.timeout)
        self._reply(220, f"{self._host} LMTP mailsrv ready")

    def connectionLost(self, reason: Failure | None = None) -> None:
        self._lost = True
        self.setTimeout(None)
        self._pump.close()  # a DATA cut off midway ends there: nothing delivered

    def timeoutConnection(self) -> None:
        self._reply(421, f"4.4.2 {self._host} Timeout exceeded, closing connection")
        self._close()

    def _close(self) -> None:
        self._pump.close()
        self.transport.loseConnection()

    @property
    def _host(self) -> str:
        return str(self.factory.config.hostname)

    @property
    def _limit(self) -> int:
        return int(self.factory.config.lmtp_max_size)

    # -- input -----------------------------------------------------------

    def dataReceived(self, data: bytes) -> None:
        self.resetTimeout()
        self._source.feed(data)
        self._pump.pump()

    def _run(self, line: object) -> defer.Deferred[None] | None:
        """The pump's handler for one command line (or TOO_LONG): None when
        the command is done, else a Deferred the pump waits for."""
        if not isinstance(line, bytes):  # TOO_LONG; Body events only reach DATA
            self._error(500, "5.5.2 Line too long")
            return None
        verb, _, arg = line.partition(b" ")
        handler = self._COMMANDS.get(verb.upper())
        if handler is None:
            if verb.upper() in (b"HELO", b"EHLO"):
                self._error(500, "5.5.1 This is LMTP: use LHLO")
            else:
                self._error(500, "5.5.2 Command unrecognized")
            return None
        try:
            result = handler(self, arg)
        except Exception:  # a bug or a broken store must not kill the session
            self._internal_error(Failure())
            return None
        if result is None:
            return None
        return defer.ensureDeferred(result).addErrback(self._internal_error)

    async def _store_work(self, work: Awaitable[_T]) -> _T:
        """Await a user lookup with the idle timer off: the client is
        waiting for us, not the other way round."""
        self.setTimeout(None)
        try:
            return await work
        finally:
            if not self._lost:
                self.setTimeout(self.factory.timeout)

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
            self._close()

    # -- commands --------------------------------------------------------

    def _reset_transaction(self) -> None:
        self._has_sender = False
        self._utf8 = False  # MAIL FROM had SMTPUTF8
        self._sender: Mailbox | None = None
        self._size: int | None = None  # MAIL FROM's SIZE=, checked against quotas at RCPT
        self._recipients: list[Recipient] = []

    def do_LHLO(self, arg: bytes) -> None:
        words = arg.split()
        if not words:
            return self._error(501, "5.5.4 Syntax: LHLO hostname")
        self._lhlo = words[0].decode("ascii", "replace")
        self._reset_transaction()
        size = f"SIZE {self._limit}" if self._limit > 0 else "SIZE"
        lines = [self._host, "PIPELINING", "8BITMIME", "ENHANCEDSTATUSCODES", "SMTPUTF8", size]
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
            path, raw_params = split_path(arg[5:])
        except AddressError:
            return self._error(501, "5.1.7 Bad sender address syntax")
        try:
            params = parse_params(raw_params)
        except AddressError:
            return self._error(501, "5.5.4 Bad MAIL parameter syntax")
        utf8 = any(key == "SMTPUTF8" for key, _ in params)
        if needs_smtputf8(path) and not utf8:
            return self._error(553, "5.6.7 Non-ASCII address needs SMTPUTF8")
        try:
            sender = parse_mailbox(path, allow_null=True, utf8=utf8)
        except (AddressError, UnicodeDecodeError):
            return self._error(501, "5.1.7 Bad sender address syntax")
        for key, value in params:
            refusal = self._mail_param(key, value)
            if refusal is not None:
                code, text = refusal
                return self._reply(code, text) if code == 552 else self._error(code, text)
        self._has_sender = True
        self._utf8 = utf8
        self._sender = sender
        self._reply(250, "2.1.0 Sender OK")

    def _mail_param(self, key: str, value: str | None) -> tuple[int, str] | None:
        """The reply refusing one MAIL FROM parameter, or None if it is fine."""
        if key == "SIZE":
            if value is None or not value.isdigit() or len(value) > 20:
                return 501, "5.5.4 Bad SIZE value"
            if self._limit > 0 and int(value) > self._limit:
                return 552, "5.3.4 Message size exceeds fixed maximum message size"
            self._size = int(value)
            return None
        if key == "BODY":
            if value is None or value.upper() not in ("7BIT", "8BITMIME"):
                return 501, "5.5.4 Unsupported BODY type"
            return None
        if key == "SMTPUTF8":  # RFC 6531: UTF-8 addresses and headers in this transaction
            return None if value is None else (501, "5.5.4 SMTPUTF8 takes no value")
        return 555, f"5.5.4 Unsupported parameter {key}"

    def do_RCPT(self, arg: bytes) -> Result:
        if not self._has_sender:
            self._error(503, "5.5.1 Need MAIL command first")
            return None
        if arg[:3].upper() != b"TO:":
            self._error(501, "5.5.4 Syntax: RCPT TO:<address>")
            return None
        try:
            path, params = split_path(arg[3:])
            if needs_smtputf8(path) and not self._utf8:
                self._error(553, "5.6.7 Non-ASCII address needs SMTPUTF8")
                return None
            rcpt = parse_mailbox(path, allow_null=False, utf8=self._utf8)
        except (AddressError, UnicodeDecodeError):
            self._error(501, "5.1.3 Bad recipient address syntax")
            return None
        if rcpt is None:  # not with allow_null=False; for the type checker
            self._error(501, "5.1.3 Bad recipient address syntax")
            return None
        if params:
            self._error(555, "5.5.4 RCPT parameters not supported")
            return None
        addr = str(rcpt)
        domains = [ascii_domain(d) for d in self.factory.config.local_domains]
        if domains and rcpt.domain and ascii_domain(rcpt.domain) not in domains:
            self._reply(550, f"5.1.2 <{addr}> Domain not served here")
            return None
        if len(self._recipients) >= MAX_RECIPIENTS:
            self._reply(452, "4.5.3 Too many recipients")
            return None
        user, _, detail = rcpt.local.partition(DETAIL_SEPARATOR)
        user = user.lower()
        try:
            exists = self.factory.user_exists(user) if user else False
        except Exception:
            self._rcpt_trouble(addr)
            return None
        if isinstance(exists, defer.Deferred) or (self._size and exists):
            return self._rcpt_looked_up(exists, addr, user, detail)
        self._rcpt_checked(exists, addr, user, detail)
        return None

    async def _rcpt_looked_up(self, lookup: object, addr: str, user: str, detail: str) -> None:
        """An asynchronous user lookup or quota check (the pipelined
        commands behind it wait)."""
        try:
            exists = await self._store_work(lookup) if isinstance(lookup, defer.Deferred) else lookup
        except Exception:
            self._rcpt_trouble(addr)
            return
        if exists and self._size:
            try:
                refusal = await self._store_work(_quota_refusal(
                    self.factory.store.view(exists if isinstance(exists, str) else user), self._size))
            except Exception:
                self._rcpt_trouble(addr)
                return
            if refusal:
                return self._reply(*self._over_quota(addr))
        self._rcpt_checked(exists, addr, user, detail)

    def _over_quota(self, addr: str) -> tuple[int, str]:
        """RFC 3463 5.2.2 / 4.2.2 (``[quota] full_tempfail``: Postfix retries)."""
        if getattr(self.factory.config, "quota_full_tempfail", False):
            return 452, f"4.2.2 <{addr}> Mailbox is full, try again later"
        return 552, f"5.2.2 <{addr}> Mailbox is full"

    def _rcpt_checked(self, exists: object, addr: str, user: str, detail: str) -> None:
        if not exists:
            return self._public_recipient(addr, user)
        if isinstance(exists, str):
            user = exists  # the lookup knows the account's canonical spelling
        try:
            account = self.factory.store.view(user)
            folder = "INBOX"
            if detail and self.factory.config.lmtp_detail_folders:
                folder = _find_folder(account, detail) or "INBOX"
        except Exception:
            return self._rcpt_trouble(addr)
        self._recipients.append(Recipient(addr, user, folder, account))
        self._reply(250, f"2.1.5 <{addr}> Recipient OK")

    def _public_recipient(self, addr: str, name: str) -> None:
        """No such user: a public mailbox of that name (``info@``), posted
        to anonymously (it needs the 'p' right for ``anyone``)."""
        try:
            public = self.factory.store.public_mailbox(name) if name else None
            if public is None:
                return self._reply(550, f"5.1.1 <{addr}> User unknown")
            view = self.factory.store.view(None)
        except Exception:
            return self._rcpt_trouble(addr)
        self._recipients.append(Recipient(addr, "", public, view))
        self._reply(250, f"2.1.5 <{addr}> Recipient OK")

    def _rcpt_trouble(self, addr: str) -> None:
        log.failure("LMTP recipient lookup for {addr} failed", Failure(), addr=addr)
        self._reply(451, f"4.3.0 <{addr}> Temporary lookup failure")

    def do_DATA(self, arg: bytes) -> Result:
        if arg.strip():
            self._error(501, "5.5.4 Syntax: DATA")
            return None
        if not self._has_sender:
            self._error(503, "5.5.1 Need MAIL command first")
            return None
        if not self._recipients:
            self._error(503, "5.5.1 No valid recipients")
            return None
        try:
            spool = Spool(self._limit)
        except OSError as e:
            log.error("LMTP cannot create a spool file: {e}", e=e)
            self._reply(451, "4.3.0 Temporary spool failure, try again later")
            return None
        recipients, sender = self._recipients, self._sender
        self._reset_transaction()
        self._reply(354, "Start mail input; end with <CRLF>.<CRLF>")
        self._source.start_data()
        return self._data(spool, recipients, sender)

    async def _data(self, spool: Spool, recipients: list[Recipient], sender: Mailbox | None) -> None:
        """Read the message into ``spool``, then deliver it to each recipient."""
        self._spool = spool
        try:
            try:
                while True:
                    event = await self._pump.next_event()
                    if not isinstance(event, Body):  # END_OF_DATA
                        break
                    spool.write(event.data)
            except ConnectionError:  # cut off inside DATA: nothing delivered
                return
            finally:
                self._spool = None
            if spool.overflow or spool.error is not None:
                for r in recipients:
                    if spool.overflow:
                        self._reply(552, f"5.3.4 <{r.address}> Message too big for system")
                    else:
                        self._reply(451, f"4.3.0 <{r.address}> Temporary spool failure")
                return
            self.setTimeout(None)  # the client waits for the store now, not we for it
            try:
                await self._deliver_all(spool, recipients, sender)
            finally:
                if not self._lost:
                    self.setTimeout(self.factory.timeout)
        finally:
            spool.close()

    async def _deliver_all(self, spool: Spool, recipients: list[Recipient], sender: Mailbox | None) -> None:
        """One reply per recipient, in RCPT order, each sent once that
        recipient's copy is fsynced (the store's deliver fires then)."""
        return_path = str(sender) if sender is not None else ""
        for r in recipients:
            prefix = f"Return-Path: <{return_path}>\r\nDelivered-To: {r.address}\r\n".encode()
            code, text = await self._deliver_one(spool, prefix, r)
            self.ops_session.delivered(r.user, r.folder, OUTCOMES.get(code, str(code)))
            self._reply(code, text)

    async def _deliver_one(self, spool: Spool, prefix: bytes, r: Recipient) -> tuple[int, str]:
        folder = r.folder
        for _attempt in range(2):
            try:
                await r.account.deliver(folder, spool.reader(prefix))
            except NoSuchFolder:
                if not r.user:  # a public mailbox gone, or no post right for anyone
                    return 550, f"5.7.1 <{r.address}> Delivery not permitted"
                if folder == "INBOX":
                    break
                folder = "INBOX"  # the +detail folder vanished since RCPT
                continue
            except TooBig:
                return 552, f"5.3.4 <{r.address}> Message too big for mailbox"
            except OverQuota:
                return self._over_quota(r.address)
            except Exception as e:
                if isinstance(e, StoreError) and e.code == "NOPERM":
                    return 550, f"5.7.1 <{r.address}> Delivery not permitted"
                if isinstance(e, StoreError) and e.code == "OVERQUOTA":  # RFC 5530
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
        self._close()

    _COMMANDS: dict[bytes, Callable[[LMTPServer, bytes], Result]] = {
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


async def _quota_refusal(view: Any, size: int) -> bool:
    """Would ``size`` more octets (one message) take the user over quota?"""
    quota = getattr(view, "quota", None)
    root = await quota() if quota is not None else None
    if root is None:
        return False
    return any(r.limit and r.usage + (size if r.name == "STORAGE" else 1) > r.limit for r in root.resources)


def _find_folder(account: Any, name: str) -> str | None:
    """The folder ``name`` of this account if it exists; else the one
    matching it case-insensitively (addresses are case-insensitive)."""
    if name.upper() == "INBOX" or account.folder_exists(name):
        return "INBOX" if name.upper() == "INBOX" else name
    lowered = name.lower()
    for existing in account.list_folders():
        if existing.lower() == lowered:
            return existing
    return None


class LMTPFactory(ServerFactory["LMTPServer"]):
    """Builds :class:`LMTPServer` connections delivering into ``store``.

    ``user_exists(name)`` decides ``550 5.1.1``: it gets the local part
    lower-cased, without ``+detail``, and returns (or fires a Deferred with)
    a bool, or the account's canonical name as a str (for passwd files that
    spell users with capitals).
    """

    protocol = LMTPServer

    def __init__(
        self,
        store: Any,
        config: Any,
        user_exists: Callable[[str], object],
        reactor: Any = None,
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
