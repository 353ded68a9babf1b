"""The live folder of the PostgreSQL backend: one object per open mailbox
in the process, shared by every session, holding the message list in
memory (``messages()``, ``get()`` are synchronous, as the protocols want).

It stays exact through one rule: every change, whoever made it, bumps the
folder's ``highestmodseq`` and stamps the changed rows with it, and
expunges are recorded with theirs.  So "everything after mod-sequence N"
(:func:`folder_sql.delta`) is the complete change feed; the folder keeps
the N up to which it has applied it (``_synced``).  Its own writes return
the feed since then (read under the folder lock, so nothing is missed);
other processes' writes arrive as a NOTIFY and are fetched the same way;
``refresh()`` asks directly.  A feed whose end is not beyond ``_synced``
is old news and dropped, so writes may complete in any order.  The same
feed keeps the folder's in-memory indexes (:class:`.modseq.FolderIndex`:
expunge record, changes by mod-sequence, UIDs by flag) in step, whichever
node made the change.
"""

from __future__ import annotations

import io
import time
from collections.abc import Callable, Iterable
from typing import Any, BinaryIO

from twisted.internet import defer
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from mailsrv.store.flags import normalize_flags
from mailsrv.store.groupcommit import GroupCommit
from mailsrv.store.interfaces import (
    RIGHTS,
    IFolder,
    MessageGone,
    MessageInfo,
    NoPermission,
    NoSuchFolder,
    StoreError,
)
from mailsrv.store.listeners import ADDED, EXPUNGED, FLAGS, Listeners
from mailsrv.store.pg import folder_sql
from mailsrv.store.pg.errors import describe
from mailsrv.store.pg.folder_sql import Delta, NewMessage, QuotaCheck
from mailsrv.store.pg.message import FlagDecoder, PgMessageInfo, split_flags
from mailsrv.store.pg.modseq import FolderIndex
from mailsrv.store.pg.parts import FolderOwner

log = Logger(namespace="mailsrv.store.pg")

HEAD_BYTES = 64 * 1024  # what a header read fetches: nearly every header fits


class BlobReader(io.RawIOBase):
    """The slow path of ``open_message``: a body not fetched beforehand
    (see :meth:`PgFolder.prefetch`) read from the database while the
    caller waits.  Serves what it has (a prefix) first."""

    def __init__(self, fetch: Callable[[int, int], bytes], size: int, prefix: bytes = b"") -> None:
        super().__init__()
        self._fetch = fetch
        self._size = size
        self._prefix = prefix
        self._pos = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def seek(self, pos: int, whence: int = 0) -> int:
        base = {0: 0, 1: self._pos, 2: self._size}[whence]
        self._pos = max(0, base + pos)
        return self._pos

    def tell(self) -> int:
        return self._pos

    def readinto(self, buf: Any) -> int:
        want = min(len(buf), self._size - self._pos)
        if want <= 0:
            return 0
        if self._pos < len(self._prefix):
            data = self._prefix[self._pos:self._pos + want]
        else:
            data = self._fetch(self._pos, max(want, 1 << 18))[:want]
        n = len(data)
        buf[:n] = data
        self._pos += n
        return n


