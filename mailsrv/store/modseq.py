"""Persistent mod-sequences (RFC 7162 CONDSTORE/QRESYNC) of one Maildir
folder, in ``mailsrv-modseq.sqlite`` inside it.

What has to hold: a folder's HIGHESTMODSEQ never goes backwards - across
restarts, ``kill -9``, power loss, reindexing, and changes made by other
programs (a Dovecot serving the same Maildir, a delivery agent writing
``new/``, anyone renaming files in ``cur/``) - and each message's
mod-sequence is that of its last change, so ``CHANGEDSINCE n`` misses
nothing.  Expunged UIDs are remembered with the mod-sequence of their
expunge, for ``VANISHED (EARLIER)``.

How:

- **Write-ahead.**  Every change the live folder makes is recorded here,
  in the worker thread of the operation, before the folder applies it and
  any session can see the new mod-sequence (SQLite WAL: a commit survives
  the process dying).  One operation (a STORE, an EXPUNGE, a batch of
  arrivals, a rescan) gets one mod-sequence for all it changed, as RFC
  7162 allows and Dovecot does.
- **Reconciliation.**  Opening a folder compares what is recorded (UID,
  mod-sequence, flags of each message) with what is on disk.  A message
  whose flags differ, one that is new, one that is gone - changed by
  another program, or by us just before a crash lost the record - gets a
  fresh mod-sequence, above everything handed out before.  So does
  anything a rescan of a live folder finds changed.
- **The ceiling.**  Mod-sequences are handed out below a *ceiling*
  written durably (fsync) ahead of use, in steps of :data:`RESERVE`.
  After an unclean stop the folder continues from the ceiling, so even a
  record lost to power failure cannot make a number repeat.  A missing or
  unreadable file (deleted by hand, damaged) restarts the numbering at
  the current time in microseconds, which is above anything a counter
  started earlier can have reached; a new UIDVALIDITY restarts it at 1
  (clients discard everything they know then, RFC 7162 3.1.2).
- **Layout.**  ``base`` holds the whole table as of the last compaction
  in three column blobs (UIDs, mod-sequences, canonical flag strings: a
  100,000-message folder loads in milliseconds); ``log`` the latest state
  of each message changed since; ``gone`` the expunge record.  The table
  is compacted when a folder is opened or closed with a long log.
- **Trimming.**  The expunge record keeps the :data:`EXPUNGE_KEEP` most
  recent expunges; ``vanished_floor`` is the mod-sequence from which it is
  complete.  Asked about an earlier one, the folder answers with every
  UID below UIDNEXT that no longer exists (RFC 7162 3.2.5.2 allows the
  superset).

Everything here blocks: it runs in the live folder's worker thread, one
operation at a time (the folder's lock), and is not a cache - ``mailsrv
check`` and ``reindex`` leave the file alone.  The Maildir stays what
Dovecot reads; Dovecot ignores the file.
"""

from __future__ import annotations

import os
import sqlite3
import sys
import time
from array import array
from bisect import bisect_left
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field

from twisted.logger import Logger

from mailsrv.store.fsutil import unlink_quiet

log = Logger(namespace="mailsrv.store")

MODSEQ_FILE = "mailsrv-modseq.sqlite"
VERSION = "1"
RESERVE = 10_000  # mod-sequences reserved (durably) ahead of use
EXPUNGE_KEEP = 100_000  # expunged UIDs remembered per folder
_SEP = "\n"
_SIDE_FILES = ("", "-wal", "-shm", "-journal")


def trim_point(count: int) -> int:
    """How many of ``count`` remembered expunges to forget now: the oldest
    beyond :data:`EXPUNGE_KEEP`, once they are a tenth more (so trimming
    happens now and then, not on every expunge)."""
    excess = count - EXPUNGE_KEEP
    return excess if excess > EXPUNGE_KEEP // 10 else 0


def canonical(flags: Iterable[str]) -> str:
    """The recorded form of a flag set: sorted, space-separated."""
    return " ".join(sorted(flags))


