"""The mail store: Maildir++ on disk, Dovecot-compatible (see DESIGN.md).

``Store(data_dir)`` is the process-wide IStore; protocols use only the
interfaces in :mod:`mailsrv.store.interfaces`.
"""

from mailsrv.store.account import Account, Store
from mailsrv.store.folder import Folder, MaildirMessageInfo, MaildirTempFile
from mailsrv.store.interfaces import (
    FolderExists,
    FolderNotEmpty,
    InvalidFolderName,
    MessageGone,
    MessageInfo,
    NoSuchFolder,
    StoreError,
    TooBig,
)
from mailsrv.store.maildir import InvalidFlag, TooManyKeywords

__all__ = [
    "Account", "Folder", "FolderExists", "FolderNotEmpty", "InvalidFlag", "InvalidFolderName",
    "MaildirMessageInfo", "MaildirTempFile", "MessageGone", "MessageInfo", "NoSuchFolder", "Store",
    "StoreError", "TooBig", "TooManyKeywords",
]
