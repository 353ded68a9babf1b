"""``mailsrv mailbox list``: each folder's counts, size, UIDVALIDITY and
UIDNEXT, read from the directory listing and the uid list (nothing changed)."""

from __future__ import annotations

import argparse
import os
import sys
from dataclasses import dataclass
from typing import Any, TextIO

from mailsrv.admin.common import folders, human, user_root
from mailsrv.store import uidlist
from mailsrv.store.filename import filename_size, flag_chars, split_filename
from mailsrv.store.maildir import file_crlf_size


@dataclass
class FolderStats:
    name: str
    messages: int = 0
    size: int = 0
    unseen: int = 0
    without_uid: int = 0
    uidvalidity: int | None = None
    uidnext: int | None = None


def folder_stats(name: str, path: str) -> FolderStats:
    """Counts from the directory listing and the uid list, changing nothing."""
    st = FolderStats(name)
    try:
        ul, _ = uidlist.read_uidlist(path)
    except uidlist.CorruptUidList:
        ul = None
    if ul is not None:
        st.uidvalidity, st.uidnext = ul.uidvalidity, ul.uidnext
    for sub in ("new", "cur"):
        for fn in os.listdir(os.path.join(path, sub)):
            if fn.startswith("."):
                continue
            key, info = split_filename(fn)
            st.messages += 1
            if "S" not in flag_chars(info):
                st.unseen += 1
            st.size += _size(os.path.join(path, sub, fn), key, ul)
            if ul is None or key not in ul.uids:
                st.without_uid += 1
    return st


def _size(file_path: str, key: str, ul: uidlist.UidList | None) -> int:
    """A message's RFC 822 size: from its name, else the uid list's W
    extension, else by reading it (0 if it vanished)."""
    size = filename_size(key)
    if size is None and ul is not None:
        w = ul.exts.get(key, {}).get("W")
        size = int(w) if w and w.isdigit() else None
    if size is None:
        try:
            size = file_crlf_size(file_path)
        except OSError:
            size = 0
    return size


def cmd_mailbox_list(args: argparse.Namespace, config: Any, out: TextIO | None = None) -> int:
    """Folders with message counts, sizes, UIDVALIDITY and unseen counts."""
    out = out or sys.stdout
    root = user_root(config, args.name)
    rows = [folder_stats(n, p) for n, p in folders(root)]
    header = ("FOLDER", "MESSAGES", "UNSEEN", "SIZE", "UIDVALIDITY", "UIDNEXT")
    table = [header] + [(r.name, str(r.messages), str(r.unseen), human(r.size),
                         str(r.uidvalidity) if r.uidvalidity else "-", str(r.uidnext) if r.uidnext else "-")
                        for r in rows]
    widths = [max(len(row[i]) for row in table) for i in range(len(header))]
    for row in table:
        cells = [row[0].ljust(widths[0])] + [c.rjust(w) for c, w in zip(row[1:], widths[1:], strict=True)]
        out.write("  ".join(cells) + "\n")
    total = sum(r.messages for r in rows)
    out.write(f"{len(rows)} folders, {total} messages, {human(sum(r.size for r in rows))}\n")
    from mailsrv.admin.quota import usage_line  # issue 12: quota usage and limits

    out.write("quota: " + usage_line(config, args.name) + "\n")
    pending = sum(r.without_uid for r in rows)
    if pending:
        out.write(f"({pending} messages not yet indexed: they get UIDs when the folder is next opened)\n")
    return 0
