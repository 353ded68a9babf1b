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
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Tuple

from twisted.logger import Logger

from mailsrv.store.interfaces import StoreError

log = Logger(namespace="mailsrv.store")

UIDLIST = "dovecot-uidlist"
KEYWORDS = "dovecot-keywords"
LOCK_STALE_SECONDS = 120  # Dovecot's MAILDIR_UIDLIST_LOCK_STALE_TIMEOUT
LOCK_TIMEOUT_SECONDS = 30
MAX_KEYWORDS = 26  # filename letters a..z


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
    header_extra: List[str] = field(default_factory=list)
    uids: Dict[str, int] = field(default_factory=dict)
    exts: Dict[str, Dict[str, str]] = field(default_factory=dict)
    bad_lines: int = 0

    def serialize(self) -> bytes:
        head = [f"3 V{self.uidvalidity} N{self.uidnext}"]
        if self.guid:
            head.append(f"G{self.guid}")
        head.extend(self.header_extra)
        lines = [" ".join(head), "\n"]
        exts = self.exts
        for key, uid in sorted(self.uids.items(), key=lambda kv: kv[1]):
            e = exts.get(key)
            if e:
                lines.append(f"{uid} {''.join(k + v + ' ' for k, v in e.items())}:{key}\n")
            else:
                lines.append(f"{uid} :{key}\n")
        return "".join(lines).encode("utf-8", "surrogateescape")


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
    lines = text.split("\n")
    header = lines[0].split()
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
        raise CorruptUidList(f"unsupported uid list header {lines[0][:60]!r}")
    if ul.uidvalidity <= 0 or ul.uidnext <= 0:
        raise CorruptUidList(f"bad uid list header {lines[0][:60]!r}")
    uids, exts = ul.uids, ul.exts
    last = 0
    body = text[len(lines[0]) + 1:]
    if version == "1":
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
    ul.bad_lines += sum(1 for ln in lines[1:] if ln) - count
    if last >= ul.uidnext:
        ul.uidnext = last + 1
    return ul


def read_uidlist(folder_dir: str) -> Tuple[Optional[UidList], Optional[os.stat_result]]:
    """(parsed list, its stat) or (None, None) if there is none."""
    path = os.path.join(folder_dir, UIDLIST)
    try:
        with open(path, "rb") as f:
            st = os.fstat(f.fileno())
            data = f.read()
    except FileNotFoundError:
        return None, None
    return parse_uidlist(data), st


def atomic_write(path: str, data: bytes, fsync: bool = True) -> None:
    """Write-to-temp + fsync + rename + fsync(dir): the old file stays valid
    until the new one is complete."""
    tmp = f"{path}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        view = memoryview(data)
        while view:
            n = os.write(fd, view)
            view = view[n:]
        if fsync:
            os.fsync(fd)
    except BaseException:
        os.close(fd)
        _unlink_quiet(tmp)
        raise
    os.close(fd)
    try:
        os.rename(tmp, path)
    except BaseException:
        _unlink_quiet(tmp)
        raise
    if fsync:
        fsync_dir(os.path.dirname(path))


def write_uidlist(folder_dir: str, ul: UidList) -> os.stat_result:
    path = os.path.join(folder_dir, UIDLIST)
    atomic_write(path, ul.serialize())
    return os.stat(path)


def fsync_dir(path: str) -> None:
    fd = os.open(path or ".", os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _unlink_quiet(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass


def clean_stale_temps(folder_dir: str, max_age: float = 3600) -> None:
    """Remove temp files left by a crash during an atomic replace."""
    now = time.time()
    try:
        names = os.listdir(folder_dir)
    except OSError:
        return
    for n in names:
        if n.endswith(".tmp") and (n.startswith(UIDLIST + ".") or n.startswith(KEYWORDS + ".")
                                   or n.startswith("subscriptions.")):
            p = os.path.join(folder_dir, n)
            try:
                if now - os.stat(p).st_mtime > max_age:
                    os.unlink(p)
            except OSError:
                pass


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
            _unlink_quiet(self.path)

    def __enter__(self) -> "DotLock":
        self.acquire()
        return self

    def __exit__(self, *exc) -> None:
        self.release()


def read_keywords(folder_dir: str) -> List[Optional[str]]:
    """Index -> keyword name (None for unused indexes) from dovecot-keywords."""
    try:
        with open(os.path.join(folder_dir, KEYWORDS), "rb") as f:
            data = f.read()
    except FileNotFoundError:
        return []
    names: List[Optional[str]] = []
    for line in data.decode("utf-8", "replace").split("\n"):
        idx_s, _, name = line.partition(" ")
        if not idx_s.isdigit() or not name or int(idx_s) >= MAX_KEYWORDS:
            continue
        idx = int(idx_s)
        while len(names) <= idx:
            names.append(None)
        names[idx] = name.strip()
    return names


def write_keywords(folder_dir: str, names: List[Optional[str]]) -> None:
    data = "".join(f"{i} {n}\n" for i, n in enumerate(names) if n)
    atomic_write(os.path.join(folder_dir, KEYWORDS), data.encode("utf-8"))
