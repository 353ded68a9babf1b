"""A per-folder snapshot of the folder's view (``mailsrv-index.sqlite``), so
opening an unchanged 100k-message folder after a restart reads one small
table instead of listing cur/ and parsing ``dovecot-uidlist`` (Dovecot keeps
``dovecot.index`` for the same reason).

It is only a cache.  A snapshot is used when the uid list file (inode,
mtime, size) and the new/ and cur/ mtimes are exactly those recorded, the
recorded mtimes were old enough when the view was taken that a later change
must have moved them (the store's "too recent mtime" caution), and the uid
list's header still names the same UIDVALIDITY.  Anything else - missing,
damaged, other version, other UIDVALIDITY - means a full scan.  A snapshot
is written whole into a temporary file and renamed into place, so a crash
leaves the old one or the new one, never a torn one.

:func:`load` and :func:`save` block: call them from a worker thread.
:class:`SnapshotWriter` is the live folder's reactor-side keeper of its
snapshot (when to write, one write at a time).  Per-message mod-sequences
and an expunge record (CONDSTORE/QRESYNC) would be more columns and a
table here.
"""

from __future__ import annotations

import operator
import os
import sqlite3
import sys
import time
from array import array
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from twisted.internet import defer, threads
from twisted.logger import Logger
from twisted.python.failure import Failure

from mailsrv.store.entry import EntryLike, EntryTable
from mailsrv.store.fsutil import replace_synced, temp_name, unlink_quiet
from mailsrv.store.uidlist import UIDLIST, CorruptUidList, parse_uidlist

log = Logger(namespace="mailsrv.store")

INDEX_FILE = "mailsrv-index.sqlite"
VERSION = "2"  # columnar: one blob per field, so loading 100k entries is a few C-level splits
_NONE = "\x00"  # an info of None (no ':' in the file name)
_SEP = "\n"
# A directory mtime this close to the moment the view was taken may hide a
# change made within the same timestamp tick (some file systems keep whole
# seconds): such a view is not worth recording.
RECENT_NS = 1_000_000_000

# While a folder stays open its snapshot is brought up to date at most this
# often (and when it is closed).
SAVE_INTERVAL = 300.0

StatId = tuple[int, int, int]  # (inode, mtime_ns, size), as diskfolder.uidlist_id
Stamps = tuple[int, int]  # mtime_ns of new/ and cur/


@dataclass
class Snapshot:
    """A folder's view: what DiskFolder.sync would return if nothing changed."""

    uidvalidity: int
    uidnext: int
    ul_id: StatId
    stamps: Stamps
    taken_at: float
    entries: EntryTable


def _stats(folder_dir: str) -> tuple[StatId, Stamps] | None:
    try:
        st = os.stat(os.path.join(folder_dir, UIDLIST))
        new = os.stat(os.path.join(folder_dir, "new")).st_mtime_ns
        cur = os.stat(os.path.join(folder_dir, "cur")).st_mtime_ns
    except FileNotFoundError:
        return None
    return (st.st_ino, st.st_mtime_ns, st.st_size), (new, cur)


def _old_enough(ul_id: StatId, stamps: Stamps, at: float) -> bool:
    at_ns = int(at * 1e9)
    return all(at_ns - t >= RECENT_NS for t in (ul_id[1], stamps[0], stamps[1]))


def _header_uidvalidity(folder_dir: str) -> int | None:
    """UIDVALIDITY from the uid list's first line only (a cheap read)."""
    try:
        with open(os.path.join(folder_dir, UIDLIST), "rb") as f:
            first = f.readline(4096)
    except FileNotFoundError:
        return None
    if not first.endswith(b"\n"):
        return None
    try:
        return parse_uidlist(first).uidvalidity
    except CorruptUidList:
        return None


def load(folder_dir: str) -> Snapshot | None:
    """The snapshot if it still describes the folder exactly, else None."""
    path = os.path.join(folder_dir, INDEX_FILE)
    if not os.path.exists(path):
        return None
    now = _stats(folder_dir)
    if now is None:
        return None
    try:
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=1)
    except sqlite3.Error:
        return None
    try:
        snap = _read(db, folder_dir, now)
    except (sqlite3.Error, KeyError, ValueError, TypeError, UnicodeError) as e:
        log.warn("{path} unusable ({err}); scanning the folder", path=path, err=e)
        return None
    finally:
        db.close()
    if snap is None:
        return None
    if snap.entries and snap.entries.uids[-1] >= snap.uidnext:
        log.warn("{path} is inconsistent; scanning the folder", path=path)
        return None
    if _stats(folder_dir) != now:
        return None  # changed while we read: the snapshot may be stale
    return snap


