"""POP3's AUTHORIZATION state: CAPA, USER/PASS, APOP, AUTH PLAIN (RFC 5034,
its response read through the pump), STLS (RFC 2595), and the login that
takes the maildrop lock and freezes INBOX.

A mixin of :class:`mailsrv.pop3.protocol.POP3Server`, kept apart so the
session module holds the command loop and the TRANSACTION/UPDATE states;
the attributes below are the session's, declared for the type checker.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine, Iterable
from typing import TYPE_CHECKING, Any

from twisted.cred import credentials as credmod
from twisted.cred.error import LoginFailed
from twisted.internet import defer
from twisted.logger import Logger

from mailsrv.ops.sessions import NO_SESSION, SessionHooks
from mailsrv.pop3 import lines as L
from mailsrv.pop3.maildrop import Maildrop
from mailsrv.pop3.sasl import APOPCredentials, decode_plain, is_apop_digest
from mailsrv.pop3.states import AUTHORIZATION, ERR_PLAINTEXT, ERR_TEMP, TRANSACTION, Bad, Result
from mailsrv.pump import CommandPump
from mailsrv.store.interfaces import IAccount

log = Logger()


class Authorization:
    """The AUTHORIZATION-state commands of a POP3 session."""

    transport: Any
    factory: Any
    portal: Any
    state: str
    tls_active: bool
    maildrop: Maildrop | None
    ops_session: SessionHooks = NO_SESSION
    _pump: CommandPump
    _splitter: L.LineSplitter
    _closing: bool
    _user: bytes | None
    _apop_challenge: bytes | None
    _account: Any
    _logout: Callable[[], None] | None
    _locked: bool

    if TYPE_CHECKING:  # the session's own methods (LineReceiver's sendLine among them)
        def sendLine(self, line: bytes) -> None: ...

        def plaintext_allowed(self) -> bool: ...

        def _stls_offered(self) -> bool: ...

        def _send_multiline(self, first: bytes, body: Iterable[bytes]) -> None: ...

        def _flood(self) -> None: ...

        def _bad(self, text: bytes) -> None: ...

        def _release(self) -> defer.Deferred[None]: ...

    def do_CAPA(self) -> None:
        caps = [b"TOP", b"UIDL", b"RESP-CODES", b"AUTH-RESP-CODE", b"PIPELINING", b"EXPIRE NEVER", b"LOGIN-DELAY 0"]
        if self.state == AUTHORIZATION:
            if self.plaintext_allowed():
                caps += [b"USER", b"SASL PLAIN"]
            if self._stls_offered():
                caps.append(b"STLS")
        caps += [b"UTF8", b"LANG"]  # RFC 6856
        caps.append(b"IMPLEMENTATION mailsrv")
        self._send_multiline(b"+OK Capability list follows.", caps)

    def do_USER(self, user: bytes) -> None:
        if not self.plaintext_allowed():
            self.sendLine(ERR_PLAINTEXT)
            return
        self._user = user
        self.sendLine(b"+OK")

    def do_PASS(self, password: bytes) -> Result:
        if self._user is None:
            raise Bad(b"-ERR No username given (USER first).")
        user, self._user = self._user, None
        if not self.plaintext_allowed():
            self.sendLine(ERR_PLAINTEXT)
            return None
        return self._login(credmod.UsernamePassword(user, password), "PLAIN")

    def do_APOP(self, user: bytes, digest: bytes) -> Result:
        if self._apop_challenge is None:
            raise Bad(b"-ERR APOP is not enabled.")
        if not is_apop_digest(digest):
            raise Bad(b"-ERR [AUTH] Malformed APOP digest.")
        self._user = None
        return self._login(APOPCredentials(self._apop_challenge, user, digest.lower()), "APOP")

    def do_AUTH(self, mechanism: bytes | None = None, initial: bytes | None = None) -> Result:
        plain = self.plaintext_allowed()
        if mechanism is None:
            self._send_multiline(b"+OK Supported mechanisms follow.", [b"PLAIN"] if plain else [])
            return None
        if mechanism.upper() != b"PLAIN":
            self.sendLine(b"-ERR Unsupported authentication mechanism.")
            return None
        if not plain:
            self.sendLine(ERR_PLAINTEXT)
            return None
        self._user = None
        if initial is None:
            self.transport.write(b"+ \r\n")
            return self._sasl_response()
        return self._auth_plain(initial)

    async def _sasl_response(self) -> None:
        """RFC 5034: the client's PLAIN response is the next line (``*``
        cancels); it arrives as the pump's next event, even when pipelined."""
        try:
            line = await self._pump.next_event()
        except ConnectionError:
            return
        try:
            if line is L.FLOOD:
                self._flood()
                return
            if not isinstance(line, bytes):  # L.TOO_LONG
                raise Bad(b"-ERR Line too long.")
            if line.strip() == b"*":
                self.sendLine(b"-ERR Authentication cancelled.")
                return
            login = self._auth_plain(line.strip())
        except Bad as e:
            self._bad(e.text)
            return
        if login is not None:
            await login

    def _auth_plain(self, response: bytes) -> Coroutine[Any, Any, None] | None:
        try:
            authzid, authcid, password = decode_plain(response)
        except ValueError:
            raise Bad(b"-ERR [AUTH] Malformed PLAIN response.") from None
        if authzid and authzid != authcid:
            self.sendLine(b"-ERR [AUTH] Authorization identity not allowed.")
            return None
        return self._login(credmod.UsernamePassword(authcid, password), "PLAIN")

    def do_STLS(self) -> None:
        if not self._stls_offered():
            self.sendLine(b"-ERR TLS is already active." if self.tls_active else b"-ERR STLS is not available.")
            return
        if self._splitter.buffered():
            self.sendLine(b"-ERR Pipelined input after STLS refused.")
            return
        self._splitter.clear()
        self._user = None
        self.sendLine(b"+OK Begin TLS negotiation.")
        self.transport.startTLS(self.factory.tls_context)
        self.tls_active = True

    async def _check_password(self, creds: Any, method: str) -> tuple[Any, Callable[[], None]] | None:
        """(account, logout) for good credentials; else the client was told
        why (wrong password, banned address, server trouble) and None."""
        user = getattr(creds, "username", None)
        if await self.ops_session.before_auth() is not None:  # banned for a while
            self.ops_session.auth_failed(user, method, self.tls_active, "banned")
            self._say(b"-ERR [SYS/TEMP] Too many failed logins from your address; try again later.")
            return None
        try:
            _iface, account, logout = await self.portal.login(creds, None, IAccount)
        except LoginFailed:
            self.ops_session.auth_failed(user, method, self.tls_active)
            self._say(b"-ERR [AUTH] Authentication failed.")
            return None
        except Exception:
            log.failure("POP3 login failed with an internal error")
            self.ops_session.auth_failed(user, method, self.tls_active, "unavailable")
            self._say(ERR_TEMP)
            return None
        if self._closing:
            logout()
            return None
        return account, logout

    def _say(self, line: bytes) -> None:
        if not self._closing:
            self.sendLine(line)

    async def _login(self, creds: Any, method: str) -> None:
        """Authenticate, lock, freeze INBOX; every failure leaves AUTHORIZATION intact."""
        checked = await self._check_password(creds, method)
        if checked is None:
            return
        account, logout = checked
        try:
            locked = await account.acquire_pop3_lock()
        except Exception:
            logout()
            raise
        if not locked:
            logout()
            self.ops_session.auth_failed(account.user, method, self.tls_active, "mailbox in use")
            self._say(b"-ERR [IN-USE] Mailbox is locked by another POP3 session.")
            return
        self._account, self._logout, self._locked = account, logout, True
        if self._closing:  # gone while the lock was taken: give it back
            self._release()
            return
        refusal = self.ops_session.authenticated(account.user, method, self.tls_active)
        if refusal is not None:
            self._release()
            self.sendLine(b"-ERR [SYS/TEMP] " + refusal.encode("utf-8") + b".")
            return
        try:
            folder = await account.open_folder("INBOX")
            await folder.refresh()
            infos = folder.messages()
        except Exception:
            log.failure("POP3 could not open INBOX")
            self._release()
            self._say(ERR_TEMP)
            return
        if self._closing:
            return
        self.maildrop = Maildrop(folder, infos)
        self.state = TRANSACTION
        count, octets = self.maildrop.stat()
        self.sendLine(b"+OK Logged in, %d messages (%d octets)." % (count, octets))
