"""The store's file-system primitives, in one place: remove a file that may
already be gone, replace a file atomically, make a rename durable.

Every crash-safety promise of the store rests on these few steps (write to
a temporary name, fsync, rename, fsync the directory), so there is exactly
one copy of each.  Blocking: call them from a worker thread or a tool.
"""

from __future__ import annotations

import errno
import os
import shutil
import time
import uuid
from collections.abc import Iterable

TMP_SUFFIX = ".tmp"


def unlink_quiet(path: str) -> None:
    """Remove ``path`` if it is there; a file already gone (or a directory
    we may not touch) is not an error: the caller is cleaning up."""
    try:
        os.unlink(path)
    except OSError:
        pass


def fsync_dir(path: str) -> None:
    """Make the renames and creations inside directory ``path`` durable.
    A file system that cannot fsync a directory (EINVAL, EBADF: some
    network and FUSE file systems) is not an error: there is nothing more
    to be had there, and Dovecot treats it the same way."""
    fd = os.open(path or ".", os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    except OSError as e:
        if e.errno not in (errno.EINVAL, errno.EBADF):
            raise
    finally:
        os.close(fd)


def fsync_file(path: str) -> None:
    """fsync a file someone finished writing (through another handle)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def temp_name(path: str) -> str:
    """A unique sibling of ``path`` to build its replacement in:
    ``<path>.<pid>.<random>.tmp``, the form :func:`clean_stale_temps` in
    mailsrv.store.uidlist recognizes after a crash."""
    return f"{path}.{os.getpid()}.{uuid.uuid4().hex[:8]}{TMP_SUFFIX}"


def replace_synced(tmp: str, path: str, fsync: bool = True) -> None:
    """Rename a finished ``tmp`` over ``path``: fsync it first and its
    directory after, so a crash leaves the old file or the new one, never a
    torn one.  ``tmp`` is removed if the rename fails."""
    try:
        if fsync:
            fsync_file(tmp)
        os.rename(tmp, path)
    except BaseException:
        unlink_quiet(tmp)
        raise
    if fsync:
        fsync_dir(os.path.dirname(path))


def atomic_write(path: str, data: bytes, fsync: bool = True, owner: tuple[int, int] | None = None) -> None:
    """Write-to-temp + fsync + rename + fsync(dir): the old file stays valid
    until the new one is complete.  ``fsync=False`` keeps the atomic rename
    but not the durability (for files a crash may roll back harmlessly).
    The new file is mode 0600; ``owner`` (uid, gid) gives it to another
    user, as root rewriting a file the unprivileged server reads."""
    tmp = temp_name(path)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        view = memoryview(data)
        while view:
            n = os.write(fd, view)
            view = view[n:]
        if owner is not None:
            os.fchown(fd, *owner)
        if fsync:
            os.fsync(fd)
    except BaseException:
        os.close(fd)
        unlink_quiet(tmp)
        raise
    os.close(fd)
    replace_synced(tmp, path, fsync=False)
    if fsync:
        fsync_dir(os.path.dirname(path))


def copy_synced(src: str, tmp: str, dest: str) -> None:
    """Copy ``src`` to ``dest`` through ``tmp`` (data and mtime), fsynced
    before the rename: a hard link's fallback across file systems."""
    shutil.copy2(src, tmp)
    fsync_file(tmp)
    os.rename(tmp, dest)


def clean_stale_temps(directory: str, names: Iterable[str], max_age: float = 3600) -> None:
    """Remove the :func:`temp_name` files of ``names`` in ``directory`` that
    a crash during an atomic replace left behind (older than ``max_age``
    seconds, so a replace in progress elsewhere is never touched)."""
    prefixes = tuple(n + "." for n in names)
    now = time.time()
    try:
        entries = os.listdir(directory)
    except OSError:
        return
    for n in entries:
        if n.endswith(TMP_SUFFIX) and n.startswith(prefixes):
            p = os.path.join(directory, n)
            try:
                if now - os.stat(p).st_mtime > max_age:
                    os.unlink(p)
            except OSError:
                pass