def _read(db: sqlite3.Connection, folder_dir: str, now: tuple[StatId, Stamps]) -> Snapshot | None:
    """The snapshot in ``db`` if it was taken of the folder as it is ``now``
    (None otherwise, or when its columns disagree with each other)."""
    meta = dict(db.execute("SELECT k, v FROM meta").fetchall())
    if meta.get("version") != VERSION or meta.get("byteorder") != sys.byteorder:
        return None
    ul_id = tuple(int(x) for x in meta["ul_id"].split())
    stamps = tuple(int(x) for x in meta["stamps"].split())
    taken_at = float(meta["taken_at"])
    if len(ul_id) != 3 or len(stamps) != 2 or (ul_id, stamps) != now:
        return None
    ul_id_, stamps_ = now  # the same values, with their fixed-length types
    if not _old_enough(ul_id_, stamps_, taken_at):
        return None
    uidvalidity, uidnext, count = int(meta["uidvalidity"]), int(meta["uidnext"]), int(meta["count"])
    if _header_uidvalidity(folder_dir) != uidvalidity:
        return None
    cols = dict(db.execute("SELECT name, data FROM cols").fetchall())
    pop3 = dict(db.execute("SELECT uid, pop3 FROM pop3").fetchall())
    entries = _entries(cols, pop3, count)
    if entries is None:
        log.warn("{path} is inconsistent; scanning the folder", path=os.path.join(folder_dir, INDEX_FILE))
        return None
    return Snapshot(uidvalidity, uidnext, ul_id_, stamps_, taken_at, entries)


def _entries(cols: dict[str, bytes], pop3: dict[int, str], count: int) -> EntryTable | None:
    uids, sizes = array("q"), array("q")
    uids.frombytes(cols["uid"])
    sizes.frombytes(cols["size"])
    subs = cols["sub"].decode("ascii")
    keys = cols["key"].decode("utf-8", "surrogateescape").split(_SEP) if count else []
    infos = cols["info"].decode("utf-8", "surrogateescape").split(_SEP) if count else []
    if not len(uids) == len(sizes) == len(subs) == len(keys) == len(infos) == count:
        return None
    if subs.strip("nc"):
        return None
    if not all(map(operator.lt, uids, uids[1:])):
        return None
    sub_names = {"n": "new", "c": "cur"}
    info_of: dict[str, str | None] = {_NONE: None}
    # Column by column through C-level maps: no Python frame per entry.
    return EntryTable(uids, keys, list(map(sub_names.__getitem__, subs)), list(map(info_of.get, infos, infos)),
                      sizes, list(map(pop3.get, uids)))


def save(folder_dir: str, uidvalidity: int, uidnext: int, ul_id: StatId, stamps: Stamps,
         entries: Iterable[EntryLike]) -> bool:
    """Record a view if the folder still matches it and its mtimes are old
    enough to be trusted; False when there was nothing worth writing."""
    taken_at = time.time()
    if _stats(folder_dir) != (tuple(ul_id), tuple(stamps)) or not _old_enough(ul_id, stamps, taken_at):
        return False
    path = os.path.join(folder_dir, INDEX_FILE)
    tmp = temp_name(path)
    try:
        db = sqlite3.connect(tmp, isolation_level=None)
        try:
            _write(db, entries, [("version", VERSION), ("byteorder", sys.byteorder),
                                 ("uidvalidity", str(uidvalidity)), ("uidnext", str(uidnext)),
                                 ("ul_id", " ".join(map(str, ul_id))), ("stamps", " ".join(map(str, stamps))),
                                 ("taken_at", repr(taken_at))])
        finally:
            db.close()
        replace_synced(tmp, path)
    except (OSError, sqlite3.Error, ValueError) as e:
        unlink_quiet(tmp)
        if os.path.isdir(folder_dir):
            log.warn("cannot write {path}: {err}", path=path, err=e)
        return False
    return True


def _write(db: sqlite3.Connection, entries: Iterable[EntryLike], meta: list[tuple[str, str]]) -> None:
    """Fill a fresh database file (no journal: a torn one is never renamed
    into place)."""
    db.execute("PRAGMA journal_mode=OFF")
    db.execute("PRAGMA synchronous=OFF")
    db.execute("CREATE TABLE meta (k TEXT PRIMARY KEY, v TEXT)")
    db.execute("CREATE TABLE cols (name TEXT PRIMARY KEY, data BLOB)")
    db.execute("CREATE TABLE pop3 (uid INTEGER PRIMARY KEY, pop3 TEXT)")
    cols = _columns(entries)
    if cols is None:
        raise ValueError("a file name the index cannot hold")
    count, blobs, pop3 = cols
    db.execute("BEGIN")
    db.executemany("INSERT INTO cols VALUES (?, ?)", blobs)
    db.executemany("INSERT INTO pop3 VALUES (?, ?)", pop3)
    db.executemany("INSERT INTO meta VALUES (?, ?)", [*meta, ("count", str(count))])
    db.execute("COMMIT")


