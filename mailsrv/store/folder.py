"""The live folder: one object per open mailbox, shared by every session.

Disk work runs in worker threads through :class:`DiskFolder`, one operation
at a time (a DeferredLock per folder); its results are applied here, in the
reactor thread, where listeners are told.  Reads (``messages``, ``get``,
``open_message``) are synchronous and served from memory.

What the folder needs of its account is :class:`FolderHost`; the snapshot
of its view is written by :class:`mailsrv.store.index.SnapshotWriter`, the
news reach sessions through :class:`mailsrv.store.listeners.Listeners`.

About a thousand lines as one class on purpose: the message table, the
state of the disk it matches (mtimes, uid list identity, rechecks due),
the mod-sequence record kept with it and the operations that change them
are one consistency unit; they are grouped below as lifecycle, snapshot,
applying results, reads, sync, mutations.
"""

from __future__ import annotations

import os
from array import array
from bisect import bisect_right
from collections.abc import Callable, Iterable
from typing import Any, BinaryIO, Protocol

from twisted.internet import defer, threads
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from mailsrv.store import index
from mailsrv.store.cache import FOLDER_WIDE, FolderCache
from mailsrv.store.changes import Changes, ModseqRecorder
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
from mailsrv.store.flagindex import FlagIndex
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
from mailsrv.store.modseq import Loaded, trim_point
from mailsrv.store.uidlist import read_guid
from mailsrv.store.uidstate import StatId, uidlist_id

log = Logger(namespace="mailsrv.store")
# A directory whose mtime is this close to the moment we looked at it may
# change again within the same timestamp tick, unseen: look once more later
# (Dovecot's "don't trust a too recent mtime").  Generous: some file systems
# keep whole seconds.
RECENT_NS = index.RECENT_NS

SAVEDATE = "savedate"  # cache kind: the save date, as text

Opened = tuple[SyncResult, bool, dict[int, MaildirMessageInfo], dict[str | None, frozenset[str]], set[int], Loaded]


