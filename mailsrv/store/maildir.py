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
from dataclasses import dataclass, field
from typing import BinaryIO, Dict, Iterable, List, Optional, Sequence, Tuple, Union

from twisted.logger import Logger

from mailsrv.store.crlf import CRLFNormalizer
from mailsrv.store.interfaces import StoreError
from mailsrv.store.uidlist import (
    MAX_KEYWORDS,
    UIDLIST,
    KEYWORDS,
    CorruptUidList,
    DotLock,
    UidList,
    clean_stale_temps,
    fresh_uidvalidity,
    fsync_dir,
    new_guid,
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

Entry = Tuple[int, str, str, Optional[str], int, Optional[str]]  # uid, key, sub, info, size, pop3 uidl


class TooManyKeywords(StoreError):
    """Maildir filenames have room for 26 keywords per folder."""

    code = "LIMIT"


class InvalidFlag(StoreError):
    code = "CANNOT"


# --- filenames -------------------------------------------------------------------

def split_filename(filename: str) -> Tuple[str, Optional[str]]:
    """'key:2,FS' -> ('key', '2,FS'); no ':' -> ('key', None)."""
    key, sep, info = filename.partition(":")
    return key, (info if sep else None)


def filename_size(key: str, field_name: str = "W") -> Optional[int]:
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


def flag_chars(info: Optional[str]) -> str:
    if info and info.startswith("2,"):
        return info[2:]
    return ""


def flags_from_info(info: Optional[str], keywords: Sequence[Optional[str]]) -> frozenset:
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


def info_for(flags: frozenset, keywords: Sequence[Optional[str]], old_info: Optional[str]) -> str:
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


def message_path(folder_dir: str, sub: str, key: str, info: Optional[str]) -> str:
    return os.path.join(folder_dir, sub, key if info is None else f"{key}:{info}")


def locate(folder_dir: str, key: str) -> Optional[Tuple[str, Optional[str]]]:
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
    norm = CRLFNormalizer()
    total = 0
    with open(path, "rb") as f:
        while True:
            chunk = f.read(1 << 16)
            if not chunk:
                return total
            total += len(norm.feed(chunk))


# --- writing message files ---------------------------------------------------------

Source = Union[bytes, bytearray, memoryview, BinaryIO]


def write_tmp(folder_dir: str, source: Source, internaldate: Optional[float] = None) -> Tuple[str, int, int]:
    """Write ``source`` into tmp/ and fsync it.  Returns (path, size, crlf size)."""
    path = os.path.join(folder_dir, "tmp", new_key_base())
    norm = CRLFNormalizer()
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


def finish_tmp(tmp_path: str, internaldate: Optional[float] = None) -> Tuple[int, int]:
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


def ensure_keywords(folder_dir: str, names: Iterable[str]) -> List[Optional[str]]:
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
    entries: List[Entry]
    keywords: List[Optional[str]]
    stamps: Tuple[int, int]
    scanned_at: float
    rebuilt: bool = False


@dataclass
class OpResult:
    """What a mutation did.  ``full`` is set when the folder changed outside
    this process meanwhile: apply it first so UIDs stay ascending."""

    entries: List[Entry] = field(default_factory=list)
    keys: Dict[str, Optional[Tuple[str, Optional[str]]]] = field(default_factory=dict)
    keywords: Optional[List[Optional[str]]] = None
    uidnext: int = 0
    full: Optional[SyncResult] = None
    order: List[int] = field(default_factory=list)


@dataclass
class NewFile:
    """A message to add to a folder: ``how`` is 'rename' (a finished file in
    tmp/) or 'link' (a message of another folder: ``src_dir``/``src_key``
    find it again if it was renamed meanwhile)."""

    src: str
    how: str
    flags: frozenset
    size: int
    vsize: int
    src_dir: Optional[str] = None
    src_key: Optional[str] = None


def dir_stamps(folder_dir: str) -> Tuple[int, int]:
    return (os.stat(os.path.join(folder_dir, "new")).st_mtime_ns,
            os.stat(os.path.join(folder_dir, "cur")).st_mtime_ns)


class DiskFolder:
    """The on-disk state of one folder, touched by one thread at a time (the
    live folder serializes its operations).  Holds the parsed uid list so an
    unchanged ``dovecot-uidlist`` is not parsed twice."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.ul: Optional[UidList] = None
        self._ul_id: Optional[Tuple[int, int, int]] = None
        self.keywords: List[Optional[str]] = []
        self._tmp_cleaned = False
        self._rebuilt = False
        self.last_uidvalidity = 0

    # uid list -----------------------------------------------------------------

    def _reload(self) -> bool:
        """Re-read the uid list if another process replaced it.  Returns True
        when it changed (or was missing / corrupt and got recreated)."""
        p = os.path.join(self.path, UIDLIST)
        try:
            st = os.stat(p)
        except FileNotFoundError:
            st = None
        if st is not None and self.ul is not None and self._ul_id == (st.st_ino, st.st_mtime_ns, st.st_size):
            return False
        if st is None and self.ul is not None and self._ul_id is None:
            return False  # rebuilt in this operation, not written yet
        old = self.ul
        try:
            ul, st = read_uidlist(self.path)
        except CorruptUidList as e:
            log.critical("{path}: corrupt {file} ({err}); rebuilding with a NEW UIDVALIDITY - "
                         "clients will re-download this folder", path=self.path, file=UIDLIST, err=e)
            ul = None
            st = None
            self._rebuild(old)
            return True
        if ul is None:
            self._rebuild(old)
            return True
        if ul.bad_lines:
            log.warn("{path}: skipped {n} unreadable lines of {file}", path=self.path, n=ul.bad_lines,
                     file=UIDLIST)
        if not ul.guid:
            ul.guid = new_guid()
        if old is not None and old.uidvalidity != ul.uidvalidity:
            log.warn("{path}: UIDVALIDITY changed on disk from {old} to {new}", path=self.path,
                     old=old.uidvalidity, new=ul.uidvalidity)
        self.ul = ul
        self.last_uidvalidity = ul.uidvalidity
        self._ul_id = (st.st_ino, st.st_mtime_ns, st.st_size)
        return True

    def _rebuild(self, old: Optional[UidList]) -> None:
        avoid = max(self.last_uidvalidity, old.uidvalidity if old else 0)
        self.ul = UidList(uidvalidity=fresh_uidvalidity(avoid), uidnext=1, guid=new_guid())
        self._ul_id = None
        self._rebuilt = True
        self.last_uidvalidity = self.ul.uidvalidity

    def _write(self) -> None:
        st = write_uidlist(self.path, self.ul)
        self._ul_id = (st.st_ino, st.st_mtime_ns, st.st_size)

    def _lock(self) -> DotLock:
        return DotLock(os.path.join(self.path, UIDLIST))

    # scanning -------------------------------------------------------------------

    def _listdir(self) -> Tuple[Dict[str, Tuple[str, Optional[str]]], Tuple[int, int]]:
        """key -> (sub, info), retried until new/ and cur/ did not change
        while being listed (a rename racing the listing could hide a file)."""
        for _attempt in range(5):
            before = dir_stamps(self.path)
            files: Dict[str, Tuple[str, Optional[str]]] = {}
            for sub in ("new", "cur"):
                for n in os.listdir(os.path.join(self.path, sub)):
                    if n[0] == ".":
                        continue
                    key, sep, info = n.partition(":")
                    files[key] = (sub, info if sep else None)
            if dir_stamps(self.path) == before:
                break
        return files, before

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

    def sync(self) -> SyncResult:
        """Full scan: list new/ and cur/ under the uid list lock, give new
        files UIDs, forget vanished ones, rewrite the list if needed."""
        if not self._tmp_cleaned:
            self._clean_tmp()
        with self._lock():
            self._rebuilt = False
            return self._sync_locked()

    def _sync_locked(self) -> SyncResult:
        files, stamps = self._listdir()
        scanned_at = time.time()
        self._reload()
        ul = self.ul
        if self._rebuilt and files:
            log.critical("{path}: no usable {file}; {n} messages get new UIDs under "
                         "UIDVALIDITY {v}", path=self.path, file=UIDLIST, n=len(files), v=ul.uidvalidity)
        changed = self._ul_id is None
        uids, exts = ul.uids, ul.exts
        entries: List[Entry] = []
        dead = []
        pop = files.pop
        for key, uid in uids.items():
            where = pop(key, None)
            if where is None:
                dead.append(key)
                continue
            e = exts.get(key) if exts else None
            size = filename_size(key)
            if size is None:
                size, computed = self._known_size(key, where, e)
                changed = changed or computed
            entries.append((uid, key, where[0], where[1], size, e.get("P") if e else None))
        for key in dead:
            del uids[key]
            exts.pop(key, None)
            changed = True
        for key in sorted(files):  # files nobody gave a UID yet
            where = files[key]
            uids[key] = uid = ul.uidnext
            ul.uidnext += 1
            size = filename_size(key)
            if size is None:
                size = self._known_size(key, where, None)[0]
            entries.append((uid, key, where[0], where[1], size, None))
            changed = True
        if changed:
            self._write()
        self.keywords = read_keywords(self.path)
        return SyncResult(ul.uidvalidity, ul.uidnext, entries, list(self.keywords), stamps,
                          scanned_at, self._rebuilt)

    def _known_size(self, key: str, where: Tuple[str, Optional[str]],
                    e: Optional[Dict[str, str]]) -> Tuple[int, bool]:
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

    def add(self, items: Sequence["NewFile"]) -> OpResult:
        """Move finished files into cur/ (rename from tmp/, or hard link /
        copy from another folder) and give them UIDs.  ``order`` of the
        result lists the indexes of the items placed (a link source may have
        vanished), aligned with ``entries``."""
        keywords = ensure_keywords(self.path, frozenset().union(*(it.flags for it in items)))
        self.keywords = list(keywords)
        placed: List[Tuple[str, str, Optional[str], int]] = []
        order: List[int] = []
        for i, it in enumerate(items):
            info = info_for(it.flags, keywords, None)
            if it.how == "rename":
                key = final_key(it.src, it.size, it.vsize)
                dest = message_path(self.path, "cur", key, info)
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
                dest = message_path(self.path, "cur", key, info)
                try:
                    os.link(src, dest)
                except FileNotFoundError:
                    continue
                except OSError:
                    try:
                        _copy_synced(src, os.path.join(self.path, "tmp", key), dest)
                    except FileNotFoundError:
                        continue
            placed.append((key, "cur", info, it.vsize))
            order.append(i)
        if placed:
            fsync_dir(os.path.join(self.path, "cur"))
        res = self._assign(placed)
        res.order = order
        return res

    def adopt(self, path: str, light: bool = False) -> OpResult:
        """Give a UID to a file already delivered into new/ or cur/."""
        sub = os.path.basename(os.path.dirname(path))
        key, info = split_filename(os.path.basename(path))
        size = filename_size(key)
        if size is None:
            size = file_crlf_size(path)
        return self._assign([(key, sub, info, size)], light)

    def _assign(self, placed: Sequence[Tuple[str, str, Optional[str], int]], light: bool = False) -> OpResult:
        """UIDs for placed files.  When the uid list changed under us, do a
        full scan instead (so UIDs reach listeners in ascending order) -
        unless ``light`` (no live folder to keep consistent)."""
        res = OpResult()
        with self._lock():
            self._rebuilt = False
            if (self._reload() and not light) or self._rebuilt:
                res.full = self._sync_locked()
                by_key = {e[1]: e for e in res.full.entries}
                res.entries = [by_key[p[0]] for p in placed if p[0] in by_key]
            else:
                ul = self.ul
                for key, sub, info, size in placed:
                    uid = ul.uids.get(key)
                    if uid is None:
                        uid = ul.uids[key] = ul.uidnext
                        ul.uidnext += 1
                    if filename_size(key) is None:
                        ul.exts.setdefault(key, {})["W"] = str(size)
                    res.entries.append((uid, key, sub, info, size, None))
                self._write()
            res.uidnext = self.ul.uidnext
        res.keywords = list(self.keywords)
        return res

    def set_flags(self, items: Sequence[Tuple[str, str, Optional[str], frozenset]]) -> OpResult:
        """Rename files to carry new flags (moving new/ -> cur/ like Dovecot).
        Items are (key, sub, info, new flags); ``keys`` of the result maps
        each key to its new (sub, info), or None when the file is gone."""
        res = OpResult()
        keywords = ensure_keywords(self.path, frozenset().union(*(it[3] for it in items)))
        self.keywords = list(keywords)
        res.keywords = list(keywords)
        for key, sub, info, flags in items:
            old = message_path(self.path, sub, key, info)
            new_info = info_for(flags, keywords, info)
            try:
                os.rename(old, message_path(self.path, "cur", key, new_info))
            except FileNotFoundError:
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
        return res

    def expunge(self, items: Sequence[Tuple[str, str, Optional[str]]]) -> OpResult:
        """Unlink messages, then drop them from the uid list."""
        res = OpResult()
        for key, sub, info in items:
            try:
                os.unlink(message_path(self.path, sub, key, info))
            except FileNotFoundError:
                where = locate(self.path, key)
                if where is not None:
                    _unlink_quiet(message_path(self.path, where[0], key, where[1]))
            res.keys[key] = None
        with self._lock():
            self._reload()
            ul = self.ul
            gone = [k for k, _s, _i in items if k in ul.uids]
            for k in gone:
                del ul.uids[k]
                ul.exts.pop(k, None)
            if gone or self._ul_id is None:
                self._write()
            res.uidnext = ul.uidnext
        return res

    def move_all_to(self, target: "DiskFolder") -> int:
        """INBOX rename: move every message file into ``target`` (whose UIDs
        are assigned by its next scan).  Returns how many moved."""
        with self._lock():
            files, _ = self._listdir()
            for key, (sub, info) in files.items():
                name = key if info is None else f"{key}:{info}"
                os.rename(os.path.join(self.path, sub, name), os.path.join(target.path, sub, name))
            kw = read_keywords(self.path)
            if kw:
                write_keywords(target.path, kw)
            return len(files)
