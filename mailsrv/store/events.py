"""Telling an account's listeners (NOTIFY sessions) of its changes.

Backend-neutral, like :mod:`mailsrv.store.listeners`: a store hands each
change to :class:`AccountListeners`, which calls every
:class:`~mailsrv.store.interfaces.IAccountListener` in turn.  A live folder's
own news (``messages_added`` and friends, told to its IFolderListeners)
reach the account through :meth:`AccountListeners.folder_news`, so a change
is itemised once, where it is made, for both kinds of listener.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from twisted.logger import Logger

from mailsrv.store.interfaces import AccountEvent, FlagsChanged, MessagesAdded, MessagesExpunged
from mailsrv.store.listeners import ADDED, EXPUNGED, FLAGS

log = Logger(namespace="mailsrv.store")

_FOLDER_NEWS: dict[str, type[MessagesAdded | MessagesExpunged | FlagsChanged]] = {
    ADDED: MessagesAdded, EXPUNGED: MessagesExpunged, FLAGS: FlagsChanged}


class AccountListeners:
    """The listeners of one account, in the order they came; one that
    raises is logged and skipped (the change was made all the same)."""

    def __init__(self, account: Any) -> None:
        self.account = account
        self._listeners: list[Any] = []

    def add(self, listener: Any) -> None:
        if listener not in self._listeners:
            self._listeners.append(listener)

    def remove(self, listener: Any) -> None:
        if listener in self._listeners:
            self._listeners.remove(listener)

    def __bool__(self) -> bool:
        return bool(self._listeners)

    def tell(self, event: AccountEvent) -> None:
        for listener in list(self._listeners):
            try:
                listener.account_event(self.account, event)
            except Exception:
                log.failure("account listener {l!r} failed on {event!r}", l=listener, event=event)

    def folder_news(self, folder: Any, what: str, uids: Iterable[int]) -> None:
        """What a live folder told its own listeners (``what`` is
        listeners.ADDED, FLAGS or EXPUNGED), as an account event."""
        if not self._listeners:
            return
        got = tuple(uids)
        if got:
            self.tell(_FOLDER_NEWS[what](folder.name, got))