class FolderHost(Protocol):
    """What a live folder asks of the account that made it."""

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
        self.highestmodseq = 1
        self.vanished_floor = 1  # vanished_since() is exact from here on
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
        # mod-sequences: recorded by the thread side, the expunge record
        # (ascending by mod-sequence) kept here for VANISHED (EARLIER)
        self._modseqs = ModseqRecorder(path)
        self._gone_uids = array("q")
        self._gone_modseqs = array("q")
        self._by_flag = FlagIndex()  # flag -> UIDs, for flag searches
        # (mod-sequence, UID) of every change, ascending: CHANGEDSINCE and
        # QRESYNC without a look at every message; built on first use
        self._changes: tuple[array, array] | None = None
        self._mailboxid: str | None = None

    # --- lifecycle (what the account calls) ---------------------------------------

    def load(self) -> defer.Deferred[Folder]:
        """First look (snapshot or scan, then the message objects built, all
        in a worker thread; the reactor only swaps them in); fires with
        self.  Messages still in new/ are \\Recent."""
        def work() -> defer.Deferred[None]:
            return threads.deferToThread(self._open_in_thread).addCallback(self._apply_opened)

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
        """Flush the cache, bring the snapshot up to date and close the
        mod-sequence record (the server is stopping or the folder goes
        idle); fires when both are written."""
        def work() -> defer.Deferred[None]:
            # after the operations queued so far (a flag change's renames too)
            self._cache.close()
            self._save_snapshot()
            if self._gone:
                return defer.succeed(None)
            return threads.deferToThread(self._modseqs.close, self._msgs, self.vanished_floor)

        d: defer.Deferred[None] = self._lock.run(work)
        d.addErrback(lambda f: log.failure("{path}: closing the mod-sequence record", f, path=self.path))
        return d.addCallback(lambda _: self._snapshot.idle())

    def deleted(self) -> None:
        """The account deleted the folder: every message is gone for its sessions."""
        gone = list(self._msgs)
        self._msgs = {}
        self._by_key = {}
        self._by_flag.reset()
        self._recent.clear()
        self._gone = True
        self._cache.close()
        threads.deferToThread(self._modseqs.drop)
        self._listeners.tell(self, EXPUNGED, gone)

    def moved(self, name: str, path: str) -> None:
        """The account renamed the folder (with its operations held off)."""
        self.name = name
        self.path = path
        self._disk.path = path
        self._snapshot.path = path
        self._cache.moved(path)
        self._modseqs.moved(path)

    def move_messages_to(self, target_dir: str) -> defer.Deferred[None]:
        """RENAME INBOX (RFC 3501): every message file moves into the folder
        at ``target_dir`` (which numbers them when it is next opened); this
        folder rescans, so its sessions see them expunged."""
        def work() -> defer.Deferred[None]:
            return threads.deferToThread(self._disk.move_all_to, target_dir).addCallback(
                lambda _: threads.deferToThread(self._rescan_in_thread)).addCallback(self._apply_rescan)
        return self._lock.run(work)

    # --- opening and the snapshot ----------------------------------------------------

    def _open_in_thread(self) -> Opened:
        """Worker thread: the view, its mod-sequences and its message
        objects, nothing shared touched (the folder's lock keeps every
        other operation out)."""
        res, from_index = self._disk.open(self.use_index)
        self._redo_pending(res)
        loaded = self._modseqs.load(res.uidvalidity, res.uidnext, res.entries, res.keywords)
        memo: dict[str | None, frozenset[str]] = {}
        msgs: dict[int, MaildirMessageInfo] = {}
        recent: set[int] = set()
        keywords = res.keywords
        info_cls = MaildirMessageInfo
        for (uid, key, sub, info, size, pop3), modseq in zip(res.entries.rows(), loaded.modseqs, strict=True):
            fl = memo.get(info)
            if fl is None:
                fl = memo[info] = flags_from_info(info, keywords)
            msgs[uid] = info_cls(self, uid, key, size, fl, modseq, sub, info, pop3)
            if sub == "new":
                recent.add(uid)
        return res, from_index, msgs, memo, recent, loaded

    def _redo_pending(self, res: SyncResult) -> None:
        """Worker thread, opening: flag changes answered before the process
        stopped but not yet in the file names are put there now."""
        items = self._modseqs.pending(res.uidvalidity, res.entries, res.keywords)
        if not items:
            return
        log.info("{path}: finishing {n} flag changes an earlier run recorded", path=self.path, n=len(items))
        done = self._disk.set_flags(items)
        entries = res.entries
        row = {key: i for i, key in enumerate(entries.keys)}
        for key, where in done.keys.items():
            if where is not None:
                entries.subs[row[key]], entries.infos[row[key]] = where
        res.keywords = list(done.keywords or res.keywords)
        res.stamps = done.stamps or res.stamps

    def _apply_opened(self, opened: Opened) -> None:
        """Reactor: adopt what the thread built, in one cheap step (a live
        folder is loaded once, before anything else runs)."""
        res, from_index, msgs, memo, recent, loaded = opened
        self.uidvalidity = res.uidvalidity
        self._cache.set_uidvalidity(res.uidvalidity)
        self._set_keywords(res.keywords)
        self._flag_memo = memo
        self._msgs = msgs
        self._by_key = None
        self._by_flag.reset()
        self._recent |= recent
        self.uidnext = res.uidnext
        self._adopt_modseqs(loaded)
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
        """Fires once the operations queued so far are done and no snapshot
        write is running (tests, benchmarks)."""
        return self.quiesce().addCallback(lambda _: self._snapshot.idle())

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

    # mod-sequences: the thread side decided them (mailsrv.store.changes)

    def _adopt_modseqs(self, loaded: Loaded) -> None:
        """A (re)opened record: the highest and the expunge record."""
        self._changes = None
        self.highestmodseq = loaded.highest
        self.vanished_floor = loaded.vanished_floor
        self._gone_uids = array("q", loaded.gone_uids)
        self._gone_modseqs = array("q", loaded.gone_modseqs)

    def _note_changes(self, ch: Changes) -> None:
        """An operation's mod-sequence and expunges, as recorded."""
        if not ch.modseq:
            return
        self.highestmodseq = max(self.highestmodseq, ch.modseq)
        if self._changes is not None and ch.flags:
            if len(self._changes[0]) > 2 * len(self._msgs) + 1000:
                self._changes = None  # mostly stale entries: rebuilt when next asked
            else:
                self._changes[0].extend([ch.modseq] * len(ch.flags))
                self._changes[1].extend(ch.flags)
        if ch.expunged:
            self._gone_uids.extend(ch.expunged)
            self._gone_modseqs.extend([ch.modseq] * len(ch.expunged))
            excess = trim_point(len(self._gone_uids))
            if excess:
                self.vanished_floor = max(self.vanished_floor, self._gone_modseqs[excess - 1])
                del self._gone_uids[:excess]
                del self._gone_modseqs[:excess]

    def _rescan_in_thread(self) -> tuple[SyncResult, Changes]:
        """Worker thread: a full scan and what it found changed."""
        res = self._disk.sync()
        return res, self._modseqs.rescan(res.uidvalidity, res.uidnext, self.uidvalidity, res.entries,
                                         res.keywords, self._msgs)

    def _changes_of(self, res: OpResult) -> Changes:
        """Worker thread: the changes an add or a new/ sync made."""
        if res.full is not None:
            full = res.full
            return self._modseqs.rescan(full.uidvalidity, full.uidnext, self.uidvalidity, full.entries,
                                        full.keywords, self._msgs)
        keywords = res.keywords if res.keywords is not None else self._disk.keywords
        return self._modseqs.arrivals(((e.uid, e.info) for e in res.entries), keywords, self._msgs)

    def _apply_rescan(self, scanned: tuple[SyncResult, Changes]) -> None:
        self._apply_full(*scanned)

    def _apply_full(self, res: SyncResult, ch: Changes, notify: bool = True) -> None:
        old = self._msgs
        new: dict[int, MaildirMessageInfo] = {}
        if ch.reset is not None:
            if old:
                log.critical("{path}: UIDVALIDITY changed {old} -> {new}; every session must resync",
                             path=self.path, old=self.uidvalidity, new=res.uidvalidity)
            self._recent.clear()
            self._adopt_modseqs(ch.reset)
            self._mailboxid = None  # a rebuilt uid list has a new GUID
        self.uidvalidity = res.uidvalidity
        self._cache.set_uidvalidity(res.uidvalidity)
        self._set_keywords(res.keywords)
        if ch.reset is not None or not old:
            self._load_entries(res.entries, new, ch)
            added, changed, expunged = list(new), list[int](), list(old)
        else:
            added, changed = self._merge(old, res.entries, new, ch)
            expunged = ch.expunged
            self._note_changes(ch)
        self._msgs = new
        self._by_key = None
        self._by_flag.reset()
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
               ch: Changes) -> tuple[list[int], list[int]]:
        """A rescan against the view we had: keeps the objects of unchanged
        messages, makes new ones, at the rescan's mod-sequence, for changed
        flags and for arrivals.  Returns (added, flags changed)."""
        changed_flags, modseq = ch.flags, ch.modseq
        for uid, key, sub, info, size, pop3 in entries.rows():
            m = old.get(uid)
            fl = changed_flags.get(uid)
            if m is not None and m.key == key:
                if fl is not None:
                    m = m.with_flags(fl, modseq, sub, info)
                elif m.info != info or m.sub != sub:
                    m.sub, m.info = sub, info
                into[uid] = m
                continue
            into[uid] = MaildirMessageInfo(self, uid, key, size, fl if fl is not None else self._flags(info),
                                           modseq, sub, info, pop3)
            if sub == "new":
                self._recent.add(uid)
        return ch.added, ch.changed

    def _load_entries(self, entries: EntryTable, into: dict[int, MaildirMessageInfo], ch: Changes) -> None:
        """Everything anew (a first view, or one under a new UIDVALIDITY):
        the tight loop, nothing to compare with."""
        if ch.reset is not None:
            modseqs: Iterable[int] = ch.reset.modseqs
        else:
            self._note_changes(ch)
            modseqs = [ch.modseq or self.highestmodseq] * len(entries)
        memo, keywords, recent = self._flag_memo, self._keywords, self._recent
        info_cls = MaildirMessageInfo
        for (uid, key, sub, info, size, pop3), modseq in zip(entries.rows(), modseqs, strict=True):
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

    def _apply_added(self, res: OpResult, ch: Changes, recent: bool) -> list[int]:
        if res.full is not None:
            self._apply_full(res.full, ch)
        else:
            self._note_changes(ch)
        self._set_keywords(res.keywords)
        added = []
        fresh = [e for e in res.entries if e.uid not in self._msgs]
        for uid, key, sub, info, size, pop3 in fresh:
            if self._msgs and uid < next(reversed(self._msgs)):
                self._msgs = dict(sorted(self._msgs.items()))
            m = self._msgs[uid] = MaildirMessageInfo(self, uid, key, size, self._flags(info),
                                                     ch.modseq or self.highestmodseq, sub, info, pop3)
            self._by_flag.added(uid, m.flags)
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

    def uids_with_flag(self, flag: str) -> set[int]:
        return self._by_flag.uids(flag, self._msgs)

    def changed_since(self, modseq: int) -> list[int]:
        changes = self._changes
        if changes is None:
            order = sorted((m.modseq, u) for u, m in self._msgs.items())
            changes = self._changes = (array("q", (m for m, _u in order)), array("q", (u for _m, u in order)))
        i = bisect_right(changes[0], modseq)
        msgs = self._msgs
        return sorted({u for u in changes[1][i:] if (m := msgs.get(u)) is not None and m.modseq > modseq})

    def vanished_since(self, modseq: int) -> list[int]:
        if modseq >= self.vanished_floor:
            return sorted(self._gone_uids[bisect_right(self._gone_modseqs, modseq):])
        msgs = self._msgs  # the record no longer reaches back that far: everything missing
        return [u for u in range(1, self.uidnext) if u not in msgs]

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

    def get_folder_cached(self, kind: str) -> bytes | None:
        return self._cache.get(FOLDER_WIDE, kind)

    def set_folder_cached(self, kind: str, value: bytes) -> None:
        self._cache.set(FOLDER_WIDE, kind, value)

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
                return threads.deferToThread(self._added_in_thread, self._disk.sync_new).addCallback(self._apply_new)
            return threads.deferToThread(self._rescan_in_thread).addCallback(self._apply_rescan)

        return self._serial(work)

    def _apply_new(self, done: tuple[OpResult, Changes]) -> None:
        self._apply_added(done[0], done[1], recent=True)

    def _added_in_thread(self, op: Callable[..., OpResult], *args: Any) -> tuple[OpResult, Changes]:
        """Worker thread: an operation that adds messages, and its changes."""
        res = op(*args)
        return res, self._changes_of(res)

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

        def in_thread() -> tuple[OpResult, Changes]:
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
                res = self._disk.add([NewFile(src, "rename", flagset, size, vsize)])
            except BaseException:
                unlink_quiet(src)
                self.account.account_usage(self.name, -size, -1, check=False)
                raise
            return res, self._changes_of(res)

        def work() -> defer.Deferred[int]:
            return threads.deferToThread(in_thread).addCallback(
                lambda done: self._apply_added(done[0], done[1], recent=True)[0])

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
        def apply(done: tuple[OpResult, Changes]) -> list[int | None]:
            uids = self._apply_added(done[0], done[1], recent=True)
            out: list[int | None] = [None] * len(items)
            for i, uid in zip(done[0].order, uids, strict=True):
                out[i] = uid
            return out

        def work() -> defer.Deferred[list[int | None]]:
            return threads.deferToThread(self._added_in_thread, self._disk.add, items).addCallback(apply)

        def failed(f: Any) -> Any:
            discard_sources(items)
            return f

        return self._serial(work).addErrback(failed)

    def _add_links(self, items: list[NewFile], octets: int = 0, check: bool = True
                   ) -> defer.Deferred[tuple[list[int], list[int]]]:
        """copy_to's target half: fires with (placed item indexes, uids).
        ``octets``: what the copies count for quota (checked unless a move
        within one owner)."""
        def in_thread() -> tuple[OpResult, Changes]:
            self.account.account_usage(self.name, octets, len(items), check)
            try:
                res = self._disk.add(items)
            except BaseException:
                self.account.account_usage(self.name, -octets, -len(items), False)
                raise
            if len(res.order) < len(items):  # sources that vanished were not copied
                lost = [i for i in range(len(items)) if i not in set(res.order)]
                self.account.account_usage(self.name, 0, -len(lost), False)
            return res, self._changes_of(res)

        def work() -> defer.Deferred[tuple[list[int], list[int]]]:
            return threads.deferToThread(in_thread).addCallback(
                lambda done: (done[0].order, self._apply_added(done[0], done[1], recent=True)))
        return self._serial(work)

    def store_flags(self, uids: Iterable[int], flags: Iterable[str], mode: str) -> defer.Deferred[list[int]]:
        return self._store(uids, flags, mode, None).addCallback(lambda done: done[0])

    def store_flags_unchanged_since(self, uids: Iterable[int], flags: Iterable[str], mode: str,
                                    unchangedsince: int) -> defer.Deferred[tuple[list[int], list[int]]]:
        return self._store(uids, flags, mode, unchangedsince)

    def _store(self, uids: Iterable[int], flags: Iterable[str], mode: str, unchangedsince: int | None
               ) -> defer.Deferred[tuple[list[int], list[int]]]:
        """Fires with (changed, modified) - ``modified`` the messages left
        alone because their mod-sequence is above ``unchangedsince``; test
        and change are one operation - as soon as the change is recorded
        and in memory.  The renames that put the flags into the file names
        (one per message: 10,000 for a STORE 1:*) follow in the worker
        thread while the folder's next operations wait; the record keeps
        them pending until they are done, and a folder opened after a crash
        redoes what was pending (so a change answered OK is never lost)."""
        if mode not in ("+", "-", "="):
            return defer.fail(StoreError(f"bad flag mode {mode!r}"))
        try:
            flagset = normalize_flags(flags)
        except StoreError:
            return defer.fail()
        wanted = list(uids)
        result: defer.Deferred[tuple[list[int], list[int]]] = defer.Deferred()

        def work() -> defer.Deferred[None] | None:
            items, item_uids, modified = self._flag_changes(wanted, flagset, mode, unchangedsince)
            if not items:
                result.callback(([], modified))
                return None
            new_flags = [it[3] for it in items]

            def applied(done: tuple[Changes, list[str | None]]) -> defer.Deferred[None]:
                self._set_keywords(done[1])
                result.callback((self._apply_flags(done[0], item_uids), modified))
                renamed: defer.Deferred[OpResult] = threads.deferToThread(self._disk.set_flags, items)
                return renamed.addCallbacks(self._flags_on_disk, self._renames_failed, callbackArgs=(item_uids,),
                                            errbackArgs=(item_uids,))

            recorded: defer.Deferred[tuple[Changes, list[str | None]]] = threads.deferToThread(
                self._record_flags, list(zip(item_uids, new_flags, strict=True)))
            return recorded.addCallback(applied)

        def failed(f: Failure) -> None:
            if not result.called:
                result.errback(f)  # nothing was changed
            else:
                log.failure("{path}: flag change", f, path=self.path)

        self._serial(work).addErrback(failed)
        return result

    def _record_flags(self, changes: list[tuple[int, frozenset[str]]]) -> tuple[Changes, list[str | None]]:
        """Worker thread: letters for new keywords (TooManyKeywords before
        anything changes), then the write-ahead record, renames pending."""
        keywords = self._disk.use_keywords(fl for _u, fl in changes)
        return self._modseqs.flagged(changes), keywords

    def _flag_changes(self, uids: list[int], flagset: frozenset[str], mode: str, unchangedsince: int | None
                      ) -> tuple[list[tuple[str, str, str | None, frozenset[str]]], list[int], list[int]]:
        """(key, sub, info, new flags) of the messages whose flags ``mode``
        really changes, with their UIDs; keywords spelled as the folder
        already knows them; and the UIDs whose mod-sequence is above
        ``unchangedsince`` (not changed, RFC 7162 3.1.3)."""
        known = {k.lower(): k for k in self._keywords if k}
        fl = frozenset(known.get(f.lower(), f) for f in flagset)
        items = []
        item_uids = []
        modified = []
        msgs = self._msgs
        outcome: dict[frozenset[str], frozenset[str]] = {}  # old flags -> new: a handful of distinct sets
        for uid in uids:
            m = msgs.get(uid)
            if m is None:
                continue
            if unchangedsince is not None and m.modseq > unchangedsince:
                modified.append(uid)
                continue
            old = m.flags
            new = outcome.get(old)
            if new is None:
                new = outcome[old] = old | fl if mode == "+" else old - fl if mode == "-" else fl
            if new is not old and new != old:
                items.append((m.key, m.sub, m.info, new))
                item_uids.append(uid)
        return items, item_uids, modified

    def _apply_flags(self, ch: Changes, uids: list[int]) -> list[int]:
        """The recorded change in memory, listeners told; the files are
        renamed next (their names follow in :meth:`_flags_on_disk`)."""
        self._note_changes(ch)
        changed = []
        msgs, by_flag, new_flags, modseq = self._msgs, self._by_flag, ch.flags, ch.modseq
        for uid in uids:
            m = msgs.get(uid)
            if m is None:
                continue
            new = msgs[uid] = m.with_flags(new_flags[uid], modseq, m.sub, m.info)
            by_flag.changed(uid, m.flags, new.flags)
            changed.append(uid)
        changed.sort()
        self._listeners.tell(self, FLAGS, changed)
        return changed

    def _flags_on_disk(self, res: OpResult, uids: list[int]) -> None:
        """The renames are done: where each file is now, the directory
        state our view matches; the record's pending marks can go."""
        self._set_keywords(res.keywords)
        self._apply_state(res.stamps, res.ul_id, res.scanned_at, full=False)
        keys, msgs = res.keys, self._msgs
        for uid in uids:
            m = msgs.get(uid)
            if m is None:
                continue
            where = keys.get(m.key)
            if where is None:
                self._unsure = True  # removed behind our back: the next refresh expunges it
            else:
                m.sub, m.info = where
        self._modseqs.file.confirm(uids)

    def _renames_failed(self, f: Failure, uids: list[int]) -> None:
        """The disk refused the renames: it stays the authority (the next
        refresh rescans and reports its flags again, at a new mod-sequence)."""
        log.failure("{path}: flags not written to the file names", f, path=self.path)
        self._unsure = True
        self._modseqs.file.confirm(uids)

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
            return threads.deferToThread(self._expunge_in_thread, items, [m.uid for m in targets],
                                         octets).addCallback(self._apply_expunged)

        return self._serial(work)

    def _expunge_in_thread(self, items: list[tuple[str, str, str | None]], uids: list[int], octets: int
                           ) -> tuple[list[int], OpResult, Changes]:
        """Worker thread: unlink the files, count them off the quota, record
        the expunges."""
        res = self._disk.expunge(items)
        self.account.account_usage(self.name, -octets, -len(items), False)
        return uids, res, self._modseqs.expunged(uids)

    def _apply_expunged(self, done: tuple[list[int], OpResult, Changes]) -> list[int]:
        uids, res, ch = done
        gone = [u for u in uids if u in self._msgs]
        for u in gone:
            m = self._msgs.pop(u)
            if self._by_key is not None:
                self._by_key.pop(m.key, None)
            self._by_flag.removed(u, m.flags)
        self._note_changes(ch)
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
        """See IFolder.touch_modseq (issue 12): a new mod-sequence recorded
        like a flag change (so it persists and CHANGEDSINCE finds it), no
        file renamed, no listener told."""
        wanted = list(uids)

        def work() -> defer.Deferred[list[int]] | list[int]:
            hit = [(u, m.flags) for u in wanted if (m := self._msgs.get(u)) is not None]
            if not hit:
                return []

            def recorded(ch: Changes) -> list[int]:
                self._note_changes(ch)
                msgs = self._msgs
                for uid in ch.changed:
                    m = msgs.get(uid)
                    if m is not None:
                        msgs[uid] = m.with_flags(m.flags, ch.modseq, m.sub, m.info)
                return [u for u, _ in hit]

            d: defer.Deferred[Changes] = threads.deferToThread(self._modseqs.touched, hit)
            return d.addCallback(recorded)

        return self._serial(work)
