"""Dovecot-compatible per-folder metadata files: ``dovecot-uidlist`` (v3),
``dovecot-keywords`` and the ``.lock`` dotlocks guarding them.

These are plain synchronous functions: the live folder calls them from a
worker thread, the command-line tools call them directly.  Parsing is
tolerant (unknown header fields and record extensions survive a rewrite,
bad lines are skipped and logged) because Dovecot, mutt or an admin may
have written the file.
"""

from __future__ import annotations

import os
import re
import socket
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field

from twisted.logger import Logger

from mailsrv.store.filename import MAX_KEYWORDS
from mailsrv.store.fsutil import atomic_write, unlink_quiet
from mailsrv.store.interfaces import StoreError

log = Logger(namespace="mailsrv.store")

UIDLIST = "dovecot-uidlist"
KEYWORDS = "dovecot-keywords"
LOCK_STALE_SECONDS = 120  # Dovecot's MAILDIR_UIDLIST_LOCK_STALE_TIMEOUT
LOCK_TIMEOUT_SECONDS = 30


class CorruptUidList(StoreError):
    """The uid list header cannot be trusted; the folder must be rebuilt."""


class LockTimeout(StoreError):
    code = "INUSE"


@dataclass
class UidList:
    """Parsed ``dovecot-uidlist``.  ``uids`` maps Maildir base name -> UID in
    ascending UID order; ``exts`` holds the extension fields (``W``, ``S``,
    ``P``, ``G``, unknown ones too) of the records that have any."""

    uidvalidity: int
    uidnext: int
    guid: str = ""
    header_extra: list[str] = field(default_factory=list)
    uids: dict[str, int] = field(default_factory=dict)
    exts: dict[str, dict[str, str]] = field(default_factory=dict)
    bad_lines: int = 0
    # Bookkeeping of the file as it is on disk, for appending to it:
    # record lines in it (live, dead and bad), bytes up to the end of its
    # last complete line, its highest UID, and whether records may simply be
    # appended (v3 with a complete header line).
    lines: int = field(default=0, compare=False)
    valid_size: int = field(default=0, compare=False)
    last_uid: int = field(default=0, compare=False)
    appendable: bool = field(default=False, compare=False)
    dead: set = field(default_factory=set, compare=False)

    def header_line(self) -> str:
        head = [f"3 V{self.uidvalidity} N{self.uidnext}"]
        if self.guid:
            head.append(f"G{self.guid}")
        head.extend(self.header_extra)
        return " ".join(head) + "\n"

    def record_lines(self, keys: Iterable[str]) -> str:
        """The records of ``keys`` (in the given order) as file lines."""
        uids, exts = self.uids, self.exts
        out = []
        for key in keys:
            e = exts.get(key)
            if e:
                out.append(f"{uids[key]} {''.join(k + v + ' ' for k, v in e.items())}:{key}\n")
            else:
                out.append(f"{uids[key]} :{key}\n")
        return "".join(out)

    def serialize(self) -> bytes:
        keys = [k for k, _u in sorted(self.uids.items(), key=lambda kv: kv[1])]
        return (self.header_line() + self.record_lines(keys)).encode("utf-8", "surrogateescape")

    def dead_lines(self) -> int:
        """Lines in the file that no longer name a message (or never did)."""
        return max(0, self.lines - len(self.uids))


def new_guid() -> str:
    return uuid.uuid4().hex


_last_uidvalidity = 0


def fresh_uidvalidity(avoid: int = 0) -> int:
    """A UIDVALIDITY larger than ``avoid`` and than any issued before in this
    process (time-based like Dovecot's, but never repeated)."""
    global _last_uidvalidity
    v = max(int(time.time()), avoid + 1, _last_uidvalidity + 1) & 0xFFFFFFFF
    _last_uidvalidity = v
    return v or 1


# "<uid> [<ext><value> ...] :<base name>"; an extension never starts with ':'
_V3_LINE = re.compile(r"^(\d+) ((?:[^ :\n][^ \n]* )*):([^\n]*)$", re.M)
_V1_LINE = re.compile(r"^(\d+) ([^\n]+)$", re.M)


