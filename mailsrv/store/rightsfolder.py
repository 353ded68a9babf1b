"""One user's handle on a live folder: rights checked on every call
(RFC 4314), and \\Seen kept per user in public mailboxes.

The live folder stays the owner's single object (every user's sessions
listen to it, so each hears every change); a :class:`RightsFolder` is a thin
per-user wrapper the :class:`~mailsrv.store.shared.UserView` hands out when
the user is not the owner with every right.  :class:`PrivateSeen` is the
per-user \\Seen set of one public mailbox (Dovecot keeps it in the user's
private index): shared by that user's sessions, told only to them.

Flags follow RFC 4314 section 4 the way Dovecot's acl plugin does: \\Seen
needs ``s``, \\Deleted ``t``, every other flag and keyword ``w``; a flag the
user may not change is left out silently (STORE, APPEND, and what COPY and
MOVE bring into the mailbox), never a NO - deployed clients handle a NO to
STORE badly, and Dovecot answers OK.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, BinaryIO

from twisted.internet import defer
from zope.interface import implementer

from mailsrv.store.interfaces import SYSTEM_FLAGS, IFolder, IFolderListener, MessageInfo, NoPermission

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


def permanent_flags(rights: str, keywords: Iterable[str]) -> list[str]:
    """PERMANENTFLAGS for these rights (RFC 4314 5.1.1: they MUST reflect
    the user's rights): the system flags and keywords the user may change,
    and ``\\*`` (new keywords) only with ``w`` - Dovecot's answer."""
    perm = allowed_flags(rights, [*SYSTEM_FLAGS, *keywords])
    if "w" in rights:
        perm.append("\\*")
    return perm


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

    def change(self, folder: Any, uids: list[int], add: bool) -> defer.Deferred[list[int]]:
        """Set (``add``) or clear \\Seen; fires with the UIDs that changed
        once the live folder gave them a new mod-sequence
        (``IFolder.touch_modseq``, as Dovecot bumps the shared modseq of a
        message whose private flag changed, so CONDSTORE clients see it),
        and this user's sessions heard of it."""
        changed = [u for u in uids if (u in self.seen) != add]
        if not changed:
            return defer.succeed([])
        if add:
            self.seen.update(changed)
        else:
            self.seen.difference_update(changed)
        self._save(self.uidvalidity, set(self.seen)).addErrback(lambda f: None)
        live = folder.unwrap() if isinstance(folder, RightsFolder) else folder

        def tell(_: object) -> list[int]:
            for listener in list(self.listeners):
                listener.flags_changed(folder, list(changed))
            return changed

        d: defer.Deferred[Any] = live.touch_modseq(changed)
        return d.addCallback(tell)


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
            def mark(uid: int) -> defer.Deferred[int]:
                assert self._private is not None
                return self._private.change(self, [uid], True).addCallback(lambda _: uid)
            d.addCallback(mark)
        return d

    def store_flags(self, uids: Iterable[int], flags: Iterable[str], mode: str) -> defer.Deferred[list[int]]:
        """Flags the user may not change are left alone, silently (see the
        module docstring); with none left, nothing happens."""
        wanted = list(uids)
        ok = set(allowed_flags(self.rights, set(flags)))
        if mode == "=":
            return self._store_exact(wanted, ok)
        return self._store(wanted, ok, mode)

    def _store(self, uids: list[int], flags: set[str], mode: str) -> defer.Deferred[list[int]]:
        if not flags:
            return defer.succeed([])
        private: defer.Deferred[list[int]] = defer.succeed([])
        if self._private is not None and SEEN in flags:
            flags = flags - {SEEN}
            private = self._private.change(self, [u for u in uids if self._f.get(u) is not None], mode == "+")

        def shared(done: list[int]) -> defer.Deferred[list[int]] | list[int]:
            if not flags:
                return sorted(done)
            d: defer.Deferred[list[int]] = self._f.store_flags(uids, flags, mode)
            return d.addCallback(lambda changed: sorted(set(changed) | set(done)))

        return private.addCallback(shared)

    def _store_exact(self, uids: list[int], flags: set[str]) -> defer.Deferred[list[int]]:
        """STORE FLAGS: the flags the user may change end up as asked (those
        not in ``flags`` removed, then ``flags`` added); the others keep
        their value on each message (Dovecot's remove-then-add)."""
        remove: set[str] = set()
        for u in uids:
            m = self.get(u)
            if m is not None:
                remove |= {f for f in allowed_flags(self.rights, m.flags) if f not in flags}

        def add(removed: list[int]) -> defer.Deferred[list[int]]:
            return self._store(uids, flags, "+").addCallback(lambda added: sorted(set(removed) | set(added)))

        return self._store(uids, remove, "-").addCallback(add)

    def store_flags_unchanged_since(self, uids: Iterable[int], flags: Iterable[str], mode: str,
                                    unchangedsince: int) -> defer.Deferred[tuple[list[int], list[int]]]:
        """STORE (UNCHANGEDSINCE) under the same rules as ``store_flags``:
        the live folder's atomic test-and-change when only shared flags the
        user may change are involved; with a private \\Seen or an exact
        set (whose unpermitted flags stay per message), the test first, then
        ``store_flags`` on the messages that passed it."""
        wanted = list(uids)
        ok = set(allowed_flags(self.rights, set(flags)))
        private_seen = self._private is not None and SEEN in ok
        if mode != "=" and not private_seen:
            if ok:
                return self._f.store_flags_unchanged_since(wanted, ok, mode, unchangedsince)
            return defer.succeed(([], self._modified(wanted, unchangedsince)))
        modified = self._modified(wanted, unchangedsince)
        gone = set(modified)
        rest = [u for u in wanted if u not in gone]
        d = self._store_exact(rest, ok) if mode == "=" else self._store(rest, ok, mode)
        return d.addCallback(lambda changed: (changed, modified))

    def _modified(self, uids: list[int], unchangedsince: int) -> list[int]:
        """The UIDs whose mod-sequence is above ``unchangedsince`` (RFC 7162 3.1.3)."""
        get = self._f.get
        return sorted(u for u in uids if (m := get(u)) is not None and m.modseq > unchangedsince)

    # -- CONDSTORE and flag sets (r; \\Seen of a public mailbox is the user's own)
    def uids_with_flag(self, flag: str) -> set[int]:
        need(self.rights, "r", "reading")
        if self._private is not None and flag == SEEN:
            get = self._f.get
            return {u for u in self._private.seen if get(u) is not None}
        return self._f.uids_with_flag(flag)

    def changed_since(self, modseq: int) -> list[int]:
        need(self.rights, "r", "reading")
        return list(self._f.changed_since(modseq))

    def vanished_since(self, modseq: int) -> list[int]:
        need(self.rights, "r", "reading")
        return list(self._f.vanished_since(modseq))

    def expunge(self, uids: Iterable[int] | None = None) -> defer.Deferred[list[int]]:
        try:
            need(self.rights, "e", "expunging")
        except NoPermission:
            return defer.fail()
        return self._f.expunge(uids)

    # -- copying in and out
    def incoming(self, flags: frozenset[str]) -> frozenset[str]:
        """What a message copied or moved in here keeps of its flags: those
        the user may set (RFC 4314 section 4: COPY stores only them, and
        does not fail for the others); \\Seen of a public mailbox goes to
        the user's own set instead (:meth:`copied_in`).  Called by the live
        folder's ``copy_to`` when this handle is its target."""
        keep = frozenset(allowed_flags(self.rights, flags))
        return keep - {SEEN} if self._private is not None else keep

    def copied_in(self, pairs: list[tuple[int, int]], flags: dict[int, frozenset[str]]
                  ) -> defer.Deferred[list[tuple[int, int]]]:
        """After a copy here (``pairs`` of source and new UIDs, ``flags`` of
        the sources): the user's private \\Seen on the copies of \\Seen
        messages.  Fires with ``pairs``."""
        if self._private is None or "s" not in self.rights:
            return defer.succeed(pairs)
        seen = [new for src, new in pairs if SEEN in flags.get(src, ())]
        return self._private.change(self, seen, True).addCallback(lambda _: pairs)

    def copy_to(self, uids: Iterable[int], target: Any, move: bool = False) -> defer.Deferred[list[tuple[int, int]]]:
        """Copy (or move) out of this mailbox: the target's own handle
        (another user's mailbox) filters what arrives; copies of a public
        mailbox's messages carry the user's own \\Seen, not the file's."""
        try:
            need(self.rights, "r", "copying from this mailbox")
            if move:
                need(self.rights, "t", "moving out of this mailbox")
                need(self.rights, "e", "moving out of this mailbox")
            if isinstance(target, RightsFolder):
                need(target.rights, "i", "storing into the target mailbox")
        except NoPermission:
            return defer.fail()
        wanted = sorted(set(uids))
        d: defer.Deferred[list[tuple[int, int]]] = self._f.copy_to(wanted, target, move)
        if self._private is not None:
            private = self._private
            d.addCallback(self._carry_seen, target, {u for u in wanted if u in private.seen})
        return d

    def _carry_seen(self, pairs: list[tuple[int, int]], target: Any, seen: set[int]
                    ) -> defer.Deferred[list[tuple[int, int]]]:
        """The copies' \\Seen as this user saw the sources (the file's is not theirs)."""
        add = [new for src, new in pairs if src in seen]
        drop = [new for src, new in pairs if src not in seen]
        d: defer.Deferred[Any] = target.store_flags(add, [SEEN], "+") if add else defer.succeed(None)
        if drop:
            d.addCallback(lambda _: target.store_flags(drop, [SEEN], "-"))
        return d.addCallback(lambda _: pairs)
