"""Writing message files into a Maildir folder, synchronously: the tools
``mailsrv deliver``, the admin commands, the benchmarks and the live
folder's worker thread share.

Everything here blocks (fsync, renames, the keywords dotlock) and touches
no reactor state.  :func:`deliver` is the whole crash-safe delivery of a
command-line tool: tmp/, fsync, rename into new/ (or cur/ with flags),
fsync the directory; a running server notices the file as it notices
Postfix's deliveries.  UIDs are the business of
:class:`mailsrv.store.diskfolder.DiskFolder`.
"""

from __future__ import annotations

import io
import os
import time
from collections.abc import Iterable
from typing import IO

from mailsrv.store.crlf import CRLFEncoder, crlf_size
from mailsrv.store.filename import (
    MAX_KEYWORDS,
    TooManyKeywords,
    final_key,
    info_for,
    message_path,
    new_key_base,
    split_filename,
)
from mailsrv.store.flags import normalize_flags
from mailsrv.store.fsutil import fsync_dir, fsync_file, unlink_quiet
from mailsrv.store.uidlist import KEYWORDS, DotLock, read_keywords, write_keywords

TMP_MAX_AGE = 36 * 3600  # Dovecot removes tmp/ leftovers after 36 hours
SUBDIRS = ("cur", "new", "tmp")

Source = bytes | bytearray | memoryview | IO[bytes]  # a message: its bytes or a binary file


def file_crlf_size(path: str) -> int:
    """The RFC 822 size of a stored file (its bytes with CRLF line ends)."""
    with open(path, "rb") as f:
        return crlf_size(f)


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
        unlink_quiet(path)
        raise
    os.close(fd)
    if internaldate is not None:
        os.utime(path, (internaldate, internaldate))
    return path, size, vsize


def finish_tmp(tmp_path: str, internaldate: float | None = None) -> tuple[int, int]:
    """fsync a file someone else wrote into tmp/ (IMAP literal); (size, crlf size)."""
    fsync_file(tmp_path)
    size = os.stat(tmp_path).st_size
    vsize = file_crlf_size(tmp_path)
    if internaldate is not None:
        os.utime(tmp_path, (internaldate, internaldate))
    return size, vsize


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
    for sub in SUBDIRS:
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
        unlink_quiet(tmp)
        raise
    fsync_dir(os.path.dirname(dest))
    return dest


LOCATE_ATTEMPTS = 3


def locate(folder_dir: str, key: str) -> tuple[str, str | None] | None:
    """(sub, info) where the message with this key is now, after someone
    renamed it; None if it is gone.  Slow path: lists new/ and cur/.

    Files only ever move from new/ to cur/, so new/ is listed first: a
    move between the two listings is then seen in one of them (listing
    cur/ first missed it, and the message was taken for gone).  A name
    found is checked to still be there and the search repeated if it was
    renamed again meanwhile (a STORE's background rename)."""
    for _attempt in range(LOCATE_ATTEMPTS):
        found = _find(folder_dir, key)
        if found is None:
            return None
        if os.path.exists(message_path(folder_dir, found[0], key, found[1])):
            return found
    return None


def _find(folder_dir: str, key: str) -> tuple[str, str | None] | None:
    for sub in ("new", "cur"):
        try:
            names = os.listdir(os.path.join(folder_dir, sub))
        except FileNotFoundError:
            continue
        for n in names:
            if n.startswith(key) and (len(n) == len(key) or n[len(key)] == ":"):
                return sub, split_filename(n)[1]
    return None


def old_tmp_files(folder_dir: str, now: float | None = None) -> list[str]:
    """Names in tmp/ older than TMP_MAX_AGE: leftovers of a crashed writer
    (Dovecot removes them at the same age)."""
    now = time.time() if now is None else now
    tmpdir = os.path.join(folder_dir, "tmp")
    try:
        names = os.listdir(tmpdir)
    except FileNotFoundError:
        return []
    out = []
    for n in names:
        try:
            if now - os.stat(os.path.join(tmpdir, n)).st_mtime > TMP_MAX_AGE:
                out.append(n)
        except OSError:
            pass
    return out
