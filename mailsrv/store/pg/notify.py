"""Two dedicated connections per process, outside the pool:

- :class:`ChangeListener` LISTENs on the ``mailsrv`` channel in a thread of
  its own and hands every notification to the reactor thread: how a change
  committed by any process reaches the live folders of every other one.
  When its connection is lost it reconnects (backing off) and, once
  listening again, asks the store to re-read every live folder, since
  notifications sent meanwhile are lost.
- :class:`SessionLocks` holds session-level advisory locks (the POP3
  maildrop lock): they belong to the connection, so a process that dies
  releases them with it, on every node at once.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import psycopg
from twisted.internet import defer, threads
from twisted.logger import Logger

from mailsrv.store.pg.db import Database
from mailsrv.store.pg.errors import StoreUnavailable
from mailsrv.store.pg.schema import CHANNEL

log = Logger(namespace="mailsrv.store.pg")

POLL = 0.5  # seconds between checks of the stop flag while waiting for notifications
BACKOFF = (0.1, 0.25, 0.5, 1.0, 2.0)


class ChangeListener:
    """``on_notify(payload)`` and ``on_listening()`` are called in the
    reactor thread; payloads arriving together are handed over together."""

    def __init__(self, db: Database, on_notify: Callable[[list[str]], None],
                 on_listening: Callable[[], None]) -> None:
        self.db = db
        self.on_notify = on_notify
        self.on_listening = on_listening
        self.listening = False
        self._stop = threading.Event()
        self._conn: psycopg.Connection | None = None
        self._thread = threading.Thread(target=self._loop, name="mailsrv-pg-listen", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _loop(self) -> None:
        failures = 0
        while not self._stop.is_set():
            try:
                self._conn = self.db.connect()
                self._conn.execute(f"LISTEN {CHANNEL}")
            except (StoreUnavailable, psycopg.Error) as e:
                self._lost(e, failures)
                failures += 1
                self._stop.wait(BACKOFF[min(failures, len(BACKOFF) - 1)])
                continue
            failures = 0
            self.listening = True
            self.db.reactor.callFromThread(self.on_listening)
            try:
                self._receive(self._conn)
            except psycopg.Error as e:
                if not self._stop.is_set():
                    self._lost(e, 0)
            finally:
                self.listening = False
                self._close_conn()

    def _receive(self, conn: psycopg.Connection) -> None:
        while not self._stop.is_set():
            batch = [n.payload for n in conn.notifies(timeout=POLL, stop_after=1)]
            if not batch:
                continue
            # take whatever else has arrived already, without waiting
            batch.extend(n.payload for n in conn.notifies(timeout=0))
            self.db.reactor.callFromThread(self.on_notify, batch)

    def _lost(self, e: BaseException, failures: int) -> None:
        if failures == 0:
            log.warn("change notifications interrupted ({err}); reconnecting", err=str(e).splitlines()[0]
                     if str(e) else e.__class__.__name__)

    def _close_conn(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                conn.close()
            except Exception:
                pass

    def stop(self) -> defer.Deferred:
        self._stop.set()
        if not self._thread.is_alive():
            return defer.succeed(None)
        return threads.deferToThread(self._thread.join, POLL * 4 + 5)


class SessionLocks:
    """Advisory locks tied to one connection of this process.  Every call
    blocks (run it in a pool thread); a lost connection loses its locks, so
    the next call reconnects and takes back the ones this process still
    holds (a lock another node took meanwhile is reported and dropped)."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self._conn: psycopg.Connection | None = None
        self._mutex = threading.Lock()
        self._held: set[int] = set()

    def _connection(self) -> psycopg.Connection:
        conn = self._conn
        if conn is not None and not conn.closed and not conn.broken:
            return conn
        self._conn = conn = self.db.connect()
        lost = []
        for key in sorted(self._held):
            if not _try_lock(conn, key):
                lost.append(key)
        for key in lost:
            self._held.discard(key)
            log.error("advisory lock {key} was taken by another node while our connection was down", key=key)
        return conn

    def _run(self, fn: Callable[[psycopg.Connection], Any]) -> Any:
        with self._mutex:
            for attempt in (1, 2):
                try:
                    return fn(self._connection())
                except psycopg.OperationalError as e:
                    self._drop()
                    if attempt == 2:
                        raise StoreUnavailable(str(e)) from e
                except StoreUnavailable:
                    self._drop()
                    if attempt == 2:
                        raise

    def _drop(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                conn.close()
            except Exception:
                pass

    def try_lock(self, key: int) -> bool:
        def lock(conn: psycopg.Connection) -> bool:
            if key in self._held:
                return False
            got = _try_lock(conn, key)
            if got:
                self._held.add(key)
            return got
        return bool(self._run(lock))

    def unlock(self, key: int) -> None:
        def unlock(conn: psycopg.Connection) -> None:
            if key in self._held:
                self._held.discard(key)
                conn.execute("SELECT pg_advisory_unlock(%s)", (key,))
        try:
            self._run(unlock)
        except StoreUnavailable:
            pass  # the connection is gone, and the lock with it

    def close(self) -> None:
        with self._mutex:
            self._held.clear()
            self._drop()


def _try_lock(conn: psycopg.Connection, key: int) -> bool:
    row = conn.execute("SELECT pg_try_advisory_lock(%s)", (key,)).fetchone()
    return bool(row and row[0])
