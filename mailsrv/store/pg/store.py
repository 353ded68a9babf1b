"""The process-wide PostgreSQL store: the database, the live accounts and
folders of this process, what this process holds of bodies and derived
values, and the two dedicated connections (change notifications, session
locks).

Every process (``twistd mailsrv`` worker, node) makes one
:class:`PgStore` on the same database; they share nothing else, so any of
them can die or be added at any time.
"""

from __future__ import annotations

import os
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any, BinaryIO

from twisted.internet import defer, threads
from twisted.logger import Logger
from zope.interface import implementer

from mailsrv.store.interfaces import PUBLIC_PREFIX, IStore
from mailsrv.store.layout import INBOX
from mailsrv.store.pg import account_sql, folder_sql
from mailsrv.store.pg import blobs as blobmod
from mailsrv.store.pg.account import PgAccount
from mailsrv.store.pg.blobs import Body, PgBlobs
from mailsrv.store.pg.bodycache import BodyCache, ValueCache
from mailsrv.store.pg.db import Database
from mailsrv.store.pg.errors import describe
from mailsrv.store.pg.folder import HEAD_BYTES, BlobReader, PgFolder
from mailsrv.store.pg.message import PgMessageInfo
from mailsrv.store.pg.notify import ChangeListener, SessionLocks
from mailsrv.store.pg.shares import PgShares
from mailsrv.store.quota import QuotaRules, rules_for
from mailsrv.store.shared import UserView

log = Logger(namespace="mailsrv.store.pg")

VALUE_FLUSH_DELAY = 0.5
VALUE_FLUSH_EVERY = 500
PREFETCH_FILE_SLICE = 1 << 20
SWEEP_INTERVAL = 3600.0
PUBLIC = ".public"  # the account of the public mailboxes: no user name starts with "."


