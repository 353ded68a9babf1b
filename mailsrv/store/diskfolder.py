"""The synchronous (thread-side) half of a Maildir folder: scans, UIDs and
the mutations that rename, link and unlink message files, all under
Dovecot's ``dovecot-uidlist`` dotlock.

Everything here blocks and touches no reactor state: the live
:class:`mailsrv.store.folder.Folder` runs it in a worker thread, one
operation per folder at a time, and the admin tools call it directly.  The
results (:class:`SyncResult`, :class:`OpResult`) are plain data the live
folder applies in the reactor thread.

The uid list as held between operations is
:class:`mailsrv.store.uidstate.UidListState`'s; this module keeps the names
in new/ and the directory mtimes the view matches, and does the file work.
It stays one piece (~600 lines) because every operation updates those
names and mtimes together with the files it moves, under the same lock.
"""

from __future__ import annotations

import errno
import os
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field

from twisted.logger import Logger

from mailsrv.store import index, opstats
from mailsrv.store.entry import Entry, EntryTable
from mailsrv.store.filename import (
    filename_size,
    final_key,
    info_for,
    join_filename,
    message_path,
    new_key_base,
    size_of,
)
from mailsrv.store.fsutil import clean_stale_temps, copy_synced, fsync_dir, unlink_quiet
from mailsrv.store.layout import SUBSCRIPTIONS
from mailsrv.store.maildir import ensure_keywords, file_crlf_size, locate, old_tmp_files
from mailsrv.store.uidlist import KEYWORDS, UIDLIST, UidList, read_keywords, write_keywords
from mailsrv.store.uidstate import StatId, UidListState, uidlist_id

log = Logger(namespace="mailsrv.store")

Stamps = tuple[int, int]  # mtime_ns of new/ and cur/
SUBS = ("new", "cur")
# Files a crash during an atomic replace may leave a temporary copy of.
STATE_FILES = (UIDLIST, KEYWORDS, SUBSCRIPTIONS, index.INDEX_FILE)


@dataclass
class SyncResult:
    """A complete view of a folder after a scan."""

    uidvalidity: int
    uidnext: int
    entries: EntryTable
    keywords: list[str | None]
    stamps: Stamps
    scanned_at: float
    rebuilt: bool = False
    ul_id: StatId | None = None


@dataclass
class OpResult:
    """What a mutation did.  ``full`` is set when the folder changed outside
    this process meanwhile: apply it first so UIDs stay ascending.
    ``stamps`` are the new/ and cur/ mtimes the folder's view now matches
    (None: unknown, rescan), ``ul_id`` the uid list file it matches."""

    entries: list[Entry] = field(default_factory=list)
    keys: dict[str, tuple[str, str | None] | None] = field(default_factory=dict)
    keywords: list[str | None] | None = None
    uidnext: int = 0
    full: SyncResult | None = None
    order: list[int] = field(default_factory=list)
    stamps: Stamps | None = None
    ul_id: StatId | None = None
    scanned_at: float = 0.0


@dataclass
class NewFile:
    """A message to add to a folder: ``how`` is 'rename' (a finished file in
    tmp/) or 'link' (a message of another folder: ``src_dir``/``src_key``
    find it again if it was renamed meanwhile).  ``new`` puts a message
    without flags into new/ (a delivery) rather than cur/."""

    src: str
    how: str
    flags: frozenset[str]
    size: int
    vsize: int
    src_dir: str | None = None
    src_key: str | None = None
    new: bool = False


def discard_sources(items: Iterable[NewFile]) -> None:
    """Remove the files of ``items`` still waiting in tmp/ (an add that
    failed or never ran: its senders get the error and retry).  Files of
    another folder ('link') are never touched."""
    for it in items:
        if it.how == "rename":
            unlink_quiet(it.src)


def dir_stamps(folder_dir: str) -> Stamps:
    return (os.stat(os.path.join(folder_dir, "new")).st_mtime_ns,
            os.stat(os.path.join(folder_dir, "cur")).st_mtime_ns)


Placed = tuple[str, str, str | None, int]  # key, sub, info, crlf size of a file put in place


