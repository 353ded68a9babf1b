"""In-memory IAccount / IFolder honouring mailsrv.store.interfaces, for
transcript tests that must not depend on the real Maildir store."""

from __future__ import annotations

import io
import time

from twisted.cred.checkers import InMemoryUsernamePasswordDatabaseDontUse
from twisted.cred.portal import IRealm, Portal
from twisted.internet import defer
from zope.interface import implementer

from mailsrv.store.crlf import to_crlf
from mailsrv.store.interfaces import (
    SYSTEM_FLAGS,
    FolderExists,
    IAccount,
    IFolder,
    InvalidFolderName,
    MessageGone,
    MessageInfo,
    NoSuchFolder,
)


@implementer(IFolder)
class FakeFolder:
    def __init__(self, name: str, uidvalidity: int = 1000) -> None:
        self.name = name
        self.uidvalidity = uidvalidity
        self.uidnext = 1
        self.highestmodseq = 1
        self._msgs: dict[int, MessageInfo] = {}
        self._data: dict[int, bytes] = {}
        self._recent: set = set()
        self._listeners: list = []
        self._cache: dict = {}
        self.refresh_count = 0
        self._external: list[bytes] = []

    # -- helpers for tests
    def add(self, data: bytes, flags=(), internaldate: float | None = None) -> int:
        uid = self.uidnext
        self.uidnext += 1
        self._data[uid] = data
        self._msgs[uid] = MessageInfo(uid, f"k{uid}", len(to_crlf(data)),
                                      internaldate if internaldate is not None else 1700000000.0,
                                      frozenset(flags))
        self._recent.add(uid)
        return uid

    def drop_external(self, data: bytes) -> None:
        """Simulate a delivery by another process (noticed on refresh)."""
        self._external.append(data)

    def _tell(self, what: str, uids: list) -> None:
        if uids:
            for listener in list(self._listeners):
                getattr(listener, what)(self, list(uids))

    # -- IFolder
    def messages(self) -> list:
        return [self._msgs[u] for u in sorted(self._msgs)]

    def get(self, uid: int):
        return self._msgs.get(uid)

    def open_message(self, uid: int):
        if uid not in self._data:
            raise MessageGone(uid)
        return io.BytesIO(self._data[uid])

    def pop3_uidl(self, uid: int) -> str:
        return "%08X%08X" % (uid, self.uidvalidity)

    def refresh(self):
        self.refresh_count += 1
        new, self._external = self._external, []
        uids = [self.add(d) for d in new]
        self._tell("messages_added", uids)
        return defer.succeed(None)

    def append(self, source, flags=(), internaldate=None):
        data = source if isinstance(source, bytes) else source.read()
        uid = self.add(data, flags, internaldate if internaldate is not None else time.time())
        self._tell("messages_added", [uid])
        return defer.succeed(uid)

    def store_flags(self, uids, flags, mode):
        flags = set(flags)
        changed = []
        for uid in uids:
            info = self._msgs.get(uid)
            if info is None:
                continue
            old = set(info.flags)
            new = old | flags if mode == "+" else old - flags if mode == "-" else set(flags)
            if new != old:
                info.flags = frozenset(new)
                info.modseq += 1
                changed.append(uid)
        self._tell("flags_changed", changed)
        return defer.succeed(changed)

    def expunge(self, uids=None):
        if uids is None:
            uids = [u for u, i in self._msgs.items() if "\\Deleted" in i.flags]
        gone = sorted(u for u in set(uids) if u in self._msgs)
        for u in gone:
            del self._msgs[u]
            del self._data[u]
            self._recent.discard(u)
        self._tell("messages_expunged", gone)
        return defer.succeed(gone)

    def copy_to(self, uids, target):
        pairs = []
        for u in sorted(set(uids)):
            info = self._msgs.get(u)
            if info is None:
                continue
            pairs.append((u, target.add(self._data[u], info.flags, info.internaldate)))
        target._tell("messages_added", [d for _, d in pairs])
        return defer.succeed(pairs)

    def claim_recent(self) -> set:
        r, self._recent = self._recent, set()
        return r

    def peek_recent(self) -> set:
        return set(self._recent)

    def add_listener(self, listener) -> None:
        self._listeners.append(listener)

    def remove_listener(self, listener) -> None:
        if listener in self._listeners:
            self._listeners.remove(listener)

    def keywords(self) -> list:
        kw = set()
        for i in self._msgs.values():
            kw.update(f for f in i.flags if not f.startswith("\\"))
        return sorted(kw)

    def total_size(self) -> int:
        return sum(i.size for i in self._msgs.values())

    def get_cached(self, uid, kind):
        return self._cache.get((uid, kind))

    def set_cached(self, uid, kind, value) -> None:
        self._cache[(uid, kind)] = value