@implementer(IFolder)
class PgFolder:
    """See :class:`IFolder`.  Made and registered by the account."""

    def __init__(self, account: FolderOwner, fid: int, name: str) -> None:
        self.account = account
        self.store = account.store
        self.id = fid
        self.name = name
        self.uidvalidity = 0
        self.uidnext = 1
        self.highestmodseq = 0
        self.synced = 0
        self._first_recent = 1
        self._msgs: dict[int, PgMessageInfo] = {}
        self._keywords: list[str] = []
        self._recent: set[int] = set()
        self._index = FolderIndex()
        self._folder_values: dict[str, bytes] = {}
        self._listeners = Listeners()
        self.gone = False
        self.decode = FlagDecoder()
        self._batch = GroupCommit(self._append_batch)
        self._syncing = False
        self._sync_waiters: list[defer.Deferred] = []
        self._loaded = False
        self._load_waiters: list[defer.Deferred] = []
        self.rights = RIGHTS  # the owner's own object (a user view wraps it for others)
        self.mailboxid = f"pg{fid}"  # RFC 8474: the row's, so it stays through RENAME, a new folder gets another
        self.instant_notice = True  # other processes' changes are pushed (NOTIFY): IDLE need not poll often

    # --- lifecycle ----------------------------------------------------------------------------

    def load(self) -> defer.Deferred:
        """Read the whole folder once (in a pool thread); fires with self.
        Callers arriving meanwhile wait for the same read."""
        if self._loaded:
            return defer.succeed(self)
        d: defer.Deferred = defer.Deferred()
        self._load_waiters.append(d)
        if len(self._load_waiters) == 1:
            r = self.store.db.run(folder_sql.load, self.id, self.decode)
            r.addCallback(self.apply_delta)
            r.addBoth(self._load_done)
        return d

    def _load_done(self, result: Any) -> None:
        waiters, self._load_waiters = self._load_waiters, []
        failed = isinstance(result, Failure)
        self._loaded = not failed
        for w in waiters:
            if failed:
                w.errback(result)
            elif self.gone:
                w.errback(NoSuchFolder(f"{self.name} was deleted"))
            else:
                w.callback(self)

    def close(self) -> defer.Deferred:
        return defer.succeed(None)

    # --- applying the change feed (reactor thread) -------------------------------------------

    def apply_delta(self, d: Delta | None) -> None:
        if d is None or self.gone:
            return
        st = d.state
        if st is None:
            self.mark_deleted()
            return
        if st.highestmodseq <= self.synced:
            return  # old news: a later feed has covered it
        above, msgs, index = self.synced, self._msgs, self._index
        for kind, value in (d.folder_values or {}).items():
            self._folder_values.setdefault(kind, value)  # one set here meanwhile is newer
        if d.full:
            present = {m.uid for m in d.infos}
            expunged = [u for u in msgs if u not in present]
            index.restart(d.expunged, d.expunged_modseqs, st.vanished_floor)
        else:
            expunged = sorted(u for u in d.expunged if u in msgs)
            index.expunged(d.expunged, d.expunged_modseqs, above)
        for u in expunged:
            index.flags.removed(u, msgs.pop(u).flags)
        self._recent.difference_update(expunged)
        added, changed = self._merge(d.infos, st.first_recent_uid)
        index.changed(d.infos, above, len(self._msgs))
        index.trim(st.vanished_floor)
        self.uidvalidity = st.uidvalidity
        self.uidnext = st.uidnext
        self.highestmodseq = self.synced = st.highestmodseq
        self._first_recent = st.first_recent_uid
        self._keywords = st.keywords
        for what, uids in ((EXPUNGED, expunged), (ADDED, added), (FLAGS, changed)):
            self._listeners.tell(self, what, uids)
            self.account.folder_news(self, what, uids)

    def _merge(self, infos: list[PgMessageInfo], first_recent: int) -> tuple[list[int], list[int]]:
        msgs, by_flag = self._msgs, self._index.flags
        added: list[int] = []
        changed: list[int] = []
        last = next(reversed(msgs)) if msgs else 0
        unsorted = False
        for info in infos:
            uid = info.uid
            old = msgs.get(uid)
            if old is None:
                msgs[uid] = info
                by_flag.added(uid, info.flags)
                added.append(uid)
                if uid < last:
                    unsorted = True
                if uid >= first_recent:
                    self._recent.add(uid)
            elif old.modseq != info.modseq or old.flags != info.flags:
                msgs[uid] = info
                if old.flags != info.flags:
                    by_flag.changed(uid, old.flags, info.flags)
                    changed.append(uid)
        if unsorted:
            self._msgs = dict(sorted(msgs.items()))
        return added, changed

    def mark_deleted(self) -> None:
        """The folder was deleted (here or on another node)."""
        if self.gone:
            return
        gone = list(self._msgs)
        self._msgs = {}
        self._index.restart((), (), self._index.floor)
        self._recent.clear()
        self.gone = True
        self.store.forget_folder(self)
        self._listeners.tell(self, EXPUNGED, gone)
        self.account.folder_news(self, EXPUNGED, gone)

    def notified(self, modseq: int) -> None:
        """A NOTIFY for this folder arrived."""
        if modseq < 0 or modseq > self.synced:
            self.sync().addErrback(lambda f: log.warn("{name}: change feed failed: {e}", name=self.name,
                                                       e=describe(f.value)))

    def sync(self) -> defer.Deferred:
        """Fetch and apply the change feed.  Callers arriving while one
        fetch runs share the next one (which starts after them)."""
        d: defer.Deferred = defer.Deferred()
        self._sync_waiters.append(d)
        if not self._syncing:
            self._start_sync()
        return d

    def _start_sync(self) -> None:
        waiters, self._sync_waiters = self._sync_waiters, []
        self._syncing = True
        r = self.store.db.run(folder_sql.delta, self.id, self.synced, self.decode)
        r.addCallback(self.apply_delta)

        def finish(result: Any) -> None:
            self._syncing = False
            for w in waiters:
                if isinstance(result, Failure):
                    w.errback(result)
                else:
                    w.callback(None)
            if self._sync_waiters and not self.gone:
                self._start_sync()
            elif self._sync_waiters:
                waiting, self._sync_waiters = self._sync_waiters, []
                for w in waiting:
                    w.callback(None)

        r.addBoth(finish)

    # --- reads -----------------------------------------------------------------------------------

    def messages(self) -> list[MessageInfo]:
        return list(self._msgs.values())

    def get(self, uid: int) -> MessageInfo | None:
        return self._msgs.get(uid)

    def uids(self) -> list[int]:
        return list(self._msgs)

    def __len__(self) -> int:
        return len(self._msgs)

    def _info(self, uid: int) -> PgMessageInfo:
        m = self._msgs.get(uid)
        if m is None:
            raise MessageGone(f"message {uid} was expunged")
        return m

    def open_message(self, uid: int) -> BinaryIO:
        m = self._info(uid)
        f = self.store.bodies.open(m.blob)
        if f is not None:
            return f
        return self.store.blocking_reader(m.blob, m.size)

    def save_date(self, uid: int) -> float | None:
        m = self._msgs.get(uid)
        if m is None:
            return None
        return m.saved if m.saved is not None else m.internaldate

    def pop3_uidl(self, uid: int) -> str:
        m = self._info(uid)
        return m.pop3 or "%08x%08x" % (uid, self.uidvalidity)

    def refresh(self) -> defer.Deferred:
        if self.gone:
            return defer.succeed(None)
        return self.sync()

    def claim_recent(self) -> set:
        r, self._recent = self._recent, set()
        if r:
            upto = max(r) + 1
            if upto > self._first_recent:
                self._first_recent = upto
                d = self.store.db.run(folder_sql.claim_recent, self.id, upto)
                d.addErrback(lambda f: log.warn("{name}: \\Recent not recorded: {e}", name=self.name,
                                                e=describe(f.value)))
        return r

    def peek_recent(self) -> set:
        return set(self._recent)

    def add_listener(self, listener: Any) -> None:
        self._listeners.add(listener)

    def remove_listener(self, listener: Any) -> None:
        self._listeners.remove(listener)
        if not self._listeners:
            self.account.folder_idle(self)

    def has_listeners(self) -> bool:
        return bool(self._listeners)

    def keywords(self) -> list[str]:
        return list(self._keywords)

    def total_size(self) -> int:
        return sum(m.size for m in self._msgs.values())

    # --- flag sets (issue 10) and CONDSTORE/QRESYNC (issue 9), from memory ---------------------

    def uids_with_flag(self, flag: str) -> set[int]:
        return self._index.flags.uids(flag, self._msgs)

    def changed_since(self, modseq: int) -> list[int]:
        return self._index.changed_since(modseq, self._msgs)

    def vanished_since(self, modseq: int) -> list[int]:
        return self._index.vanished_since(modseq, self.uidnext, self._msgs)

    @property
    def vanished_floor(self) -> int:
        return self._index.floor

    # --- derived values -------------------------------------------------------------------------

    def get_cached(self, uid: int, kind: str) -> bytes | None:
        m = self._msgs.get(uid)
        return None if m is None else self.store.values.get(m.blob, kind)

    def set_cached(self, uid: int, kind: str, value: bytes) -> None:
        m = self._msgs.get(uid)
        if m is not None:
            self.store.remember_value(m.blob, kind, bytes(value))

    def get_cached_many(self, uids: Iterable[int], kind: str) -> dict[int, bytes]:
        msgs, get = self._msgs, self.store.values.get
        out = {}
        for u in uids:
            m = msgs.get(u)
            if m is not None:
                v = get(m.blob, kind)
                if v is not None:
                    out[u] = v
        return out

    # folder-wide derived values (SORT/THREAD, issue 9): read with the folder, written in the
    # background with the per-message values; another node's later value is seen on its next load
    def get_folder_cached(self, kind: str) -> bytes | None:
        return self._folder_values.get(kind)

    def set_folder_cached(self, kind: str, value: bytes) -> None:
        value = self._folder_values[kind] = bytes(value)
        self.store.remember_folder_value(self.id, kind, value)

    def prefetch(self, uids: Iterable[int], kinds: Iterable[str] = (), body: str | None = None) -> defer.Deferred:
        """Make the synchronous reads of these messages local: cached values
        of ``kinds`` (``get_cached``), and for ``body`` "header" the start
        of each body, for "full" the whole body (``open_message``), of the
        messages that lack one of ``kinds`` (all of them if no kinds are
        given).  Bodies over a megabyte go to a spool file, streamed."""
        infos = [m for m in map(self._msgs.get, uids) if m is not None]
        return self.store.prefetch_messages(infos, list(kinds), body)

    # --- changes --------------------------------------------------------------------------------

    def _flags(self, flags: Iterable[str]) -> tuple[int, list[str]]:
        """Validated flags, keywords spelled as the folder already does."""
        known = {k.lower(): k for k in self._keywords}
        return split_flags({known.get(f.lower(), f) for f in normalize_flags(flags)})

    def guard(self) -> None:
        if self.gone:
            raise NoSuchFolder(f"{self.name} was deleted")

    def append(self, source: Any, flags: Iterable[str] = (), internaldate: float | None = None) -> defer.Deferred:
        try:
            self.guard()
            bits, keywords = self._flags(flags)
        except StoreError:
            return defer.fail()
        date = time.time() if internaldate is None else float(internaldate)
        d = self.store.spool(source)
        d.addCallback(lambda body: self.submit(NewMessage(body, bits, keywords, date)))
        return d

    def submit(self, item: NewMessage) -> defer.Deferred:
        """Store a spooled message; concurrent ones go in one transaction,
        except under a quota, where each is checked on its own."""
        if self.gone:
            item.body.discard()
            return defer.fail(NoSuchFolder(f"{self.name} was deleted"))
        quota = self.account.quota_check(self.name)
        if quota is not None:
            return self._append_batch([item], quota).addCallback(lambda uids: uids[0])
        return self._batch.submit(item)

    def _append_batch(self, items: list[NewMessage], quota: QuotaCheck | None = None) -> defer.Deferred:
        d = self.store.db.run(folder_sql.append, self.id, items, self.store.blobs, self.synced, self.decode,
                              quota)

        def stored(result: tuple[list[int], Delta | None]) -> list[int]:
            uids, delta = result
            self.apply_delta(delta)
            for it, uid in zip(items, uids, strict=True):
                m = self._msgs.get(uid)
                if m is not None:
                    self.store.keep_body(m.blob, it.body)
            return uids

        def failed(f: Any) -> Any:
            if f.check(NoSuchFolder):
                self.sync().addErrback(lambda _: None)  # learn of the deletion
            return f

        d.addCallbacks(stored, failed)
        d.addBoth(_discard_bodies, items)
        return d

    def store_flags(self, uids: Iterable[int], flags: Iterable[str], mode: str) -> defer.Deferred:
        try:
            bits, keywords = self._flag_change(flags, mode)
        except StoreError:
            return defer.fail()
        # what this node holds may be behind another node's change not heard of yet: the
        # database decides which messages change (a STORE that changes nothing costs a query)
        targets = [u for u in dict.fromkeys(uids) if u in self._msgs]
        if not targets:
            return defer.succeed([])
        d = self.store.db.run(folder_sql.store_flags, self.id, targets, bits, keywords, mode, self.synced,
                              self.decode)
        return d.addCallback(self.applied)

    def store_flags_unchanged_since(self, uids: Iterable[int], flags: Iterable[str], mode: str,
                                    unchangedsince: int) -> defer.Deferred:
        """See IFolder: tested and changed in one transaction under the
        folder lock, against the database's mod-sequences (another node's
        change not yet heard of here counts)."""
        try:
            bits, keywords = self._flag_change(flags, mode)
        except StoreError:
            return defer.fail()
        targets = sorted(u for u in set(uids) if u in self._msgs)
        if not targets:
            return defer.succeed(([], []))
        d = self.store.db.run(folder_sql.store_flags_unchanged_since, self.id, targets, bits, keywords, mode,
                              int(unchangedsince), self.synced, self.decode)

        def done(result: tuple[list[int], list[int], Delta]) -> tuple[list[int], list[int]]:
            changed, modified, delta = result
            self.apply_delta(delta)
            return changed, modified

        return d.addCallback(done)

    def _flag_change(self, flags: Iterable[str], mode: str) -> tuple[int, list[str]]:
        """(bits, keywords) of a STORE; StoreError if it cannot be."""
        if mode not in ("+", "-", "="):
            raise StoreError(f"bad flag mode {mode!r}")
        self.guard()
        return self._flags(flags)

    def applied(self, result: tuple[list[int], Delta]) -> list[int]:
        done, delta = result
        self.apply_delta(delta)
        return done

    def expunge(self, uids: Iterable[int] | None = None) -> defer.Deferred:
        try:
            self.guard()
        except StoreError:
            return defer.fail()
        if uids is None:
            wanted: list[int] | None = None  # the database knows (another node may have set \Deleted)
        else:
            wanted = sorted(u for u in set(uids) if u in self._msgs)
            if not wanted:
                return defer.succeed([])
        d = self.store.db.run(folder_sql.expunge, self.id, wanted, self.synced, self.decode)

        def done(result: tuple[list[int], list[int], Delta]) -> list[int]:
            gone, blobs, delta = result
            self.apply_delta(delta)
            self.store.collect_blobs(blobs)
            return gone

        return d.addCallback(done)

    def touch_modseq(self, uids: Iterable[int]) -> defer.Deferred:
        """See IFolder.touch_modseq (issue 12); the change feed tells the
        listeners, who re-send the unchanged flags."""
        wanted = [u for u in dict.fromkeys(uids) if u in self._msgs]
        if not wanted:
            return defer.succeed([])
        d = self.store.db.run(folder_sql.touch, self.id, wanted, self.synced, self.decode)
        return d.addCallback(self.applied)

    def copy_to(self, uids: Iterable[int], target: Any, move: bool = False) -> defer.Deferred:
        """``move``: the caller expunges the sources next (IMAP MOVE), so a
        copy within one owner's mailboxes does not grow usage: no quota check.
        Into another user's handle (issue 12): needs its ``i``; the flags the
        copier may not set there are taken off the copies right after."""
        if getattr(target, "unwrap", None) is not None:
            return self._copy_in(uids, target, move)
        if not isinstance(target, PgFolder) or target.store is not self.store:
            return defer.fail(StoreError("copy between different stores is not supported"))
        try:
            self.guard()
            target.guard()
        except StoreError:
            return defer.fail()
        wanted = sorted(u for u in set(uids) if u in self._msgs)
        if not wanted:
            return defer.succeed([])
        quota = None if move and target.account is self.account else target.account.quota_check(target.name)
        d = self.store.db.run(folder_sql.copy, self.id, wanted, target.id, target.synced, target.decode, quota)
        return d.addCallback(target.applied)


    def _copy_in(self, uids: Iterable[int], handle: Any, move: bool) -> defer.Deferred:
        if "i" not in handle.rights:
            return defer.fail(NoPermission("Permission denied: storing into the target needs the 'i' right"))
        target = handle.unwrap()
        flags = {u: m.flags for u in set(uids) if (m := self._msgs.get(u)) is not None}

        def strip(pairs: list[tuple[int, int]]) -> defer.Deferred:
            extra: dict[frozenset, list[int]] = {}
            for src, new in pairs:
                drop = flags[src] - handle.incoming(flags[src])
                if drop:
                    extra.setdefault(frozenset(drop), []).append(new)
            d: defer.Deferred = defer.succeed(None)
            for drop, news in extra.items():
                d.addCallback(_then, target.store_flags, news, drop, "-")
            return d.addCallback(_then, handle.copied_in, pairs, flags)

        return self.copy_to(uids, target, move).addCallback(strip)


def _then(_: object, call: Callable[..., Any], *args: Any) -> Any:
    return call(*args)


def _discard_bodies(result: Any, items: list[NewMessage]) -> Any:
    for it in items:
        it.body.discard()
    return result

