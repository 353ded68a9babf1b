"""The PostgreSQL store backend: every process and node on one database,
changes pushed between them by LISTEN/NOTIFY (docs/architecture.md has the
map of both backends).

``PgStore(dsn)`` is the IStore; the modules, one concern each:

- :mod:`.schema`: tables and versioned migrations
- :mod:`.db`: connection pool and the thread pool queries run in
- :mod:`.blobs`: bodies, deduplicated by hash (the blob seam)
- :mod:`.folder_sql`, :mod:`.account_sql`: the SQL, run in pool threads
- :mod:`.folder`, :mod:`.account`, :mod:`.store`: the live objects
- :mod:`.modseq`: the expunge record (trimmed, with its floor) and the
  live folder's in-memory indexes (expunges, changes by mod-sequence,
  UIDs by flag) for CONDSTORE/QRESYNC and flag searches
- :mod:`.echoes`: an account's own deliveries told apart from other
  processes' changes in the change feed (account events)
- :mod:`.bodycache`: this process's copy of bodies and derived values
- :mod:`.notify`: the change listener and the session (POP3) locks
- :mod:`.users`: users in the database, checker and realm
- :mod:`.migrate`: Maildir data folder to database and back
- :mod:`.cluster`: a throw-away PostgreSQL for tests and benches
"""

from typing import Any

_WHERE = {
    "PgStore": "store", "PgAccount": "account", "PgFolder": "folder",
    "StoreUnavailable": "errors", "TooManyKeywords": "errors",
}


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(f"mailsrv.store.pg.{module}"), name)
    globals()[name] = value
    return value


__all__ = sorted(_WHERE)
