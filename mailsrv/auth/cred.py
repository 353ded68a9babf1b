"""twisted.cred glue: the passwd-file checker, the mail realm, the portal.

Login policy lives here so POP3 and IMAP apply the same rules: slow hashes
checked off the reactor thread, the same work whether or not the user
exists, a fixed delay after every failure, challenge-response (APOP,
CRAM-MD5) only for plaintext-equivalent entries and only when enabled.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import threading
from collections.abc import Callable
from typing import Any

from twisted.cred.checkers import ICredentialsChecker
from twisted.cred.credentials import IUsernameHashedPassword, IUsernamePassword
from twisted.cred.error import UnauthorizedLogin
from twisted.cred.portal import IRealm, Portal
from twisted.internet import defer, task, threads
from twisted.logger import Logger
from zope.interface import implementer

from mailsrv.auth import sodium
from mailsrv.auth.hashing import (
    Argon2Params,
    UnsupportedScheme,
    check_scheme,
    hash_password,
    is_plaintext,
    plaintext_secret,
    verify_password,
)
from mailsrv.auth.passwd import InvalidUsername, PasswdFile, validate_username
from mailsrv.config import ConfigError
from mailsrv.store.interfaces import IAccount

log = Logger()


class AuthUnavailable(Exception):
    """The password database could not be read: a server-side problem that
    protocols report as temporary (POP3 ``[SYS/TEMP]``, IMAP ``[UNAVAILABLE]``),
    not as a wrong password."""


def _username(credentials: Any) -> str | None:
    raw = getattr(credentials, "username", None)
    try:
        name = raw.decode("utf-8") if isinstance(raw, (bytes, bytearray)) else raw
        return validate_username(name) if isinstance(name, str) else None
    except (UnicodeDecodeError, InvalidUsername):
        return None


def _hex_bytes(value: Any) -> bytes:
    if isinstance(value, str):
        value = value.encode("ascii", "replace")
    return bytes(value or b"").strip().lower()


def _check_hashed(credentials: Any, secret: bytes) -> bool:
    """Check a challenge-response credential against the plaintext secret,
    in constant time for the two mechanisms we know (Twisted's own
    APOPCredentials.checkPassword compares str with bytes on Python 3 and
    never succeeds)."""
    if hasattr(credentials, "magic") and hasattr(credentials, "digest"):
        magic = credentials.magic
        magic = magic.encode("utf-8") if isinstance(magic, str) else bytes(magic)
        expected = hashlib.md5(magic + secret).hexdigest().encode("ascii")
        return hmac.compare_digest(expected, _hex_bytes(credentials.digest))
    if hasattr(credentials, "challenge") and hasattr(credentials, "response"):
        challenge = credentials.challenge
        challenge = challenge.encode("utf-8") if isinstance(challenge, str) else bytes(challenge)
        expected = hmac.new(secret, challenge, hashlib.md5).hexdigest().encode("ascii")
        return hmac.compare_digest(expected, _hex_bytes(credentials.response))
    return bool(credentials.checkPassword(secret))


@implementer(ICredentialsChecker)
class PasswdFileChecker:
    """Checks logins against a Dovecot-style passwd file.

    ``reactor`` (for the failure delay) and ``run_in_thread`` (default
    ``deferToThread``) are injectable so tests can use a Clock and run
    synchronously; ``argon2_params`` shapes the dummy hash used for unknown
    users (defaults to production cost); ``max_concurrent`` bounds parallel
    hash computations, each of which takes 64 MiB with Argon2id defaults.
    """

    credentialInterfaces = (IUsernamePassword, IUsernameHashedPassword)

    def __init__(
        self,
        path: str,
        config: Any,
        *,
        reactor: Any = None,
        run_in_thread: Callable[..., defer.Deferred] | None = None,
        argon2_params: Argon2Params | None = None,
        max_concurrent: int = 4,
    ) -> None:
        try:
            self._scheme = check_scheme(config.hash_scheme)
        except UnsupportedScheme as e:
            raise ConfigError(str(e)) from None
        self.passwd = PasswdFile(path)
        self.config = config
        if reactor is None:
            from twisted.internet import reactor
        self._reactor = reactor
        self._run = run_in_thread or threads.deferToThread
        self._params = argon2_params
        self._sem = defer.DeferredSemaphore(max_concurrent)
        self._dummy: str | None = None
        self._dummy_lock = threading.Lock()
        sodium.available()  # load the fast Argon2 library now, not on the first login

    def pending(self) -> tuple[int, int]:
        """(checks running, checks waiting for a slot): the metrics' view of
        the password-hashing queue."""
        return self._sem.limit - self._sem.tokens, len(self._sem.waiting)

    def requestAvatarId(self, credentials: Any) -> defer.Deferred:
        """Fires with the user name (str) or fails with UnauthorizedLogin
        (after ``config.auth_fail_delay`` seconds) or AuthUnavailable."""
        d = self._sem.run(self._run, self._check, credentials)
        d.addCallbacks(self._checked, self._broken)
        return d

    # -- runs in a pool thread ----------------------------------------------

    def _dummy_hash(self) -> str:
        with self._dummy_lock:
            if self._dummy is None:
                self._dummy = hash_password("mailsrv-dummy-password", self._scheme, self._params)
            return self._dummy

    def _check(self, credentials: Any) -> tuple[str | None, str | None]:
        """(user name or None, warning to log or None)."""
        name = _username(credentials)
        entry = self.passwd.lookup(name) if name else None
        if IUsernamePassword.providedBy(credentials):
            password = credentials.password
            if password is None:
                password = b""
            if entry is None or not entry.password:
                try:
                    verify_password(self._dummy_hash(), password)
                except UnsupportedScheme:
                    pass
                return None, None
            try:
                ok = verify_password(entry.password, password)
            except UnsupportedScheme as e:
                return None, f"cannot verify password of {name}: {e}"
            return (name if ok else None), None
        if IUsernameHashedPassword.providedBy(credentials):
            if not self.config.apop or entry is None or not is_plaintext(entry.password):
                return None, None
            try:
                secret = plaintext_secret(entry.password)
            except ValueError as e:
                return None, f"bad plaintext entry for {name}: {e}"
            return (name if _check_hashed(credentials, secret) else None), None
        return None, None

    # -- back in the reactor thread -----------------------------------------

    def _checked(self, result: tuple[str | None, str | None]) -> Any:
        name, warning = result
        if warning:
            log.warn("auth: {warning}", warning=warning)
        if name is not None:
            return name
        return self._fail()

    def _fail(self) -> Any:
        delay = self.config.auth_fail_delay
        if delay and delay > 0:
            return task.deferLater(self._reactor, delay, _raise_unauthorized)
        _raise_unauthorized()

    def _broken(self, failure: Any) -> Any:
        if failure.check(OSError):
            log.failure("auth: cannot read the password file {path}", failure, path=self.passwd.path)
            raise AuthUnavailable(f"cannot read the password file: {failure.value}")
        return failure


def _raise_unauthorized() -> None:
    raise UnauthorizedLogin("authentication failed")


def _logout() -> None:
    """Nothing to release: accounts are process-wide objects shared by every
    session, and the POP3 lock is owned by the POP3 session itself."""


@implementer(IRealm)
class MailRealm:
    """Hands out the user's IAccount (POP3 maildrop and IMAP account alike)."""

    def __init__(self, store: Any) -> None:
        self.store = store

    def requestAvatar(self, avatarId: Any, mind: Any, *interfaces: Any) -> tuple[Any, Any, Callable[[], None]]:
        if IAccount in interfaces:
            name = avatarId.decode("utf-8") if isinstance(avatarId, (bytes, bytearray)) else str(avatarId)
            # the user's view (issue 12): own, shared and public folders, rights enforced
            return IAccount, self.store.view(name), _logout
        raise NotImplementedError("mailsrv realm only provides IAccount avatars")


