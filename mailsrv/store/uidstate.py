"""``dovecot-uidlist`` as one folder's disk half holds it between
operations: parsed once and re-read only when another process changed the
file (merging just what it appended, when that is all it did), parsed
lazily after a snapshot open, rebuilt with a new UIDVALIDITY when lost or
corrupt, and written back Dovecot's way - new records appended, the file
rewritten only when an existing record changed or enough of it is dead.

The file format itself is :mod:`mailsrv.store.uidlist`'s; the scanning and
renaming around it :mod:`mailsrv.store.diskfolder`'s.  Blocking, one thread
at a time, the caller holding :meth:`UidListState.lock` for any change.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

from twisted.logger import Logger

from mailsrv.store.filename import filename_size
from mailsrv.store.interfaces import StoreError
from mailsrv.store.uidlist import (
    UIDLIST,
    CorruptUidList,
    DotLock,
    UidList,
    append_uidlist,
    fresh_uidvalidity,
    new_guid,
    peek_uidlist,
    read_appended,
    read_uidlist,
    write_uidlist,
)

log = Logger(namespace="mailsrv.store")

StatId = tuple[int, int, int]  # (inode, mtime_ns, size) of the uid list file
# Rewrite the uid list instead of appending once this many of its lines
# are dead, or when it is small enough that a rewrite costs nothing.
COMPACT_FRACTION = 0.25
COMPACT_SMALL_BYTES = 64 * 1024


def stat_id(st: os.stat_result) -> StatId:
    return (st.st_ino, st.st_mtime_ns, st.st_size)


def uidlist_id(folder_dir: str) -> StatId | None:
    """What identifies one state of the uid list file: (inode, mtime, size)."""
    try:
        st = os.stat(os.path.join(folder_dir, UIDLIST))
    except FileNotFoundError:
        return None
    return stat_id(st)


class UidListState:
    """The parsed uid list (``ul``) and the file state it matches
    (``file_id``; None when there is no file yet, or it was rebuilt and not
    written).  ``rebuilt`` is set by a rebuild in the current operation
    (see :meth:`begin`), ``lost`` when a rebuild replaced a list that
    existed, until the next scan reports it."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.ul: UidList | None = None
        self.file_id: StatId | None = None
        self.rebuilt = False
        self.lost = False
        self.last_uidvalidity = 0
        self._appends: list[str] = []  # keys given UIDs since the last write
        self._dirty = False  # an existing record changed: rewrite the file
        # Opened from the snapshot: (uidvalidity, uidnext) it recorded; the
        # file (whose id is file_id) is parsed only when first needed.
        self._lazy: tuple[int, int] | None = None

    def lock(self) -> DotLock:
        return DotLock(os.path.join(self.path, UIDLIST))

    def begin(self) -> None:
        """An operation starts (its lock held): no rebuild of its own yet."""
        self.rebuilt = False

    def held(self) -> UidList:
        """The parsed list, which every caller has loaded (or rebuilt) first."""
        ul = self.ul
        assert ul is not None, "uid list not loaded"
        return ul

    def known(self) -> bool:
        """We hold the list, or know it from a snapshot."""
        return self.ul is not None or self._lazy is not None

    def uidnext(self) -> int | None:
        if self.ul is not None:
            return self.ul.uidnext
        return self._lazy[1] if self._lazy is not None else None

    def adopt_snapshot(self, file_id: StatId, uidvalidity: int, uidnext: int) -> None:
        """The folder was opened from its snapshot of the file ``file_id``
        (which said ``uidvalidity``/``uidnext``): parse it when first needed."""
        self.ul = None
        self.file_id = file_id
        self._lazy = (uidvalidity, uidnext)
        self._appends, self._dirty = [], False
        self.last_uidvalidity = uidvalidity

    # reading ---------------------------------------------------------------------

    def reload(self) -> bool:
        """Re-read the uid list if another process changed it.  Returns True
        when it changed (or was missing / corrupt and got recreated)."""
        try:
            st: os.stat_result | None = os.stat(os.path.join(self.path, UIDLIST))
        except FileNotFoundError:
            st = None
        if self._lazy is not None and self._load_lazy(st):
            return False
        if self.ul is not None and (self.file_id == (None if st is None else stat_id(st))):
            return False  # unchanged, or rebuilt in this operation and not written yet
        if st is not None and self._read_appended(st):
            return True
        self._read_whole()
        return True

    def _read_appended(self, st: os.stat_result) -> bool:
        """Merge only what another process appended to the file we hold."""
        old = self.ul
        if (old is None or self.file_id is None or self._appends or self._dirty
                or st.st_ino != self.file_id[0]):
            return False
        try:
            if read_appended(self.path, old, st):
                self.file_id = stat_id(st)
                return True
        except OSError:
            pass
        return False

    def _read_whole(self) -> None:
        old = self.ul
        self._appends, self._dirty = [], False
        try:
            ul, st = read_uidlist(self.path)
        except CorruptUidList as e:
            log.critical("{path}: corrupt {file} ({err}); rebuilding with a NEW UIDVALIDITY - "
                         "clients will re-download this folder", path=self.path, file=UIDLIST, err=e)
            self._rebuild(old, lost=True)
            return
        if ul is None or st is None:
            self._rebuild(old, lost=old is not None)
            return
        if ul.bad_lines:
            log.warn("{path}: skipped {n} unreadable lines of {file}", path=self.path, n=ul.bad_lines,
                     file=UIDLIST)
            self._dirty = True
        if not ul.guid:
            ul.guid = new_guid()
            self._dirty = True
        if old is not None and old.uidvalidity != ul.uidvalidity:
            log.warn("{path}: UIDVALIDITY changed on disk from {old} to {new}", path=self.path,
                     old=old.uidvalidity, new=ul.uidvalidity)
        self.ul = ul
        self.last_uidvalidity = ul.uidvalidity
        self.file_id = stat_id(st)

    def _load_lazy(self, st: os.stat_result | None) -> bool:
        """Parse the uid list a snapshot open skipped.  True when it is the
        file the snapshot was taken from and agrees with it; otherwise the
        caller reads it the ordinary way and the folder is rescanned (the
        uid list, not the snapshot, is the authority on UIDs)."""
        expected, self._lazy = self._lazy, None
        if st is None or self.file_id != stat_id(st):
            self.ul = self.file_id = None
            return False
        try:
            ul, st2 = read_uidlist(self.path)
        except CorruptUidList:
            ul = st2 = None
        if (ul is None or st2 is None or stat_id(st2) != self.file_id
                or (ul.uidvalidity, ul.uidnext) != expected or ul.bad_lines or not ul.guid):
            log.warn("{path}: {file} disagrees with the index; rescanning", path=self.path, file=UIDLIST)
            self.ul = self.file_id = None
            return False
        self.ul = ul
        return True

    def _rebuild(self, old: UidList | None, lost: bool) -> None:
        avoid = max(self.last_uidvalidity, old.uidvalidity if old else 0)
        self.ul = UidList(uidvalidity=fresh_uidvalidity(avoid), uidnext=1, guid=new_guid())
        self.file_id = None
        self.rebuilt = True
        self.lost = self.lost or lost
        self.last_uidvalidity = self.ul.uidvalidity

    # changing --------------------------------------------------------------------

    def give(self, key: str) -> int:
        """The next UID, for the file ``key`` (the hot path of a scan)."""
        ul = self.ul
        assert ul is not None
        uid = ul.uids[key] = ul.uidnext
        ul.uidnext += 1
        if key in ul.dead:
            self._dirty = True  # its old line is still in the file
        self._appends.append(key)
        return uid

    def drop(self, key: str) -> None:
        """Forget ``key``'s UID: its file is gone."""
        ul = self.held()
        if ul.uids.pop(key, None) is not None:
            ul.dead.add(key)
        ul.exts.pop(key, None)

    def note_size(self, key: str, size: int, existing: bool = False) -> None:
        """Record a CRLF size the file name does not carry (``W``
        extension); ``existing``: on a record already in the file."""
        self.held().exts.setdefault(key, {})["W"] = str(size)
        if existing:
            self._dirty = True

    def _compact_due(self, ul: UidList) -> bool:
        dead = ul.dead_lines()
        return dead > 0 and (ul.valid_size <= COMPACT_SMALL_BYTES or dead > COMPACT_FRACTION * ul.lines)

    def write(self) -> None:
        """Put what changed in memory on disk: append the new records, or
        rewrite the file when there is none yet, an existing record changed
        or enough of it is dead."""
        ul = self.held()
        appends, self._appends = self._appends, []
        if self.file_id is None or self._dirty or not ul.appendable or self._compact_due(ul):
            self._dirty = False
            self.file_id = stat_id(write_uidlist(self.path, ul))
            return
        if not appends:
            return
        st = append_uidlist(self.path, ul, appends, self.file_id[0])
        if st is None:
            self.file_id = stat_id(write_uidlist(self.path, ul))
        else:
            self.file_id = stat_id(st)

    def append_light(self, placed: Sequence[tuple[str, int]]) -> list[int] | None:
        """UIDs for new files (key, CRLF size) of a folder nobody has open,
        reading only the head and tail of the file and appending to it: a
        delivery costs the same into 10 or 100,000 messages.  None when there
        is no usable file (the caller scans instead).  The list is not kept."""
        peek = peek_uidlist(self.path)
        if peek is None:
            return None
        ul, st = peek
        self.ul, self.file_id = ul, stat_id(st)
        uids = []
        for key, size in placed:
            uids.append(self.give(key))
            if filename_size(key) is None:
                ul.exts.setdefault(key, {})["W"] = str(size)
        appends, self._appends = self._appends, []
        if append_uidlist(self.path, ul, appends, st.st_ino) is None:
            raise StoreError(f"{self.path}: {UIDLIST} changed while locked")
        self.ul = self.file_id = None  # only head and tail were read
        return uids
