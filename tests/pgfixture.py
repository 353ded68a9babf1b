"""Fixtures of the PostgreSQL tests (registered in tests/conftest.py, so
tests/pg and the end-to-end suites share them): a throw-away PostgreSQL
cluster for the whole session (initdb in a temp dir, run as an
unprivileged user when the tests run as root) and a fresh database per
test, copied from a migrated template.

Without PostgreSQL server binaries (or psycopg) the tests are skipped with
the reason, except when ``MAILSRV_REQUIRE_PG=1`` (CI): then they fail.
"""

from __future__ import annotations

import itertools
import os

import pytest

from mailsrv.store.pg.cluster import TempCluster, find_bindir

REQUIRE = os.environ.get("MAILSRV_REQUIRE_PG") == "1"
TEMPLATE = "mailsrv_template"
_counter = itertools.count(1)


def _unavailable(reason: str) -> None:
    if REQUIRE:
        pytest.fail(f"{reason} (MAILSRV_REQUIRE_PG=1: PostgreSQL is required here)", pytrace=False)
    pytest.skip(reason)


def _check_available() -> None:
    try:
        import psycopg  # noqa: F401
        import psycopg_pool  # noqa: F401
    except ImportError as e:
        _unavailable(f"psycopg 3 / psycopg_pool not installed ({e}); pip install -e '.[postgresql]'")
    if find_bindir() is None:
        _unavailable("PostgreSQL server binaries (initdb, pg_ctl, postgres) not found; "
                     "apt-get install postgresql to run the PostgreSQL store tests")


@pytest.fixture(scope="session")
def pg_cluster():
    _check_available()
    cluster = TempCluster(fsync=False)
    try:
        cluster.start()
        cluster.create_database(TEMPLATE)
        import psycopg

        from mailsrv.store.pg import schema

        with psycopg.connect(cluster.dsn_for(TEMPLATE), autocommit=True) as conn:
            schema.migrate(conn)
        yield cluster
    finally:
        cluster.destroy()


def fresh_database(cluster: TempCluster) -> str:
    """A new database with the current schema; returns its DSN."""
    import psycopg

    name = f"t{os.getpid()}_{next(_counter)}"
    with psycopg.connect(cluster.dsn_for("postgres"), autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{TEMPLATE}"')
    return cluster.dsn_for(name)


@pytest.fixture
def pg_dsn(pg_cluster):
    dsn = fresh_database(pg_cluster)
    yield dsn
    pg_cluster.drop_database(dsn.rsplit("=", 1)[1])
