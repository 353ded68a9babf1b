"""One user's handle on a live folder: rights checked on every call
(RFC 4314), and \\Seen kept per user in public mailboxes.

The live folder stays the owner's single object (every user's sessions
listen to it, so each hears every change); a :class:`RightsFolder` is a thin
per-user wrapper the :class:`~mailsrv.store.shared.UserView` hands out when
the user is not the owner with every right.  :class:`PrivateSeen` is the
per-user \\Seen set of one public mailbox (Dovecot keeps it in the user's
private index): shared by that user's sessions, told only to them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, BinaryIO

from twisted.internet import defer
from zope.interface import implementer

from mailsrv.store.interfaces import IFolder, IFolderListener, MessageInfo, NoPermission

SEEN = "\\Seen"
DELETED = "\\Deleted"


def need(rights: str, right: str, what: str) -> None:
    if right not in rights:
        raise NoPermission(f"Permission denied: {what} needs the '{right}' right")


def allowed_flags(rights: str, flags: Iterable[str]) -> list[str]:
    """The flags this user may set: \\Seen needs s, \\Deleted t, others w."""
    out = []
    for f in flags:
        right = "s" if f == SEEN else "t" if f == DELETED else "w"
        if right in rights:
            out.append(f)
    return out


class PrivateSeen:
    """A user's \\Seen set on one public mailbox.  ``save`` persists it
    (given the uidvalidity and the set) and returns a Deferred."""

    def __init__(self, uidvalidity: int, seen: set[int],
                 save: Callable[[int, set[int]], defer.Deferred[None]]) -> None:
        self.uidvalidity = uidvalidity
        self.seen = seen
        self._save = save
        self.listeners: list[Any] = []

    def adopt(self, uidvalidity: int) -> None:
        """A new UIDVALIDITY makes the old UIDs meaningless."""
        if uidvalidity != self.uidvalidity:
            self.uidvalidity = uidvalidity
            self.seen = set()

    def change(self, folder: Any, uids: list[int], add: bool) -> list[int]:
        """Set (``add``) or clear \\Seen; tells this user's sessions."""
        changed = [u for u in uids if (u in self.seen) != add]
        if add:
            self.seen.update(changed)
        else:
            self.seen.difference_update(changed)
        if changed:
            self._save(self.uidvalidity, set(self.seen)).addErrback(lambda f: None)
            for listener in list(self.listeners):
                listener.flags_changed(folder, list(changed))
        return changed