def parse_uidlist(data: bytes) -> UidList:
    """Parse a v3 (or v1) uid list.  Raises CorruptUidList on a bad header."""
    text = data.decode("utf-8", "surrogateescape")
    end = text.rfind("\n")
    complete = end >= 0 and end == len(text) - 1
    if end >= 0 and not complete:
        text = text[:end + 1]  # a torn last record (crash while appending): ignored
    first = text.split("\n", 1)[0]
    header = first.split()
    if not header:
        raise CorruptUidList("empty uid list")
    version = header[0]
    ul = UidList(uidvalidity=0, uidnext=0)
    if version == "3":
        for tok in header[1:]:
            k, v = tok[:1], tok[1:]
            if k == "V" and v.isdigit():
                ul.uidvalidity = int(v)
            elif k == "N" and v.isdigit():
                ul.uidnext = int(v)
            elif k == "G":
                ul.guid = v
            else:
                ul.header_extra.append(tok)
    elif version == "1" and len(header) >= 3 and header[1].isdigit() and header[2].isdigit():
        ul.uidvalidity, ul.uidnext = int(header[1]), int(header[2])
    else:
        raise CorruptUidList(f"unsupported uid list header {first[:60]!r}")
    if ul.uidvalidity <= 0 or ul.uidnext <= 0:
        raise CorruptUidList(f"bad uid list header {first[:60]!r}")
    body = text[len(first) + 1:]
    ul.valid_size = data.rfind(b"\n") + 1 if end >= 0 else len(data)
    ul.appendable = version == "3" and end >= 0
    count, total = _parse_records(ul, body, version == "1", 0)
    ul.lines = total
    ul.bad_lines += total - count
    return ul


def _parse_records(ul: UidList, body: str, v1: bool, last: int) -> tuple[int, int]:
    """Add the records of ``body`` (complete lines) to ``ul``; returns
    (good records, non-empty lines)."""
    uids, exts = ul.uids, ul.exts
    last = max(last, ul.last_uid)
    records: Iterable[tuple[str, str, str]]
    if v1:
        records = ((m.group(1), "", m.group(2)) for m in _V1_LINE.finditer(body))
    else:
        records = _V3_LINE.findall(body)
    count = 0
    for uid_s, ext_s, key in records:
        count += 1
        uid = int(uid_s)
        if ":" in key:
            key = key.split(":", 1)[0]  # old writers stored flags too
        if uid <= last or not key or key in uids:
            ul.bad_lines += 1
            continue
        last = uid
        uids[key] = uid
        if ext_s:
            exts[key] = {tok[0]: tok[1:] for tok in ext_s.split(" ") if tok}
    ul.last_uid = last
    if last >= ul.uidnext:
        ul.uidnext = last + 1
    return count, _count_lines(body)


def _count_lines(body: str) -> int:
    total = body.count("\n") + (1 if body and body[-1] != "\n" else 0)
    if body.startswith("\n") or "\n\n" in body:
        total = sum(1 for ln in body.split("\n") if ln)
    return total


def read_appended(folder_dir: str, ul: UidList, st: os.stat_result) -> bool:
    """Merge records another process appended since ``ul`` was read (same
    file, grown).  False when the file was changed some other way (header
    rewritten, records out of order): the caller re-reads it whole."""
    if not ul.appendable or st.st_size < ul.valid_size:
        return False
    head = ul.header_line().encode("utf-8", "surrogateescape")
    with open(os.path.join(folder_dir, UIDLIST), "rb") as f:
        if os.fstat(f.fileno()).st_ino != st.st_ino:
            return False
        first = f.readline()
        if first != head and not _same_header(first, ul):
            return False
        f.seek(ul.valid_size)
        tail = f.read()
    end = tail.rfind(b"\n")
    tail = tail[:end + 1]
    bad_before = ul.bad_lines
    count, total = _parse_records(ul, tail.decode("utf-8", "surrogateescape"), False, ul.last_uid)
    if count != total or ul.bad_lines != bad_before:
        return False
    ul.lines += total
    ul.valid_size += len(tail)
    return True


def _same_header(line: bytes, ul: UidList) -> bool:
    """A header naming the same UIDVALIDITY and GUID (its N may be older or newer)."""
    try:
        other = parse_uidlist(line if line.endswith(b"\n") else line + b"\n")
    except CorruptUidList:
        return False
    return (other.uidvalidity, other.guid, other.header_extra) == (ul.uidvalidity, ul.guid, ul.header_extra)


