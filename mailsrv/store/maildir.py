"""Maildir files and the synchronous (thread-side) half of a folder.

Everything here blocks (listdir, fsync, renames, dotlocks) and touches no
reactor state: the live :class:`mailsrv.store.folder.Folder` runs it in a
worker thread, one operation per folder at a time, and the command-line
tools call :func:`deliver` directly.

Filenames follow Dovecot: ``<time>.M<usec>P<pid>Q<n>.<host>,S=<size>,W=<vsize>``
plus ``:2,<flags>``; the part before ``:`` is the message's stable *key*.
"""

from __future__ import annotations

import errno
import io
import itertools
import os
import shutil
import socket
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import BinaryIO, Union

from twisted.logger import Logger

from mailsrv.store import index
from mailsrv.store.crlf import CRLFEncoder
from mailsrv.store.interfaces import StoreError
from mailsrv.store.uidlist import (
    KEYWORDS,
    MAX_KEYWORDS,
    UIDLIST,
    CorruptUidList,
    DotLock,
    UidList,
    append_uidlist,
    clean_stale_temps,
    fresh_uidvalidity,
    fsync_dir,
    new_guid,
    peek_uidlist,
    read_appended,
    read_keywords,
    read_uidlist,
    write_keywords,
    write_uidlist,
)

log = Logger(namespace="mailsrv.store")

FLAG_CHARS = {"\\Draft": "D", "\\Flagged": "F", "\\Answered": "R", "\\Seen": "S", "\\Deleted": "T"}
CHAR_FLAGS = {v: k for k, v in FLAG_CHARS.items()}
_SYSTEM_BY_LOWER = {f.lower(): f for f in FLAG_CHARS}
TMP_MAX_AGE = 36 * 3600  # Dovecot removes tmp/ leftovers after 36 hours
_ATOM_SPECIALS = set('(){%*"\\] ')

Entry = tuple[int, str, str, str | None, int, str | None]  # uid, key, sub, info, size, pop3 uidl


class TooManyKeywords(StoreError):
    """Maildir filenames have room for 26 keywords per folder."""

    code = "LIMIT"


class InvalidFlag(StoreError):
    code = "CANNOT"


# --- filenames -------------------------------------------------------------------

def split_filename(filename: str) -> tuple[str, str | None]:
    """'key:2,FS' -> ('key', '2,FS'); no ':' -> ('key', None)."""
    key, sep, info = filename.partition(":")
    return key, (info if sep else None)


def filename_size(key: str, field_name: str = "W") -> int | None:
    """The ``,W=`` (or ``,S=``) size from a key, if present."""
    i = key.find("," + field_name + "=")
    if i < 0:
        return None
    i += 3
    j = key.find(",", i)
    digits = key[i:] if j < 0 else key[i:j]
    return int(digits) if digits.isdigit() else None


def _host() -> str:
    return socket.gethostname().replace("/", r"\057").replace(":", r"\072").replace(",", r"\054")


_counter = itertools.count(1)
_counter_lock = threading.Lock()


def new_key_base() -> str:
    """A unique Maildir base name (no size fields yet)."""
    with _counter_lock:
        n = next(_counter)
    now = time.time()
    sec = int(now)
    usec = int((now - sec) * 1_000_000)
    return f"{sec}.M{usec:06d}P{os.getpid()}Q{n}.{_host()}"


def normalize_flags(flags: Iterable[str]) -> frozenset:
    """Canonical spelling of system flags, \\Recent dropped, keywords checked."""
    out = set()
    for f in flags:
        if not isinstance(f, str) or not f:
            raise InvalidFlag(f"invalid flag {f!r}")
        if f.startswith("\\"):
            canon = _SYSTEM_BY_LOWER.get(f.lower())
            if canon is None:
                if f.lower() == "\\recent":
                    continue
                raise InvalidFlag(f"unknown system flag {f}")
            out.add(canon)
        else:
            if (_ATOM_SPECIALS.intersection(f) or any(ord(c) < 33 or ord(c) > 126 for c in f)):
                raise InvalidFlag(f"invalid keyword {f!r}")
            out.add(f)
    return frozenset(out)