def make_portal(store: Any, config: Any, **checker_options: Any) -> Portal:
    """The portal every protocol logs in through (one per server)."""
    checker = PasswdFileChecker(config.passwd_path, config, **checker_options)
    return Portal(MailRealm(store), [checker])


def is_loopback(host: str | None) -> bool:
    """True for 127.0.0.0/8, ::1 and IPv4-mapped 127.x; False for anything
    that is not an IP address (be strict when unsure)."""
    h = (host or "").strip()
    if h.startswith("[") and h.endswith("]"):
        h = h[1:-1]
    h = h.split("%", 1)[0]
    try:
        ip = ipaddress.ip_address(h)
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_loopback


def plaintext_allowed(config: Any, peer_host: str | None, tls_active: bool) -> bool:
    """May a client send a password in the clear on this connection?

    The one policy for POP3 (USER/PASS, AUTH PLAIN) and IMAP (LOGIN,
    AUTHENTICATE PLAIN).  ``config.plaintext_auth``: 'yes' always; 'no' only
    over TLS; 'loopback' (default) over TLS or from the local host.
    ``peer_host`` is None for a peer without an address (a UNIX socket).
    """
    mode = (config.plaintext_auth or "loopback").lower()
    if mode == "yes" or tls_active:
        return True
    if mode == "no":
        return False
    return is_loopback(peer_host)
