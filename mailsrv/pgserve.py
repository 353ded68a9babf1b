"""Serving from the PostgreSQL store: what ``twistd mailsrv`` needs when the
configuration says ``[store] backend = postgresql`` (the store, the portal
over the users table, the LMTP recipient lookup, the demo user), kept
apart from :mod:`mailsrv.tap` so that the Maildir default pulls in none
of it.

Everything here that runs before the reactor (the demo user, the schema)
uses a connection of its own and closes it: twistd may still fork to
daemonize, and the store's threads start only in ``startService``.
"""

from __future__ import annotations

import os
import time
from typing import Any

from twisted.logger import Logger

from mailsrv.config import Config

log = Logger()


def make_store(cfg: Config, reactor: Any, idle_ttl: float) -> Any:
    """The PgStore, not started (MailService.startService starts it)."""
    from mailsrv.store.pg.store import PgStore

    assert cfg.store_dsn is not None
    spool = os.path.join(cfg.data_dir, "spool")
    os.makedirs(spool, mode=0o700, exist_ok=True)
    return PgStore(cfg.store_dsn, reactor, idle_ttl=idle_ttl, pool_size=cfg.store_pool, spool_dir=spool,
                   start=False, quota_rules=cfg.quota_rules, quota_tempfail=cfg.quota_full_tempfail)


def make_portal(store: Any, cfg: Config) -> Any:
    from mailsrv.store.pg import users

    return users.make_portal(store, cfg)


def lmtp_lookup(store: Any) -> Any:
    """The LMTP factory's ``account_name``: the users table's spelling of a
    local part (or False), the account read for the delivery."""
    from mailsrv.store.pg.users import PgUsers, lmtp_account_name

    return lmtp_account_name(store, PgUsers(store.db))


def ensure_demo_user(cfg: Config, welcome: bytes) -> str | None:
    """On a first start with no users, user ``demo`` with a random password
    and a welcome message; returns the password (shown once), or None.
    A database that cannot be reached now is not fatal: the server starts
    and answers "try later" until it can."""
    if not cfg.demo_user:
        return None
    import secrets

    import psycopg

    from mailsrv.auth.hashing import hash_password
    from mailsrv.store.pg import account_sql, folder_sql, schema
    from mailsrv.store.pg.blobs import PgBlobs, spool
    from mailsrv.store.pg.folder_sql import NewMessage
    from mailsrv.store.pg.message import FlagDecoder

    assert cfg.store_dsn is not None
    password = secrets.token_urlsafe(12)
    try:
        with psycopg.connect(cfg.store_dsn, autocommit=True, connect_timeout=5) as conn:
            schema.migrate(conn)
            with conn.transaction():
                if conn.execute("SELECT 1 FROM users LIMIT 1").fetchone() is not None:
                    return None
                conn.execute("INSERT INTO users (name, password) VALUES ('demo', %s)",
                             (hash_password(password, cfg.hash_scheme),))
                state = account_sql.load(conn, "demo", create=True)
                assert state is not None
                item = NewMessage(spool(welcome), 0, [], time.time())
                folder_sql.append(conn, state.folders["INBOX"][0], [item], PgBlobs(), None, FlagDecoder())
    except psycopg.OperationalError as e:
        log.warn("mail database unavailable at start ({err}); no demo user made", err=str(e).splitlines()[0])
        return None
    return password


def check_database(cfg: Config) -> str | None:
    """Reach the database and bring its schema up to date (the ``mailsrv
    config check`` and start-up line); the problem as one line, or None."""
    import psycopg

    from mailsrv.store.pg import schema

    assert cfg.store_dsn is not None
    try:
        with psycopg.connect(cfg.store_dsn, autocommit=True, connect_timeout=5) as conn:
            schema.migrate(conn)
            version = schema.current_version(conn)
    except psycopg.Error as e:
        return f"database {cfg.store_dsn}: {str(e).splitlines()[0] if str(e) else type(e).__name__}"
    except RuntimeError as e:
        return str(e)
    log.info("mail database schema version {v}", v=version)
    return None