def flag_chars(info: str | None) -> str:
    if info and info.startswith("2,"):
        return info[2:]
    return ""


def flags_from_info(info: str | None, keywords: Sequence[str | None]) -> frozenset:
    out = []
    for c in flag_chars(info):
        f = CHAR_FLAGS.get(c)
        if f:
            out.append(f)
        elif "a" <= c <= "z":
            idx = ord(c) - 97
            if idx < len(keywords) and keywords[idx]:
                out.append(keywords[idx])
    return frozenset(out)


def info_for(flags: frozenset, keywords: Sequence[str | None], old_info: str | None) -> str:
    """The ``2,<chars>`` info for ``flags``, keeping characters of the old
    info that have no IMAP meaning (P = passed, unknown keyword letters)."""
    index = {k.lower(): i for i, k in enumerate(keywords) if k}
    chars = set()
    for f in flags:
        c = FLAG_CHARS.get(f)
        if c:
            chars.add(c)
        else:
            i = index.get(f.lower())
            if i is None:
                raise TooManyKeywords(f"keyword {f} has no letter in this folder")
            chars.add(chr(97 + i))
    for c in flag_chars(old_info):
        if c in CHAR_FLAGS:
            continue
        if "a" <= c <= "z" and ord(c) - 97 < len(keywords) and keywords[ord(c) - 97]:
            continue
        chars.add(c)
    return "2," + "".join(sorted(chars))


def message_path(folder_dir: str, sub: str, key: str, info: str | None) -> str:
    return os.path.join(folder_dir, sub, key if info is None else f"{key}:{info}")


def locate(folder_dir: str, key: str) -> tuple[str, str | None] | None:
    """(sub, info) where the message with this key is now, after someone
    renamed it; None if it is gone.  Slow path: lists new/ and cur/."""
    for sub in ("cur", "new"):
        try:
            names = os.listdir(os.path.join(folder_dir, sub))
        except FileNotFoundError:
            continue
        for n in names:
            if n.startswith(key) and (len(n) == len(key) or n[len(key)] == ":"):
                return sub, split_filename(n)[1]
    return None


def file_crlf_size(path: str) -> int:
    norm = CRLFEncoder()
    total = 0
    with open(path, "rb") as f:
        while True:
            chunk = f.read(1 << 16)
            if not chunk:
                return total
            total += len(norm.feed(chunk))


# --- writing message files ---------------------------------------------------------

Source = Union[bytes, bytearray, memoryview, BinaryIO]


def write_tmp(folder_dir: str, source: Source, internaldate: float | None = None) -> tuple[str, int, int]:
    """Write ``source`` into tmp/ and fsync it.  Returns (path, size, crlf size)."""
    path = os.path.join(folder_dir, "tmp", new_key_base())
    norm = CRLFEncoder()
    size = vsize = 0
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with io.FileIO(fd, "wb", closefd=False) as out:
            if isinstance(source, (bytes, bytearray, memoryview)):
                chunks: Iterable[bytes] = (bytes(source),)
            else:
                chunks = iter(lambda: source.read(1 << 16), b"")
            for chunk in chunks:
                out.write(chunk)
                size += len(chunk)
                vsize += len(norm.feed(chunk))
        os.fsync(fd)
    except BaseException:
        os.close(fd)
        _unlink_quiet(path)
        raise
    os.close(fd)
    if internaldate is not None:
        os.utime(path, (internaldate, internaldate))
    return path, size, vsize


def finish_tmp(tmp_path: str, internaldate: float | None = None) -> tuple[int, int]:
    """fsync a file someone else wrote into tmp/ (IMAP literal); (size, crlf size)."""
    fd = os.open(tmp_path, os.O_RDONLY)
    try:
        os.fsync(fd)
        size = os.fstat(fd).st_size
    finally:
        os.close(fd)
    vsize = file_crlf_size(tmp_path)
    if internaldate is not None:
        os.utime(tmp_path, (internaldate, internaldate))
    return size, vsize


def final_key(tmp_path: str, size: int, vsize: int) -> str:
    base = os.path.basename(tmp_path).split(",", 1)[0].split(":", 1)[0]
    return f"{base},S={size},W={vsize}"


