"""Users in the database, so that every node sees one user list: the
``users`` table holds what a passwd-file line holds (name and the
``{SCHEME}hash`` of :mod:`mailsrv.auth.hashing`, the same schemes), and
:class:`PgUsers` offers :class:`mailsrv.auth.passwd.PasswdFile`'s methods
so the passwd-file checker, its timing rules included, runs unchanged on
it.  The realm hands out accounts read fresh from the database, and the
LMTP recipient lookup reads the account too, so that the synchronous
account methods the protocols call next answer from memory.
"""

from __future__ import annotations

from typing import Any

from twisted.cred.portal import IRealm, Portal
from twisted.internet import defer
from twisted.logger import Logger
from zope.interface import implementer

from mailsrv.auth.cred import AuthUnavailable, MailRealm, PasswdFileChecker
from mailsrv.auth.passwd import NoSuchUser, PasswdEntry, UserExists, validate_username
from mailsrv.store.interfaces import IAccount, StoreError
from mailsrv.store.pg import account_sql
from mailsrv.store.pg.db import Database
from mailsrv.store.pg.errors import describe

log = Logger(namespace="mailsrv.store.pg")


class PgUsers:
    """The user list in the database.  Every method blocks (a pool thread,
    or a command-line tool) and raises StoreUnavailable when the database
    cannot be reached."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self.path = "the users table"  # what the checker names in its log lines

    def lookup(self, name: str) -> PasswdEntry | None:
        row = self.db.call(lambda c: c.execute("SELECT name, password FROM users WHERE name = %s", (name,)).fetchone())
        return None if row is None else PasswdEntry(row[0], row[1], [])

    def find(self, local_part: str) -> str | None:
        """The stored spelling of a (lower-cased) LMTP local part."""
        def q(c: Any) -> Any:
            return c.execute("SELECT name FROM users WHERE name = %s UNION ALL "
                             "(SELECT name FROM users WHERE lower(name) = lower(%s) ORDER BY name) LIMIT 1",
                             (local_part, local_part)).fetchone()
        row = self.db.call(q)
        return None if row is None else row[0]

    def users(self) -> list[str]:
        return self.db.call(lambda c: [r[0] for r in c.execute("SELECT name FROM users ORDER BY name")])

    def first_password(self) -> str | None:
        row = self.db.call(lambda c: c.execute(
            "SELECT password FROM users WHERE password <> '' ORDER BY created LIMIT 1").fetchone())
        return None if row is None else row[0]

    def add_user(self, name: str, stored: str, fields: dict[str, str] | None = None) -> None:
        """Add a user and make their account (default folders); UserExists
        if the name is taken.  ``fields``: the passwd file's extra fields
        (``userdb_quota_rule=...``)."""
        validate_username(name)
        from psycopg.types.json import Jsonb

        def add(c: Any) -> None:
            row = c.execute("INSERT INTO users (name, password, fields) VALUES (%s, %s, %s) "
                            "ON CONFLICT (name) DO NOTHING RETURNING name",
                            (name, stored, Jsonb(fields or {}))).fetchone()
            if row is None:
                raise UserExists(f"user {name} already exists")
            account_sql.load(c, name, create=True)

        self.db.call(add)

    def set_password(self, name: str, stored: str) -> None:
        def change(c: Any) -> None:
            if c.execute("UPDATE users SET password = %s WHERE name = %s RETURNING name",
                         (stored, name)).fetchone() is None:
                raise NoSuchUser(f"no such user {name}")

        self.db.call(change)

    def set_fields(self, name: str, fields: dict[str, str]) -> None:
        """Replace the user's extra fields (running servers read them at the
        user's next login)."""
        from psycopg.types.json import Jsonb

        def change(c: Any) -> None:
            if c.execute("UPDATE users SET fields = %s WHERE name = %s RETURNING name",
                         (Jsonb(fields), name)).fetchone() is None:
                raise NoSuchUser(f"no such user {name}")

        self.db.call(change)

    def remove_user(self, name: str, purge: bool = False) -> bool:
        """Remove the user; with ``purge`` their mail too.  Returns whether
        an account with mail (or at least folders) remains."""
        def remove(c: Any) -> bool:
            if c.execute("DELETE FROM users WHERE name = %s RETURNING name", (name,)).fetchone() is None:
                raise NoSuchUser(f"no such user {name}")
            if purge:
                blobs = account_sql.delete_account(c, name)
                if blobs:
                    from mailsrv.store.pg.blobs import PgBlobs

                    PgBlobs().collect(c, blobs)
                return False
            return account_sql.account_id(c, name) is not None

        return bool(self.db.call(remove))


class PgPasswordChecker(PasswdFileChecker):
    """The passwd-file checker over :class:`PgUsers`: same schemes, same
    dummy work for unknown users, same failure delay; a database that
    cannot be reached is a temporary failure, not a wrong password."""

    def __init__(self, users: PgUsers, config: Any, **options: Any) -> None:
        super().__init__(config.passwd_path, config, **options)
        self.passwd = users  # type: ignore[assignment]

    def _broken(self, failure: Any) -> Any:
        if failure.check(StoreError):
            log.warn("auth: cannot read the users table: {err}", err=describe(failure.value))
            raise AuthUnavailable(f"cannot read the users table: {failure.value}")
        return super()._broken(failure)


def _logout() -> None:
    """Nothing to release (see mailsrv.auth.cred)."""


@implementer(IRealm)
class PgRealm(MailRealm):
    """Hands out the user's view (rights enforced) over accounts read fresh
    from the database (their folder lists, ACLs and subscriptions in memory
    from then on)."""

    def requestAvatar(self, avatarId: Any, mind: Any, *interfaces: Any) -> Any:
        if IAccount not in interfaces:
            raise NotImplementedError("mailsrv realm only provides IAccount avatars")
        name = avatarId.decode("utf-8") if isinstance(avatarId, (bytes, bytearray)) else str(avatarId)
        return self.store.open_view(name).addCallback(lambda view: (IAccount, view, _logout))


def make_portal(store: Any, config: Any, **checker_options: Any) -> Portal:
    """The portal of a server on the PostgreSQL store."""
    return Portal(PgRealm(store), [PgPasswordChecker(PgUsers(store.db), config, **checker_options)])


def lmtp_account_name(store: Any, users: PgUsers) -> Any:
    """The LMTP factory's recipient lookup: the stored spelling of a local
    part (or False), with the account read so delivery finds it ready."""
    def account_name(local_part: str) -> defer.Deferred:
        d = store.db.in_thread(users.find, local_part)

        def found(name: str | None) -> Any:
            if name is None:  # maybe a public mailbox: have their names at hand
                return store.load_public().addCallback(lambda _: False)
            return store.open_account(name).addCallback(lambda _: name)

        return d.addCallback(found)

    return account_name
