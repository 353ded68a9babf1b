"""Noticing what other processes changed in folders this process has not
open (NOTIFY follows them): the new/ and cur/ directory mtimes and the uid
list's identity, compared between two polls.  A thread-side function: the
account calls it through ``deferToThread``."""

from __future__ import annotations

import os

from mailsrv.store.diskfolder import dir_stamps
from mailsrv.store.uidstate import StatId, uidlist_id

FolderStamps = tuple[int, int, StatId | None]
"""mtime_ns of new/ and cur/, and (inode, mtime_ns, size) of dovecot-uidlist."""


def folder_stamps(path: str) -> FolderStamps | None:
    """The stamps of one folder directory; None when it is gone."""
    try:
        new, cur = dir_stamps(path)
    except (FileNotFoundError, NotADirectoryError):
        return None
    return new, cur, uidlist_id(path)


def poll_stamps(paths: dict[str, str]) -> dict[str, FolderStamps | None]:
    """``{name: stamps}`` for ``{name: folder directory}``."""
    return {name: folder_stamps(path) if os.path.isdir(path) else None for name, path in paths.items()}
