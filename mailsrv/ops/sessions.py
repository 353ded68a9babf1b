"""Live sessions: who is connected, the login and session-end log lines,
and the hooks the protocols call.

Every connection that comes through a listener gets a :class:`Session`
(made by :mod:`mailsrv.ops.conn`); the protocol object receives it as its
``ops_session`` attribute and calls its hooks: :meth:`~SessionHooks.before_auth`
before checking a password, :meth:`~SessionHooks.authenticated` or
:meth:`~SessionHooks.auth_failed` after, :meth:`~SessionHooks.command` after
each command, :meth:`~SessionHooks.ending` when it knows why the session
ends.  A protocol built without a listener (transcript tests) keeps the
class default, :data:`NO_SESSION`, whose hooks do nothing.

Log lines follow Dovecot's, so operators and fail2ban find what they know::

    imap-login: Login: user=<alice>, method=PLAIN, rip=192.0.2.7, rport=50122, lip=192.0.2.1, lport=993,
        TLS, session=<lbkSn6Hj3BTg>   (one line)
    imap-login: Login failed (auth failed): user=<alice>, method=PLAIN, rip=192.0.2.7, ...
    imap(alice)<lbkSn6Hj3BTg>: Disconnected: Logged out in=173 out=1021 commands=7 duration=12.3s

Each is a ``twisted.logger`` event whose fields (``user``, ``method``,
``rip``, ``rport``, ``lip``, ``lport``, ``tls``, ``session``, ``protocol``,
``bytes_in``, ``bytes_out``, ...) travel with it, so a JSON observer
(``twistd --logger mailsrv.ops.logjson.observer``) carries them as data.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable
from typing import Any, Protocol

from twisted.internet import task
from twisted.logger import Logger

from mailsrv.ops.limits import Limits

log = Logger(namespace="mailsrv.login")
session_log = Logger(namespace="mailsrv.session")

# listener kind -> (protocol family, TLS from the first byte)
KINDS: dict[str, tuple[str, bool]] = {
    "imap": ("imap", False), "imaps": ("imap", True),
    "pop3": ("pop3", False), "pop3s": ("pop3", True),
    "lmtp": ("lmtp", False),
}
# Protocols a user logs in to: limits, login deadline and login lines apply.
LOGIN_PROTOCOLS = frozenset({"imap", "pop3"})
MAX_LOGGED_NAME = 100
REFUSAL_LOG_INTERVAL = 60.0  # at most one "refused" line per address and minute


def family(kind: str) -> tuple[str, bool]:
    """(protocol, implicit TLS) of a listener kind; an unknown kind is its own protocol."""
    return KINDS.get(kind, (kind, False))


def printable(name: str | bytes | None) -> str:
    """A client-chosen name made safe for a log line: no line breaks, no
    characters fail2ban's patterns rely on (``<>,``), bounded length."""
    if name is None:
        return ""
    if isinstance(name, bytes):
        name = name.decode("utf-8", "replace")
    out = []
    for ch in name[:MAX_LOGGED_NAME]:
        if ch.isprintable() and not ch.isspace() and ch not in "<>,\\":
            out.append(ch)
        else:
            out.append("\\x%02x" % ord(ch) if ord(ch) < 256 else "\\u%04x" % ord(ch))
    if len(name) > MAX_LOGGED_NAME:
        out.append("...")
    return "".join(out)


class Connection(Protocol):
    """What a session asks of its connection (:class:`mailsrv.ops.conn.AccountedProtocol`)."""

    def detail(self) -> dict[str, Any]:
        """What the protocol says about itself now (mailbox, idle, tls)."""

    def kick(self, reason: str) -> None:
        """Say goodbye and close, for sure."""

    def logged_in(self) -> None:
        """The login deadline no longer applies."""


class MetricsSink(Protocol):
    """What the registry reports to :mod:`mailsrv.ops.metrics`."""

    def login(self, protocol: str, result: str) -> None: ...

    def command(self, protocol: str, name: str, seconds: float) -> None: ...

    def delivery(self, outcome: str) -> None: ...

    def connection(self, protocol: str, tls: bool) -> None: ...


class SessionHooks:
    """The hooks a protocol calls on its ``ops_session``.  This base class
    does nothing: it is the session of a protocol object that did not come
    through a listener."""

    user: str | None = None

    async def before_auth(self) -> str | None:
        """Wait out the address's login penalty; a refusal reason
        ("banned") means: answer with a temporary failure, check nothing."""
        return None

    def authenticated(self, user: str, method: str, tls: bool) -> str | None:
        """The password was right: log the login, or return the text of a
        refusal (too many sessions of this user from this address)."""
        return None

    def auth_failed(self, user: str | bytes | None, method: str, tls: bool, reason: str = "auth failed") -> None:
        """A login attempt failed; ``reason`` "auth failed" counts towards
        the address's penalty and ban, others ("unavailable") do not."""

    def command(self, name: str, seconds: float) -> None:
        """One command finished after ``seconds``."""

    def count(self, **counts: int) -> None:
        """Add to per-session counters reported at the end (POP3 retr/del)."""

    def ending(self, reason: str) -> None:
        """Why the session ends ("Logged out", "Autologout", ...), said
        before the connection closes."""

    def delivered(self, user: str, folder: str, outcome: str) -> None:
        """LMTP: one recipient's delivery and its outcome ("saved",
        "too big", "over quota", "temporary failure")."""


