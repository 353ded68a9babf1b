"""The live folder: one object per open mailbox, shared by every session.

Disk work runs in worker threads through :class:`DiskFolder`, one operation
at a time (a DeferredLock per folder); its results are applied here, in the
reactor thread, where listeners are told.  Reads (``messages``, ``get``,
``open_message``) are synchronous and served from memory.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable
from typing import BinaryIO

from twisted.internet import defer, threads
from twisted.logger import Logger
from zope.interface import implementer

from mailsrv.store import index
from mailsrv.store.cache import FolderCache
from mailsrv.store.interfaces import IFolder, MessageGone, MessageInfo, NoSuchFolder, StoreError
from mailsrv.store.maildir import (
    DiskFolder,
    NewFile,
    OpResult,
    SyncResult,
    dir_stamps,
    finish_tmp,
    flags_from_info,
    locate,
    message_path,
    new_key_base,
    normalize_flags,
    uidlist_id,
    write_tmp,
)

log = Logger(namespace="mailsrv.store")
# A directory whose mtime is this close to the moment we looked at it may
# change again within the same timestamp tick, unseen: look once more later
# (Dovecot's "don't trust a too recent mtime").  Generous: some file systems
# keep whole seconds.
RECENT_NS = index.RECENT_NS
# While a folder stays open its snapshot is brought up to date at most this
# often (and when it is closed).
INDEX_INTERVAL = 300.0


class GroupCommit:
    """Group commit: items submitted while a batch is being written wait
    and go together in the next one (one uid list write + fsync for all).
    ``run`` takes a list of items and fires with a list of results aligned
    with it (None for an item that could not be stored)."""

    def __init__(self, run: Callable[[list], defer.Deferred]) -> None:
        self._run = run
        self._pending: list = []
        self._busy = False

    def submit(self, item) -> defer.Deferred:
        d = defer.Deferred()
        self._pending.append((item, d))
        if not self._busy:
            self._next()
        return d

    def _next(self) -> None:
        batch, self._pending = self._pending, []
        if not batch:
            self._busy = False
            return
        self._busy = True

        def done(results):
            for (_item, d), r in zip(batch, results):
                if r is None:
                    d.errback(StoreError("the message could not be stored"))
                else:
                    d.callback(r)

        def failed(f):
            for _item, d in batch:
                d.errback(f)

        d = defer.maybeDeferred(self._run, [item for item, _d in batch])
        d.addCallbacks(done, failed)
        d.addErrback(lambda f: log.failure("group commit", f))
        d.addBoth(lambda _: self._next())


class MaildirMessageInfo(MessageInfo):
    """MessageInfo plus where the file is; ``internaldate`` (the file's
    mtime) is read only when asked for, so opening a big folder needs no
    per-file stat.  Never mutated in its public fields: a flag change makes
    a new object, so snapshots handed out stay snapshots."""

    __slots__ = ("sub", "info", "pop3", "_folder", "_idate")

    def __init__(self, folder: Folder, uid: int, key: str, size: int, flags: frozenset, modseq: int,
                 sub: str, info: str | None, pop3: str | None = None,
                 internaldate: float | None = None) -> None:
        self.uid = uid
        self.key = key
        self.size = size
        self.flags = flags
        self.modseq = modseq
        self.sub = sub
        self.info = info
        self.pop3 = pop3
        self._folder = folder
        self._idate = internaldate

    @property  # type: ignore[override]
    def internaldate(self) -> float:
        if self._idate is None:
            self._idate = self._folder._mtime(self)
        return self._idate

    @internaldate.setter
    def internaldate(self, value: float) -> None:
        self._idate = value

    def _with(self, flags: frozenset, modseq: int, sub: str, info: str | None) -> MaildirMessageInfo:
        return MaildirMessageInfo(self._folder, self.uid, self.key, self.size, flags, modseq, sub, info,
                                  self.pop3, self._idate)


class MaildirTempFile:
    """A file in the folder's tmp/ that the IMAP layer streams an APPEND
    literal into; ``append`` then renames it into place instead of copying.
    ``discard()`` it if it is not appended (``with`` does that on error or
    when it was never appended)."""

    def __init__(self, path: str) -> None:
        self.name = path
        self.file = open(path, "x+b")
        self._claimed = False

    def write(self, data: bytes) -> int:
        return self.file.write(data)

    def read(self, n: int = -1) -> bytes:
        return self.file.read(n)

    def seek(self, pos: int, whence: int = 0) -> int:
        return self.file.seek(pos, whence)

    def tell(self) -> int:
        return self.file.tell()

    def flush(self) -> None:
        self.file.flush()

    def fileno(self) -> int:
        return self.file.fileno()

    def close(self) -> None:
        """Close the handle; the file stays for ``append`` (or ``discard``)."""
        self.file.close()

    @property
    def closed(self) -> bool:
        return self.file.closed

    def discard(self) -> None:
        self.file.close()
        if not self._claimed:
            try:
                os.unlink(self.name)
            except FileNotFoundError:
                pass

    def _claim(self) -> None:
        if self._claimed:
            raise StoreError("this temporary file was already appended")
        self._claimed = True
        self.file.close()

    def __enter__(self) -> MaildirTempFile:
        return self

    def __exit__(self, *exc) -> None:
        self.discard()


@implementer(IFolder)
class Folder:
    """See :class:`IFolder`.  Built and registered by the Account."""

    def __init__(self, account, name: str, path: str) -> None:
        self.account = account
        self.name = name
        self.path = path
        self.uidvalidity = 0
        self.uidnext = 1
        self.highestmodseq = account._modseq_floor(name)
        self._disk = DiskFolder(path)
        self._batch = GroupCommit(self._add_batch)
        self._lock = defer.DeferredLock()
        self._msgs: dict[int, MaildirMessageInfo] = {}
        self._by_key: dict[str, int] | None = {}
        self._keywords: list[str | None] = []
        self._flag_memo: dict[str | None, frozenset] = {}
        self._listeners: list = []
        self._recent: set = set()
        self._stamps = None
        self._ul_id = None
        self._unsure = True  # unknown state: the next refresh does a full scan
        self._new_recheck = False  # re-list new/ on the next refresh
        self._cur_recheck = False  # full scan on the next refresh
        self._cache = FolderCache(path)
        self._loaded: defer.Deferred | None = None
        self._waiters: list[defer.Deferred] = []
        self._gone = False
        self.use_index = account.store.use_index
        self.opened_from_index = False
        self._gen = 0  # bumped whenever the view changes
        self._index_gen = -1  # the view the snapshot on disk holds
        self._index_tried = time.time()
        self._index_writing: defer.Deferred | None = None
        self._index_again = False

    # --- lifecycle ---------------------------------------------------------------

    def _load(self) -> defer.Deferred:
        """First look (snapshot or scan, then the message objects built, all
        in a worker thread; the reactor only swaps them in); fires with
        self.  Messages still in new/ are \\Recent."""
        def work():
            modseq = self.highestmodseq
            return threads.deferToThread(self._open_in_thread, modseq).addCallback(self._apply_opened, modseq)

        def done(_):
            self._loaded = True
            waiters, self._waiters = self._waiters, []
            for w in waiters:
                w.callback(self)
            return self

        def failed(f):
            waiters, self._waiters = self._waiters, []
            for w in waiters:
                w.errback(f)
            return f

        self._loaded = False
        return self._lock.run(work).addCallbacks(done, failed)

    def _ready(self) -> defer.Deferred:
        if self._loaded:
            return defer.succeed(self)
        d = defer.Deferred()
        self._waiters.append(d)
        return d

    def _serial(self, work: Callable[[], defer.Deferred]) -> defer.Deferred:
        if self._gone:
            return defer.fail(NoSuchFolder(f"{self.name} was deleted"))

        def guarded():
            if self._gone:
                raise NoSuchFolder(f"{self.name} was deleted")
            return work()

        return self._lock.run(guarded)

    def close(self) -> defer.Deferred:
        """Flush the cache and bring the snapshot up to date (the server is
        stopping or the folder goes idle); fires when the snapshot is written."""
        self.account._remember_modseq(self.name, self.highestmodseq)
        self._cache.close()
        self._save_index()
        return self._index_idle()

    # --- opening and the snapshot ----------------------------------------------------

    def _open_in_thread(self, modseq: int) -> tuple[SyncResult, bool, dict[int, MaildirMessageInfo],
                                                      dict[str | None, frozenset], set[int]]:
        """Worker thread: the view and its message objects, nothing shared
        touched (the folder's lock keeps every other operation out)."""
        res, from_index = self._disk.open(self.use_index)
        memo: dict[str | None, frozenset] = {}
        msgs: dict[int, MaildirMessageInfo] = {}
        recent: set[int] = set()
        keywords = res.keywords
        info_cls = MaildirMessageInfo
        for uid, key, sub, info, size, pop3 in res.entries:
            fl = memo.get(info)
            if fl is None:
                fl = memo[info] = flags_from_info(info, keywords)
            msgs[uid] = info_cls(self, uid, key, size, fl, modseq, sub, info, pop3)
            if sub == "new":
                recent.add(uid)
        return res, from_index, msgs, memo, recent

    def _apply_opened(self, opened, modseq: int) -> None:
        """Reactor: adopt what the thread built, in one cheap step."""
        res, from_index, msgs, memo, recent = opened
        if self._msgs or modseq != self.highestmodseq or self._gone:
            self._apply_full(res, notify=False)  # cannot happen under the lock; stay correct anyway
        else:
            self.uidvalidity = res.uidvalidity
            self._cache.set_uidvalidity(res.uidvalidity)
            self._set_keywords(res.keywords)
            self._flag_memo = memo
            self._msgs = msgs
            self._by_key = None
            self._recent |= recent
            self.uidnext = res.uidnext
            self._apply_state(res.stamps, res.ul_id, res.scanned_at, full=True)
        self.opened_from_index = from_index
        if from_index:
            self._index_gen = self._gen
        else:
            self._save_index(res)

    def _save_index(self, res: SyncResult | None = None) -> defer.Deferred | None:
        """Write the snapshot in a worker thread (never waited for) when the
        view changed since the last one and is one the next open may trust:
        no rescan pending.  ``res``: the full scan just applied, whose
        entries are the view already as tuples."""
        if (not self.use_index or self._gone or not self._loaded and res is None or self._unsure
                or self._stamps is None or self._ul_id is None or self._new_recheck or self._cur_recheck
                or self._gen == self._index_gen):
            return None
        if self._index_writing is not None:
            self._index_again = True
            return self._index_writing
        gen, path = self._gen, self.path
        self._index_tried = time.time()
        state = (self.uidvalidity, self.uidnext, self._ul_id, self._stamps)
        if res is not None:
            entries: Iterable = res.entries
        else:
            msgs = list(self._msgs.values())
            entries = ((m.uid, m.key, m.sub, m.info, m.size, m.pop3) for m in msgs)

        def done(saved: bool) -> None:
            self._index_writing = None
            if saved:
                self._index_gen = gen
            if self._index_again:
                self._index_again = False
                self._save_index()

        def failed(f) -> None:
            self._index_writing = None
            log.warn("{path}: snapshot not written: {err}", path=path, err=f.getErrorMessage())

        self._index_writing = d = threads.deferToThread(index.save, path, *state, entries)
        d.addCallbacks(done, failed)
        return d

    def _index_idle(self) -> defer.Deferred:
        """Fires once no snapshot write is running (tests, benchmarks)."""
        if self._index_writing is None:
            return defer.succeed(None)
        d = defer.Deferred()
        self._index_writing.addBoth(lambda r: (d.callback(None), r)[1])
        return d

    # --- applying results (reactor thread) -------------------------------------------

    def _flags(self, info: str | None) -> frozenset:
        f = self._flag_memo.get(info)
        if f is None:
            f = self._flag_memo[info] = flags_from_info(info, self._keywords)
        return f

    def _set_keywords(self, keywords: list[str | None] | None) -> None:
        if keywords is not None and keywords != self._keywords:
            self._keywords = list(keywords)
            self._flag_memo = {}

    def _apply_full(self, res: SyncResult, notify: bool = True) -> None:
        old = self._msgs
        expunged: list[int] = []
        if res.uidvalidity != self.uidvalidity and old:
            log.critical("{path}: UIDVALIDITY changed {old} -> {new}; every session must resync",
                         path=self.path, old=self.uidvalidity, new=res.uidvalidity)
            expunged = list(old)
            old = {}
            self._recent.clear()
        self.uidvalidity = res.uidvalidity
        self._cache.set_uidvalidity(res.uidvalidity)
        kw_changed = res.keywords != self._keywords
        self._set_keywords(res.keywords)
        new: dict[int, MaildirMessageInfo] = {}
        added: list[int] = []
        changed: list[int] = []
        flags = self._flags
        if not old:
            self._load_entries(res.entries, new, bump=notify)
            added = list(new)
        bumped = False
        for uid, key, sub, info, size, pop3 in (res.entries if old else ()):
            m = old.get(uid)
            if m is not None and m.key == key:
                if m.info != info or m.sub != sub or kw_changed:
                    fl = flags(info)
                    if fl != m.flags:
                        self.highestmodseq += 1
                        m = m._with(fl, self.highestmodseq, sub, info)
                        changed.append(uid)
                    else:
                        m.sub, m.info = sub, info
                new[uid] = m
            else:
                if not bumped:
                    self.highestmodseq += 1
                    bumped = True
                new[uid] = MaildirMessageInfo(self, uid, key, size, flags(info), self.highestmodseq,
                                              sub, info, pop3)
                added.append(uid)
                if sub == "new":
                    self._recent.add(uid)
        if not expunged:
            expunged = [u for u in old if u not in new]
        self._msgs = new
        self._by_key = None
        self.uidnext = res.uidnext
        self._apply_state(res.stamps, res.ul_id, res.scanned_at, full=True)
        if expunged:
            self._recent.difference_update(expunged)
            self._cache.forget(expunged)
        if notify:
            self._tell("messages_expunged", expunged)
            self._tell("messages_added", added)
            self._tell("flags_changed", changed)

    def _load_entries(self, entries, into: dict[int, MaildirMessageInfo], bump: bool) -> None:
        """The first load of a folder (or a reload under a new UIDVALIDITY):
        the tight loop, nothing to compare with."""
        if bump and entries:
            self.highestmodseq += 1
        modseq = self.highestmodseq
        memo, keywords, recent = self._flag_memo, self._keywords, self._recent
        info_cls = MaildirMessageInfo
        for uid, key, sub, info, size, pop3 in entries:
            fl = memo.get(info)
            if fl is None:
                fl = memo[info] = flags_from_info(info, keywords)
            into[uid] = info_cls(self, uid, key, size, fl, modseq, sub, info, pop3)
            if sub == "new":
                recent.add(uid)

    def _keymap(self) -> dict[str, int]:
        """Maildir key -> UID, built when first needed (not at open)."""
        if self._by_key is None:
            self._by_key = {m.key: u for u, m in self._msgs.items()}
        return self._by_key

    def _apply_state(self, stamps, ul_id, scanned_at: float, full: bool) -> None:
        """Remember which directory mtimes and uid list our view matches, so
        the next refresh is a stat unless someone else changed something."""
        self._gen += 1
        self._stamps = stamps
        self._ul_id = ul_id
        if stamps is None:
            self._unsure = True
            return
        self._unsure = False
        at = scanned_at * 1e9
        self._new_recheck = at - stamps[0] < RECENT_NS
        if full:
            self._cur_recheck = at - stamps[1] < RECENT_NS

    def _apply_added(self, res: OpResult, recent: bool) -> list[int]:
        if res.full is not None:
            self._apply_full(res.full)
        self._set_keywords(res.keywords)
        added = []
        fresh = [e for e in res.entries if e[0] not in self._msgs]
        if fresh:
            self.highestmodseq += 1  # a new message is a change CONDSTORE clients must see
        for uid, key, sub, info, size, pop3 in fresh:
            if self._msgs and uid < next(reversed(self._msgs)):
                self._msgs = dict(sorted(self._msgs.items()))
            self._msgs[uid] = MaildirMessageInfo(self, uid, key, size, self._flags(info),
                                                 self.highestmodseq, sub, info, pop3)
            if self._by_key is not None:
                self._by_key[key] = uid
            added.append(uid)
            if recent or sub == "new":
                self._recent.add(uid)
        self.uidnext = max(self.uidnext, res.uidnext)
        if res.full is None:
            self._apply_state(res.stamps, res.ul_id, res.scanned_at, full=False)
        self._tell("messages_added", added)
        return [e[0] for e in res.entries]

    def _tell(self, what: str, uids: list[int]) -> None:
        if not uids:
            return
        for listener in list(self._listeners):
            try:
                getattr(listener, what)(self, list(uids))
            except Exception:
                log.failure("listener {l!r} failed in {what}", l=listener, what=what)

    # --- reads ---------------------------------------------------------------------

    def messages(self) -> list[MessageInfo]:
        return list(self._msgs.values())

    def get(self, uid: int) -> MessageInfo | None:
        return self._msgs.get(uid)

    def uids(self) -> list[int]:
        """All UIDs, ascending (cheaper than messages() when that is all)."""
        return list(self._msgs)

    def __len__(self) -> int:
        return len(self._msgs)

    def open_message(self, uid: int) -> BinaryIO:
        m = self._msgs.get(uid)
        if m is None:
            raise MessageGone(f"message {uid} was expunged")
        try:
            return open(message_path(self.path, m.sub, m.key, m.info), "rb")
        except FileNotFoundError:
            where = locate(self.path, m.key)
            if where is None:
                self._unsure = True
                raise MessageGone(f"message {uid} was removed from disk") from None
            m.sub, m.info = where
            return open(message_path(self.path, m.sub, m.key, m.info), "rb")

    def message_path(self, uid: int) -> str:
        """Current path of a message's file (for sendfile-style streaming)."""
        m = self._msgs.get(uid)
        if m is None:
            raise MessageGone(f"message {uid} was expunged")
        return message_path(self.path, m.sub, m.key, m.info)

    def _mtime(self, m: MaildirMessageInfo) -> float:
        try:
            return os.stat(message_path(self.path, m.sub, m.key, m.info)).st_mtime
        except FileNotFoundError:
            where = locate(self.path, m.key)
            if where is None:
                return 0.0
            m.sub, m.info = where
            return os.stat(message_path(self.path, m.sub, m.key, m.info)).st_mtime

    def pop3_uidl(self, uid: int) -> str:
        m = self._msgs.get(uid)
        if m is None:
            raise MessageGone(f"message {uid} was expunged")
        return m.pop3 or "%08x%08x" % (uid, self.uidvalidity)

    def claim_recent(self) -> set:
        r, self._recent = self._recent, set()
        return r

    def peek_recent(self) -> set:
        return set(self._recent)

    def add_listener(self, listener) -> None:
        if listener not in self._listeners:
            self._listeners.append(listener)

    def remove_listener(self, listener) -> None:
        if listener in self._listeners:
            self._listeners.remove(listener)
        if not self._listeners:
            self.account._folder_idle(self)

    def has_listeners(self) -> bool:
        return bool(self._listeners)

    def keywords(self) -> list[str]:
        return [k for k in self._keywords if k]

    def total_size(self) -> int:
        return sum(m.size for m in self._msgs.values())

    def get_cached(self, uid: int, kind: str) -> bytes | None:
        if uid not in self._msgs:
            return None
        return self._cache.get(uid, kind)

    def set_cached(self, uid: int, kind: str, value: bytes) -> None:
        if uid in self._msgs:
            self._cache.set(uid, kind, value)

    def get_cached_many(self, uids: Iterable[int], kind: str) -> dict[int, bytes]:
        msgs = self._msgs
        return self._cache.get_many([u for u in uids if u in msgs], kind)

    # --- sync with the outside -------------------------------------------------------------

    def _changed_on_disk(self) -> str | None:
        """None (nothing to do: the usual case, three stats), "new" (only
        new/ may have changed: re-list it) or "full" (rescan)."""
        if self._unsure or self._stamps is None or self._cur_recheck:
            return "full"
        try:
            stamps = dir_stamps(self.path)
        except FileNotFoundError:
            return None
        if stamps[1] != self._stamps[1] or uidlist_id(self.path) != self._ul_id:
            return "full"
        if stamps[0] != self._stamps[0] or self._new_recheck:
            return "new"
        return None

    def refresh(self) -> defer.Deferred:
        if self._gen != self._index_gen and time.time() - self._index_tried > INDEX_INTERVAL:
            self._save_index()
        if self._gone or self._changed_on_disk() is None:
            return defer.succeed(None)

        def work():
            how = self._changed_on_disk()
            if how is None:
                return None
            if how == "new":
                return threads.deferToThread(self._disk.sync_new).addCallback(self._apply_new)
            return threads.deferToThread(self._disk.sync).addCallback(self._apply_full)

        return self._serial(work)

    def _apply_new(self, res: OpResult) -> None:
        self._apply_added(res, recent=True)

    # --- mutations ---------------------------------------------------------------------------

    def tmp_file(self) -> MaildirTempFile:
        """A file in tmp/ to stream a message into; pass it to append()."""
        return MaildirTempFile(os.path.join(self.path, "tmp", new_key_base()))

    def append(self, source, flags: Iterable[str] = (), internaldate: float | None = None) -> defer.Deferred:
        try:
            flagset = normalize_flags(flags)
        except StoreError:
            return defer.fail()
        tmpfile = source if isinstance(source, MaildirTempFile) else None
        if tmpfile is not None:
            try:
                tmpfile._claim()
            except StoreError:
                return defer.fail()

        def in_thread() -> OpResult:
            if tmpfile is not None:
                src = tmpfile.name
                size, vsize = finish_tmp(src, internaldate)
            else:
                src, size, vsize = write_tmp(self.path, source, internaldate)
            try:
                return self._disk.add([NewFile(src, "rename", flagset, size, vsize)])
            except BaseException:
                try:
                    os.unlink(src)
                except OSError:
                    pass
                raise

        def work():
            return threads.deferToThread(in_thread).addCallback(
                lambda res: self._apply_added(res, recent=True)[0])

        d = self._serial(work)
        if tmpfile is not None:
            def cleanup(f):
                try:
                    os.unlink(tmpfile.name)
                except OSError:
                    pass
                return f
            d.addErrback(cleanup)
        return d

    def _deliver(self, item: NewFile) -> defer.Deferred:
        """A delivery (a finished file in tmp/): into new/ with a UID, in
        one batch with the deliveries that arrive meanwhile."""
        return self._batch.submit(item)

    def _add_batch(self, items: list[NewFile]) -> defer.Deferred:
        def apply(res: OpResult) -> list:
            uids = self._apply_added(res, recent=True)
            out: list = [None] * len(items)
            for i, uid in zip(res.order, uids):
                out[i] = uid
            return out

        def work():
            return threads.deferToThread(self._disk.add, items).addCallback(apply)

        return self._serial(work).addErrback(_discard_sources, items)

    def _add_links(self, items: list[NewFile]) -> defer.Deferred:
        """copy_to's target half: fires with (placed item indexes, uids)."""
        def work():
            return threads.deferToThread(self._disk.add, items).addCallback(
                lambda res: (res.order, self._apply_added(res, recent=True)))
        return self._serial(work)

    def store_flags(self, uids: Iterable[int], flags: Iterable[str], mode: str) -> defer.Deferred:
        if mode not in ("+", "-", "="):
            return defer.fail(StoreError(f"bad flag mode {mode!r}"))
        try:
            flagset = normalize_flags(flags)
        except StoreError:
            return defer.fail()
        uids = list(uids)

        def work():
            known = {k.lower(): k for k in self._keywords if k}
            fl = frozenset(known.get(f.lower(), f) for f in flagset)
            items = []
            for uid in uids:
                m = self._msgs.get(uid)
                if m is None:
                    continue
                if mode == "+":
                    new = m.flags | fl
                elif mode == "-":
                    new = m.flags - fl
                else:
                    new = fl
                if new != m.flags:
                    items.append((m.key, m.sub, m.info, new))
            if not items:
                return []
            return threads.deferToThread(self._disk.set_flags, items).addCallback(self._apply_flags)

        return self._serial(work)

    def _apply_flags(self, res: OpResult) -> list[int]:
        self._set_keywords(res.keywords)
        self._apply_state(res.stamps, res.ul_id, res.scanned_at, full=False)
        changed = []
        for key, where in res.keys.items():
            uid = self._keymap().get(key)
            m = self._msgs.get(uid) if uid is not None else None
            if m is None:
                continue
            if where is None:
                self._unsure = True  # removed behind our back: the next refresh expunges it
                continue
            self.highestmodseq += 1
            self._msgs[uid] = m._with(self._flags(where[1]), self.highestmodseq, where[0], where[1])
            changed.append(uid)
        changed.sort()
        self._tell("flags_changed", changed)
        return changed

    def expunge(self, uids: Iterable[int] | None = None) -> defer.Deferred:
        wanted = None if uids is None else list(uids)

        def work():
            if wanted is None:
                targets = [m for m in self._msgs.values() if "\\Deleted" in m.flags]
            else:
                targets = [self._msgs[u] for u in sorted(set(wanted)) if u in self._msgs]
            if not targets:
                return []
            items = [(m.key, m.sub, m.info) for m in targets]
            return threads.deferToThread(self._disk.expunge, items).addCallback(
                lambda res: self._apply_expunged([m.uid for m in targets], res))

        return self._serial(work)

    def _apply_expunged(self, uids: list[int], res: OpResult) -> list[int]:
        gone = [u for u in uids if u in self._msgs]
        for u in gone:
            m = self._msgs.pop(u)
            if self._by_key is not None:
                self._by_key.pop(m.key, None)
        if gone:
            self.highestmodseq += 1
        self._recent.difference_update(gone)
        self._cache.forget(gone)
        self._apply_state(res.stamps, res.ul_id, res.scanned_at, full=False)
        self._tell("messages_expunged", gone)
        return gone

    def copy_to(self, uids: Iterable[int], target: Folder) -> defer.Deferred:
        if not isinstance(target, Folder):
            return defer.fail(StoreError("copy between different stores is not supported"))
        if self._gone:
            return defer.fail(NoSuchFolder(f"{self.name} was deleted"))
        srcs = [self._msgs[u] for u in sorted(set(uids)) if u in self._msgs]
        if not srcs:
            return defer.succeed([])
        items = [NewFile(message_path(self.path, m.sub, m.key, m.info), "link", m.flags, 0, m.size,
                         self.path, m.key) for m in srcs]
        d = target._add_links(items)
        d.addCallback(lambda r: [(srcs[i].uid, uid) for i, uid in zip(r[0], r[1])])
        return d

    # --- account-level events -----------------------------------------------------------

    def _deleted(self) -> None:
        """The folder was deleted: every message is gone for its sessions."""
        gone = list(self._msgs)
        self._msgs = {}
        self._by_key = {}
        self._recent.clear()
        self._gone = True
        self.account._remember_modseq(self.name, self.highestmodseq)
        self._cache.close()
        self._tell("messages_expunged", gone)

    def _moved(self, name: str, path: str) -> None:
        self.name = name
        self.path = path
        self._disk.path = path
        self._cache.moved(path)



def _discard_sources(failure, items: list[NewFile]):
    """A failed batch: remove its files still waiting in tmp/ (the senders
    get the error and will retry), then pass the failure on."""
    for it in items:
        if it.how == "rename":
            try:
                os.unlink(it.src)
            except OSError:
                pass
    return failure
