"""The live folder: one object per open mailbox, shared by every session.

Disk work runs in worker threads through :class:`DiskFolder`, one operation
at a time (a DeferredLock per folder); its results are applied here, in the
reactor thread, where listeners are told.  Reads (``messages``, ``get``,
``open_message``) are synchronous and served from memory.

What the folder needs of its account is :class:`FolderHost`; the snapshot
of its view is written by :class:`mailsrv.store.index.SnapshotWriter`, the
news reach sessions through :class:`mailsrv.store.listeners.Listeners`.

About 700 lines as one class on purpose: the message table, the state of
the disk it matches (mtimes, uid list identity, rechecks due) and the
operations that change both are one consistency unit; they are grouped
below as lifecycle, snapshot, applying results, reads, sync, mutations.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from typing import Any, BinaryIO, Protocol

from twisted.internet import defer, threads
from twisted.logger import Logger
from zope.interface import implementer

from mailsrv.store import index
from mailsrv.store.cache import FolderCache
from mailsrv.store.diskfolder import (
    DiskFolder,
    NewFile,
    OpResult,
    Stamps,
    SyncResult,
    dir_stamps,
    discard_sources,
)
from mailsrv.store.entry import EntryLike, EntryTable
from mailsrv.store.filename import filename_size, flags_from_info, message_path, new_key_base
from mailsrv.store.flags import normalize_flags
from mailsrv.store.fsutil import unlink_quiet
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
from mailsrv.store.maildir import finish_tmp, locate, write_tmp
from mailsrv.store.message import MaildirMessageInfo, MaildirTempFile
from mailsrv.store.uidlist import read_guid
from mailsrv.store.uidstate import StatId, uidlist_id

log = Logger(namespace="mailsrv.store")
# A directory whose mtime is this close to the moment we looked at it may
# change again within the same timestamp tick, unseen: look once more later
# (Dovecot's "don't trust a too recent mtime").  Generous: some file systems
# keep whole seconds.
RECENT_NS = index.RECENT_NS

SAVEDATE = "savedate"  # cache kind: the save date, as text

Opened = tuple[SyncResult, bool, dict[int, MaildirMessageInfo], dict[str | None, frozenset[str]], set[int]]


class FolderHost(Protocol):
    """What a live folder asks of the account that made it."""

    def modseq_floor(self, name: str) -> int:
        """Where this folder's mod-sequences start (never below where the
        last object for it stopped)."""

    def remember_modseq(self, name: str, value: int) -> None:
        """The folder object goes away at ``value``."""

    def folder_idle(self, folder: Folder) -> None:
        """The last listener left."""

    def folder_news(self, folder: Folder, what: str, uids: list[int]) -> None:
        """What the folder tells its listeners, for the account's own
        listeners (NOTIFY): listeners.ADDED, FLAGS or EXPUNGED."""

    def account_usage(self, name: str, octets: int, messages: int, check: bool) -> None:
        """Worker thread (quota, issue 12): usage of this folder changed by
        ``octets``/``messages``; with ``check``, raise OverQuota instead
        when the change would go beyond the owner's limit."""

    def folder_busy(self, folder: Folder) -> None:
        """The first listener came (instant notice: mailsrv.store.watch)."""


def stored_size(m: MaildirMessageInfo) -> int:
    """What a message counts for quota: its file size (``S=``), as Dovecot counts."""
    s = filename_size(m.key, "S")
    return s if s is not None else m.size