class DiskFolder:
    """The on-disk state of one folder, touched by one thread at a time (the
    live folder serializes its operations).  Holds the uid list (``uids``,
    so an unchanged ``dovecot-uidlist`` is not parsed twice), the names in
    new/ so a change there is a cheap re-list of new/ only, and the new/ and
    cur/ mtimes the folder's view matches, updated after our own changes so
    they do not cost a rescan."""

    def __init__(self, path: str) -> None:
        self.uids = UidListState(path)
        self.keywords: list[str | None] = []
        self._tmp_cleaned = False
        self._outside = False  # the uid list showed another process's hand
        self.new_files: dict[str, str | None] | None = None  # key -> info in new/
        self.stamps: Stamps | None = None
        self.scans = 0  # full scans done (tests and benchmarks watch it)

    @property
    def path(self) -> str:
        return self.uids.path

    @path.setter
    def path(self, path: str) -> None:
        """The folder was renamed (with no operation running)."""
        self.uids.path = path

    @contextmanager
    def _locked(self) -> Iterator[None]:
        """The uid list dotlock, held for one operation."""
        with self.uids.lock():
            self.uids.begin()
            yield

    def _known_size(self, key: str, where: tuple[str, str | None], e: dict[str, str] | None,
                    existing: bool = False) -> int:
        """CRLF size of a file whose name has no W=: from the uid list's W
        extension, else read once and remembered there (``existing``: on a
        record already in the file)."""
        w = e.get("W") if e else None
        if w is not None and w.isdigit():
            return int(w)
        try:
            size = file_crlf_size(message_path(self.path, where[0], key, where[1]))
        except FileNotFoundError:
            size = 0
        self.uids.note_size(key, size, existing)
        return size

    # scanning -------------------------------------------------------------------

    def _list(self, sub: str) -> dict[str, str | None]:
        out: dict[str, str | None] = {}
        for n in os.listdir(os.path.join(self.path, sub)):  # a plain loop is the fastest here
            if n[0] != ".":
                key, sep, info = n.partition(":")
                out[key] = info if sep else None
        return out

    def _listdir(self) -> tuple[dict[str, str | None], dict[str, str | None], Stamps]:
        """(new/ key -> info, cur/ key -> info, stamps), retried until new/
        and cur/ did not change while being listed (a rename racing the
        listing could hide a file)."""
        for _attempt in range(5):
            before = dir_stamps(self.path)
            new = self._list("new")
            cur = self._list("cur")
            if dir_stamps(self.path) == before:
                break
        return new, cur, before

    def _list_new(self) -> tuple[dict[str, str | None], int, float]:
        """new/ listed until it held still: (key -> info, its mtime, when)."""
        new_dir = os.path.join(self.path, "new")
        for _attempt in range(5):
            scanned_at = time.time()
            before = os.stat(new_dir).st_mtime_ns
            listed = self._list("new")
            if os.stat(new_dir).st_mtime_ns == before:
                break
        return listed, before, scanned_at

    def _clean_tmp(self) -> None:
        self._tmp_cleaned = True
        clean_stale_temps(self.path, STATE_FILES)
        for n in old_tmp_files(self.path):
            unlink_quiet(os.path.join(self.path, "tmp", n))

    @opstats.timed("open")
    def open(self, use_index: bool = True) -> tuple[SyncResult, bool]:
        """The first look at a folder: its snapshot when nothing changed since
        it was taken (no listing, no uid list parse), else a full scan.
        Returns (view, whether it came from the snapshot)."""
        if not self._tmp_cleaned:
            self._clean_tmp()
        snap = index.load(self.path) if use_index else None
        if snap is None:
            return self._sync(), False
        self.uids.adopt_snapshot(snap.ul_id, snap.uidvalidity, snap.uidnext)
        t = snap.entries
        self.new_files = {key: info for key, sub, info in zip(t.keys, t.subs, t.infos, strict=True) if sub == "new"}
        self.stamps = snap.stamps
        self.keywords = read_keywords(self.path)
        return SyncResult(snap.uidvalidity, snap.uidnext, snap.entries, list(self.keywords), snap.stamps,
                          time.time(), False, snap.ul_id), True

    @opstats.timed("sync")
    def sync(self) -> SyncResult:
        """Full scan: list new/ and cur/ under the uid list lock, give new
        files UIDs, forget vanished ones, write the list if needed."""
        return self._sync()

    def _sync(self) -> SyncResult:
        """:meth:`sync`, untimed (open's fallback is timed as the open)."""
        if not self._tmp_cleaned:
            self._clean_tmp()
        with self._locked():
            return self._sync_locked()

    def _sync_locked(self) -> SyncResult:
        self.scans += 1
        newf, curf, stamps = self._listdir()
        scanned_at = time.time()
        self.uids.reload()
        ul = self.uids.held()
        if self.uids.rebuilt and (newf or curf):
            self._log_new_numbering(len(newf) + len(curf), ul.uidvalidity)
        self.uids.lost = False
        for key in [k for k in newf if k in curf]:
            del newf[key]  # one message in both: its cur/ name wins, as before
        entries, in_new = self._listed_entries(ul, newf, curf)
        unseen = [(k, "cur", i) for k, i in curf.items()] + [(k, "new", i) for k, i in newf.items()]
        unseen.sort()
        give = self.uids.give
        a_uid, a_key, a_sub = entries.uids.append, entries.keys.append, entries.subs.append
        a_info, a_size, a_pop3 = entries.infos.append, entries.sizes.append, entries.pop3s.append
        for key, sub, info in unseen:  # files nobody gave a UID yet
            size = size_of(key)
            if size is None:
                size = self._known_size(key, (sub, info), None)
            a_uid(give(key))
            a_key(key)
            a_sub(sub)
            a_info(info)
            a_size(size)
            a_pop3(None)
            if sub == "new":
                in_new[key] = info
        self.uids.write()
        self.new_files = in_new
        self.stamps = stamps
        self.keywords = read_keywords(self.path)
        return SyncResult(ul.uidvalidity, ul.uidnext, entries, list(self.keywords), stamps,
                          scanned_at, self.uids.rebuilt, self.uids.file_id)

    def _log_new_numbering(self, n: int, uidvalidity: int) -> None:
        if self.uids.lost:
            log.critical("{path}: no usable {file}; {n} messages get new UIDs under "
                         "UIDVALIDITY {v}", path=self.path, file=UIDLIST, n=n, v=uidvalidity)
        else:
            log.info("{path}: first UIDs for {n} messages (UIDVALIDITY {v})",
                     path=self.path, n=n, v=uidvalidity)

    def _listed_entries(self, ul: UidList, newf: dict[str, str | None], curf: dict[str, str | None]
                        ) -> tuple[EntryTable, dict[str, str | None]]:
        """Entries of the files the uid list names, ascending by UID; takes
        them out of ``newf``/``curf`` (what stays there has no UID yet) and
        forgets the UIDs whose file is gone.  The hot loop of a 100k scan."""
        uids, exts = ul.uids, ul.exts
        entries = EntryTable()
        # one list.append per column: no object per entry (see entry.py)
        a_uid, a_key, a_sub = entries.uids.append, entries.keys.append, entries.subs.append
        a_info, a_size, a_pop3 = entries.infos.append, entries.sizes.append, entries.pop3s.append
        dead = []
        pop_new, pop_cur = newf.pop, curf.pop
        missing = "\x00missing"  # no file name holds NUL
        in_new: dict[str, str | None] = {}
        for key, uid in uids.items():
            info = pop_cur(key, missing)
            if info is missing:
                info = pop_new(key, missing)
                if info is missing:
                    dead.append(key)
                    continue
                sub = "new"
                in_new[key] = info
            else:
                sub = "cur"
            i = key.rfind(",W=")
            tail = key[i + 3:] if i >= 0 else ""
            pop3: str | None = None
            if tail.isdigit() and not exts:
                size = int(tail)
            else:
                e = exts.get(key) if exts else None
                known = int(tail) if tail.isdigit() else filename_size(key)
                size = known if known is not None else self._known_size(key, (sub, info), e, existing=True)
                pop3 = e.get("P") if e else None
            a_uid(uid)
            a_key(key)
            a_sub(sub)
            a_info(info)
            a_size(size)
            a_pop3(pop3)
        for key in dead:
            self.uids.drop(key)
        return entries, in_new

    @opstats.timed("sync_new")
    def sync_new(self) -> OpResult:
        """Only new/ changed: re-list it (it is small; cur/ holds the bulk)
        and give UIDs to what arrived.  Anything odd - a file gone from new/,
        a uid list changed by another process - falls back to a full scan."""
        res = OpResult()
        if self._new_unchanged(res):
            return self._finish(res, None)
        with self._locked():
            if self.uids.reload() or self.uids.rebuilt or self.new_files is None or self.stamps is None:
                res.full = self._sync_locked()
                return self._finish(res, None)
            listed, before, scanned_at = self._list_new()
            added = self._number_new(listed)
            if added is None:
                res.full = self._sync_locked()
                return self._finish(res, None)
            res.entries = added
            self.uids.write()
            self.stamps = (before, self.stamps[1])
            res.scanned_at = scanned_at
            return self._finish(res, None)

    def _new_unchanged(self, res: OpResult) -> bool:
        """Nothing arrived: new/ lists as we know it and the uid list is
        ours (no lock needed for that)."""
        if self.new_files is None or self.stamps is None or self.uids.file_id is None:
            return False
        res.scanned_at = time.time()  # when we looked, not after: errs towards a re-check
        new_dir = os.path.join(self.path, "new")
        before = os.stat(new_dir).st_mtime_ns
        if (self._list("new") == self.new_files and uidlist_id(self.path) == self.uids.file_id
                and os.stat(new_dir).st_mtime_ns == before):
            self.stamps = (before, self.stamps[1])
            return True
        return False

    def _number_new(self, listed: dict[str, str | None]) -> list[Entry] | None:
        """UIDs for the files new in new/; None when new/ changed in a way
        only a full scan sorts out (a file left it, or came back from cur/)."""
        known = self.new_files
        assert known is not None
        if len(listed) < len(known) or any(listed.get(k, 0) != i for k, i in known.items()):
            return None
        uids = self.uids.held().uids
        added = []
        for key in sorted(listed):
            if key in known:
                continue
            if key in uids:  # a message of cur/ moved back to new/?
                return None
            info = listed[key]
            uid = self.uids.give(key)
            size = size_of(key)
            if size is None:
                size = self._known_size(key, ("new", info), None)
            added.append(Entry(uid, key, "new", info, size, None))
            known[key] = info
        return added

    def _finish(self, res: OpResult, pre: Stamps | None, touched: Iterable[str] = (),
                outside: bool = False) -> OpResult:
        """Fill in uidnext, keywords and the stamps the view now matches.
        After our own change to a directory its new mtime is trusted only if
        the directory had not changed since our view of it (``pre`` equals
        the stamps we held); else the old stamp stays and the next refresh
        rescans.  ``outside``: the uid list showed another process's hand."""
        if res.full is not None:
            self.stamps = res.full.stamps
        elif outside or self.stamps is None:
            self.stamps = None
        elif pre is not None and touched:
            post, held = dir_stamps(self.path), self.stamps
            self.stamps = (post[0] if "new" in touched and pre[0] == held[0] else held[0],
                           post[1] if "cur" in touched and pre[1] == held[1] else held[1])
        res.stamps = self.stamps
        res.ul_id = self.uids.file_id
        uidnext = self.uids.uidnext()
        if uidnext is not None:
            res.uidnext = uidnext
        if res.keywords is None:
            res.keywords = list(self.keywords)
        if not res.scanned_at:
            res.scanned_at = time.time()
        return res

    # mutations -------------------------------------------------------------------

    def _use_keywords(self, flag_sets: Iterable[frozenset[str]]) -> list[str | None]:
        keywords = ensure_keywords(self.path, frozenset().union(*flag_sets))
        self.keywords = list(keywords)
        return keywords

    @opstats.timed("add")
    def add(self, items: Sequence[NewFile]) -> OpResult:
        """Move finished files into cur/ (or new/ for deliveries without
        flags) - rename from tmp/, or hard link / copy from another folder -
        and give them UIDs, all under the uid list lock like Dovecot (so
        nobody else adds a file between our rename and our UID).  ``order``
        of the result lists the indexes of the items placed (a link source
        may have vanished), aligned with ``entries``."""
        keywords = self._use_keywords(it.flags for it in items)
        with self._locked():
            pre = dir_stamps(self.path)
            placed, order = self._place(items, keywords)
            touched = {p[1] for p in placed}
            for sub in touched:
                fsync_dir(os.path.join(self.path, sub))
            res, kept = self._assign_locked(placed)
            res.order = [order[j] for j in kept]
            return self._finish(res, pre, touched, outside=res.full is None and self._outside)

    @opstats.timed("add_light")
    def add_light(self, items: Sequence[NewFile]) -> list[int | None]:
        """``add`` for a folder nobody has open (a delivery): reads only the
        head and tail of the uid list and appends to it, so a delivery costs
        the same into 10 or 100,000 messages.  Returns the UIDs, aligned
        with ``items`` (None for a link source that vanished)."""
        keywords = self._use_keywords(it.flags for it in items)
        with self._locked():
            placed, order = self._place(items, keywords)
            for sub in {p[1] for p in placed}:
                fsync_dir(os.path.join(self.path, sub))
            out: list[int | None] = [None] * len(items)
            appended = self.uids.append_light([(key, size) for key, _sub, _info, size in placed])
            if appended is None:  # no usable uid list: the ordinary way
                self._sync_locked()
                uids = self.uids.held().uids
                given = [uids.get(p[0]) for p in placed]
            else:
                given = list(appended)
            for i, uid in zip(order, given, strict=True):
                out[i] = uid
            return out

    def _place(self, items: Sequence[NewFile], keywords: list[str | None]) -> tuple[list[Placed], list[int]]:
        """Put each item's file into new/ or cur/ under a fresh key; returns
        what was placed and the indexes of those items (a link source that
        vanished is skipped)."""
        placed: list[Placed] = []
        order: list[int] = []
        for i, it in enumerate(items):
            if it.new and not it.flags:
                sub, info = "new", None
            else:
                sub, info = "cur", info_for(it.flags, keywords, None)
            key = self._rename_in(it, sub, info) if it.how == "rename" else self._link_in(it, sub, info)
            if key is None:
                continue
            placed.append((key, sub, info, it.vsize))
            order.append(i)
        return placed, order

    def _rename_in(self, it: NewFile, sub: str, info: str | None) -> str:
        """A finished file of our tmp/ (or another file system's: copied)."""
        key = final_key(it.src, it.size, it.vsize)
        dest = message_path(self.path, sub, key, info)
        try:
            os.rename(it.src, dest)
        except OSError as e:
            if e.errno != errno.EXDEV:
                raise
            copy_synced(it.src, os.path.join(self.path, "tmp", key), dest)
            unlink_quiet(it.src)
        return key

    def _link_in(self, it: NewFile, sub: str, info: str | None) -> str | None:
        """A message of another folder, hard linked (copied where links do
        not work); None when its file is gone."""
        src = it.src
        try:
            size = os.stat(src).st_size
        except FileNotFoundError:
            where = locate(it.src_dir, it.src_key) if it.src_dir and it.src_key else None
            if where is None or it.src_dir is None or it.src_key is None:
                return None
            src = message_path(it.src_dir, where[0], it.src_key, where[1])
            size = os.stat(src).st_size
        key = final_key(os.path.join(self.path, "tmp", new_key_base()), size, it.vsize)
        dest = message_path(self.path, sub, key, info)
        try:
            os.link(src, dest)
        except FileNotFoundError:
            return None
        except OSError:
            try:
                copy_synced(src, os.path.join(self.path, "tmp", key), dest)
            except FileNotFoundError:
                return None
        return key

    def _assign_locked(self, placed: Sequence[Placed]) -> tuple[OpResult, list[int]]:
        """UIDs for placed files (uid list lock held), and the indexes into
        ``placed`` that the entries of the result stand for.  When the uid
        list changed under us, do a full scan instead (so UIDs reach
        listeners in ascending order); a file someone removed meanwhile
        then has no entry."""
        res = OpResult()
        self.uids.begin()
        self._outside = self.uids.reload()
        if self._outside or self.uids.rebuilt:
            res.full = self._sync_locked()
            by_key = {e.key: e for e in res.full.entries}
            kept = [j for j, p in enumerate(placed) if p[0] in by_key]
            res.entries = [by_key[placed[j][0]] for j in kept]
            return res, kept
        uids = self.uids.held().uids
        for key, sub, info, size in placed:
            uid = uids.get(key)
            if uid is None:
                uid = self.uids.give(key)
            if filename_size(key) is None:
                self.uids.note_size(key, size)
            if sub == "new" and self.new_files is not None:
                self.new_files[key] = info
            res.entries.append(Entry(uid, key, sub, info, size, None))
        self.uids.write()
        return res, list(range(len(placed)))

    @opstats.timed("set_flags")
    def set_flags(self, items: Sequence[tuple[str, str, str | None, frozenset[str]]]) -> OpResult:
        """Rename files to carry new flags (moving new/ -> cur/ like Dovecot).
        Items are (key, sub, info, new flags); ``keys`` of the result maps
        each key to its new (sub, info), or None when the file is gone."""
        res = OpResult()
        keywords = self._use_keywords(it[3] for it in items)
        res.keywords = list(keywords)
        pre = dir_stamps(self.path)
        outside = False
        touched = {"cur"}
        new_files = self.new_files
        for key, sub, info, flags in items:
            new_info = info_for(flags, keywords, info)
            try:
                os.rename(message_path(self.path, sub, key, info), message_path(self.path, "cur", key, new_info))
                res.keys[key] = ("cur", new_info)
                if sub == "new":
                    touched.add("new")
                    if new_files is not None:
                        new_files.pop(key, None)
            except FileNotFoundError:
                outside = True
                res.keys[key] = self._reflag_moved(key, flags, keywords)
        if self.uids.known() and uidlist_id(self.path) != self.uids.file_id:
            outside = True
        return self._finish(res, pre, touched, outside)

    def _reflag_moved(self, key: str, flags: frozenset[str], keywords: list[str | None]
                      ) -> tuple[str, str | None] | None:
        """set_flags for a file someone else renamed meanwhile: found again
        and renamed to carry ``flags``; None when it is gone."""
        where = locate(self.path, key)
        if where is None:
            return None
        new_info = info_for(flags, keywords, where[1])
        try:
            os.rename(message_path(self.path, where[0], key, where[1]),
                      message_path(self.path, "cur", key, new_info))
        except FileNotFoundError:
            return None
        return ("cur", new_info)

    @opstats.timed("expunge")
    def expunge(self, items: Sequence[tuple[str, str, str | None]]) -> OpResult:
        """Unlink messages, then drop them from the uid list (which is
        compacted only once enough of it is dead)."""
        res = OpResult()
        pre = dir_stamps(self.path)
        outside = False
        touched = set()
        for key, sub, info in items:
            try:
                os.unlink(message_path(self.path, sub, key, info))
                touched.add(sub)
            except FileNotFoundError:
                outside = True
                where = locate(self.path, key)
                if where is not None:
                    unlink_quiet(message_path(self.path, where[0], key, where[1]))
            res.keys[key] = None
            if self.new_files is not None:
                self.new_files.pop(key, None)
        with self._locked():
            outside = self.uids.reload() or outside or self.uids.rebuilt
            for k, _s, _i in items:
                self.uids.drop(k)
            self.uids.write()
            return self._finish(res, pre, touched, outside)

    @opstats.timed("move_all")
    def move_all_to(self, target_dir: str) -> int:
        """INBOX rename: move every message file into the folder at
        ``target_dir`` (whose UIDs its next scan assigns), with the keyword
        letters they use.  Returns how many moved."""
        with self._locked():
            newf, curf, _ = self._listdir()
            n = 0
            for sub, files in (("new", newf), ("cur", curf)):
                for key, info in files.items():
                    name = join_filename(key, info)
                    os.rename(os.path.join(self.path, sub, name), os.path.join(target_dir, sub, name))
                    n += 1
            kw = read_keywords(self.path)
            if kw:
                write_keywords(target_dir, kw)
            self.stamps = None
            return n
