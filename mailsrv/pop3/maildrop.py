"""The POP3 maildrop: INBOX frozen at login, as RFC 1939 numbers it.

Message numbers never change during a session; DELE only marks, and the
marks are applied (expunged) in the UPDATE state after QUIT.  Everything
here is in memory, UIDLs included (taken at login, because the store cannot
name a message another session expunged meanwhile): the store is only
touched by the protocol at RETR/TOP and in UPDATE.
"""

from __future__ import annotations

from collections.abc import Iterable

from mailsrv.store.interfaces import IFolder, MessageInfo


class NoSuchMessage(Exception):
    """Message number out of range (or marked deleted, see subclass)."""

    text = b"No such message"


class MessageDeleted(NoSuchMessage):
    text = b"Message is deleted"


class Maildrop:
    """RFC 1939 view of one folder, frozen at login."""

    def __init__(self, folder: IFolder, infos: Iterable[MessageInfo]) -> None:
        self.folder = folder
        infos = list(infos)
        # Comprehensions, not an append loop: 100,000 messages are built at login.
        self._uids: list[int] = [info.uid for info in infos]
        self._sizes: list[int] = [info.size for info in infos]
        self._uidls: list[str] = list(map(folder.pop3_uidl, self._uids))
        self._deleted: set[int] = set()  # message numbers
        self._retrieved: set[int] = set()
        self._count = len(self._uids)
        self._octets = sum(self._sizes)

    def stat(self) -> tuple[int, int]:
        """(messages, octets), deleted messages excluded."""
        return self._count, self._octets

    def _check(self, n: int) -> int:
        if not 1 <= n <= len(self._uids):
            raise NoSuchMessage()
        if n in self._deleted:
            raise MessageDeleted()
        return n - 1

    def uid(self, n: int) -> int:
        return self._uids[self._check(n)]

    def size(self, n: int) -> int:
        return self._sizes[self._check(n)]

    def uidl(self, n: int) -> str:
        return self._uidls[self._check(n)]

    def numbers(self) -> list[int]:
        """Message numbers not marked deleted, ascending."""
        deleted = self._deleted
        return [n for n in range(1, len(self._uids) + 1) if n not in deleted]

    def sizes(self) -> list[tuple[int, int]]:
        return [(n, self._sizes[n - 1]) for n in self.numbers()]

    def uidls(self) -> list[tuple[int, str]]:
        return [(n, self._uidls[n - 1]) for n in self.numbers()]

    def delete(self, n: int) -> None:
        i = self._check(n)
        self._deleted.add(n)
        self._count -= 1
        self._octets -= self._sizes[i]

    def reset(self) -> None:
        """RSET: unmark every deletion."""
        self._deleted.clear()
        self._count = len(self._uids)
        self._octets = sum(self._sizes)

    def mark_retrieved(self, n: int) -> None:
        self._retrieved.add(n)

    def deleted_uids(self) -> list[int]:
        return sorted(self._uids[n - 1] for n in self._deleted)

    def retrieved_uids(self) -> list[int]:
        """Fully retrieved (RETR) and not deleted: these get \\Seen in UPDATE."""
        return sorted(self._uids[n - 1] for n in self._retrieved - self._deleted)