@implementer(IStore)
class PgStore:
    """``dsn``: libpq connection string or URI.  ``idle_ttl``: seconds a
    folder nobody listens to stays loaded.  ``pool_size``: connections
    (and threads) for queries.  ``listen``: follow other processes'
    changes (tools that only write can turn it off)."""

    def __init__(self, dsn: str, reactor: Any = None, idle_ttl: float = 0.0, pool_size: int = 8,
                 spool_dir: str | None = None, listen: bool = True, start: bool = True,
                 quota_rules: Mapping[str, str] | None = None, quota_tempfail: bool = False) -> None:
        """``quota_rules``: the configured ``quota_rule*`` values (a user's
        ``userdb_quota_rule*`` fields in the users table replace them, as
        in Dovecot); ``quota_tempfail``: over-quota is temporary (LMTP 452)."""
        if reactor is None:
            from twisted.internet import reactor
        self.reactor = reactor
        self.idle_ttl = idle_ttl
        self.db = Database(dsn, reactor, max_size=pool_size, start=False)
        self.blobs = PgBlobs()
        self.bodies = BodyCache(spool_dir)
        self.values = ValueCache()
        self.locks = SessionLocks(self.db)
        self.stats: Counter[str] = Counter()
        self._quota_rules = dict(quota_rules or {})
        self.quota_tempfail = quota_tempfail
        self.shares = PgShares(self)
        self._sharers: dict[str, list[str]] = {}
        self._public: PgAccount | None = None
        self._accounts: dict[str, PgAccount] = {}
        self._by_account_id: dict[int, PgAccount] = {}
        self._folders: dict[int, PgFolder] = {}
        self._values_pending: list[tuple[int, str, bytes]] = []
        self._folder_values_pending: dict[tuple[int, str], tuple[bytes, float]] = {}
        self._values_timer: Any = None
        self._closed = False
        self._last_blocking_warning = 0.0
        self.listener = ChangeListener(self.db, self._notified, self._listening)
        self._listen = listen
        self._sweeper: Any = None
        self.started = False
        if start:
            self.start()

    def start(self) -> None:
        """Start the threads: the query pool, the change listener and, in a
        server (``idle_ttl``), the hourly sweep of orphaned bodies.  A
        server calls it from startService, after twistd has forked."""
        if self.started:
            return
        self.started = True
        self.db.start()
        if self._listen:
            self.listener.start()
        if self.idle_ttl > 0:
            self._sweeper = self.reactor.callLater(60.0, self._sweep)

    # --- accounts -------------------------------------------------------------------------

    def account(self, user: str) -> PgAccount:
        """The live account (made on first use; see :meth:`open_account`)."""
        a = self._accounts.get(user)
        if a is None:
            a = self._accounts[user] = PgAccount(self, user)
        return a

    def open_account(self, user: str) -> defer.Deferred:
        """Fires with the account, read fresh from the database (and made,
        with its default folders, on first use).  The realm and the LMTP
        recipient lookup call this, so that the synchronous account methods
        answer from memory afterwards."""
        try:
            a = self.account(user)
        except ValueError:
            return defer.fail()
        return a.reload()

    def account_loaded(self, account: PgAccount) -> None:
        assert account.id is not None
        self._by_account_id[account.id] = account

    # --- user views, shares, public mailboxes, quota (issue 12) -----------------------------------

    def view(self, user: str | None) -> UserView:
        """See IStore.view: the backend-neutral view (mailsrv.store.shared)
        over this store's accounts; ``open_view`` reads what it needs first."""
        return UserView(self.shares, user, self.account(user) if user is not None else None)

    def open_view(self, user: str) -> defer.Deferred:
        """Fires with ``view(user)`` once the user's account, the accounts of
        those who share with them and the public mailboxes are read: what
        the realm hands out at login."""
        d = self.open_account(user)
        d.addCallback(lambda _: self.load_sharers([user]))
        d.addCallback(lambda _: defer.gatherResults([self.open_account(o) for o in self._sharers.get(user, ())],
                                                    consumeErrors=True))
        d.addCallback(lambda _: self.load_public())
        return d.addCallback(lambda _: self.view(user))

    def loaded_account(self, user: str) -> PgAccount | None:
        a = self._accounts.get(user)
        return a if a is not None and a.id is not None else None

    def sharers_of(self, user: str | None) -> list[str]:
        return list(self._sharers.get(user or account_sql.ANYONE, ()))

    def load_sharers(self, users: list[str]) -> defer.Deferred:
        def got(found: dict[str, list[str]]) -> None:
            self._sharers.update(found)

        return self.db.run(account_sql.sharers, users).addCallback(got)

    def refresh_shares(self) -> defer.Deferred:
        """Someone's ACLs changed who shares with whom: re-read the sharers of
        the users seen here, and the accounts of new sharers."""
        def opened(_: Any) -> defer.Deferred:
            owners = {o for lst in self._sharers.values() for o in lst if self.loaded_account(o) is None}
            return defer.gatherResults([self.open_account(o) for o in sorted(owners)], consumeErrors=True)

        return self.load_sharers(list(self._sharers)).addCallback(opened)

    def public_account(self) -> PgAccount | None:
        """The account of the public mailboxes, once read and if it exists."""
        return self._public if self._public is not None and self._public.id is not None else None

    def load_public(self) -> defer.Deferred:
        """Read the public mailboxes' account (if there is one) fresh."""
        def found(aid: int | None) -> Any:
            if aid is None:
                return None
            if self._public is None:
                self._public = self._accounts[PUBLIC] = PgAccount(self, PUBLIC, special=True)
            return self._public.reload()

        return self.db.run(account_sql.account_id, PUBLIC).addCallback(found)

    def public_mailbox(self, name: str) -> str | None:
        public = self.public_account()
        if public is None:
            return None
        for folder in public.list_folders():
            if folder != INBOX and folder.lower() == name.lower():
                return PUBLIC_PREFIX + folder
        return None

    def quota_rules(self, user: str) -> QuotaRules | None:
        """The owner's rules: configured ones, their user fields on top
        (kept with the account, re-read with it)."""
        if user == PUBLIC:
            return None
        a = self._accounts.get(user)
        if a is None:
            return rules_for(self._quota_rules, {}, user)
        if a.rules is None:
            a.rules = rules_for(self._quota_rules, a.fields, user)
        rules: QuotaRules = a.rules
        return rules

    # --- live folders and notifications ---------------------------------------------------------

    def register_folder(self, folder: PgFolder) -> None:
        self._folders[folder.id] = folder

    def forget_folder(self, folder: PgFolder) -> None:
        if self._folders.get(folder.id) is folder:
            del self._folders[folder.id]

    def _notified(self, payloads: list[str]) -> None:
        """NOTIFY payloads: '<folder id>:<highestmodseq>' or 'a<account id>'."""
        accounts: set[int] = set()
        folders: dict[int, int] = {}
        every: dict[int, list[int]] = {}  # each modseq, in commit order (for folders not open here)
        if "s" in payloads and self._sharers:
            self.refresh_shares().addErrback(lambda f: log.warn("shares not re-read: {e}", e=describe(f.value)))
        for p in payloads:
            try:
                if p == "s":
                    continue
                if p.startswith("a"):
                    accounts.add(int(p[1:]))
                else:
                    head, _, tail = p.partition(":")
                    fid, m = int(head), int(tail)
                    folders[fid] = m if m < 0 else max(m, folders.get(fid, 0))
                    every.setdefault(fid, []).append(m)
            except ValueError:
                log.warn("ignoring a malformed change notification {p!r}", p=p)
        for aid in accounts:
            a = self._by_account_id.get(aid)
            if a is not None:
                a.notified()
        watching = [a for a in self._by_account_id.values() if a.has_account_listeners()]
        for fid, modseq in folders.items():
            folder = self._folders.get(fid)
            if folder is not None:
                folder.notified(modseq)
            else:
                for a in watching:
                    a.folder_changed(fid, every[fid])

    def _listening(self) -> None:
        """(Re)connected to the change feed: notifications may have been
        lost meanwhile, so every live folder and account looks again."""
        for f in list(self._folders.values()):
            f.notified(-2)
        for a in list(self._by_account_id.values()):
            a.notified()

    # --- bodies ------------------------------------------------------------------------------------

    def spool(self, source: Any) -> defer.Deferred:
        """Fires with the spooled :class:`Body` of ``source`` (bytes or a
        binary file object), read in a thread."""
        return threads.deferToThread(blobmod.spool, source, self.bodies.spool_dir)

    def keep_body(self, blob: int, body: Body) -> None:
        """A body just stored: keep it (small ones in memory, a spool file
        is adopted), the next FETCH of a new message is then local."""
        if body.data is not None:
            self.bodies.add_bytes(blob, body.data, complete=True)
        elif body.path is not None:
            self.bodies.add_file(blob, body.path, body.size)
            body.path = None

    def note_blocking(self, what: str) -> None:
        self.stats["blocking"] += 1
        now = time.monotonic()
        if now - self._last_blocking_warning > 60:
            self._last_blocking_warning = now
            log.warn("blocking database read in the reactor thread ({what}); the caller should "
                     "prefetch() first", what=what)

    def blocking_reader(self, blob: int, size: int) -> BinaryIO:
        prefix = self.bodies.prefix(blob) or b""

        def fetch(offset: int, length: int) -> bytes:
            self.note_blocking("read of a body not prefetched")
            return self.db.call(lambda conn: self.blobs.read(conn, blob, offset, length))

        import io

        return io.BufferedReader(BlobReader(fetch, size, prefix), 1 << 18)

    def prefetch_messages(self, infos: Sequence[PgMessageInfo], kinds: list[str],
                          body: str | None) -> defer.Deferred[None]:
        if not infos:
            return defer.succeed(None)
        values = self.values
        want_values = [m.blob for m in infos if any(not values.has(m.blob, k) for k in kinds)] if kinds else []
        candidates: list[tuple[int, int]] = []
        if body in ("header", "full"):
            full = body == "full"
            lacking = set(want_values)
            for m in infos:
                if self.bodies.has_body(m.blob) or kinds and m.blob not in lacking:
                    continue
                if not full:
                    have = self.bodies.prefix(m.blob)
                    if have is not None and len(have) >= min(HEAD_BYTES, m.size):
                        continue
                candidates.append((m.blob, m.size))
        if not want_values and not candidates:
            return defer.succeed(None)
        paths = {b: self.bodies.new_spool_path(b) for b, size in candidates
                 if body == "full" and size > blobmod.INLINE_MAX}
        d = self.db.run(_prefetch_in_thread, self.blobs, want_values, kinds, candidates, body == "full",
                        paths, bool(kinds))
        d.addCallback(self._prefetched, candidates, paths)
        return d

    def _prefetched(self, result: tuple, candidates: list[tuple[int, int]], paths: dict[int, str]) -> None:
        vals, slices, files = result
        for blob, kind, value in vals:
            self.values.put(blob, kind, value)
        sizes = dict(candidates)
        for blob, data in slices.items():
            self.bodies.add_bytes(blob, data, complete=len(data) >= sizes.get(blob, 0))
        for blob in files:
            self.bodies.add_file(blob, paths[blob], sizes[blob])

    # --- derived values ----------------------------------------------------------------------------

    def remember_value(self, blob: int, kind: str, value: bytes) -> None:
        self.values.put(blob, kind, value)
        self._values_pending.append((blob, kind, value))
        self._flush_soon()

    def remember_folder_value(self, fid: int, kind: str, value: bytes) -> None:
        """A folder-wide derived value, written with the next flush (the
        last one set of each kind)."""
        self._folder_values_pending[(fid, kind)] = (value, time.time())
        self._flush_soon()

    def _flush_soon(self) -> None:
        if len(self._values_pending) >= VALUE_FLUSH_EVERY:
            self.flush_values()
        elif self._values_timer is None:
            self._values_timer = self.reactor.callLater(VALUE_FLUSH_DELAY, self.flush_values)

    def flush_values(self) -> defer.Deferred:
        """Write the derived values remembered since the last flush (a
        cache: a failed write costs a recomputation later, nothing more)."""
        if self._values_timer is not None:
            if self._values_timer.active():
                self._values_timer.cancel()
            self._values_timer = None
        rows, self._values_pending = self._values_pending, []
        wide, self._folder_values_pending = self._folder_values_pending, {}
        if not rows and not wide:
            return defer.succeed(None)
        d = self.db.run(folder_sql.save_values, rows, [(f, k, v, w) for (f, k), (v, w) in wide.items()])
        d.addErrback(lambda f: log.warn("derived values not saved: {e}", e=describe(f.value)))
        return d

    # --- housekeeping ------------------------------------------------------------------------------

    def collect_blobs(self, blob_ids: Sequence[int]) -> None:
        """Bodies no message uses any more (best effort; the sweep gets any
        left over)."""
        if blob_ids:
            d = self.db.run(self.blobs.collect, list(blob_ids))
            d.addErrback(lambda f: log.info("blob collection deferred: {e}", e=describe(f.value)))

    def _sweep(self) -> None:
        self._sweeper = None
        d = self.db.run(self.blobs.sweep)
        d.addErrback(lambda f: log.info("blob sweep failed: {e}", e=describe(f.value)))
        if not self._closed:
            self._sweeper = self.reactor.callLater(SWEEP_INTERVAL, self._sweep)

    def close(self) -> defer.Deferred:
        """Flush derived values, stop listening, close the connections."""
        if self._closed:
            return defer.succeed(None)
        self._closed = True
        if self._sweeper is not None and self._sweeper.active():
            self._sweeper.cancel()
        for a in self._accounts.values():
            a.close()
        flushed = self.flush_values()

        def shut(_: Any) -> defer.Deferred:
            self.bodies.close()
            stopping = [self.listener.stop(), threads.deferToThread(self.locks.close)]
            return defer.gatherResults(stopping).addBoth(lambda _: self.db.close())

        return flushed.addBoth(shut)