NO_SESSION = SessionHooks()


class Session(SessionHooks):
    """One live connection as the operator sees it."""

    def __init__(self, registry: Registry, kind: str, conn: Connection,
                 remote: tuple[str, int], local: tuple[str, int]) -> None:
        self.registry = registry
        self.id = secrets.token_urlsafe(9)
        self.kind = kind
        self.protocol, self.tls = family(kind)
        self.conn = conn
        self.rip, self.rport = remote
        self.lip, self.lport = local
        self.since = time.time()
        self.started = time.monotonic()
        self.user: str | None = None
        self.method: str | None = None
        self.bytes_in = 0
        self.bytes_out = 0
        self.commands = 0
        self.attempts = 0
        self.counts: dict[str, int] = {}
        self.end_reason: str | None = None

    # -- what the log lines share -------------------------------------------

    def _where(self, tls: bool) -> dict[str, Any]:
        return {"protocol": self.protocol, "rip": self.rip, "rport": self.rport, "lip": self.lip,
                "lport": self.lport, "tls": tls, "tls_text": ", TLS" if tls else "", "session": self.id}

    # -- hooks ------------------------------------------------------------------

    async def before_auth(self) -> str | None:
        limits = self.registry.limits
        if limits.banned(self.rip):
            return "banned"
        delay = limits.penalty(self.rip)
        if delay > 0:
            await task.deferLater(self.registry.reactor, delay, lambda: None)
            if limits.banned(self.rip):
                return "banned"
        return None

    def authenticated(self, user: str, method: str, tls: bool) -> str | None:
        reg = self.registry
        key = (self.protocol, user, self.rip)
        if self.protocol in LOGIN_PROTOCOLS and reg.limits.user_refusal(reg.per_user_ip.get(key, 0)):
            self.auth_failed(user, method, tls, "user+IP connection limit")
            return f"Too many connections for this user from your address (max " \
                   f"{reg.limits.settings.userip_connections})"
        self.user, self.method, self.tls = user, method, tls
        reg.per_user_ip[key] = reg.per_user_ip.get(key, 0) + 1
        reg.limits.succeeded(self.rip)
        self.conn.logged_in()
        log.info("{protocol}-login: Login: user=<{user}>, method={method}, rip={rip}, rport={rport}, "
                 "lip={lip}, lport={lport}{tls_text}, session=<{session}>",
                 user=printable(user), method=method, event="login", **self._where(tls))
        if reg.metrics is not None:
            reg.metrics.login(self.protocol, "ok")
        return None

    def auth_failed(self, user: str | bytes | None, method: str, tls: bool, reason: str = "auth failed") -> None:
        reg = self.registry
        self.attempts += 1
        log.info("{protocol}-login: Login failed ({reason}): user=<{user}>, method={method}, rip={rip}, "
                 "rport={rport}, lip={lip}, lport={lport}{tls_text}, session=<{session}>",
                 user=printable(user), method=method, reason=reason, event="login_failed", **self._where(tls))
        if reg.metrics is not None:
            reg.metrics.login(self.protocol, "failed")
        if reason == "auth failed" and reg.limits.failed(self.rip):
            log.warn("{protocol}-login: Banned rip={rip} for {seconds:.0f}s after {count} failed logins",
                     protocol=self.protocol, rip=self.rip, seconds=reg.limits.settings.ban_time,
                     count=reg.limits.settings.ban_after, event="banned")

    def command(self, name: str, seconds: float) -> None:
        self.commands += 1
        m = self.registry.metrics
        if m is not None:
            m.command(self.protocol, name, seconds)

    def count(self, **counts: int) -> None:
        for k, v in counts.items():
            self.counts[k] = self.counts.get(k, 0) + v

    def ending(self, reason: str) -> None:
        if self.end_reason is None:
            self.end_reason = reason

    def delivered(self, user: str, folder: str, outcome: str) -> None:
        session_log.info("lmtp({user})<{session}>: {outcome}{where}", user=printable(user), session=self.id,
                         outcome=outcome, where=f" to {folder}" if outcome == "saved" else "",
                         folder=folder, event="delivery")
        if self.registry.metrics is not None:
            self.registry.metrics.delivery(outcome)

    # -- reading --------------------------------------------------------------

    def describe(self) -> dict[str, Any]:
        """What ``mailsrv who`` shows of this session."""
        detail = self.conn.detail()
        return {"session": self.id, "user": self.user, "protocol": self.protocol, "rip": self.rip,
                "rport": self.rport, "lip": self.lip, "lport": self.lport, "since": self.since,
                "tls": bool(detail.get("tls", self.tls)), "mailbox": detail.get("mailbox"),
                "idle": bool(detail.get("idle", False)), "bytes_in": self.bytes_in, "bytes_out": self.bytes_out}

    def log_end(self) -> None:
        """The one line that closes the session's story."""
        duration = time.monotonic() - self.started
        fields = dict(self._where(self.tls), bytes_in=self.bytes_in, bytes_out=self.bytes_out,
                      duration=round(duration, 3), commands=self.commands, event="disconnected", **self.counts)
        if self.user is not None:
            extra = " ".join(f"{k}={v}" for k, v in sorted(self.counts.items()))
            session_log.info("{protocol}({user})<{session}>: Disconnected: {reason} in={bytes_in} out={bytes_out} "
                             "commands={commands}{extra} duration={duration:.1f}s",
                             user=printable(self.user), reason=self.end_reason or "Connection closed",
                             extra=" " + extra if extra else "", **fields)
        elif self.protocol in LOGIN_PROTOCOLS:
            why = self.end_reason or ("auth failed" if self.attempts else "no auth attempts")
            log.info("{protocol}-login: Disconnected ({reason}, {attempts} attempts in {secs} secs): "
                     "rip={rip}, rport={rport}, lip={lip}, lport={lport}{tls_text}, session=<{session}>",
                     reason=why, attempts=self.attempts, secs=int(duration), **fields)