@dataclass
class Loaded:
    """A folder's mod-sequences after opening: one per message (aligned
    with the UIDs the folder was opened with), the highest, the expunge
    record (ascending by mod-sequence) and where it is complete from."""

    modseqs: list[int]
    highest: int
    gone_uids: array = field(default_factory=lambda: array("q"))
    gone_modseqs: array = field(default_factory=lambda: array("q"))
    vanished_floor: int = 1


@dataclass
class _Recorded:
    """What the file says, merged: ascending UIDs with their mod-sequences
    and flags; expunged UIDs with theirs (ascending by mod-sequence)."""

    uids: array
    modseqs: array
    flags: list[str]
    gone_uids: array
    gone_modseqs: array
    highest: int
    ceiling: int
    clean: bool
    floor: int
    log_rows: int


def _fresh_start() -> int:
    """Where numbering restarts when the record is lost: microseconds since
    the epoch, beyond what a counter of one step per change, started
    earlier, can have reached."""
    return int(time.time() * 1_000_000)


class ModseqFile:
    """One folder's record, used from its worker thread only."""

    def __init__(self, folder_dir: str) -> None:
        self.dir = folder_dir
        self.highest = 1
        self.ceiling = 0
        self.floor = 1
        self._db: sqlite3.Connection | None = None
        self._stale = False
        self._closed = False  # closed cleanly: the next change marks the file in use again
        self._confirmed: list[int] = []  # flag changes now in the file names: their pending marks go
        self.log_rows = 0

    @property
    def path(self) -> str:
        return os.path.join(self.dir, MODSEQ_FILE)

    # -- the file ----------------------------------------------------------------------

    def _conn(self) -> sqlite3.Connection:
        if self._stale:
            self._stale = False
            self.close_file()
        if self._db is None:
            db = sqlite3.connect(self.path, isolation_level=None, timeout=30, check_same_thread=False)
            try:
                db.execute("PRAGMA journal_mode=WAL")
                db.execute("PRAGMA synchronous=NORMAL")
                db.execute("CREATE TABLE IF NOT EXISTS meta (k TEXT PRIMARY KEY, v TEXT)")
                db.execute("CREATE TABLE IF NOT EXISTS base (name TEXT PRIMARY KEY, data BLOB)")
                db.execute("CREATE TABLE IF NOT EXISTS log (uid INTEGER PRIMARY KEY, modseq INTEGER, flags TEXT)")
                db.execute("CREATE TABLE IF NOT EXISTS gone (uid INTEGER PRIMARY KEY, modseq INTEGER)")
                db.execute("CREATE TABLE IF NOT EXISTS pending (uid INTEGER PRIMARY KEY, flags TEXT)")
            except sqlite3.Error:
                db.close()
                raise
            self._db = db
        return self._db

    def close_file(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None

    def moved(self, folder_dir: str) -> None:
        """The folder was renamed (no operation running; called from the
        reactor, so the file is reopened by the next operation's thread)."""
        self.dir = folder_dir
        self._stale = True

    def _discard_broken(self, err: Exception) -> None:
        log.critical("{path} unusable ({err}); mod-sequences restart above all earlier ones",
                     path=self.path, err=err)
        self.close_file()
        for suffix in _SIDE_FILES:
            unlink_quiet(self.path + suffix)

    def _read(self, uidvalidity: int) -> _Recorded | str:
        """The record; "none" when there is none yet, "uidvalidity" when it
        is of another UIDVALIDITY.  Raises on a damaged or foreign file."""
        db = self._conn()
        meta = dict(db.execute("SELECT k, v FROM meta").fetchall())
        if "version" not in meta:
            return "none"
        if meta.get("version") != VERSION or meta.get("byteorder") != sys.byteorder:
            raise ValueError(f"version {meta.get('version')} / {meta.get('byteorder')}")
        if int(meta["uidvalidity"]) != uidvalidity:
            log.info("{path}: UIDVALIDITY changed; mod-sequences start again", path=self.path)
            return "uidvalidity"
        blobs = dict(db.execute("SELECT name, data FROM base").fetchall())
        uids, modseqs = array("q"), array("q")
        uids.frombytes(blobs.get("uids", b""))
        modseqs.frombytes(blobs.get("modseqs", b""))
        text = bytes(blobs.get("flags", b"")).decode("utf-8", "surrogateescape")
        flags = text.split(_SEP) if uids else []
        if not len(uids) == len(modseqs) == len(flags):
            raise ValueError("base columns disagree")
        logged = db.execute("SELECT uid, modseq, flags FROM log ORDER BY uid").fetchall()
        gone = db.execute("SELECT uid, modseq FROM gone ORDER BY modseq, uid").fetchall()
        rec = _Recorded(uids, modseqs, flags, array("q", (u for u, _m in gone)), array("q", (m for _u, m in gone)),
                        int(meta["highest"]), int(meta["ceiling"]), meta.get("clean") == "1",
                        int(meta["floor"]), len(logged))
        if logged or gone:
            _merge_log(rec, logged, {u for u, _m in gone})
        return rec

    # -- opening -----------------------------------------------------------------------

    def load(self, uidvalidity: int, uidnext: int, uids: Sequence[int], flags: Sequence[str]) -> Loaded:
        """Open the record for a folder whose messages are ``uids``
        (ascending) with ``flags`` (canonical strings); reconcile, reserve a
        new ceiling, mark the file in use.  Returns each message's
        mod-sequence."""
        try:
            rec = self._read(uidvalidity)
        except (sqlite3.Error, KeyError, ValueError, TypeError) as e:
            self._discard_broken(e)
            rec = "lost"
        if isinstance(rec, _Recorded):
            return self._reconcile(rec, uids, flags)
        if rec == "uidvalidity" or (not uids and uidnext <= 1):
            start = 1  # a new numbering (RFC 7162 3.1.2), or a new folder
        else:
            start = _fresh_start()  # messages from before any record we have
        return self._create(uidvalidity, uids, flags, start)

    def _create(self, uidvalidity: int, uids: Sequence[int], flags: Sequence[str], start: int) -> Loaded:
        """A new record: every message at ``start``."""
        self.highest = start
        self.ceiling = start + RESERVE
        with self._transaction(durable=True) as db:
            db.execute("DELETE FROM meta")
            db.execute("DELETE FROM log")
            db.execute("DELETE FROM gone")
            db.execute("DELETE FROM pending")
            db.executemany("INSERT INTO meta VALUES (?, ?)", [
                ("version", VERSION), ("byteorder", sys.byteorder), ("uidvalidity", str(uidvalidity)),
                ("highest", str(start)), ("ceiling", str(self.ceiling)), ("clean", "0"), ("floor", str(start))])
            self._write_base(db, array("q", uids), array("q", [start]) * len(uids), flags)
        self.log_rows, self.floor = 0, start
        return Loaded([start] * len(uids), start, vanished_floor=start)

    def _reconcile(self, rec: _Recorded, uids: Sequence[int], flags: Sequence[str]) -> Loaded:
        """Compare the record with the folder; what differs gets a new
        mod-sequence, recorded before anyone sees it."""
        self.highest = rec.highest if rec.clean else max(rec.highest, rec.ceiling)
        self.ceiling = 0  # reserved anew below, whatever the file says
        self.log_rows = rec.log_rows
        if len(rec.uids) == len(uids) and rec.uids.tolist() == list(uids) and rec.flags == list(flags):
            modseqs = rec.modseqs.tolist()
            changed: list[tuple[int, str]] = []
            gone: list[int] = []
        else:
            modseqs, changed, gone = _diff(rec, uids, flags)
        with self._transaction(durable=True) as db:
            db.execute("DELETE FROM pending")  # redone by the folder before it loaded this
            if changed or gone:
                m = self.highest = self.highest + 1
                for i in (i for i, m_ in enumerate(modseqs) if m_ == 0):
                    modseqs[i] = m
                self._write_changes(db, m, changed, gone)
                rec.gone_uids.extend(gone)
                rec.gone_modseqs.extend([m] * len(gone))
            self.ceiling = self.highest + RESERVE
            db.executemany("INSERT OR REPLACE INTO meta VALUES (?, ?)", [
                ("highest", str(self.highest)), ("ceiling", str(self.ceiling)), ("clean", "0")])
        floor = self.floor = rec.floor
        gone_uids, gone_modseqs = rec.gone_uids, rec.gone_modseqs
        cut = trim_point(len(gone_uids))
        if cut:
            floor = max(floor, gone_modseqs[cut - 1])
            gone_uids, gone_modseqs = gone_uids[cut:], gone_modseqs[cut:]
        return Loaded(modseqs, self.highest, gone_uids, gone_modseqs, floor)

    @contextmanager
    def _transaction(self, durable: bool = False) -> Iterator[sqlite3.Connection]:
        """One transaction; ``durable``: committed with an fsync (a new
        ceiling must survive power loss, not only the process dying)."""
        db = self._conn()
        if durable:
            db.execute("PRAGMA synchronous=FULL")
        try:
            db.execute("BEGIN")
            try:
                yield db
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")
        finally:
            if durable:
                db.execute("PRAGMA synchronous=NORMAL")

    # -- changes -----------------------------------------------------------------------

    def next_modseq(self) -> int:
        """The mod-sequence of the next change (one per operation); the
        ceiling is moved up durably first when it is near."""
        if self.highest + 1 > self.ceiling - RESERVE // 2 or self._closed:
            self.ceiling = self.highest + RESERVE
            with self._transaction(durable=True) as db:
                db.executemany("INSERT OR REPLACE INTO meta VALUES (?, ?)", [
                    ("ceiling", str(self.ceiling)), ("clean", "0")])
            self._closed = False
        self.highest += 1
        return self.highest

    def record(self, modseq: int, changed: Iterable[tuple[int, str]], gone: Iterable[int] = (),
               pending: bool = False) -> None:
        """Record one operation: ``changed`` (UID, canonical flags) now at
        ``modseq``, ``gone`` expunged at ``modseq``.  ``pending``: the flags
        are not in the file names yet (:meth:`confirm` when they are);
        opening the folder redoes what is still pending."""
        changed = list(changed)
        with self._transaction() as db:
            self._flush_confirmed(db)
            self._write_changes(db, modseq, changed, gone)
            if pending:
                db.executemany("INSERT OR REPLACE INTO pending VALUES (?, ?)", changed)
            db.execute("INSERT OR REPLACE INTO meta VALUES ('highest', ?)", (str(max(modseq, self.highest)),))

    def _write_changes(self, db: sqlite3.Connection, modseq: int, changed: Iterable[tuple[int, str]],
                       gone: Iterable[int]) -> None:
        rows = [(u, modseq, f) for u, f in changed]
        if rows:
            db.executemany("INSERT OR REPLACE INTO log VALUES (?, ?, ?)", rows)
            self.log_rows += len(rows)
        dead = [(u,) for u in gone]
        if dead:
            db.executemany("DELETE FROM log WHERE uid=?", dead)
            db.executemany("DELETE FROM pending WHERE uid=?", dead)
            db.executemany("INSERT OR REPLACE INTO gone VALUES (?, ?)", [(u, modseq) for (u,) in dead])

    def confirm(self, uids: Iterable[int]) -> None:
        """These messages' recorded flags are in their file names now; the
        pending marks are dropped with the next write (no I/O here: callable
        from the reactor)."""
        self._confirmed.extend(uids)

    def _flush_confirmed(self, db: sqlite3.Connection) -> None:
        if self._confirmed:
            db.executemany("DELETE FROM pending WHERE uid=?", [(u,) for u in self._confirmed])
            self._confirmed = []

    def pending(self, uidvalidity: int) -> dict[int, str]:
        """Flag changes recorded (answered to a client) but maybe not in the
        file names yet, when the process stopped: UID -> canonical flags."""
        try:
            db = self._conn()
            row = db.execute("SELECT v FROM meta WHERE k='uidvalidity'").fetchone()
            if row is None or row[0] != str(uidvalidity):
                return {}
            return dict(db.execute("SELECT uid, flags FROM pending").fetchall())
        except sqlite3.Error:
            return {}  # load() reports the damaged file

    def _write_base(self, db: sqlite3.Connection, uids: array, modseqs: array, flags: Sequence[str]) -> None:
        text = _SEP.join(flags)
        if text.count(_SEP) != max(0, len(flags) - 1):
            raise ValueError("a flag holds a line break")
        db.execute("DELETE FROM base")
        db.executemany("INSERT INTO base VALUES (?, ?)", [
            ("uids", uids.tobytes()), ("modseqs", modseqs.tobytes()),
            ("flags", text.encode("utf-8", "surrogateescape"))])

    def compact_due(self, count: int) -> bool:
        return self.log_rows > 1000 + count // 4

    def close(self, uids: Sequence[int], modseqs: Sequence[int], flags: Sequence[str], floor: int) -> None:
        """The folder goes away with this state: written as the new base
        when the log grew long or the expunge record was trimmed (to
        ``floor``: expunges at or below it are forgotten), and the file
        marked cleanly closed."""
        try:
            with self._transaction() as db:
                self._flush_confirmed(db)
                if self.compact_due(len(uids)) or floor > self.floor:
                    self._write_base(db, array("q", uids), array("q", modseqs), flags)
                    db.execute("DELETE FROM log")
                    db.execute("DELETE FROM gone WHERE modseq <= ?", (floor,))
                    db.execute("INSERT OR REPLACE INTO meta VALUES ('floor', ?)", (str(floor),))
                    self.log_rows, self.floor = 0, floor
                db.executemany("INSERT OR REPLACE INTO meta VALUES (?, ?)", [
                    ("highest", str(self.highest)), ("clean", "1")])
            self._closed = True
        except (sqlite3.Error, ValueError) as e:
            log.warn("{path}: not closed cleanly ({err}); the next open continues from the ceiling",
                     path=self.path, err=e)
        finally:
            self.close_file()


def _merge_log(rec: _Recorded, logged: list[tuple[int, int, str]], gone: set[int]) -> None:
    """Apply the log (later states of some messages, or new ones) and the
    expunge record to the base columns, in place."""
    uids, modseqs, flags = rec.uids, rec.modseqs, rec.flags
    extra: list[tuple[int, int, str]] = []
    for u, m, f in logged:
        i = bisect_left(uids, u)
        if i < len(uids) and uids[i] == u:
            modseqs[i] = m
            flags[i] = f
        else:
            extra.append((u, m, f))
    rows = list(zip(uids, modseqs, flags, strict=True))
    if extra:
        rows = sorted(rows + extra)
    if gone:
        rows = [r for r in rows if r[0] not in gone]
    if extra or gone:
        rec.uids = array("q", (r[0] for r in rows))
        rec.modseqs = array("q", (r[1] for r in rows))
        rec.flags = [r[2] for r in rows]


def _diff(rec: _Recorded, uids: Sequence[int], flags: Sequence[str]
          ) -> tuple[list[int], list[tuple[int, str]], list[int]]:
    """Per message of the folder, its recorded mod-sequence (0: changed or
    new, to get the next one); the changed and new messages; the recorded
    UIDs that are gone."""
    r_uids, r_modseqs, r_flags = rec.uids, rec.modseqs, rec.flags
    n = len(r_uids)
    j = 0
    modseqs: list[int] = []
    changed: list[tuple[int, str]] = []
    gone: list[int] = []
    for u, f in zip(uids, flags, strict=True):
        while j < n and r_uids[j] < u:
            gone.append(r_uids[j])
            j += 1
        if j < n and r_uids[j] == u:
            if r_flags[j] == f:
                modseqs.append(r_modseqs[j])
            else:
                modseqs.append(0)
                changed.append((u, f))
            j += 1
        else:
            modseqs.append(0)
            changed.append((u, f))
    gone.extend(r_uids[j:])
    return modseqs, changed, gone


def remove(folder_dir: str) -> None:
    """Remove a folder's record (tests; a deleted folder takes it along)."""
    for suffix in _SIDE_FILES:
        unlink_quiet(os.path.join(folder_dir, MODSEQ_FILE) + suffix)
