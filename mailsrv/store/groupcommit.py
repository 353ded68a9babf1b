"""Group commit: the items submitted while one batch is being written wait
and go together in the next one, so many concurrent deliveries cost one
uid list write and one fsync between them, not one each.

Backend-neutral: ``run`` may write Maildir files or database rows.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from twisted.internet import defer
from twisted.logger import Logger
from twisted.python.failure import Failure

from mailsrv.store.interfaces import StoreError

log = Logger(namespace="mailsrv.store")


class GroupCommit:
    """``run`` takes a list of items and fires with a list of results
    aligned with it (None for an item that could not be stored: its
    submitter gets a StoreError); a failure of the whole batch reaches
    every submitter of it.  One batch runs at a time."""

    def __init__(self, run: Callable[[list[Any]], defer.Deferred[list[Any]]]) -> None:
        self._run = run
        self._pending: list[tuple[Any, defer.Deferred[Any]]] = []
        self._busy = False

    def submit(self, item: Any) -> defer.Deferred[Any]:
        """Fires with ``item``'s result once the batch it joined is written."""
        d: defer.Deferred[Any] = defer.Deferred()
        self._pending.append((item, d))
        if not self._busy:
            self._next()
        return d

    def _next(self) -> None:
        batch, self._pending = self._pending, []
        if not batch:
            self._busy = False
            return
        self._busy = True

        def done(results: list[Any]) -> None:
            for (_item, d), r in zip(batch, results, strict=True):
                if r is None:
                    d.errback(StoreError("the message could not be stored"))
                else:
                    d.callback(r)

        def failed(f: Failure) -> None:
            for _item, d in batch:
                d.errback(f)

        d = defer.maybeDeferred(self._run, [item for item, _d in batch])
        d.addCallbacks(done, failed)
        d.addErrback(lambda f: log.failure("group commit", f))
        d.addBoth(lambda _: self._next())