class Registry:
    """Every live session of the process, and the counts the limits need."""

    def __init__(self, limits: Limits, reactor: Any) -> None:
        self.limits = limits
        self.reactor = reactor
        self.metrics: MetricsSink | None = None
        self.sessions: dict[str, Session] = {}
        self.per_ip: dict[str, int] = {}
        self.per_user_ip: dict[tuple[str, str, str], int] = {}
        # bytes of sessions already closed, per (protocol, "in"/"out"), for the metrics
        self.closed_bytes: dict[tuple[str, str], int] = {}
        self._refusals_logged: dict[str, float] = {}

    def refusal(self, kind: str, ip: str) -> str | None:
        """Why a new connection of ``kind`` from ``ip`` is refused, or None."""
        protocol, _ = family(kind)
        if protocol not in LOGIN_PROTOCOLS:
            return None
        return self.limits.connection_refusal(ip, self.per_ip.get(ip, 0))

    def log_refusal(self, kind: str, reason: str, remote: tuple[str, int], local: tuple[str, int]) -> None:
        now = time.monotonic()
        if now - self._refusals_logged.get(remote[0], -REFUSAL_LOG_INTERVAL) < REFUSAL_LOG_INTERVAL:
            return
        if len(self._refusals_logged) > 10_000:
            self._refusals_logged.clear()
        self._refusals_logged[remote[0]] = now
        log.info("{protocol}-login: Connection refused ({reason}): rip={rip}, rport={rport}, lip={lip}, "
                 "lport={lport} (further refusals of this address are not logged for a minute)",
                 protocol=family(kind)[0], reason=reason, rip=remote[0], rport=remote[1], lip=local[0],
                 lport=local[1], event="refused")

    def open(self, kind: str, conn: Connection, remote: tuple[str, int], local: tuple[str, int]) -> Session:
        s = Session(self, kind, conn, remote, local)
        self.sessions[s.id] = s
        if s.protocol in LOGIN_PROTOCOLS:  # an MTA's LMTP connections are not a client's
            self.per_ip[s.rip] = self.per_ip.get(s.rip, 0) + 1
        if self.metrics is not None:
            self.metrics.connection(s.protocol, s.tls)
        return s

    def close(self, s: Session) -> None:
        if self.sessions.pop(s.id, None) is None:
            return
        if s.protocol in LOGIN_PROTOCOLS:
            _decrement(self.per_ip, s.rip)
        if s.user is not None:
            _decrement(self.per_user_ip, (s.protocol, s.user, s.rip))
        for direction, n in (("in", s.bytes_in), ("out", s.bytes_out)):
            key = (s.protocol, direction)
            self.closed_bytes[key] = self.closed_bytes.get(key, 0) + n
        s.log_end()

    def find(self, user: str | None = None, protocol: str | None = None) -> list[Session]:
        return [s for s in self.sessions.values()
                if (user is None or s.user == user) and (protocol is None or s.protocol == protocol)]

    def who(self) -> list[dict[str, Any]]:
        return [s.describe() for s in sorted(self.sessions.values(), key=lambda s: s.since)]

    def kick(self, user: str, protocol: str | None = None, reason: str = "Kicked by the administrator") -> int:
        victims = self.find(user, protocol)
        for s in victims:
            s.ending(reason)
            s.conn.kick(reason)
        return len(victims)

    def each(self, fn: Callable[[Session], None]) -> None:
        for s in list(self.sessions.values()):
            fn(s)


def _decrement(counts: dict[Any, int], key: Any) -> None:
    n = counts.get(key, 0) - 1
    if n > 0:
        counts[key] = n
    else:
        counts.pop(key, None)
