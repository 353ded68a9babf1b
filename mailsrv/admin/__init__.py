"""Maintenance commands of ``mailsrv``: ``mailbox list``, ``mailbox reindex``,
``check`` and ``import``.

They work on the Maildir directly through the store's synchronous,
thread-side half (:mod:`mailsrv.store.diskfolder`, :mod:`mailsrv.store.maildir`),
which takes the same ``dovecot-uidlist`` dotlock as the server: they are
safe to run while the server is up, and the server notices their changes
like Postfix's deliveries.  No reactor is needed.

One module per command (:mod:`.listing`, :mod:`.check`, :mod:`.mboximport`),
their shared pieces in :mod:`.common`; this module registers them with
``mailsrv`` (``register``) and names what other code uses.

Errors are one ``mailsrv: ...`` line on stderr and a non-zero exit code.
"""

from __future__ import annotations

import argparse
from typing import Any

from mailsrv.admin.check import FolderCheck, check_folder, cmd_check, cmd_mailbox_reindex
from mailsrv.admin.common import AdminError, entry
from mailsrv.admin.listing import FolderStats, cmd_mailbox_list, folder_stats
from mailsrv.admin.mboximport import ImportReport, Progress, cmd_import, import_mbox

__all__ = [
    "AdminError", "FolderCheck", "FolderStats", "ImportReport", "Progress", "check_folder", "cmd_check",
    "cmd_import", "cmd_mailbox_list", "cmd_mailbox_reindex", "folder_stats", "import_mbox", "register",
]


def register(subparsers: Any, common: argparse.ArgumentParser | None = None) -> None:
    """Add ``mailbox``, ``check`` and ``import`` to the ``mailsrv`` command.
    ``common`` is the parent parser with the global options (--data, --config)."""
    parents = [common] if common is not None else []
    mb = subparsers.add_parser("mailbox", parents=parents, help="inspect and reindex a user's folders",
                               description="Inspect and reindex a user's folders.")
    ms = mb.add_subparsers(dest="mailbox_command", metavar="ACTION", required=True)
    ls = ms.add_parser("list", parents=parents, help="folders with counts, sizes, UIDVALIDITY, unseen")
    ls.add_argument("name", metavar="NAME")
    ls.set_defaults(func=entry(cmd_mailbox_list))
    ri = ms.add_parser("reindex", parents=parents,
                       help="rescan a user's folders: assign UIDs, drop dead entries, clear the cache")
    ri.add_argument("name", metavar="NAME")
    ri.add_argument("folder", metavar="FOLDER", nargs="?", help="only this folder (default: all)")
    ri.set_defaults(func=entry(cmd_mailbox_reindex))

    ck = subparsers.add_parser(
        "check", parents=parents, help="verify mail stores against their uid lists and caches; repair",
        description="Verify each folder: files without a UID, uid list entries without a file, duplicate "
                    "keys, tmp/ leftovers older than 36 hours, unparsable names, a damaged cache.  "
                    "Repairs what can be repaired and reports what was done.")
    ck.add_argument("name", metavar="NAME", nargs="?", help="only this user (default: every user)")
    ck.add_argument("--dry-run", "-n", action="store_true", help="report only, change nothing")
    ck.set_defaults(func=entry(cmd_check))

    im = subparsers.add_parser(
        "import", parents=parents, help="import an mbox file (Thunderbird, mutt, Dovecot export)",
        description="Import a standard mbox file into a folder.  mboxrd unquoting ('>From ' -> 'From '), "
                    "bytes otherwise exact; Status/X-Status/X-Mozilla-Status/X-Keywords become flags; "
                    "the From_ line's date becomes the internal date.")
    im.add_argument("name", metavar="NAME")
    im.add_argument("--mbox", required=True, metavar="FILE", help="the mbox file ('-' for stdin)")
    im.add_argument("--folder", default="INBOX", metavar="F", help="target folder (created if missing; default INBOX)")
    im.add_argument("--no-flags", action="store_true", help="ignore Status/X-Status headers: import everything unread")
    im.add_argument("--progress", choices=("auto", "yes", "no"), default="auto",
                    help="progress bar on stderr (auto: when stderr is a terminal)")
    im.set_defaults(func=entry(cmd_import))
