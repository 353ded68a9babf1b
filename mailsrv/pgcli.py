"""The ``mailsrv`` command on the PostgreSQL store: ``user add/passwd/del/
list`` against the users table (when the configuration says ``[store]
backend = postgresql``), ``mailsrv deliver`` into the database, and the two
moves between the backends:

- ``mailsrv migrate --to postgresql://...``: the Maildir data folder (mail,
  subscriptions, passwd entries) into the database, resumable;
- ``mailsrv export --maildir DIR``: the database back out as a
  Dovecot-readable Maildir data folder.

Every function here blocks (a command-line tool, no reactor but for the
migrations, which run one with ``task.react``-style driving).
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any, BinaryIO, TextIO

from mailsrv.config import Config, ConfigError


def _database(config: Config, dsn: str | None = None) -> Any:
    from mailsrv.store.pg.db import Database

    dsn = dsn or config.store_dsn
    if not dsn:
        raise ConfigError("no database: set [store] dsn (or pass the DSN)")
    return Database(dsn, max_size=1, start=False)


def _users(config: Config) -> Any:
    from mailsrv.store.pg.users import PgUsers

    return PgUsers(_database(config))


# --- users ------------------------------------------------------------------------------------

def user_add(config: Config, name: str, stored: str) -> str:
    """Add the user with their account (default folders); the line to print."""
    users = _users(config)
    try:
        users.add_user(name, stored)
    finally:
        users.db.close_now()
    return f"added user {name}, mail in the database"


def user_passwd(config: Config, name: str, stored: str) -> None:
    users = _users(config)
    try:
        users.set_password(name, stored)
    finally:
        users.db.close_now()


def user_exists(config: Config, name: str) -> bool:
    users = _users(config)
    try:
        return users.lookup(name) is not None
    finally:
        users.db.close_now()


def user_del(config: Config, name: str, purge: bool) -> str:
    users = _users(config)
    try:
        kept = users.remove_user(name, purge=purge)
    finally:
        users.db.close_now()
    if purge:
        return f"deleted user {name} and their mail"
    if kept:
        return f"deleted user {name}; mail kept in the database (use --purge to remove it)"
    return f"deleted user {name}"


def user_list(config: Config) -> list[str]:
    users = _users(config)
    try:
        return list(users.users())
    finally:
        users.db.close_now()


# --- public mailboxes ------------------------------------------------------------------------

def shared_create(config: Config, name: str, acl: Any, update: bool) -> None:
    """A public mailbox ``Public/NAME`` with its ACL (mailsrv shared create)."""
    from mailsrv.store.interfaces import FolderExists
    from mailsrv.store.pg import account_sql
    from mailsrv.store.pg.store import PUBLIC

    text = aclmod_render(acl)

    def create(conn: Any) -> None:
        state = account_sql.load(conn, PUBLIC, create=True, defaults=False)
        assert state is not None
        if name not in state.folders:
            account_sql.create(conn, state.id, name)
        elif not update:
            raise FolderExists(f"public mailbox {name} exists (use --update to replace its rights)")
        account_sql.set_acl(conn, state.id, PUBLIC, name, text, track=False)

    db = _database(config)
    try:
        db.call(create)
    finally:
        db.close_now()


def shared_list(config: Config) -> list[tuple[str, str | None]]:
    """(name, ACL text or None) of every public mailbox."""
    from mailsrv.store.pg import account_sql
    from mailsrv.store.pg.store import PUBLIC

    def read(conn: Any) -> list[tuple[str, str | None]]:
        aid = account_sql.account_id(conn, PUBLIC)
        if aid is None:
            return []
        state = account_sql.read(conn, aid)
        return [(n, state.acls.get(n)) for n in sorted(state.folders) if n != "INBOX"]

    db = _database(config)
    try:
        return list(db.call(read))
    finally:
        db.close_now()


def aclmod_render(acl: Any) -> str:
    from mailsrv.store import acl as aclmod

    return aclmod.render(acl)


# --- delivery ---------------------------------------------------------------------------------

def deliver_command(config: Config, name: str, folder: str | None, flags: list[str], stdin: BinaryIO,
                    stderr: TextIO | None = None) -> int:
    """``mailsrv deliver`` into the database: the same checks and exit codes
    as the Maildir delivery agent (mailsrv.delivery); committed before it
    exits 0, and every running server's sessions are told at once."""
    from mailsrv import delivery
    from mailsrv.store.interfaces import StoreError

    err = stderr if stderr is not None else sys.stderr
    try:
        wanted = delivery.normalize_flags(flags)
        with delivery.spool_message(stdin, config.lmtp_max_size) as message:
            fell_back = _deliver(config, name, folder or "INBOX", message, wanted)
    except delivery.DeliveryFailed as e:
        err.write(f"mailsrv deliver: {e.reason}\n")
        return e.code
    except StoreError as e:
        err.write(f"mailsrv deliver: {e}\n")
        return delivery.EX_TEMPFAIL
    if fell_back:
        err.write(f"mailsrv deliver: folder {folder!r} does not exist; delivered to INBOX\n")
    return delivery.EX_OK


