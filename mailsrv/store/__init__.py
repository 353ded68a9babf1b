"""The mail store: Maildir++ on disk, Dovecot-compatible (the map of the
whole project, both backends included, is docs/architecture.md).

``Store(data_dir)`` is the process-wide IStore; protocols use only the
interfaces in :mod:`mailsrv.store.interfaces`.

Modules, from the contract down:

- interfaces: IStore/IAccount/IFolder/IFolderListener, MessageInfo, the
  errors, SYSTEM_FLAGS.  Backend-neutral, as are flags (flag validation),
  groupcommit (batching writes), listeners (telling sessions), crlf.
- account: Account and Store, the live objects per user.
- folder: the live Folder (reactor side) over diskfolder (thread side);
  message: its per-message objects; index: its snapshot and SnapshotWriter;
  cache: its cache of parsed values.
- diskfolder: scans and file mutations under the uid list lock; uidstate:
  the uid list as held between operations; entry: what a scan yields.
- maildir: writing message files (deliver, write_tmp) for tools and the
  worker thread; filename: the file-name/flags codec; uidlist: the
  dovecot-uidlist/keywords files and dotlocks; layout: paths, folder names,
  subscriptions; fsutil: unlink, atomic write, fsync.
- changes, modseq: persistent mod-sequences and the expunge record
  (CONDSTORE/QRESYNC); flagindex: the per-flag UID sets.
- watch, poll: noticing other programs' changes (inotify, stat poll);
  pop3lock: the cross-process POP3 maildrop lock; events: account events.
- quota; acl, rightsfolder, shared, sharedfiles: rights and shared
  mailboxes in Dovecot's formats; specialuse; opstats: store metrics.
- pg/: the PostgreSQL backend behind the same interfaces.
"""

from typing import Any

# Names are loaded on first use: the command-line delivery agent imports only
# the sync helpers (layout, maildir) and should not pay for Twisted's Deferred
# machinery that the live store needs.
_WHERE = {
    "Account": "account", "Store": "account",
    "Folder": "folder", "MaildirMessageInfo": "message", "MaildirTempFile": "message",
    "FolderExists": "interfaces", "FolderNotEmpty": "interfaces", "InvalidFolderName": "interfaces",
    "MessageGone": "interfaces", "MessageInfo": "interfaces", "NoSuchFolder": "interfaces",
    "StoreError": "interfaces", "TooBig": "interfaces",
    "InvalidFlag": "flags", "TooManyKeywords": "filename",
}


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(f"mailsrv.store.{module}"), name)
    globals()[name] = value
    return value


__all__ = [
    "Account", "Folder", "FolderExists", "FolderNotEmpty", "InvalidFlag", "InvalidFolderName",
    "MaildirMessageInfo", "MaildirTempFile", "MessageGone", "MessageInfo", "NoSuchFolder", "Store",
    "StoreError", "TooBig", "TooManyKeywords",
]