def _columns(entries: Iterable[EntryLike]) -> tuple[int, list[tuple[str, bytes]], list[tuple[int, str]]] | None:
    """(count, [(column name, blob)], [(uid, pop3)]), or None when a name
    holds the separator (never in a sane Maildir; such a folder is scanned)."""
    if not isinstance(entries, EntryTable):
        entries = EntryTable.of(entries)
    uids, sizes = array("q", entries.uids), array("q", entries.sizes)
    keys = entries.keys
    subs = ["n" if s == "new" else "c" for s in entries.subs]
    infos = [_NONE if i is None else i for i in entries.infos]
    pop3 = [(u, p) for u, p in zip(entries.uids, entries.pop3s, strict=True) if p is not None]
    key_blob = _SEP.join(keys)
    info_blob = _SEP.join(infos)
    if key_blob.count(_SEP) != max(0, len(keys) - 1) or info_blob.count(_SEP) != max(0, len(infos) - 1):
        return None
    return len(uids), [
        ("uid", uids.tobytes()), ("size", sizes.tobytes()), ("sub", "".join(subs).encode("ascii")),
        ("key", key_blob.encode("utf-8", "surrogateescape")),
        ("info", info_blob.encode("utf-8", "surrogateescape"))], pop3


def discard(folder_dir: str) -> None:
    """Remove the snapshot (it would be rejected anyway; saves the read)."""
    unlink_quiet(os.path.join(folder_dir, INDEX_FILE))


class SnapshotWriter:
    """Keeps one live folder's snapshot up to date, from the reactor thread.

    The folder says when its view changed (:meth:`changed`) and hands over
    a view it trusts (:meth:`save`); this decides whether a write is worth
    it and runs it in a worker thread, never waited for: at most one at a
    time, a request during a write coalesced into one more (``resave``
    asks the folder again then, for its view at that moment), nothing
    written for a view already on disk, and while the folder stays open at
    most every SAVE_INTERVAL seconds (:meth:`due`)."""

    def __init__(self, folder_dir: str, resave: Callable[[], object]) -> None:
        self.path = folder_dir
        self._resave = resave
        self._gen = 0  # bumped whenever the folder's view changes
        self._saved = -1  # the generation the snapshot on disk holds
        self._tried = time.time()
        self._writing: defer.Deferred[bool] | None = None
        self._again = False

    def changed(self) -> None:
        self._gen += 1

    def current(self) -> None:
        """The folder's view came from the snapshot on disk: nothing to write."""
        self._saved = self._gen

    def pending(self) -> bool:
        """The view changed since the snapshot on disk."""
        return self._gen != self._saved

    def due(self) -> bool:
        """A changed view not written for SAVE_INTERVAL: worth writing now."""
        return self._gen != self._saved and time.time() - self._tried > SAVE_INTERVAL

    def save(self, uidvalidity: int, uidnext: int, ul_id: StatId, stamps: Stamps,
             entries: Iterable[EntryLike]) -> defer.Deferred[bool] | None:
        """Write this view (in a worker thread) unless it is on disk already;
        the Deferred of the write in progress, or None."""
        if self._gen == self._saved:
            return None
        if self._writing is not None:
            self._again = True
            return self._writing
        gen, path = self._gen, self.path
        self._tried = time.time()

        def done(saved: bool) -> bool:
            self._writing = None
            if saved:
                self._saved = gen
            if self._again:
                self._again = False
                self._resave()
            return saved

        def failed(f: Failure) -> bool:
            self._writing = None
            log.warn("{path}: snapshot not written: {err}", path=path, err=f.getErrorMessage())
            return False

        d: defer.Deferred[bool] = threads.deferToThread(save, path, uidvalidity, uidnext, ul_id, stamps, entries)
        self._writing = d
        d.addCallbacks(done, failed)
        return d

    def idle(self) -> defer.Deferred[None]:
        """Fires once no snapshot write is running, the one a request during
        a write started afterwards included (stop, tests, benchmarks)."""
        if self._writing is None:
            return defer.succeed(None)
        d: defer.Deferred[None] = defer.Deferred()

        def fire(result: object) -> object:
            # done() ran first and may have started the coalesced write
            self.idle().chainDeferred(d)
            return result

        self._writing.addBoth(fire)
        return d