def read_uidlist(folder_dir: str) -> tuple[UidList | None, os.stat_result | None]:
    """(parsed list, its stat) or (None, None) if there is none."""
    path = os.path.join(folder_dir, UIDLIST)
    try:
        with open(path, "rb") as f:
            st = os.fstat(f.fileno())
            data = f.read()
    except FileNotFoundError:
        return None, None
    return parse_uidlist(data), st


def read_guid(folder_dir: str) -> str | None:
    """The folder GUID of the uid list header (``G`` field, Dovecot's
    mailbox GUID), reading only the first line; None without one."""
    try:
        with open(os.path.join(folder_dir, UIDLIST), "rb") as f:
            first = f.readline(4096).decode("ascii", "replace").split()
    except FileNotFoundError:
        return None
    if not first or first[0] != "3":
        return None
    for tok in first[1:]:
        if tok.startswith("G") and len(tok) > 1:
            return tok[1:]
    return None


def duplicate_keys(folder_dir: str) -> dict[str, list[int]]:
    """Keys the uid list file names more than once, with each of their
    UIDs in file order (the parser keeps the first and drops the rest)."""
    try:
        with open(os.path.join(folder_dir, UIDLIST), "rb") as f:
            text = f.read().decode("utf-8", "surrogateescape")
    except FileNotFoundError:
        return {}
    seen: dict[str, list[int]] = {}
    for line in text.split("\n")[1:]:
        uid_s, _, rest = line.partition(" ")
        if not uid_s.isdigit():
            continue
        i = rest.rfind(":")
        if i < 0:
            continue
        key = rest[i + 1:] if rest[:1] != ":" else rest[1:]
        key = key.split(":", 1)[0]
        seen.setdefault(key, []).append(int(uid_s))
    return {k: v for k, v in seen.items() if len(v) > 1}


def write_uidlist(folder_dir: str, ul: UidList) -> os.stat_result:
    """Replace the whole file (compaction): dead lines go, the header's N is
    brought up to date."""
    path = os.path.join(folder_dir, UIDLIST)
    data = ul.serialize()
    atomic_write(path, data)
    ul.lines = len(ul.uids)
    ul.valid_size = len(data)
    ul.last_uid = max(ul.uids.values(), default=0)
    ul.appendable = True
    ul.dead = set()
    return os.stat(path)


def append_uidlist(folder_dir: str, ul: UidList, keys: list[str], ino: int) -> os.stat_result | None:
    """Append the records of ``keys`` (new, with UIDs above every UID in the
    file) the way Dovecot does: one write of the new lines and an fsync,
    under the caller's dotlock; the header's N stays as it was (readers take
    max(N, last UID + 1)).  A torn last line left by a crash is cut off
    first.  None when the file is not the one ``ul`` was read from: the
    caller rewrites it whole."""
    path = os.path.join(folder_dir, UIDLIST)
    try:
        fd = os.open(path, os.O_WRONLY)
    except FileNotFoundError:
        return None
    try:
        st = os.fstat(fd)
        if st.st_ino != ino or st.st_size < ul.valid_size or not ul.appendable:
            return None
        if st.st_size > ul.valid_size:
            os.ftruncate(fd, ul.valid_size)
        data = ul.record_lines(keys).encode("utf-8", "surrogateescape")
        view, pos = memoryview(data), ul.valid_size
        while view:
            n = os.pwrite(fd, view, pos)
            view, pos = view[n:], pos + n
        os.fdatasync(fd)
        st = os.fstat(fd)
    finally:
        os.close(fd)
    ul.valid_size += len(data)
    ul.lines += len(keys)
    ul.last_uid = max(ul.last_uid, max((ul.uids[k] for k in keys), default=0))
    return st