SPECIAL = {"Sent": "\\Sent", "Drafts": "\\Drafts", "Trash": "\\Trash", "Junk": "\\Junk", "Archive": "\\Archive"}


@implementer(IAccount)
class FakeAccount:
    def __init__(self, user: str = "joe") -> None:
        self.user = user
        self.folders: dict[str, FakeFolder] = {"INBOX": FakeFolder("INBOX")}
        self._subs: list[str] = ["INBOX"]
        self._validity = 2000
        for name in SPECIAL:
            self.folders[name] = FakeFolder(name, self._next_validity())
            self._subs.append(name)

    def _next_validity(self) -> int:
        self._validity += 1
        return self._validity

    def _norm(self, name: str) -> str:
        return "INBOX" if name.upper() == "INBOX" else name

    def list_folders(self) -> list:
        return sorted(self.folders)

    def folder_exists(self, name: str) -> bool:
        return self._norm(name) in self.folders

    def special_use(self, name: str):
        return SPECIAL.get(name)

    def open_folder(self, name: str):
        f = self.folders.get(self._norm(name))
        if f is None:
            return defer.fail(NoSuchFolder(name))
        return defer.succeed(f)

    def create_folder(self, name: str):
        name = self._norm(name)
        if name in self.folders:
            return defer.fail(FolderExists(name))
        parts = name.split("/")
        if any(p in ("", ".", "..") for p in parts) or any(ord(c) < 32 for c in name):
            return defer.fail(InvalidFolderName(name))
        for i in range(1, len(parts) + 1):
            n = "/".join(parts[:i])
            if n not in self.folders:
                self.folders[n] = FakeFolder(n, self._next_validity())
        return defer.succeed(None)

    def delete_folder(self, name: str):
        name = self._norm(name)
        if name == "INBOX":
            return defer.fail(InvalidFolderName(name))
        f = self.folders.pop(name, None)
        if f is None:
            return defer.fail(NoSuchFolder(name))
        f.expunge(list(f._msgs))
        return defer.succeed(None)

    def rename_folder(self, old: str, new: str):
        old, new = self._norm(old), self._norm(new)
        if old not in self.folders:
            return defer.fail(NoSuchFolder(old))
        if new in self.folders:
            return defer.fail(FolderExists(new))
        if old == "INBOX":
            src = self.folders["INBOX"]
            self.create_folder(new)
            src.copy_to(list(src._msgs), self.folders[new])
            src.expunge(list(src._msgs))
            return defer.succeed(None)
        for n in sorted(self.folders):
            if n == old or n.startswith(old + "/"):
                f = self.folders.pop(n)
                f.name = new + n[len(old):]
                self.folders[f.name] = f
        return defer.succeed(None)

    def subscriptions(self) -> list:
        return list(self._subs)

    def subscribe(self, name: str) -> None:
        if name not in self._subs:
            self._subs.append(name)

    def unsubscribe(self, name: str) -> None:
        if name in self._subs:
            self._subs.remove(name)

    def deliver(self, folder: str, source, flags=()):
        return self.folders[self._norm(folder)].append(source, flags)

    def acquire_pop3_lock(self) -> bool:
        return True

    def release_pop3_lock(self) -> None:
        pass


@implementer(IRealm)
class FakeRealm:
    def __init__(self, accounts: dict[str, object]) -> None:
        self.accounts = accounts
        self.logouts = 0

    def requestAvatar(self, avatarId, mind, *interfaces):
        name = avatarId.decode() if isinstance(avatarId, bytes) else avatarId

        def logout() -> None:
            self.logouts += 1

        return IAccount, self.accounts[name], logout


def make_portal(accounts: dict[str, object], passwords: dict[str, str] | None = None) -> Portal:
    passwords = passwords or {name: "secret" for name in accounts}
    checker = InMemoryUsernamePasswordDatabaseDontUse(**{k: v.encode() for k, v in passwords.items()})
    return Portal(FakeRealm(accounts), [checker])


assert set(SYSTEM_FLAGS) == {"\\Answered", "\\Flagged", "\\Deleted", "\\Seen", "\\Draft"}