def _candidates(name: str) -> list[str]:
    """The name, its local part, the local part without +detail."""
    out = [name]
    if "@" in name:
        out.append(name.rpartition("@")[0])
    out.append(out[-1].partition("+")[0])
    return out


def _deliver(config: Config, name: str, folder: str, message: Any, flags: list[str]) -> bool:
    from mailsrv import delivery
    from mailsrv.store import layout
    from mailsrv.store.interfaces import StoreError
    from mailsrv.store.pg import account_sql, folder_sql
    from mailsrv.store.pg.blobs import PgBlobs, spool
    from mailsrv.store.pg.folder_sql import NewMessage
    from mailsrv.store.pg.message import FlagDecoder, split_flags
    from mailsrv.store.pg.users import PgUsers

    db = _database(config)
    try:
        users = PgUsers(db)
        user = next((u for c in _candidates(name) if (u := users.find(c)) is not None), None)
        if user is None:
            raise delivery.DeliveryFailed(delivery.EX_NOUSER, f"unknown user {name!r}")
        body = spool(message)
        bits, keywords = split_flags(flags)

        def store(conn: Any) -> bool:
            state = account_sql.load(conn, user, create=True)
            assert state is not None
            try:
                target = layout.canonical(folder)
            except StoreError:
                target = ""
            fell_back = target not in state.folders
            fid = state.folders[layout.INBOX if fell_back else target][0]
            item = NewMessage(body, bits, keywords, time.time())
            folder_sql.append(conn, fid, [item], PgBlobs(), None, FlagDecoder())
            return fell_back and target != layout.INBOX

        try:
            return bool(db.call(store))
        finally:
            body.discard()
    finally:
        db.close_now()


# --- migrate and export ----------------------------------------------------------------------

def _run(coro_factory: Any) -> Any:
    """Run an async job on a reactor of our own and return its result."""
    from twisted.internet import defer, task

    box: dict[str, Any] = {}

    def main(reactor: Any) -> defer.Deferred[None]:
        d = defer.ensureDeferred(coro_factory(reactor))
        d.addCallback(lambda r: box.__setitem__("result", r))
        return d

    try:
        task.react(main)
    except SystemExit as e:
        if e.code not in (0, None):
            raise
    return box.get("result")


def _migrate(args: argparse.Namespace, config: Config) -> int:
    from mailsrv.store.pg.migrate import Migration

    report = _run(lambda reactor: Migration(config.data_dir, args.to, passwd_path=config.passwd_path,
                                            users=args.user or None, reactor=reactor).run())
    if report is None:
        return 1
    print(f"migrated {report.messages} messages ({report.octets / 1e6:.1f} MB) in {report.folders} folders "
          f"of {report.users} users; {report.skipped} already there")
    return 0


def _export(args: argparse.Namespace, config: Config) -> int:
    from mailsrv.store.pg.migrate import Export

    dsn = args.dsn or config.store_dsn
    if not dsn:
        raise ConfigError("no database to export: set [store] dsn or pass --dsn")
    report = _run(lambda reactor: Export(dsn, args.maildir, users=args.user or None, reactor=reactor).run())
    if report is None:
        return 1
    print(f"exported {report.messages} messages in {report.folders} folders of {report.users} users to "
          f"{args.maildir}")
    return 0


def build_migrate(sub: Any, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser("migrate", parents=[common], help="copy the Maildir data folder into PostgreSQL",
                       description="Copy the data folder's mail (UIDs, UIDVALIDITY, flags, keywords, internal "
                                   "dates, POP3 UIDLs, subscriptions) and passwd entries into the database. "
                                   "Run it with the server stopped; it can be interrupted and run again.")
    p.add_argument("--to", metavar="DSN", required=True, help="postgresql://user@host/database")
    p.add_argument("--user", metavar="NAME", action="append", help="only this user (repeatable)")
    p.set_defaults(func=_migrate)


def build_export(sub: Any, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser("export", parents=[common], help="write the PostgreSQL store out as a Maildir",
                       description="Write every account (or --user) from the database into DIR as a "
                                   "Dovecot-readable Maildir data folder, UIDs and UIDVALIDITY kept, with a "
                                   "passwd file.")
    p.add_argument("--maildir", metavar="DIR", required=True, help="the data folder to write (new users only)")
    p.add_argument("--dsn", metavar="DSN", help="the database (default: [store] dsn)")
    p.add_argument("--user", metavar="NAME", action="append", help="only this user (repeatable)")
    p.set_defaults(func=_export)