def peek_uidlist(folder_dir: str, tail_bytes: int = 65536) -> tuple[UidList, os.stat_result] | None:
    """The header and the highest UID of a v3 uid list, reading only its
    first line and its last ``tail_bytes`` (a delivery into a folder nobody
    has open needs no more).  The returned UidList has no records but is
    set up for :func:`append_uidlist`.  None when there is no usable file."""
    path = os.path.join(folder_dir, UIDLIST)
    try:
        f = open(path, "rb")
    except FileNotFoundError:
        return None
    with f:
        st = os.fstat(f.fileno())
        first = f.readline(4096)
        if not first.endswith(b"\n"):
            return None
        try:
            ul = parse_uidlist(first)
        except CorruptUidList:
            return None
        if not ul.appendable:
            return None
        start = max(len(first), st.st_size - tail_bytes)
        f.seek(start)
        tail = f.read()
    end = tail.rfind(b"\n")
    valid = start + end + 1 if end >= 0 else len(first)
    body = tail[:end + 1] if end >= 0 else b""
    if start > len(first):
        nl = body.find(b"\n")
        if nl < 0 or nl == len(body) - 1:
            return None  # one enormous line: read it the ordinary way
        body = body[nl + 1:]
    last = 0
    for line in reversed(body.split(b"\n")):
        uid_s = line.split(b" ", 1)[0]
        if uid_s.isdigit():
            last = int(uid_s)
            break
    ul.last_uid = last
    ul.uidnext = max(ul.uidnext, last + 1)
    ul.valid_size = valid
    return ul, st


class DotLock:
    """Dovecot-style ``<file>.lock``: created with O_EXCL, holds
    ``pid:hostname``; stale when that process is gone (same host) or when
    untouched for LOCK_STALE_SECONDS.  Blocking: call it from a thread."""

    def __init__(self, target: str, timeout: float = LOCK_TIMEOUT_SECONDS,
                 stale: float = LOCK_STALE_SECONDS) -> None:
        self.path = target + ".lock"
        self.timeout = timeout
        self.stale = stale
        self._held = False

    def acquire(self) -> None:
        deadline = time.monotonic() + self.timeout
        delay = 0.002
        me = f"{os.getpid()}:{socket.gethostname()}".encode()
        while True:
            try:
                fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            except FileExistsError:
                if self._break_if_stale():
                    continue
                if time.monotonic() > deadline:
                    raise LockTimeout(f"{self.path} is held by another process") from None
                time.sleep(delay)
                delay = min(delay * 2, 0.1)
                continue
            try:
                os.write(fd, me)
            finally:
                os.close(fd)
            self._held = True
            return

    def _break_if_stale(self) -> bool:
        try:
            with open(self.path, "rb") as f:
                st = os.fstat(f.fileno())
                content = f.read(256)
        except FileNotFoundError:
            return True
        pid_s, _, host = content.decode("ascii", "replace").strip().partition(":")
        stale = False
        if pid_s.isdigit() and host == socket.gethostname() and int(pid_s) != os.getpid():
            try:
                os.kill(int(pid_s), 0)
            except ProcessLookupError:
                stale = True
            except PermissionError:
                pass
        if not stale and time.time() - st.st_mtime > self.stale:
            stale = True
        if stale:
            log.warn("removing stale lock {path}", path=self.path)
            try:
                # only remove the file we examined, not a fresh lock taken meanwhile
                if os.stat(self.path).st_ino == st.st_ino:
                    os.unlink(self.path)
            except FileNotFoundError:
                pass
            return True
        return False

    def release(self) -> None:
        if self._held:
            self._held = False
            unlink_quiet(self.path)

    def __enter__(self) -> DotLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def read_keywords(folder_dir: str) -> list[str | None]:
    """Index -> keyword name (None for unused indexes) from dovecot-keywords."""
    try:
        with open(os.path.join(folder_dir, KEYWORDS), "rb") as f:
            data = f.read()
    except FileNotFoundError:
        return []
    names: list[str | None] = []
    for line in data.decode("utf-8", "replace").split("\n"):
        idx_s, _, name = line.partition(" ")
        if not idx_s.isdigit() or not name or int(idx_s) >= MAX_KEYWORDS:
            continue
        idx = int(idx_s)
        while len(names) <= idx:
            names.append(None)
        names[idx] = name.strip()
    return names


def write_keywords(folder_dir: str, names: list[str | None]) -> None:
    data = "".join(f"{i} {n}\n" for i, n in enumerate(names) if n)
    atomic_write(os.path.join(folder_dir, KEYWORDS), data.encode("utf-8"))