@implementer(IFolder)
class RightsFolder:
    """See the module docstring.  ``name`` is the user's name for it
    (``Shared/alice/Projects``); ``unwrap()`` is the live object."""

    def __init__(self, folder: Any, name: str, rights: str, private: PrivateSeen | None = None) -> None:
        self._f = folder
        self.name = name
        self.rights = rights
        self._private = private
        if private is not None:
            private.adopt(folder.uidvalidity)

    def unwrap(self) -> Any:
        return self._f

    def __getattr__(self, attr: str) -> Any:
        return getattr(self._f, attr)

    @property
    def uidvalidity(self) -> int:
        return int(self._f.uidvalidity)

    @property
    def uidnext(self) -> int:
        return int(self._f.uidnext)

    @property
    def highestmodseq(self) -> int:
        return int(self._f.highestmodseq)

    # -- reading (r)
    def _mine(self, m: MessageInfo | None) -> MessageInfo | None:
        if m is None or self._private is None:
            return m
        flags = m.flags - {SEEN}
        if m.uid in self._private.seen:
            flags = flags | {SEEN}
        if flags == m.flags:
            return m
        with_flags = getattr(m, "with_flags", None)
        if with_flags is not None:
            return with_flags(frozenset(flags), m.modseq, m.sub, m.info)  # type: ignore[attr-defined]
        return MessageInfo(m.uid, m.key, m.size, m.internaldate, frozenset(flags), m.modseq)

    def messages(self) -> list[MessageInfo]:
        need(self.rights, "r", "reading")
        msgs = self._f.messages()
        if self._private is None:
            return list(msgs)
        return [m2 for m in msgs if (m2 := self._mine(m)) is not None]

    def get(self, uid: int) -> MessageInfo | None:
        need(self.rights, "r", "reading")
        return self._mine(self._f.get(uid))

    def uids(self) -> list[int]:
        need(self.rights, "r", "reading")
        uids = getattr(self._f, "uids", None)
        return list(uids()) if uids is not None else [m.uid for m in self._f.messages()]

    def open_message(self, uid: int) -> BinaryIO:
        need(self.rights, "r", "reading")
        return self._f.open_message(uid)

    def pop3_uidl(self, uid: int) -> str:
        need(self.rights, "r", "reading")
        return str(self._f.pop3_uidl(uid))

    def keywords(self) -> list[str]:
        return list(self._f.keywords())

    def total_size(self) -> int:
        return int(self._f.total_size())

    def get_cached(self, uid: int, kind: str) -> bytes | None:
        need(self.rights, "r", "reading")
        return self._f.get_cached(uid, kind)

    def set_cached(self, uid: int, kind: str, value: bytes) -> None:
        self._f.set_cached(uid, kind, value)

    def get_cached_many(self, uids: Iterable[int], kind: str) -> dict[int, bytes]:
        need(self.rights, "r", "reading")
        return dict(self._f.get_cached_many(uids, kind))

    def claim_recent(self) -> set[int]:
        return set(self._f.claim_recent())

    def peek_recent(self) -> set[int]:
        return set(self._f.peek_recent())

    def refresh(self) -> defer.Deferred[None]:
        return self._f.refresh()

    def add_listener(self, listener: IFolderListener) -> None:
        self._f.add_listener(listener)
        if self._private is not None and listener not in self._private.listeners:
            self._private.listeners.append(listener)

    def remove_listener(self, listener: IFolderListener) -> None:
        if self._private is not None and listener in self._private.listeners:
            self._private.listeners.remove(listener)
        self._f.remove_listener(listener)

    # -- changing
    def append(self, source: Any, flags: Iterable[str] = (), internaldate: float | None = None
               ) -> defer.Deferred[int]:
        try:
            need(self.rights, "i", "storing into this mailbox")
        except NoPermission:
            return defer.fail()
        flags = allowed_flags(self.rights, flags)
        seen = self._private is not None and SEEN in flags
        if seen:
            flags = [f for f in flags if f != SEEN]
        d: defer.Deferred[int] = self._f.append(source, flags, internaldate)
        if seen:
            def mark(uid: int) -> int:
                assert self._private is not None
                self._private.change(self, [uid], True)
                return uid
            d.addCallback(mark)
        return d

    def store_flags(self, uids: Iterable[int], flags: Iterable[str], mode: str) -> defer.Deferred[list[int]]:
        wanted = list(uids)
        asked = set(flags)
        ok = allowed_flags(self.rights, asked)
        if mode == "=":
            # flags the user may not touch keep their value on each message
            return self._store_exact(wanted, set(ok))
        if asked and not ok:
            return defer.fail(NoPermission("Permission denied: no right to change these flags"))
        return self._store(wanted, set(ok), mode)

    def _store(self, uids: list[int], flags: set[str], mode: str) -> defer.Deferred[list[int]]:
        private: list[int] = []
        if self._private is not None and SEEN in flags:
            flags = flags - {SEEN}
            live = [u for u in uids if self._f.get(u) is not None]
            private = self._private.change(self, live, mode == "+")
        if not flags:
            return defer.succeed(sorted(private))
        d: defer.Deferred[list[int]] = self._f.store_flags(uids, flags, mode)
        return d.addCallback(lambda changed: sorted(set(changed) | set(private)))

    def _store_exact(self, uids: list[int], flags: set[str]) -> defer.Deferred[list[int]]:
        if not any(r in self.rights for r in "swt"):
            return defer.fail(NoPermission("Permission denied: no right to change flags"))
        settable = {SEEN} if "s" in self.rights else set()
        remove: set[str] = set()
        for u in uids:
            m = self.get(u)
            if m is None:
                continue
            remove |= {f for f in allowed_flags(self.rights, m.flags) if f not in flags}
        settable |= flags

        def add(removed: list[int]) -> defer.Deferred[list[int]]:
            d = self._store(uids, flags, "+") if flags else defer.succeed([])
            return d.addCallback(lambda added: sorted(set(removed) | set(added)))

        if self._private is not None and "s" in self.rights and SEEN not in flags:
            remove.add(SEEN)
        first = self._store(uids, remove, "-") if remove else defer.succeed([])
        return first.addCallback(add)

    def expunge(self, uids: Iterable[int] | None = None) -> defer.Deferred[list[int]]:
        try:
            need(self.rights, "e", "expunging")
        except NoPermission:
            return defer.fail()
        return self._f.expunge(uids)

    def copy_to(self, uids: Iterable[int], target: Any, move: bool = False) -> defer.Deferred[list[tuple[int, int]]]:
        try:
            need(self.rights, "r", "copying from this mailbox")
            if move:
                need(self.rights, "t", "moving out of this mailbox")
                need(self.rights, "e", "moving out of this mailbox")
            if isinstance(target, RightsFolder):
                need(target.rights, "i", "storing into the target mailbox")
        except NoPermission:
            return defer.fail()
        dest = target.unwrap() if isinstance(target, RightsFolder) else target
        return self._f.copy_to(uids, dest, move)