@implementer(IFolder)
class Folder:
    """See :class:`IFolder`.  Built and registered by the Account."""

    rights = RIGHTS  # the owner's object; others get a mailsrv.store.rightsfolder.RightsFolder
    instant_notice = False  # set while mailsrv.store.watch has an inotify watch on it (see IFolder)

    def __init__(self, account: FolderHost, name: str, path: str, use_index: bool = True) -> None:
        self.account = account
        self.name = name
        self.path = path
        self.uidvalidity = 0
        self.uidnext = 1
        self.highestmodseq = account.modseq_floor(name)
        self.use_index = use_index
        self.opened_from_index = False
        self._disk = DiskFolder(path)
        self._batch = GroupCommit(self._add_batch)
        self._lock = defer.DeferredLock()
        self._msgs: dict[int, MaildirMessageInfo] = {}
        self._by_key: dict[str, int] | None = {}
        self._keywords: list[str | None] = []
        self._flag_memo: dict[str | None, frozenset[str]] = {}
        self._listeners = Listeners(relay=account.folder_news)
        self._recent: set[int] = set()
        self._stamps: Stamps | None = None
        self._ul_id: StatId | None = None
        self._unsure = True  # unknown state: the next refresh does a full scan
        self._new_recheck = False  # re-list new/ on the next refresh
        self._cur_recheck = False  # full scan on the next refresh
        self._cache = FolderCache(path)
        self._loaded = False
        self._waiters: list[defer.Deferred[Folder]] = []
        self._gone = False
        self._snapshot = index.SnapshotWriter(path, self._save_snapshot)
        self._mailboxid: str | None = None

    # --- lifecycle (what the account calls) ---------------------------------------

    def load(self) -> defer.Deferred[Folder]:
        """First look (snapshot or scan, then the message objects built, all
        in a worker thread; the reactor only swaps them in); fires with
        self.  Messages still in new/ are \\Recent."""
        def work() -> defer.Deferred[None]:
            modseq = self.highestmodseq
            return threads.deferToThread(self._open_in_thread, modseq).addCallback(self._apply_opened, modseq)

        def done(_: object) -> Folder:
            self._loaded = True
            waiters, self._waiters = self._waiters, []
            for w in waiters:
                w.callback(self)
            return self

        def failed(f: Any) -> Any:
            waiters, self._waiters = self._waiters, []
            for w in waiters:
                w.errback(f)
            return f

        self._loaded = False
        return self._lock.run(work).addCallbacks(done, failed)

    def ready(self) -> defer.Deferred[Folder]:
        """Fires with self once loaded (at once if it is)."""
        if self._loaded:
            return defer.succeed(self)
        d: defer.Deferred[Folder] = defer.Deferred()
        self._waiters.append(d)
        return d

    def run_exclusive(self, work: Callable[[], Any]) -> defer.Deferred[Any]:
        """Run ``work`` (which may return a Deferred) while no other
        operation of this folder runs: for account-level changes (delete,
        rename) that must not interleave with the folder's own."""
        return self._lock.run(work)

    def quiesce(self) -> defer.Deferred[None]:
        """Fires once the operations queued so far have finished."""
        return self._lock.run(lambda: None)

    @property
    def gone(self) -> bool:
        """The folder was deleted; every operation fails with NoSuchFolder."""
        return self._gone

    def _serial(self, work: Callable[[], Any]) -> defer.Deferred[Any]:
        if self._gone:
            return defer.fail(NoSuchFolder(f"{self.name} was deleted"))

        def guarded() -> Any:
            if self._gone:
                raise NoSuchFolder(f"{self.name} was deleted")
            return work()

        return self._lock.run(guarded)

    def close(self) -> defer.Deferred[None]:
        """Flush the cache and bring the snapshot up to date (the server is
        stopping or the folder goes idle); fires when the snapshot is written."""
        self.account.remember_modseq(self.name, self.highestmodseq)
        self._cache.close()
        self._save_snapshot()
        return self._snapshot.idle()

    def deleted(self) -> None:
        """The account deleted the folder: every message is gone for its sessions."""
        gone = list(self._msgs)
        self._msgs = {}
        self._by_key = {}
        self._recent.clear()
        self._gone = True
        self.account.remember_modseq(self.name, self.highestmodseq)
        self._cache.close()
        self._listeners.tell(self, EXPUNGED, gone)

    def moved(self, name: str, path: str) -> None:
        """The account renamed the folder (with its operations held off)."""
        self.name = name
        self.path = path
        self._disk.path = path
        self._snapshot.path = path
        self._cache.moved(path)

    def move_messages_to(self, target_dir: str) -> defer.Deferred[None]:
        """RENAME INBOX (RFC 3501): every message file moves into the folder
        at ``target_dir`` (which numbers them when it is next opened); this
        folder rescans, so its sessions see them expunged."""
        def work() -> defer.Deferred[None]:
            return threads.deferToThread(self._disk.move_all_to, target_dir).addCallback(
                lambda _: threads.deferToThread(self._disk.sync)).addCallback(self._apply_full)
        return self._lock.run(work)

    # --- opening and the snapshot ----------------------------------------------------

    def _open_in_thread(self, modseq: int) -> Opened:
        """Worker thread: the view and its message objects, nothing shared
        touched (the folder's lock keeps every other operation out)."""
        res, from_index = self._disk.open(self.use_index)
        memo: dict[str | None, frozenset[str]] = {}
        msgs: dict[int, MaildirMessageInfo] = {}
        recent: set[int] = set()
        keywords = res.keywords
        info_cls = MaildirMessageInfo
        for uid, key, sub, info, size, pop3 in res.entries.rows():
            fl = memo.get(info)
            if fl is None:
                fl = memo[info] = flags_from_info(info, keywords)
            msgs[uid] = info_cls(self, uid, key, size, fl, modseq, sub, info, pop3)
            if sub == "new":
                recent.add(uid)
        return res, from_index, msgs, memo, recent

    def _apply_opened(self, opened: Opened, modseq: int) -> None:
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
            self._snapshot.current()
        else:
            self._save_snapshot(res.entries)

    def _view_trusted(self, loading: bool) -> bool:
        """Our view is one the next open may take from a snapshot: loaded
        (or being loaded from a scan), no rescan or recheck pending."""
        return (self.use_index and not self._gone and (self._loaded or loading) and not self._unsure
                and self._stamps is not None and self._ul_id is not None
                and not self._new_recheck and not self._cur_recheck)

    def _save_snapshot(self, entries: EntryTable | None = None) -> defer.Deferred[bool] | None:
        """Have the snapshot written if our view changed and is trusted.
        ``entries``: a full scan's, just applied (the view as it is)."""
        if not self._view_trusted(loading=entries is not None):
            return None
        assert self._ul_id is not None and self._stamps is not None
        view: Iterable[EntryLike] = entries if entries is not None else list(self._msgs.values())
        return self._snapshot.save(self.uidvalidity, self.uidnext, self._ul_id, self._stamps, view)

    def snapshot_idle(self) -> defer.Deferred[None]:
        """Fires once no snapshot write is running (tests, benchmarks)."""
        return self._snapshot.idle()

    @property
    def scans(self) -> int:
        """Full directory scans done so far (what tests and benchmarks watch)."""
        return self._disk.scans

    # --- applying results (reactor thread) -------------------------------------------

    def _flags(self, info: str | None) -> frozenset[str]:
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
            self._mailboxid = None  # a rebuilt uid list has a new GUID
        self.uidvalidity = res.uidvalidity
        self._cache.set_uidvalidity(res.uidvalidity)
        kw_changed = res.keywords != self._keywords
        self._set_keywords(res.keywords)
        new: dict[int, MaildirMessageInfo] = {}
        if old:
            added, changed = self._merge(old, res.entries, new, kw_changed)
        else:
            self._load_entries(res.entries, new, bump=notify)
            added, changed = list(new), []
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
            self._listeners.tell(self, EXPUNGED, expunged)
            self._listeners.tell(self, ADDED, added)
            self._listeners.tell(self, FLAGS, changed)

    def _merge(self, old: dict[int, MaildirMessageInfo], entries: EntryTable, into: dict[int, MaildirMessageInfo],
               kw_changed: bool) -> tuple[list[int], list[int]]:
        """A rescan against the view we had: keeps the objects of unchanged
        messages, makes new ones for changed flags (a modseq each) and for
        arrivals (one modseq for all).  Returns (added, flags changed)."""
        added: list[int] = []
        changed: list[int] = []
        flags = self._flags
        bumped = False
        for uid, key, sub, info, size, pop3 in entries.rows():
            m = old.get(uid)
            if m is not None and m.key == key:
                if m.info != info or m.sub != sub or kw_changed:
                    fl = flags(info)
                    if fl != m.flags:
                        self.highestmodseq += 1
                        m = m.with_flags(fl, self.highestmodseq, sub, info)
                        changed.append(uid)
                    else:
                        m.sub, m.info = sub, info
                into[uid] = m
                continue
            if not bumped:
                self.highestmodseq += 1
                bumped = True
            into[uid] = MaildirMessageInfo(self, uid, key, size, flags(info), self.highestmodseq, sub, info, pop3)
            added.append(uid)
            if sub == "new":
                self._recent.add(uid)
        return added, changed

    def _load_entries(self, entries: EntryTable, into: dict[int, MaildirMessageInfo], bump: bool) -> None:
        """The first load of a folder (or a reload under a new UIDVALIDITY):
        the tight loop, nothing to compare with."""
        if bump and entries:
            self.highestmodseq += 1
        modseq = self.highestmodseq
        memo, keywords, recent = self._flag_memo, self._keywords, self._recent
        info_cls = MaildirMessageInfo
        for uid, key, sub, info, size, pop3 in entries.rows():
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

    def _apply_state(self, stamps: Stamps | None, ul_id: StatId | None, scanned_at: float, full: bool) -> None:
        """Remember which directory mtimes and uid list our view matches, so
        the next refresh is a stat unless someone else changed something."""
        self._snapshot.changed()
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
        fresh = [e for e in res.entries if e.uid not in self._msgs]
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
        self._listeners.tell(self, ADDED, added)
        return [e.uid for e in res.entries]

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

    def file_mtime(self, m: MaildirMessageInfo) -> float:
        """A message's internal date: its file's mtime (0 once it is gone)."""
        try:
            return os.stat(message_path(self.path, m.sub, m.key, m.info)).st_mtime
        except FileNotFoundError:
            where = locate(self.path, m.key)
            if where is None:
                return 0.0
            m.sub, m.info = where
            return os.stat(message_path(self.path, m.sub, m.key, m.info)).st_mtime

    # --- issue 12: OBJECTID, SAVEDATE -----------------------------------------------

    @property
    def mailboxid(self) -> str:
        """The uid list's folder GUID (read once; a load or rescan has
        written it)."""
        if self._mailboxid is None:
            self._mailboxid = read_guid(self.path) or ""
        return self._mailboxid or "V%d" % self.uidvalidity

    def save_date(self, uid: int) -> float | None:
        m = self._msgs.get(uid)
        if m is None:
            return None
        cached = self._cache.get(uid, SAVEDATE)
        if cached is not None:
            return float(cached)
        try:
            when = os.stat(message_path(self.path, m.sub, m.key, m.info)).st_ctime
        except FileNotFoundError:
            where = locate(self.path, m.key)
            if where is None:
                return None
            m.sub, m.info = where
            when = os.stat(message_path(self.path, m.sub, m.key, m.info)).st_ctime
        value = b"%.3f" % when
        self._cache.set(uid, SAVEDATE, value)
        return float(value)

    def pop3_uidl(self, uid: int) -> str:
        m = self._msgs.get(uid)
        if m is None:
            raise MessageGone(f"message {uid} was expunged")
        return m.pop3 or "%08x%08x" % (uid, self.uidvalidity)

    def claim_recent(self) -> set[int]:
        r, self._recent = self._recent, set()
        return r

    def peek_recent(self) -> set[int]:
        return set(self._recent)

    def add_listener(self, listener: Any) -> None:
        if not self._listeners:
            self.account.folder_busy(self)
        self._listeners.add(listener)

    def remove_listener(self, listener: Any) -> None:
        self._listeners.remove(listener)
        if not self._listeners:
            self.account.folder_idle(self)

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

    def prefetch(self, uids: Iterable[int], kinds: Iterable[str] = (), body: str | None = None) -> defer.Deferred[None]:
        """Every read here is local already."""
        return defer.succeed(None)

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

    def refresh(self) -> defer.Deferred[None]:
        if self._snapshot.due():
            self._save_snapshot()
        if self._gone or self._changed_on_disk() is None:
            return defer.succeed(None)

        def work() -> defer.Deferred[None] | None:
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

    def append(self, source: Any, flags: Iterable[str] = (), internaldate: float | None = None
               ) -> defer.Deferred[int]:
        tmpfile = source if isinstance(source, MaildirTempFile) else None
        try:
            flagset = normalize_flags(flags)
            if tmpfile is not None:
                tmpfile.claim()
        except StoreError:
            return defer.fail()

        def in_thread() -> OpResult:
            if tmpfile is not None:
                src = tmpfile.name
                size, vsize = finish_tmp(src, internaldate)
            else:
                src, size, vsize = write_tmp(self.path, source, internaldate)
            try:
                self.account.account_usage(self.name, size, 1, check=True)
            except BaseException:
                unlink_quiet(src)
                raise
            try:
                return self._disk.add([NewFile(src, "rename", flagset, size, vsize)])
            except BaseException:
                unlink_quiet(src)
                self.account.account_usage(self.name, -size, -1, check=False)
                raise

        def work() -> defer.Deferred[int]:
            return threads.deferToThread(in_thread).addCallback(
                lambda res: self._apply_added(res, recent=True)[0])

        d = self._serial(work)
        if tmpfile is not None:
            def cleanup(f: Any) -> Any:
                unlink_quiet(tmpfile.name)
                return f
            d.addErrback(cleanup)
        return d

    def deliver_file(self, item: NewFile) -> defer.Deferred[int]:
        """A delivery (a finished file in tmp/): into new/ with a UID, in
        one batch with the deliveries that arrive meanwhile."""
        return self._batch.submit(item)

    def _add_batch(self, items: list[NewFile]) -> defer.Deferred[list[int | None]]:
        def apply(res: OpResult) -> list[int | None]:
            uids = self._apply_added(res, recent=True)
            out: list[int | None] = [None] * len(items)
            for i, uid in zip(res.order, uids, strict=True):
                out[i] = uid
            return out

        def work() -> defer.Deferred[list[int | None]]:
            return threads.deferToThread(self._disk.add, items).addCallback(apply)

        def failed(f: Any) -> Any:
            discard_sources(items)
            return f

        return self._serial(work).addErrback(failed)

    def _add_links(self, items: list[NewFile], octets: int = 0, check: bool = True
                   ) -> defer.Deferred[tuple[list[int], list[int]]]:
        """copy_to's target half: fires with (placed item indexes, uids).
        ``octets``: what the copies count for quota (checked unless a move
        within one owner)."""
        def in_thread() -> OpResult:
            self.account.account_usage(self.name, octets, len(items), check)
            try:
                res = self._disk.add(items)
            except BaseException:
                self.account.account_usage(self.name, -octets, -len(items), False)
                raise
            if len(res.order) < len(items):  # sources that vanished were not copied
                lost = [i for i in range(len(items)) if i not in set(res.order)]
                self.account.account_usage(self.name, 0, -len(lost), False)
            return res

        def work() -> defer.Deferred[tuple[list[int], list[int]]]:
            return threads.deferToThread(in_thread).addCallback(
                lambda res: (res.order, self._apply_added(res, recent=True)))
        return self._serial(work)

    def store_flags(self, uids: Iterable[int], flags: Iterable[str], mode: str) -> defer.Deferred[list[int]]:
        if mode not in ("+", "-", "="):
            return defer.fail(StoreError(f"bad flag mode {mode!r}"))
        try:
            flagset = normalize_flags(flags)
        except StoreError:
            return defer.fail()
        wanted = list(uids)

        def work() -> defer.Deferred[list[int]] | list[int]:
            items = self._flag_changes(wanted, flagset, mode)
            if not items:
                return []
            return threads.deferToThread(self._disk.set_flags, items).addCallback(self._apply_flags)

        return self._serial(work)

    def _flag_changes(self, uids: list[int], flagset: frozenset[str], mode: str
                      ) -> list[tuple[str, str, str | None, frozenset[str]]]:
        """(key, sub, info, new flags) of the messages whose flags ``mode``
        really changes; keywords spelled as the folder already knows them."""
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
        return items

    def _apply_flags(self, res: OpResult) -> list[int]:
        self._set_keywords(res.keywords)
        self._apply_state(res.stamps, res.ul_id, res.scanned_at, full=False)
        changed = []
        keymap = self._keymap()
        for key, where in res.keys.items():
            uid = keymap.get(key)
            m = self._msgs.get(uid) if uid is not None else None
            if m is None or uid is None:
                continue
            if where is None:
                self._unsure = True  # removed behind our back: the next refresh expunges it
                continue
            self.highestmodseq += 1
            self._msgs[uid] = m.with_flags(self._flags(where[1]), self.highestmodseq, where[0], where[1])
            changed.append(uid)
        changed.sort()
        self._listeners.tell(self, FLAGS, changed)
        return changed

    def expunge(self, uids: Iterable[int] | None = None) -> defer.Deferred[list[int]]:
        wanted = None if uids is None else list(uids)

        def work() -> defer.Deferred[list[int]] | list[int]:
            if wanted is None:
                targets = [m for m in self._msgs.values() if "\\Deleted" in m.flags]
            else:
                targets = [self._msgs[u] for u in sorted(set(wanted)) if u in self._msgs]
            if not targets:
                return []
            items = [(m.key, m.sub, m.info) for m in targets]
            octets = sum(stored_size(m) for m in targets)

            def in_thread() -> OpResult:
                res = self._disk.expunge(items)
                self.account.account_usage(self.name, -octets, -len(items), False)
                return res

            return threads.deferToThread(in_thread).addCallback(
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
        self._listeners.tell(self, EXPUNGED, gone)
        return gone

    def copy_to(self, uids: Iterable[int], target: IFolder, move: bool = False
                ) -> defer.Deferred[list[tuple[int, int]]]:
        handle: Any = None
        unwrap = getattr(target, "unwrap", None)  # another user's handle (rightsfolder)
        if unwrap is not None:
            if "i" not in target.rights:
                return defer.fail(NoPermission("Permission denied: storing into the target needs the 'i' right"))
            handle, target = target, unwrap()
        if not isinstance(target, Folder):
            return defer.fail(StoreError("copy between different stores is not supported"))
        if self._gone:
            return defer.fail(NoSuchFolder(f"{self.name} was deleted"))
        srcs = [self._msgs[u] for u in sorted(set(uids)) if u in self._msgs]
        if not srcs:
            return defer.succeed([])
        # into another user's mailbox: only the flags the copier may set there (RFC 4314 4)
        items = [NewFile(message_path(self.path, m.sub, m.key, m.info), "link",
                         handle.incoming(m.flags) if handle is not None else m.flags, 0, m.size,
                         self.path, m.key) for m in srcs]
        d = target._add_links(items, sum(stored_size(m) for m in srcs),
                              check=not (move and target.account is self.account))
        pairs: defer.Deferred[list[tuple[int, int]]] = d.addCallback(
            lambda r: [(srcs[i].uid, uid) for i, uid in zip(r[0], r[1], strict=True)])
        if handle is not None:
            pairs.addCallback(handle.copied_in, {m.uid: m.flags for m in srcs})
        return pairs

    def touch_modseq(self, uids: Iterable[int]) -> defer.Deferred[list[int]]:
        """See IFolder.touch_modseq (issue 12).  Mod-sequences are kept in
        memory here, so this is a new one for each message, told to nobody."""
        wanted = list(uids)

        def work() -> list[int]:
            hit = [u for u in wanted if u in self._msgs]
            if hit:
                self.highestmodseq += 1
                for u in hit:
                    m = self._msgs[u]
                    self._msgs[u] = m.with_flags(m.flags, self.highestmodseq, m.sub, m.info)
            return hit

        return self._serial(work)
