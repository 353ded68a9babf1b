"""Per-folder cache of derived message data (envelope, bodystructure,
parsed headers, ...) in ``mailsrv-cache.sqlite`` inside the folder.

It is only a cache: it is thrown away when UIDVALIDITY changes or the file
is damaged, and losing writes in a crash costs a re-parse, nothing more.
So writes are batched (committed on a short reactor timer or every
FLUSH_EVERY values) with ``synchronous=OFF``.

Rows are keyed (kind, uid) so a bulk read of one kind over a UID range
(:meth:`FolderCache.get_many`, what ``FETCH 1:*`` needs) is one contiguous
index range, not a walk over every other kind's (larger) values.  Values
about the folder as a whole (packed sort columns) use uid FOLDER_WIDE.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Iterable, Sequence

from twisted.internet.interfaces import IDelayedCall
from twisted.logger import Logger

from mailsrv.store.fsutil import unlink_quiet

log = Logger(namespace="mailsrv.store")

CACHE_FILE = "mailsrv-cache.sqlite"
_SQLITE_SIDE_FILES = ("", "-journal", "-wal", "-shm")
FLUSH_DELAY = 1.0
FLUSH_EVERY = 500
SCHEMA = "2"  # (kind, uid) primary key; older files are rebuilt
IN_CHUNK = 500  # uids per ``uid IN (...)`` query
# Search texts (a header field's decoded values, a few dozen bytes a
# message) are also kept in memory per kind once asked for, up to HOT_BYTES
# per folder: a header SEARCH by several sessions is then no query at all.
HOT_PREFIXES = ("hs:", "ha:")
HOT_BYTES = 16 << 20
FOLDER_WIDE = 0  # the row "uid" of folder-wide values (no message has UID 0)


def remove(folder_dir: str) -> None:
    """Remove a folder's cache file (with SQLite's side files) so it is
    rebuilt on demand; a running server that has it open keeps its handle
    on the old file until it reopens the folder.  A file that will not go
    is an error (OSError): the caller reported it removed otherwise."""
    path = os.path.join(folder_dir, CACHE_FILE)
    for suffix in _SQLITE_SIDE_FILES:
        try:
            os.unlink(path + suffix)
        except FileNotFoundError:
            pass


def check_file(folder_dir: str, uidvalidity: int | None) -> str | None:
    """Why a folder's cache file must be rebuilt (damaged, unreadable, kept
    for another UIDVALIDITY), or None when it is absent or usable.  Reads
    only; for ``mailsrv check``."""
    p = os.path.join(folder_dir, CACHE_FILE)
    if not os.path.exists(p):
        return None
    try:
        db = sqlite3.connect(f"file:{p}?mode=ro", uri=True, timeout=5)
        try:
            ok = db.execute("PRAGMA quick_check").fetchone()
            if not ok or ok[0] != "ok":
                return "cache file damaged"
            row = db.execute("SELECT v FROM meta WHERE k='uidvalidity'").fetchone()
        finally:
            db.close()
    except sqlite3.DatabaseError as e:
        return f"cache file unreadable ({e})"
    if uidvalidity is not None and row is not None and row[0] != str(uidvalidity):
        return f"cache is for UIDVALIDITY {row[0]}, folder has {uidvalidity}"
    return None


class FolderCache:
    """Lazily opened; every method runs in the reactor thread."""

    def __init__(self, folder_dir: str) -> None:
        self.path = os.path.join(folder_dir, CACHE_FILE)
        self.uidvalidity = 0
        self._db: sqlite3.Connection | None = None
        self._pending: dict[tuple[int, str], bytes] = {}
        self._timer: IDelayedCall | None = None
        self._broken = False
        self._hot: dict[str, dict[int, bytes]] = {}  # kind -> every value of it, in insertion (use) order
        self._hot_bytes = 0

    def _conn(self) -> sqlite3.Connection | None:
        if self._db is not None or self._broken:
            return self._db
        for _attempt in (1, 2):
            try:
                db = sqlite3.connect(self.path, isolation_level=None, timeout=5)
                db.execute("PRAGMA synchronous=OFF")
                db.execute("CREATE TABLE IF NOT EXISTS meta (k TEXT PRIMARY KEY, v TEXT)")
                row = db.execute("SELECT v FROM meta WHERE k='schema'").fetchone()
                if row is None or row[0] != SCHEMA:
                    db.execute("DROP TABLE IF EXISTS cache")
                    db.execute("INSERT OR REPLACE INTO meta VALUES ('schema', ?)", (SCHEMA,))
                db.execute("CREATE TABLE IF NOT EXISTS cache (kind TEXT, uid INTEGER, value BLOB, "
                           "PRIMARY KEY (kind, uid)) WITHOUT ROWID")
                db.execute("CREATE INDEX IF NOT EXISTS cache_uid ON cache (uid)")
                row = db.execute("SELECT v FROM meta WHERE k='uidvalidity'").fetchone()
                if row is None or row[0] != str(self.uidvalidity):
                    db.execute("DELETE FROM cache")
                    db.execute("INSERT OR REPLACE INTO meta VALUES ('uidvalidity', ?)", (str(self.uidvalidity),))
                self._db = db
                return db
            except sqlite3.DatabaseError as e:
                log.warn("cache {path} unusable ({err}); recreating", path=self.path, err=e)
                for suffix in _SQLITE_SIDE_FILES:
                    unlink_quiet(self.path + suffix)
        self._broken = True
        return None

    def set_uidvalidity(self, uidvalidity: int) -> None:
        """A new UIDVALIDITY makes every cached value meaningless."""
        if uidvalidity == self.uidvalidity:
            return
        self.uidvalidity = uidvalidity
        self._pending.clear()
        self._hot.clear()
        self._hot_bytes = 0
        if self._db is not None:
            self.close()

    def get(self, uid: int, kind: str) -> bytes | None:
        v = self._pending.get((uid, kind))
        if v is not None:
            return v
        db = self._conn()
        if db is None:
            return None
        try:
            row = db.execute("SELECT value FROM cache WHERE kind=? AND uid=?", (kind, uid)).fetchone()
        except sqlite3.Error as e:
            log.warn("cache read failed: {err}", err=e)
            return None
        return None if row is None else bytes(row[0])

    def _hot_kind(self, kind: str) -> dict[int, bytes] | None:
        """Every value of a search-text kind, from memory (loaded whole on
        first use); None when it does not fit."""
        hot = self._hot.pop(kind, None)
        if hot is None:
            db = self._conn()
            if db is None:
                return None
            try:
                hot = dict(db.execute("SELECT uid, value FROM cache WHERE kind=?", (kind,)).fetchall())
            except sqlite3.Error as e:
                log.warn("cache read failed: {err}", err=e)
                return None
            hot.update((u, v) for (u, k), v in self._pending.items() if k == kind)
            size = sum(map(len, hot.values())) + 64 * len(hot)
            while self._hot and self._hot_bytes + size > HOT_BYTES:
                self._drop_hot(next(iter(self._hot)))
            if size > HOT_BYTES:
                return None
            self._hot_bytes += size
        self._hot[kind] = hot  # most recently used last
        return hot

    def _drop_hot(self, kind: str) -> None:
        hot = self._hot.pop(kind)
        self._hot_bytes -= sum(map(len, hot.values())) + 64 * len(hot)

    def get_many(self, uids: Sequence[int], kind: str) -> dict[int, bytes]:
        """Values of one kind for many messages (missing ones left out), in
        a few queries: one range scan when the UIDs are dense (``1:*``),
        else ``IN`` lists; search texts from memory."""
        out: dict[int, bytes] = {}
        if not uids:
            return out
        if kind.startswith(HOT_PREFIXES):
            hot = self._hot_kind(kind)
            if hot is not None:
                get = hot.get
                return {u: v for u in uids if (v := get(u)) is not None}
        db = self._conn()
        if db is not None:
            wanted = sorted(set(uids))
            lo, hi = wanted[0], wanted[-1]
            try:
                if hi - lo < 2 * len(wanted) + 64:
                    rows = db.execute("SELECT uid, value FROM cache WHERE kind=? AND uid BETWEEN ? AND ?",
                                      (kind, lo, hi))
                    if hi - lo + 1 == len(wanted):
                        out = dict(rows.fetchall())
                    else:
                        keep = set(wanted)
                        out = {u: v for u, v in rows if u in keep}
                else:
                    for i in range(0, len(wanted), IN_CHUNK):
                        part: list[int] = wanted[i:i + IN_CHUNK]
                        q = "SELECT uid, value FROM cache WHERE kind=? AND uid IN (%s)" % ",".join("?" * len(part))
                        out.update(db.execute(q, (kind, *part)).fetchall())
            except sqlite3.Error as e:
                log.warn("cache read failed: {err}", err=e)
                out = {}
        if self._pending:
            for u in uids:
                v = self._pending.get((u, kind))
                if v is not None:
                    out[u] = v
        return out

    def set(self, uid: int, kind: str, value: bytes) -> None:
        value = bytes(value)
        self._pending[(uid, kind)] = value
        hot = self._hot.get(kind)
        if hot is not None:
            old = hot.get(uid)
            hot[uid] = value
            self._hot_bytes += len(value) - (len(old) if old is not None else -64)
        if len(self._pending) >= FLUSH_EVERY:
            self.flush()
        elif self._timer is None:
            from twisted.internet import reactor

            self._timer = reactor.callLater(FLUSH_DELAY, self.flush)

    def forget(self, uids: Iterable[int]) -> None:
        """Values die with their messages."""
        uids = set(uids)
        if not uids:
            return
        for k in [k for k in self._pending if k[0] in uids]:
            del self._pending[k]
        for hot in self._hot.values():
            for u in uids:
                v = hot.pop(u, None)
                if v is not None:
                    self._hot_bytes -= len(v) + 64
        if not os.path.exists(self.path) and self._db is None:
            return
        db = self._conn()
        if db is None:
            return
        try:
            db.execute("BEGIN")
            db.executemany("DELETE FROM cache WHERE uid=?", [(u,) for u in uids])
            db.execute("COMMIT")
        except sqlite3.Error as e:
            log.warn("cache delete failed: {err}", err=e)

    def flush(self) -> None:
        if self._timer is not None:
            if self._timer.active():
                self._timer.cancel()
            self._timer = None
        if not self._pending:
            return
        rows = [(k, u, v) for (u, k), v in self._pending.items()]
        self._pending.clear()
        db = self._conn()
        if db is None:
            return
        try:
            db.execute("BEGIN")
            db.executemany("INSERT OR REPLACE INTO cache VALUES (?, ?, ?)", rows)
            db.execute("COMMIT")
        except sqlite3.Error as e:
            log.warn("cache write failed: {err}", err=e)
            try:
                db.execute("ROLLBACK")
            except sqlite3.Error:
                pass

    def close(self) -> None:
        """Flush and close (before the folder directory is renamed or the
        server stops); the next use reopens it."""
        self.flush()
        if self._db is not None:
            self._db.close()
            self._db = None

    def moved(self, folder_dir: str) -> None:
        self.close()
        self._hot.clear()
        self._hot_bytes = 0
        self.path = os.path.join(folder_dir, CACHE_FILE)
