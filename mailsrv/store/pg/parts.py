"""What the live folders and accounts use of the objects above them,
spelled as protocols so that the modules import downwards only (store ->
account -> folder), never back."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, BinaryIO, Protocol

from twisted.internet import defer

from mailsrv.store.pg.blobs import Body, PgBlobs
from mailsrv.store.pg.bodycache import BodyCache, ValueCache
from mailsrv.store.pg.db import Database
from mailsrv.store.pg.notify import SessionLocks


class StoreParts(Protocol):
    """The process-wide pieces (implemented by PgStore)."""

    reactor: Any
    idle_ttl: float
    db: Database
    blobs: PgBlobs
    bodies: BodyCache
    values: ValueCache
    locks: SessionLocks

    def spool(self, source: Any) -> defer.Deferred[Body]:
        """Fires with the spooled body of a message source."""

    def keep_body(self, blob: int, body: Body) -> None:
        """Keep a just-stored body in this process's body cache."""

    def blocking_reader(self, blob: int, size: int) -> BinaryIO:
        """A body not held here, read from the database while the caller waits."""

    def note_blocking(self, what: str) -> None:
        """Count (and log now and then) a read that waited in the reactor thread."""

    def prefetch_messages(self, infos: Sequence[Any], kinds: list[str], body: str | None) -> defer.Deferred[None]:
        """IFolder.prefetch for these messages."""

    def remember_folder_value(self, fid: int, kind: str, value: bytes) -> None:
        """Write a folder-wide derived value out with the next batch."""

    def remember_value(self, blob: int, kind: str, value: bytes) -> None:
        """Keep a derived value and write it out in the next batch."""

    def collect_blobs(self, blob_ids: Sequence[int]) -> None:
        """Remove bodies no message uses any more (best effort)."""

    def register_folder(self, folder: Any) -> None:
        """A live folder: notifications for its id go to it."""

    def forget_folder(self, folder: Any) -> None:
        """The folder is no longer live."""

    def account_loaded(self, account: Any) -> None:
        """An account has its database id: notifications for it go to it."""

    def quota_rules(self, user: str) -> Any:
        """The owner's QuotaRules (mailsrv.store.quota)."""

    quota_tempfail: bool


class FolderOwner(Protocol):
    """What a live folder uses of its account (implemented by PgAccount)."""

    store: StoreParts

    def folder_idle(self, folder: Any) -> None:
        """The folder's last listener left."""

    def folder_news(self, folder: Any, what: str, uids: list[int]) -> None:
        """Tell the account's listeners (NOTIFY) what the folder told its own."""

    def quota_check(self, folder: str) -> Any:
        """The QuotaCheck for storing into ``folder``, or None (no limit)."""
