"""Rights and shared mailboxes on PostgreSQL: the
:class:`mailsrv.store.shared.ShareBackend` the backend-neutral user views
(IUserView) run on.

ACLs are a column of ``folders`` (Dovecot's ``dovecot-acl`` text), read
from the account's in-memory copy like its folder list (so the views'
synchronous checks never query); who shares with whom is the ``shares``
table, kept by every ACL change and cached per user in the store (read
at login, re-read on a ``NOTIFY 's'``); a user's own \\Seen in a public
mailbox is a row of ``private_seen``.  Owners' accounts are the store's
live accounts: a view reaches another owner only if that owner shares
with the viewer, and the store reads those accounts at login.
"""

from __future__ import annotations

from typing import Any

from twisted.internet import defer

from mailsrv.store.acl import Acl
from mailsrv.store.pg import account_sql
from mailsrv.store.rightsfolder import PrivateSeen


class PgShares:
    """See ShareBackend; ``store`` is the PgStore."""

    def __init__(self, store: Any) -> None:
        self.store = store
        self._seen: dict[tuple[str, int], PrivateSeen | list[defer.Deferred[PrivateSeen]]] = {}

    def owner_account(self, user: str) -> Any:
        """An owner the store holds (a sharer of someone logged in here),
        or None: a view cannot see into the mailboxes of anyone else."""
        return self.store.loaded_account(user)

    def public_account(self) -> Any:
        return self.store.public_account()

    def read_acl(self, account: Any, folder: str) -> Acl | None:
        result: Acl | None = account.acl_of(folder)
        return result

    def write_acl(self, account: Any, folder: str, acl: Acl | None) -> defer.Deferred[None]:
        d: defer.Deferred[None] = account.write_acl(folder, acl)
        return d

    def sharers(self, user: str | None) -> list[str]:
        return self.store.sharers_of(user)

    def private_seen(self, user: str, folder: Any) -> defer.Deferred[PrivateSeen]:
        """One PrivateSeen per user and mailbox, read once (callers arriving
        while it is read wait for the same read)."""
        key = (user, folder.id)
        have = self._seen.get(key)
        if isinstance(have, PrivateSeen):
            return defer.succeed(have)
        out: defer.Deferred[PrivateSeen] = defer.Deferred()
        if have is not None:
            have.append(out)
            return out
        waiters: list[defer.Deferred[PrivateSeen]] = [out]
        self._seen[key] = waiters
        db = self.store.db

        def save(uidvalidity: int, seen: set[int]) -> defer.Deferred[None]:
            return db.run(account_sql.save_seen, user, folder.id, uidvalidity, sorted(seen))

        def loaded(result: tuple[int, set[int]]) -> None:
            ps = self._seen[key] = PrivateSeen(result[0], result[1], save=save)
            for w in waiters:
                w.callback(ps)

        def failed(f: Any) -> None:
            del self._seen[key]
            for w in waiters:
                w.errback(f)

        db.run(account_sql.load_seen, user, folder.id).addCallbacks(loaded, failed)
        return out
