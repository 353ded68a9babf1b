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
leaves the old one or the new one, never a torn one.  Blocking: call it
from a worker thread.
"""

from __future__ import annotations

import operator
import os
import sqlite3
import sys
import time
import uuid
from array import array
from collections.abc import Iterable
from dataclasses import dataclass

from twisted.logger import Logger

from mailsrv.store.uidlist import UIDLIST, CorruptUidList, fsync_dir, parse_uidlist

log = Logger(namespace="mailsrv.store")

INDEX_FILE = "mailsrv-index.sqlite"
VERSION = "2"  # columnar: one blob per field, so loading 100k entries is a few C-level splits
_NONE = "\x00"  # an info of None (no ':' in the file name)
_SEP = "\n"
# A directory mtime this close to the moment the view was taken may hide a
# change made within the same timestamp tick (some file systems keep whole
# seconds): such a view is not worth recording.
RECENT_NS = 1_000_000_000

StatId = tuple[int, int, int]  # (inode, mtime_ns, size), as maildir.uidlist_id
Entry = tuple[int, str, str, str | None, int, str | None]


@dataclass
class Snapshot:
    """A folder's view: what DiskFolder.sync would return if nothing changed."""

    uidvalidity: int
    uidnext: int
    ul_id: StatId
    stamps: tuple[int, int]
    taken_at: float
    entries: list[Entry]


def _stats(folder_dir: str) -> tuple[StatId, tuple[int, int]] | None:
    try:
        st = os.stat(os.path.join(folder_dir, UIDLIST))
        new = os.stat(os.path.join(folder_dir, "new")).st_mtime_ns
        cur = os.stat(os.path.join(folder_dir, "cur")).st_mtime_ns
    except FileNotFoundError:
        return None
    return (st.st_ino, st.st_mtime_ns, st.st_size), (new, cur)


def _old_enough(ul_id: StatId, stamps: tuple[int, int], at: float) -> bool:
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
        meta = dict(db.execute("SELECT k, v FROM meta").fetchall())
        if meta.get("version") != VERSION or meta.get("byteorder") != sys.byteorder:
            return None
        ul_id = tuple(int(x) for x in meta["ul_id"].split())
        stamps = tuple(int(x) for x in meta["stamps"].split())
        taken_at = float(meta["taken_at"])
        if len(ul_id) != 3 or len(stamps) != 2 or (ul_id, stamps) != now:
            return None
        if not _old_enough(ul_id, stamps, taken_at):
            return None
        uidvalidity, uidnext, count = int(meta["uidvalidity"]), int(meta["uidnext"]), int(meta["count"])
        if _header_uidvalidity(folder_dir) != uidvalidity:
            return None
        cols = dict(db.execute("SELECT name, data FROM cols").fetchall())
        pop3 = dict(db.execute("SELECT uid, pop3 FROM pop3").fetchall())
        entries = _entries(cols, pop3, count)
    except (sqlite3.Error, KeyError, ValueError, TypeError, UnicodeError) as e:
        log.warn("{path} unusable ({err}); scanning the folder", path=path, err=e)
        return None
    finally:
        db.close()
    if entries is None or (entries and entries[-1][0] >= uidnext):
        log.warn("{path} is inconsistent; scanning the folder", path=path)
        return None
    if _stats(folder_dir) != now:
        return None  # changed while we read: the snapshot may be stale
    return Snapshot(uidvalidity, uidnext, ul_id, stamps, taken_at, entries)


def _entries(cols: dict, pop3: dict, count: int) -> list[Entry] | None:
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
    info_of = {_NONE: None}
    get_pop3 = pop3.get
    return [(uid, key, sub_names[sub], info_of.get(info, info), size, get_pop3(uid))
            for uid, key, sub, info, size in zip(uids, keys, subs, infos, sizes)]


def save(folder_dir: str, uidvalidity: int, uidnext: int, ul_id: StatId, stamps: tuple[int, int],
         entries: Iterable[Entry]) -> bool:
    """Record a view if the folder still matches it and its mtimes are old
    enough to be trusted; False when there was nothing worth writing."""
    taken_at = time.time()
    if _stats(folder_dir) != (tuple(ul_id), tuple(stamps)) or not _old_enough(ul_id, stamps, taken_at):
        return False
    path = os.path.join(folder_dir, INDEX_FILE)
    tmp = f"{path}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp"
    try:
        db = sqlite3.connect(tmp, isolation_level=None)
        try:
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
            db.executemany("INSERT INTO meta VALUES (?, ?)", [
                ("version", VERSION), ("byteorder", sys.byteorder), ("uidvalidity", str(uidvalidity)),
                ("uidnext", str(uidnext)), ("ul_id", " ".join(map(str, ul_id))),
                ("stamps", " ".join(map(str, stamps))), ("taken_at", repr(taken_at)), ("count", str(count))])
            db.execute("COMMIT")
        finally:
            db.close()
        fd = os.open(tmp, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        os.rename(tmp, path)
        fsync_dir(folder_dir)
    except (OSError, sqlite3.Error, ValueError) as e:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        if os.path.isdir(folder_dir):
            log.warn("cannot write {path}: {err}", path=path, err=e)
        return False
    return True


def _columns(entries: Iterable[Entry]):
    """(count, [(column name, blob)], [(uid, pop3)]), or None when a name
    holds the separator (never in a sane Maildir; such a folder is scanned)."""
    uids, sizes = array("q"), array("q")
    keys: list[str] = []
    subs: list[str] = []
    infos: list[str] = []
    pop3 = []
    for uid, key, sub, info, size, p in entries:
        uids.append(uid)
        sizes.append(size)
        keys.append(key)
        subs.append("n" if sub == "new" else "c")
        infos.append(_NONE if info is None else info)
        if p is not None:
            pop3.append((uid, p))
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
    try:
        os.unlink(os.path.join(folder_dir, INDEX_FILE))
    except OSError:
        pass
