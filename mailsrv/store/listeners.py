"""Telling a folder's listeners (IMAP sessions, IDLE, POP3) of its changes.

Backend-neutral: whichever store decides that messages were added, changed
or expunged hands the news to :class:`Listeners`, which calls every
:class:`~mailsrv.store.interfaces.IFolderListener` in turn.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from twisted.logger import Logger

log = Logger(namespace="mailsrv.store")

ADDED = "messages_added"
FLAGS = "flags_changed"
EXPUNGED = "messages_expunged"


class Listeners:
    """The listeners of one folder, in the order they came.  A listener
    that raises is logged and skipped: one broken session must not keep
    the others from hearing, nor undo the change that was made."""

    def __init__(self, relay: Callable[[Any, str, list[int]], None] | None = None) -> None:
        """``relay`` hears every piece of news too (the account passes it
        on to its account listeners, :mod:`mailsrv.store.events`)."""
        self._listeners: list[Any] = []
        self._relay = relay

    def add(self, listener: Any) -> None:
        if listener not in self._listeners:
            self._listeners.append(listener)

    def remove(self, listener: Any) -> None:
        if listener in self._listeners:
            self._listeners.remove(listener)

    def __bool__(self) -> bool:
        return bool(self._listeners)

    def tell(self, folder: Any, what: str, uids: Iterable[int]) -> None:
        """Call ``what`` (ADDED, FLAGS or EXPUNGED) on each listener with a
        fresh list of ``uids`` each (a listener may keep or change it);
        nothing when there are no UIDs."""
        uids = list(uids)
        if not uids:
            return
        if self._relay is not None:
            try:
                self._relay(folder, what, list(uids))
            except Exception:
                log.failure("relaying {what} failed", what=what)
        for listener in list(self._listeners):
            try:
                getattr(listener, what)(folder, list(uids))
            except Exception:
                log.failure("listener {l!r} failed in {what}", l=listener, what=what)
