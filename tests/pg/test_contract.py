"""The store contract of tests/test_fakestore.py (the one behaviour suite
every IStore meets: the fake, Maildir and this one), run against the
PostgreSQL store."""

from __future__ import annotations

from typing import Any

from mailsrv.store.crlf import to_crlf
from tests import test_fakestore as contract

from .helpers import PgStoreCase


class PgStoreContract(contract.Contract, PgStoreCase):
    def make_store(self, **kwargs: Any) -> Any:
        return PgStoreCase.make_store(self, **kwargs)

    def setUp(self) -> Any:
        d = contract.Contract.setUp(self)
        return d.addCallback(lambda _: self._no_blocking_reads())

    def _no_blocking_reads(self) -> None:
        self.addCleanup(lambda: self.assertEqual(self.store.stats["blocking"], 0))

    def stored(self, data: bytes) -> bytes:
        return to_crlf(data)  # bodies are kept in their CRLF form