def _copy_synced(src: str, tmp: str, dest: str) -> None:
    shutil.copy2(src, tmp)
    with open(tmp, "rb") as f:
        os.fsync(f.fileno())
    os.rename(tmp, dest)


def _unlink_quiet(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass


def ensure_keywords(folder_dir: str, names: Iterable[str]) -> list[str | None]:
    """Give every keyword in ``names`` a letter in dovecot-keywords (under
    its dotlock); returns the whole index list."""
    wanted = [n for n in names if not n.startswith("\\")]
    current = read_keywords(folder_dir)
    known = {k.lower() for k in current if k}
    if all(n.lower() in known for n in wanted):
        return current
    with DotLock(os.path.join(folder_dir, KEYWORDS)):
        current = read_keywords(folder_dir)
        known = {k.lower() for k in current if k}
        changed = False
        for n in wanted:
            if n.lower() in known:
                continue
            try:
                slot = current.index(None)
            except ValueError:
                slot = len(current)
            if slot >= MAX_KEYWORDS:
                raise TooManyKeywords("no room for another keyword in this folder (26 max)")
            if slot == len(current):
                current.append(n)
            else:
                current[slot] = n
            known.add(n.lower())
            changed = True
        if changed:
            write_keywords(folder_dir, current)
    return current


def deliver(folder_dir: str, source: Source, flags: Iterable[str] = ()) -> str:
    """Crash-safe delivery for command-line tools (no reactor, no UID):
    tmp/, fsync, rename into new/ (or cur/ with flags), fsync the directory.
    A running server notices the file as it notices Postfix's deliveries.
    Returns the final path."""
    flagset = normalize_flags(flags)
    for sub in ("cur", "new", "tmp"):
        os.makedirs(os.path.join(folder_dir, sub), exist_ok=True)
    tmp, size, vsize = write_tmp(folder_dir, source)
    key = final_key(tmp, size, vsize)
    try:
        if flagset:
            keywords = ensure_keywords(folder_dir, flagset)
            dest = message_path(folder_dir, "cur", key, info_for(flagset, keywords, None))
        else:
            dest = message_path(folder_dir, "new", key, None)
        os.rename(tmp, dest)
    except BaseException:
        _unlink_quiet(tmp)
        raise
    fsync_dir(os.path.dirname(dest))
    return dest


# --- the thread-side folder -----------------------------------------------------------

@dataclass
class SyncResult:
    """A complete view of a folder after a scan."""

    uidvalidity: int
    uidnext: int
    entries: list[Entry]
    keywords: list[str | None]
    stamps: tuple[int, int]
    scanned_at: float
    rebuilt: bool = False
    ul_id: tuple[int, int, int] | None = None


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
    stamps: tuple[int, int] | None = None
    ul_id: tuple[int, int, int] | None = None
    scanned_at: float = 0.0


@dataclass
class NewFile:
    """A message to add to a folder: ``how`` is 'rename' (a finished file in
    tmp/) or 'link' (a message of another folder: ``src_dir``/``src_key``
    find it again if it was renamed meanwhile).  ``new`` puts a message
    without flags into new/ (a delivery) rather than cur/."""

    src: str
    how: str
    flags: frozenset
    size: int
    vsize: int
    src_dir: str | None = None
    src_key: str | None = None
    new: bool = False


SUBS = ("new", "cur")
# Rewrite the uid list instead of appending once this many of its lines
# are dead, or when it is small enough that a rewrite costs nothing.
COMPACT_FRACTION = 0.25
COMPACT_SMALL_BYTES = 64 * 1024


def dir_stamps(folder_dir: str) -> tuple[int, int]:
    return (os.stat(os.path.join(folder_dir, "new")).st_mtime_ns,
            os.stat(os.path.join(folder_dir, "cur")).st_mtime_ns)


def uidlist_id(folder_dir: str) -> tuple[int, int, int] | None:
    """What identifies one state of the uid list file: (inode, mtime, size)."""
    try:
        st = os.stat(os.path.join(folder_dir, UIDLIST))
    except FileNotFoundError:
        return None
    return (st.st_ino, st.st_mtime_ns, st.st_size)


def _stat_id(st: os.stat_result) -> tuple[int, int, int]:
    return (st.st_ino, st.st_mtime_ns, st.st_size)


def _size_of(key: str) -> int | None:
    """filename_size(key) for the usual name ending in ``,W=<n>``, inline-fast."""
    i = key.rfind(",W=")
    if i >= 0:
        tail = key[i + 3:]
        if tail.isdigit():
            return int(tail)
    return filename_size(key)


class DiskFolder:
    """The on-disk state of one folder, touched by one thread at a time (the
    live folder serializes its operations).  Holds the parsed uid list so an
    unchanged ``dovecot-uidlist`` is not parsed twice, the names in new/ so
    a change there is a cheap re-list of new/ only, and the new/ and cur/
    mtimes the folder's view matches, updated after our own changes so they
    do not cost a rescan."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.ul: UidList | None = None
        self._ul_id: tuple[int, int, int] | None = None
        self.keywords: list[str | None] = []
        self._tmp_cleaned = False
        self._rebuilt = False
        self._lost = False  # the rebuild replaced a uid list that existed
        self.last_uidvalidity = 0
        self._appends: list[str] = []  # keys given UIDs since the last write
        self._dirty = False  # an existing record changed: rewrite the file
        self.new_files: dict[str, str | None] | None = None  # key -> info in new/
        self.stamps: tuple[int, int] | None = None
        self.scans = 0  # full scans done (tests and benchmarks watch it)
        # Opened from the snapshot: (uidvalidity, uidnext) it recorded; the
        # uid list (whose id is _ul_id) is parsed only when first needed.
        self._lazy: tuple[int, int] | None = None

    # uid list -----------------------------------------------------------------

    def _reload(self) -> bool:
        """Re-read the uid list if another process changed it.  Returns True
        when it changed (or was missing / corrupt and got recreated)."""
        p = os.path.join(self.path, UIDLIST)
        try:
            st = os.stat(p)
        except FileNotFoundError:
            st = None
        if self._lazy is not None and self._load_lazy(st):
            return False
        if st is not None and self.ul is not None and self._ul_id == _stat_id(st):
            return False
        if st is None and self.ul is not None and self._ul_id is None:
            return False  # rebuilt in this operation, not written yet
        old = self.ul
        if (st is not None and old is not None and self._ul_id is not None and not self._appends
                and not self._dirty and st.st_ino == self._ul_id[0]):
            try:
                if read_appended(self.path, old, st):
                    self._ul_id = _stat_id(st)
                    return True
            except OSError:
                pass
        self._appends, self._dirty = [], False
        try:
            ul, st = read_uidlist(self.path)
        except CorruptUidList as e:
            log.critical("{path}: corrupt {file} ({err}); rebuilding with a NEW UIDVALIDITY - "
                         "clients will re-download this folder", path=self.path, file=UIDLIST, err=e)
            self._rebuild(old, lost=True)
            return True
        if ul is None:
            self._rebuild(old, lost=old is not None)
            return True
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
        self._ul_id = _stat_id(st)
        return True

    def _load_lazy(self, st: os.stat_result | None) -> bool:
        """Parse the uid list a snapshot open skipped.  True when it is the
        file the snapshot was taken from and agrees with it; otherwise the
        caller reads it the ordinary way and the folder is rescanned (the
        uid list, not the snapshot, is the authority on UIDs)."""
        expected, self._lazy = self._lazy, None
        if st is None or self._ul_id != _stat_id(st):
            self.ul = self._ul_id = None
            return False
        try:
            ul, st2 = read_uidlist(self.path)
        except CorruptUidList:
            ul = st2 = None
        if (ul is None or _stat_id(st2) != self._ul_id or (ul.uidvalidity, ul.uidnext) != expected
                or ul.bad_lines or not ul.guid):
            log.warn("{path}: {file} disagrees with the index; rescanning", path=self.path, file=UIDLIST)
            self.ul = self._ul_id = None
            return False
        self.ul = ul
        return True

    def _rebuild(self, old: UidList | None, lost: bool) -> None:
        avoid = max(self.last_uidvalidity, old.uidvalidity if old else 0)
        self.ul = UidList(uidvalidity=fresh_uidvalidity(avoid), uidnext=1, guid=new_guid())
        self._ul_id = None
        self._rebuilt = True
        self._lost = self._lost or lost
        self.last_uidvalidity = self.ul.uidvalidity

    def _give_uid(self, key: str) -> int:
        ul = self.ul
        uid = ul.uids[key] = ul.uidnext
        ul.uidnext += 1
        if key in ul.dead:
            self._dirty = True  # its old line is still in the file
        self._appends.append(key)
        return uid

    def _drop(self, key: str) -> None:
        ul = self.ul
        if ul.uids.pop(key, None) is not None:
            ul.dead.add(key)
        ul.exts.pop(key, None)

    def _compact_due(self) -> bool:
        ul = self.ul
        dead = ul.dead_lines()
        return dead > 0 and (ul.valid_size <= COMPACT_SMALL_BYTES or dead > COMPACT_FRACTION * ul.lines)

    def _write(self) -> None:
        """Put what changed in memory on disk: append the new records, or
        rewrite the file when there is none yet, an existing record changed
        or enough of it is dead."""
        ul = self.ul
        appends, self._appends = self._appends, []
        if self._ul_id is None or self._dirty or not ul.appendable or self._compact_due():
            self._dirty = False
            self._ul_id = _stat_id(write_uidlist(self.path, ul))
            return
        if not appends:
            return
        st = append_uidlist(self.path, ul, appends, self._ul_id[0])
        if st is None:
            self._ul_id = _stat_id(write_uidlist(self.path, ul))
        else:
            self._ul_id = _stat_id(st)

    def _lock(self) -> DotLock:
        return DotLock(os.path.join(self.path, UIDLIST))

    # scanning -------------------------------------------------------------------

    def _list(self, sub: str) -> dict[str, str | None]:
        out: dict[str, str | None] = {}
        for n in os.listdir(os.path.join(self.path, sub)):  # a plain loop is the fastest here
            if n[0] != ".":
                key, sep, info = n.partition(":")
                out[key] = info if sep else None
        return out

    def _listdir(self) -> tuple[dict[str, str | None], dict[str, str | None], tuple[int, int]]:
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

    def _clean_tmp(self) -> None:
        self._tmp_cleaned = True
        clean_stale_temps(self.path)
        tmpdir = os.path.join(self.path, "tmp")
        now = time.time()
        try:
            names = os.listdir(tmpdir)
        except FileNotFoundError:
            return
        for n in names:
            p = os.path.join(tmpdir, n)
            try:
                if now - os.stat(p).st_mtime > TMP_MAX_AGE:
                    os.unlink(p)
            except OSError:
                pass

    def open(self, use_index: bool = True) -> tuple[SyncResult, bool]:
        """The first look at a folder: its snapshot when nothing changed since
        it was taken (no listing, no uid list parse), else a full scan.
        Returns (view, whether it came from the snapshot)."""
        if not self._tmp_cleaned:
            self._clean_tmp()
        snap = index.load(self.path) if use_index else None
        if snap is None:
            return self.sync(), False
        self.ul = None
        self._ul_id = snap.ul_id
        self._lazy = (snap.uidvalidity, snap.uidnext)
        self._appends, self._dirty = [], False
        self.last_uidvalidity = snap.uidvalidity
        self.new_files = {e[1]: e[3] for e in snap.entries if e[2] == "new"}
        self.stamps = snap.stamps
        self.keywords = read_keywords(self.path)
        return SyncResult(snap.uidvalidity, snap.uidnext, snap.entries, list(self.keywords), snap.stamps,
                          time.time(), False, snap.ul_id), True

    def sync(self) -> SyncResult:
        """Full scan: list new/ and cur/ under the uid list lock, give new
        files UIDs, forget vanished ones, write the list if needed."""
        if not self._tmp_cleaned:
            self._clean_tmp()
        with self._lock():
            self._rebuilt = False
            return self._sync_locked()

    def _sync_locked(self) -> SyncResult:
        self.scans += 1
        newf, curf, stamps = self._listdir()
        scanned_at = time.time()
        self._reload()
        ul = self.ul
        if self._rebuilt and (newf or curf):
            n = len(newf) + len(curf)
            if self._lost:
                log.critical("{path}: no usable {file}; {n} messages get new UIDs under "
                             "UIDVALIDITY {v}", path=self.path, file=UIDLIST, n=n, v=ul.uidvalidity)
            else:
                log.info("{path}: first UIDs for {n} messages (UIDVALIDITY {v})",
                         path=self.path, n=n, v=ul.uidvalidity)
        self._lost = False
        for key in [k for k in newf if k in curf]:
            del newf[key]  # one message in both: its cur/ name wins, as before
        uids, exts = ul.uids, ul.exts
        entries: list[Entry] = []
        append = entries.append
        dead = []
        pop_new, pop_cur = newf.pop, curf.pop
        missing = object()
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
            if tail.isdigit() and not exts:
                append((uid, key, sub, info, int(tail), None))
                continue
            size = int(tail) if tail.isdigit() else filename_size(key)
            e = exts.get(key) if exts else None
            if size is None:
                size, computed = self._known_size(key, (sub, info), e)
                self._dirty = self._dirty or computed
            append((uid, key, sub, info, size, e.get("P") if e else None))
        for key in dead:
            self._drop(key)
        unseen = [(k, "cur", i) for k, i in curf.items()] + [(k, "new", i) for k, i in newf.items()]
        unseen.sort()
        for key, sub, info in unseen:  # files nobody gave a UID yet
            uid = self._give_uid(key)
            size = _size_of(key)
            if size is None:
                size = self._known_size(key, (sub, info), None)[0]
            append((uid, key, sub, info, size, None))
            if sub == "new":
                in_new[key] = info
        self._write()
        self.new_files = in_new
        self.stamps = stamps
        self.keywords = read_keywords(self.path)
        return SyncResult(ul.uidvalidity, ul.uidnext, entries, list(self.keywords), stamps,
                          scanned_at, self._rebuilt, self._ul_id)

    def sync_new(self) -> OpResult:
        """Only new/ changed: re-list it (it is small; cur/ holds the bulk)
        and give UIDs to what arrived.  Anything odd - a file gone from new/,
        a uid list changed by another process - falls back to a full scan."""
        res = OpResult()
        if self.new_files is not None and self.stamps is not None and self._ul_id is not None:
            res.scanned_at = time.time()  # when we looked, not after: errs towards a re-check
            before = os.stat(os.path.join(self.path, "new")).st_mtime_ns
            if (self._list("new") == self.new_files and uidlist_id(self.path) == self._ul_id
                    and os.stat(os.path.join(self.path, "new")).st_mtime_ns == before):
                self.stamps = (before, self.stamps[1])  # nothing new: no lock needed
                return self._finish(res, None)
        with self._lock():
            self._rebuilt = False
            if self._reload() or self._rebuilt or self.new_files is None or self.stamps is None:
                res.full = self._sync_locked()
                return self._finish(res, None)
            for _attempt in range(5):
                scanned_at = time.time()
                before = os.stat(os.path.join(self.path, "new")).st_mtime_ns
                listed = self._list("new")
                if os.stat(os.path.join(self.path, "new")).st_mtime_ns == before:
                    break
            known = self.new_files
            if (len(listed) < len(known) or any(listed.get(k, 0) != i for k, i in known.items())):
                res.full = self._sync_locked()
                return self._finish(res, None)
            uids = self.ul.uids
            for key in sorted(listed):
                if key in known:
                    continue
                if key in uids:  # a message of cur/ moved back to new/?
                    res.full = self._sync_locked()
                    return self._finish(res, None)
                info = listed[key]
                uid = self._give_uid(key)
                size = _size_of(key)
                if size is None:
                    size = self._known_size(key, ("new", info), None)[0]
                res.entries.append((uid, key, "new", info, size, None))
                known[key] = info
            self._write()
            self.stamps = (before, self.stamps[1])
            res.scanned_at = scanned_at
            return self._finish(res, None)

    def _finish(self, res: OpResult, pre: tuple[int, int] | None, touched: Iterable[str] = (),
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
            post = dir_stamps(self.path)
            self.stamps = tuple(post[i] if SUBS[i] in touched and pre[i] == self.stamps[i]
                                else self.stamps[i] for i in range(2))
        res.stamps = self.stamps
        res.ul_id = self._ul_id
        if self.ul is not None:
            res.uidnext = self.ul.uidnext
        elif self._lazy is not None:
            res.uidnext = self._lazy[1]
        if res.keywords is None:
            res.keywords = list(self.keywords)
        if not res.scanned_at:
            res.scanned_at = time.time()
        return res

    def _known_size(self, key: str, where: tuple[str, str | None],
                    e: dict[str, str] | None) -> tuple[int, bool]:
        """CRLF size of a file whose name has no W=: from the uid list's W
        extension, else read once and remembered there."""
        w = e.get("W") if e else None
        if w is not None and w.isdigit():
            return int(w), False
        try:
            size = file_crlf_size(message_path(self.path, where[0], key, where[1]))
        except FileNotFoundError:
            size = 0
        self.ul.exts.setdefault(key, {})["W"] = str(size)
        return size, True

    # mutations -------------------------------------------------------------------

    def add(self, items: Sequence[NewFile]) -> OpResult:
        """Move finished files into cur/ (or new/ for deliveries without
        flags) - rename from tmp/, or hard link / copy from another folder -
        and give them UIDs, all under the uid list lock like Dovecot (so
        nobody else adds a file between our rename and our UID).  ``order``
        of the result lists the indexes of the items placed (a link source
        may have vanished), aligned with ``entries``."""
        keywords = ensure_keywords(self.path, frozenset().union(*(it.flags for it in items)))
        self.keywords = list(keywords)
        with self._lock():
            pre = dir_stamps(self.path)
            placed, order = self._place(items, keywords)
            touched = {p[1] for p in placed}
            for sub in touched:
                fsync_dir(os.path.join(self.path, sub))
            res = self._assign_locked(placed)
            res.order = order
            return self._finish(res, pre, touched, outside=res.full is None and self._outside)

    def add_light(self, items: Sequence[NewFile]) -> list[int | None]:
        """``add`` for a folder nobody has open (a delivery): reads only the
        head and tail of the uid list and appends to it, so a delivery costs
        the same into 10 or 100,000 messages.  Returns the UIDs, aligned
        with ``items`` (None for a link source that vanished)."""
        keywords = ensure_keywords(self.path, frozenset().union(*(it.flags for it in items)))
        self.keywords = list(keywords)
        with self._lock():
            placed, order = self._place(items, keywords)
            for sub in {p[1] for p in placed}:
                fsync_dir(os.path.join(self.path, sub))
            out: list[int | None] = [None] * len(items)
            peek = peek_uidlist(self.path)
            if peek is None:
                self._rebuilt = False
                self._sync_locked()
                for i, p in zip(order, placed):
                    out[i] = self.ul.uids.get(p[0])
                return out
            ul, st = peek
            self.ul, self._ul_id = ul, _stat_id(st)
            for i, (key, _sub, _info, size) in zip(order, placed):
                out[i] = self._give_uid(key)
                if filename_size(key) is None:
                    ul.exts.setdefault(key, {})["W"] = str(size)
            appends, self._appends = self._appends, []
            if append_uidlist(self.path, ul, appends, st.st_ino) is None:
                raise StoreError(f"{self.path}: {UIDLIST} changed while locked")
            self.ul = self._ul_id = None  # only head and tail were read
            return out

    def _place(self, items: Sequence[NewFile], keywords: list[str | None]
               ) -> tuple[list[tuple[str, str, str | None, int]], list[int]]:
        placed: list[tuple[str, str, str | None, int]] = []
        order: list[int] = []
        for i, it in enumerate(items):
            if it.new and not it.flags:
                sub, info = "new", None
            else:
                sub, info = "cur", info_for(it.flags, keywords, None)
            if it.how == "rename":
                key = final_key(it.src, it.size, it.vsize)
                dest = message_path(self.path, sub, key, info)
                try:
                    os.rename(it.src, dest)
                except OSError as e:
                    if e.errno != errno.EXDEV:
                        raise
                    _copy_synced(it.src, os.path.join(self.path, "tmp", key), dest)
                    _unlink_quiet(it.src)
            else:
                src = it.src
                try:
                    size = os.stat(src).st_size
                except FileNotFoundError:
                    where = locate(it.src_dir, it.src_key) if it.src_dir else None
                    if where is None:
                        continue
                    src = message_path(it.src_dir, where[0], it.src_key, where[1])
                    size = os.stat(src).st_size
                key = final_key(os.path.join(self.path, "tmp", new_key_base()), size, it.vsize)
                dest = message_path(self.path, sub, key, info)
                try:
                    os.link(src, dest)
                except FileNotFoundError:
                    continue
                except OSError:
                    try:
                        _copy_synced(src, os.path.join(self.path, "tmp", key), dest)
                    except FileNotFoundError:
                        continue
            placed.append((key, sub, info, it.vsize))
            order.append(i)
        return placed, order

    def _assign_locked(self, placed: Sequence[tuple[str, str, str | None, int]]) -> OpResult:
        """UIDs for placed files (uid list lock held).  When the uid list
        changed under us, do a full scan instead (so UIDs reach listeners in
        ascending order)."""
        res = OpResult()
        self._rebuilt = False
        self._outside = self._reload()
        if self._outside or self._rebuilt:
            res.full = self._sync_locked()
            by_key = {e[1]: e for e in res.full.entries}
            res.entries = [by_key[p[0]] for p in placed if p[0] in by_key]
            return res
        ul = self.ul
        for key, sub, info, size in placed:
            uid = ul.uids.get(key)
            if uid is None:
                uid = self._give_uid(key)
            if filename_size(key) is None:
                ul.exts.setdefault(key, {})["W"] = str(size)
            if sub == "new" and self.new_files is not None:
                self.new_files[key] = info
            res.entries.append((uid, key, sub, info, size, None))
        self._write()
        return res

    _outside = False

    def set_flags(self, items: Sequence[tuple[str, str, str | None, frozenset]]) -> OpResult:
        """Rename files to carry new flags (moving new/ -> cur/ like Dovecot).
        Items are (key, sub, info, new flags); ``keys`` of the result maps
        each key to its new (sub, info), or None when the file is gone."""
        res = OpResult()
        keywords = ensure_keywords(self.path, frozenset().union(*(it[3] for it in items)))
        self.keywords = list(keywords)
        res.keywords = list(keywords)
        pre = dir_stamps(self.path)
        outside = False
        touched = {"cur"}
        new_files = self.new_files
        for key, sub, info, flags in items:
            old = message_path(self.path, sub, key, info)
            new_info = info_for(flags, keywords, info)
            try:
                os.rename(old, message_path(self.path, "cur", key, new_info))
                if sub == "new":
                    touched.add("new")
                    if new_files is not None:
                        new_files.pop(key, None)
            except FileNotFoundError:
                outside = True
                where = locate(self.path, key)
                if where is None:
                    res.keys[key] = None
                    continue
                new_info = info_for(flags, keywords, where[1])
                try:
                    os.rename(message_path(self.path, where[0], key, where[1]),
                              message_path(self.path, "cur", key, new_info))
                except FileNotFoundError:
                    res.keys[key] = None
                    continue
            res.keys[key] = ("cur", new_info)
        if (self.ul is not None or self._lazy is not None) and uidlist_id(self.path) != self._ul_id:
            outside = True
        return self._finish(res, pre, touched, outside)

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
                    _unlink_quiet(message_path(self.path, where[0], key, where[1]))
            res.keys[key] = None
            if self.new_files is not None:
                self.new_files.pop(key, None)
        with self._lock():
            self._rebuilt = False
            outside = self._reload() or outside or self._rebuilt
            for k, _s, _i in items:
                self._drop(k)
            self._write()
            return self._finish(res, pre, touched, outside)

    def move_all_to(self, target: DiskFolder) -> int:
        """INBOX rename: move every message file into ``target`` (whose UIDs
        are assigned by its next scan).  Returns how many moved."""
        with self._lock():
            newf, curf, _ = self._listdir()
            n = 0
            for sub, files in (("new", newf), ("cur", curf)):
                for key, info in files.items():
                    name = key if info is None else f"{key}:{info}"
                    os.rename(os.path.join(self.path, sub, name), os.path.join(target.path, sub, name))
                    n += 1
            kw = read_keywords(self.path)
            if kw:
                write_keywords(target.path, kw)
            self.stamps = None
            return n
