"""The database connection: a psycopg connection pool and a bounded thread
pool of the store's own, so that no query ever runs in the reactor thread.

``Database.run(fn, *args)`` calls ``fn(conn, *args)`` inside one
transaction in a pool thread and fires with its result in the reactor
thread.  Why threads and not psycopg's asyncio API: Twisted's reactor here
is not an asyncio loop, and a thread per connection (N <= pool size) costs
nothing next to a query's round trip, while keeping every query a plain
blocking call that is easy to read.

Failures are mapped once, here: anything that means "the database is not
there right now" (connection refused or lost, server shutting down,
statement timeout, pool exhausted) becomes :class:`StoreUnavailable`.  A
broken connection found before COMMIT is retried once on a fresh one (the
transaction was rolled back by the server, so nothing happened twice);
deadlocks and serialization failures are retried a few times; a failure of
COMMIT itself is reported as uncertain, never retried.  The pool replaces
broken connections by itself, so the store recovers without a restart.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

import psycopg
import psycopg_pool
from psycopg import errors as pgerrors
from twisted.internet import defer, threads
from twisted.logger import Logger
from twisted.python.threadpool import ThreadPool

from mailsrv.store.interfaces import StoreError
from mailsrv.store.pg import schema
from mailsrv.store.pg.errors import StoreUnavailable

log = Logger(namespace="mailsrv.store.pg")

T = TypeVar("T")
RETRY_CONFLICTS = 5
PROBE_INTERVAL = 0.1  # seconds between connection attempts while the database is down
CONNECT_OPTIONS: dict[str, Any] = {
    "connect_timeout": 5,
    "keepalives": 1,
    "keepalives_idle": 10,
    "keepalives_interval": 3,
    "keepalives_count": 3,
    "application_name": "mailsrv",
}


class _ToTwistedLog(logging.Handler):
    """psycopg_pool reports through the logging module: into our log (a
    down database is already reported once by :class:`Database`)."""

    def emit(self, record: logging.LogRecord) -> None:
        log.debug("{origin}: {message}", origin=record.name, message=record.getMessage())


_pool_log = logging.getLogger("psycopg.pool")
_pool_log.addHandler(_ToTwistedLog())
_pool_log.propagate = False


def is_unavailable(e: BaseException) -> bool:
    """True for the errors that mean "not now" rather than "wrong"."""
    return isinstance(e, (psycopg.OperationalError, psycopg.InterfaceError, psycopg_pool.PoolTimeout,
                          psycopg_pool.PoolClosed))


class Database:
    """One per Store (per process).  ``max_size`` bounds both the
    connections and the threads that use them."""

    def __init__(self, dsn: str, reactor: Any = None, min_size: int = 1, max_size: int = 8,
                 timeout: float = 5.0, statement_timeout: float = 60.0, migrate: bool = True,
                 start: bool = True) -> None:
        if reactor is None:
            from twisted.internet import reactor
        self.reactor = reactor
        self.dsn = dsn
        self.timeout = timeout
        self.statement_timeout = statement_timeout
        self.max_size = max_size
        self._auto_migrate = migrate
        self._schema_ok = False
        self._schema_lock = threading.Lock()
        self.min_size = min_size
        self.pool = self._new_pool(open_now=False)
        self._down: str | None = None  # why the database is unreachable, while it is
        self._last_probe = 0.0
        self._probe_lock = threading.Lock()
        self.threads = ThreadPool(0, max_size, name="mailsrv-pg")
        self.started = False
        self._pool_open = False
        if start:
            self.start()
        self._closed = False

    def start(self) -> None:
        """Start the pool's and the query threads.  Not in the constructor
        when the caller may fork afterwards (twistd daemonizes after
        building the service): threads do not survive a fork."""
        if not self.started:
            self.started = True
            self._open_pool()
            self.threads.start()

    def _open_pool(self) -> None:
        if not self._pool_open:
            self._pool_open = True
            self.pool.open(wait=False)

    def _new_pool(self, open_now: bool = True) -> psycopg_pool.ConnectionPool:
        pool = psycopg_pool.ConnectionPool(
            self.dsn, min_size=self.min_size, max_size=self.max_size, open=False, name="mailsrv",
            kwargs={"autocommit": True, **CONNECT_OPTIONS}, configure=self._configure,
            timeout=self.timeout, reconnect_timeout=3600.0, max_idle=300.0)
        if open_now:
            pool.open(wait=False)
        return pool

    def _configure(self, conn: psycopg.Connection) -> None:
        conn.execute("SET statement_timeout = %s" % int(self.statement_timeout * 1000))
        conn.execute("SET idle_in_transaction_session_timeout = %s" % int(self.statement_timeout * 1000))

    # --- running work -------------------------------------------------------------------

    def run(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> defer.Deferred:
        """``fn(conn, *args, **kwargs)`` in one transaction, in a pool
        thread; fires in the reactor thread."""
        if self._closed:
            return defer.fail(StoreUnavailable("the store is closed"))
        if not self.started:
            self.start()
        return threads.deferToThreadPool(self.reactor, self.threads, self.call, fn, *args, **kwargs)

    def in_thread(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> defer.Deferred:
        """``fn(*args)`` in a pool thread without a connection (hashing,
        reading spooled files, ...)."""
        return threads.deferToThreadPool(self.reactor, self.threads, fn, *args, **kwargs)

    def call(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """The blocking form of :meth:`run` (pool threads, command-line tools)."""
        self._open_pool()  # a command-line tool needs no threads
        self._check_up()
        self._ensure_schema()
        conflicts = 0
        fresh_tried = False
        while True:
            committing = False
            try:
                with self.pool.connection(timeout=self.timeout) as conn:
                    with conn.transaction():
                        result = fn(conn, *args, **kwargs)
                        committing = True
                    return result
            except StoreError:
                raise
            except (pgerrors.SerializationFailure, pgerrors.DeadlockDetected) as e:
                conflicts += 1
                if conflicts > RETRY_CONFLICTS:
                    raise StoreUnavailable(f"database conflict, try again: {e}") from e
                time.sleep(0.005 * conflicts)
            except psycopg.Error as e:
                if committing and not isinstance(e, psycopg.IntegrityError):
                    raise StoreUnavailable(f"database failed during commit: {e}", uncertain=True) from e
                if not is_unavailable(e):
                    log.error("database error in {fn}: {e}", fn=getattr(fn, "__name__", fn), e=e)
                    raise StoreError(f"database error: {e.__class__.__name__}") from e
                if fresh_tried or isinstance(e, psycopg_pool.PoolTimeout) or not self._probe():
                    self._mark_down(e)
                    raise StoreUnavailable(_short(e)) from e
                fresh_tried = True
                self._drop_broken()

    # --- outages ---------------------------------------------------------------------------
    #
    # While the database is down, waiting ``timeout`` for a pool connection
    # on every operation would stall every session for seconds: once an
    # outage is seen, operations fail at once, and a direct connection
    # attempt (at most every PROBE_INTERVAL) tells when it is over.  The
    # pool backs off between its own reconnection attempts and holds
    # connections the outage killed, so it is replaced then: service
    # resumes at once.

    def _mark_down(self, e: BaseException) -> None:
        if self._down is None:
            log.warn("mail database unavailable: {err}", err=_short(e))
        self._down = _short(e)

    def _probe(self) -> bool:
        """Can a new connection be made right now?"""
        try:
            psycopg.connect(self.dsn, autocommit=True, **{**CONNECT_OPTIONS, "connect_timeout": 2}).close()
        except psycopg.Error as e:
            self._down = _short(e)
            return False
        return True

    def _check_up(self) -> None:
        if self._down is None:
            return
        with self._probe_lock:
            if self._down is None:
                return
            now = time.monotonic()
            if now - self._last_probe < PROBE_INTERVAL:  # asked a moment ago: the answer stands
                raise StoreUnavailable(self._down or "")
            self._last_probe = now
            if not self._probe():
                raise StoreUnavailable(self._down or "")
            self._down = None
            log.info("mail database reachable again")
            # The old pool's connections died with the outage, and it waits
            # out its reconnection back-off: a fresh pool connects at once.
            old, self.pool = self.pool, self._new_pool()
            threading.Thread(target=old.close, kwargs={"timeout": 1.0}, daemon=True).start()

    def _drop_broken(self) -> None:
        """After a lost connection the others are likely dead too (a
        server restart): have the pool test its idle ones now."""
        try:
            self.pool.check()
        except Exception as e:  # the pool itself is closing
            log.debug("pool check failed: {e}", e=e)

    def _ensure_schema(self) -> None:
        if self._schema_ok or not self._auto_migrate:
            return
        with self._schema_lock:
            if self._schema_ok:
                return
            try:
                with self.pool.connection(timeout=self.timeout) as conn:
                    schema.migrate(conn)
            except psycopg_pool.PoolTimeout as e:
                raise StoreUnavailable(_short(e)) from e
            except psycopg.Error as e:
                if is_unavailable(e):
                    raise StoreUnavailable(_short(e)) from e
                raise
            self._schema_ok = True

    def connect(self, **kwargs: Any) -> psycopg.Connection:
        """A dedicated connection outside the pool (LISTEN, session-level
        advisory locks); blocking, raises StoreUnavailable."""
        try:
            conn = psycopg.connect(self.dsn, autocommit=True, **{**CONNECT_OPTIONS, **kwargs})
        except psycopg.Error as e:
            raise StoreUnavailable(_short(e)) from e
        return conn

    def close_now(self) -> None:
        """The blocking :meth:`close` (command-line tools, no reactor)."""
        self._closed = True
        if self.started:
            self.threads.stop()
        self.pool.close(timeout=5.0)

    def close(self) -> defer.Deferred:
        """Stop the threads (after their current work) and the pool."""
        if self._closed:
            return defer.succeed(None)
        self._closed = True

        def stop() -> None:
            if self.started:
                self.threads.stop()
            self.pool.close(timeout=5.0)

        return threads.deferToThread(stop)


def _short(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return text[0] if text else e.__class__.__name__
