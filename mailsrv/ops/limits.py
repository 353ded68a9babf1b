"""Abuse limits: connections per address, sessions per user and address,
and failed logins slowed and then refused per address.

Dovecot's defaults are the model: ``mail_max_userip_connections = 10``
(per protocol, user and address) and its authentication penalty (each
failure from an address doubles the wait before the next attempt from it,
up to 15 s).  The penalty works per remote address, not per connection: a
client that reconnects after every failure waits as long as one that keeps
its connection.  After ``ban_after`` failures in a row an address is refused
outright for ``ban_time`` seconds.

Everything here is in memory, per process, and bounded: addresses that have
not failed for ``forget_after`` seconds are dropped, and the table never
holds more than ``MAX_TRACKED`` addresses (the oldest go first).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

MAX_TRACKED = 100_000


@dataclass
class LimitSettings:
    """The ``[limits]`` section (see etc/mailsrv.ini); 0 turns a limit off."""

    connections_per_ip: int = 100
    userip_connections: int = 10
    login_timeout: float = 60.0
    penalty_max: float = 15.0
    ban_after: int = 10
    ban_time: float = 300.0
    forget_after: float = 600.0


class _Failures:
    """One address's recent failures."""

    __slots__ = ("count", "last", "banned_until")

    def __init__(self) -> None:
        self.count = 0
        self.last = 0.0
        self.banned_until = 0.0


class Limits:
    """The policy and its per-address state.

    ``fail_delay`` is ``[auth] fail_delay``: the wait after the first
    failure, and the unit the penalty doubles from (so a test server with
    ``--auth-fail-delay 0`` has no penalty, only the ban).
    """

    def __init__(self, settings: LimitSettings, fail_delay: float,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.settings = settings
        self.fail_delay = fail_delay
        self._clock = clock
        self._failures: dict[str, _Failures] = {}

    # -- connections -----------------------------------------------------------

    def connection_refusal(self, ip: str, open_from_ip: int) -> str | None:
        """Why a new connection from ``ip`` is refused (None: accept it);
        ``open_from_ip`` counts the connections already open from it."""
        if self.banned(ip):
            return "banned"
        limit = self.settings.connections_per_ip
        if limit and open_from_ip >= limit:
            return "connection limit"
        return None

    def user_refusal(self, open_for_user_ip: int) -> bool:
        """True if one more session of a user from one address is too many."""
        limit = self.settings.userip_connections
        return bool(limit) and open_for_user_ip >= limit

    # -- failed logins ---------------------------------------------------------

    def _entry(self, ip: str) -> _Failures | None:
        entry = self._failures.get(ip)
        if entry is not None and self._clock() - entry.last > self.settings.forget_after \
                and entry.banned_until <= self._clock():
            del self._failures[ip]
            return None
        return entry

    def banned(self, ip: str) -> bool:
        entry = self._entry(ip)
        return entry is not None and entry.banned_until > self._clock()

    def penalty(self, ip: str) -> float:
        """Seconds the next login attempt from ``ip`` waits before it is
        checked: ``fail_delay`` doubled per failure since the last success,
        at most ``penalty_max``."""
        entry = self._entry(ip)
        if entry is None or entry.count == 0 or self.fail_delay <= 0:
            return 0.0
        return float(min(self.fail_delay * 2 ** min(entry.count - 1, 30), self.settings.penalty_max))

    def failed(self, ip: str) -> bool:
        """Count a failed login from ``ip``; True when this one starts a ban."""
        entry = self._entry(ip)
        if entry is None:
            if len(self._failures) >= MAX_TRACKED:
                self._forget_oldest()
            entry = self._failures[ip] = _Failures()
        else:  # keep the table in order of last failure: the oldest go first
            self._failures[ip] = self._failures.pop(ip)
        now = self._clock()
        entry.count += 1
        entry.last = now
        if self.settings.ban_after and entry.count >= self.settings.ban_after:
            entry.count = 0
            entry.banned_until = now + self.settings.ban_time
            return True
        return False

    def succeeded(self, ip: str) -> None:
        """A good login from ``ip`` ends its penalty (not a running ban)."""
        entry = self._failures.get(ip)
        if entry is not None and entry.banned_until <= self._clock():
            del self._failures[ip]

    def tracked(self) -> int:
        """Addresses with recent failures or a ban (for the metrics)."""
        return len(self._failures)

    def _forget_oldest(self) -> None:
        for ip in list(self._failures)[: max(1, MAX_TRACKED // 10)]:
            del self._failures[ip]