def _prefetch_in_thread(conn: Any, blobs: PgBlobs, want_values: list[int], kinds: list[str],
                        candidates: list[tuple[int, int]], full: bool, paths: dict[int, str],
                        only_missing: bool) -> tuple[list, dict[int, bytes], list[int]]:
    """Cached values, then the bodies (or their starts) of the messages
    that still lack one of ``kinds``; large bodies streamed to ``paths``."""
    vals = folder_sql.cached_values(conn, want_values, kinds)
    if only_missing and candidates:
        have: dict[int, set[str]] = {}
        for blob, kind, _v in vals:
            have.setdefault(blob, set()).add(kind)
        candidates = [c for c in candidates if len(have.get(c[0], ())) < len(kinds)]
    small = [(b, s if full else min(s, HEAD_BYTES)) for b, s in candidates if b not in paths]
    slices = folder_sql.read_slices(conn, small)
    files = []
    for blob, size in candidates:
        path = paths.get(blob)
        if path is None:
            continue
        with open(path, "wb") as out:
            pos = 0
            while pos < size:
                chunk = blobs.read(conn, blob, pos, PREFETCH_FILE_SLICE)
                if not chunk:
                    break
                out.write(chunk)
                pos += len(chunk)
        if pos == size:
            files.append(blob)
        else:
            os.unlink(path)
    return vals, slices, files
