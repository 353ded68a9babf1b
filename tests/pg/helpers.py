"""Shared bits of the PostgreSQL store tests."""

from __future__ import annotations

import pytest
from twisted.internet import defer, reactor, task
from twisted.trial import unittest

from mailsrv.store.pg.store import PgStore
from tests.store.helpers import Recorder

__all__ = ["PgStoreCase", "Recorder", "sleep", "until"]


class PgStoreCase(unittest.TestCase):
    """A fresh database and PgStore per test; ``fresh_store()`` is another
    process's view (its own pool, listener and lock connection)."""

    @pytest.fixture(autouse=True)
    def _database(self, pg_cluster, pg_dsn):
        self.cluster = pg_cluster
        self.dsn = pg_dsn

    def setUp(self) -> None:
        self.store = self.make_store()

    def make_store(self, **kwargs) -> PgStore:
        s = PgStore(self.dsn, **kwargs)
        self.addCleanup(s.close)
        return s

    def fresh_store(self) -> PgStore:
        return self.make_store()


@defer.inlineCallbacks
def until(condition, timeout: float = 5.0, step: float = 0.005):
    """Wait (without blocking the reactor) until ``condition()`` is true;
    fires with the seconds waited, fails after ``timeout``."""
    start = reactor.seconds()
    while not condition():
        if reactor.seconds() - start > timeout:
            raise AssertionError(f"condition not met within {timeout}s")
        yield task.deferLater(reactor, step, lambda: None)
    return reactor.seconds() - start


def sleep(seconds: float) -> defer.Deferred:
    return task.deferLater(reactor, seconds, lambda: None)
