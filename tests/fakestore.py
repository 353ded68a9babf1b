"""One in-memory store for every protocol's tests: IStore, IAccount and
IFolder as :mod:`mailsrv.store.interfaces` defines them, checked with
``zope.interface.verify.verifyObject`` in ``tests/test_fakestore.py``.

Behaviour follows the Maildir store where the protocols can see it: UIDs
ascend and are never reused, \\Recent is claimed by one session, flags and
keywords are frozensets on MessageInfo, listeners hear of every change in
the order it happened and before the Deferred fires, expunged messages are
``None`` from ``get`` and MessageGone from ``open_message``, copies keep
flags and internal dates, INBOX is case-insensitive, the POP3 lock is
exclusive.

What tests need beyond the interface:

- ``folder.add(raw, flags, internaldate, uid=...)`` puts a message in
  without telling anyone (it was there before the session; it gets the
  current ``highestmodseq``);
  ``folder.drop_external(raw)`` is a delivery by another process, noticed
  on the next ``refresh()``.
- counters: ``opens`` and ``bytes_read`` (message file access),
  ``refresh_count``; ``opened`` keeps every file ``open_message`` handed
  out (did the protocol close it?); ``calls`` records every changing call
  with its arguments, ``calls_to(name)`` those of one method;
  ``contents()`` (folder) and ``account.contents(folder)`` are the stored
  bytes in UID order; ``cache`` is the cached-value dict.
- ``fail[method] = exception`` makes that method fail (raise, or return a
  failed Deferred) until the entry is removed; on accounts also for
  ``deliver``, ``open_folder``...; ``account.hold_deliveries`` keeps
  deliveries pending until ``account.release()``.
- account events (NOTIFY): every folder tells its account, which tells its
  ``account_listeners``; ``poll_folders`` refreshes the named folders, so
  ``drop_external`` deliveries come out itemised.
- ``FakeRealm`` / ``make_portal`` log users in to a store's accounts with
  fixed passwords and count logouts; ``store.views`` lists every user
  whose view was asked for (what a realm hands out).
- mod-sequences as the Maildir store keeps them: one per changing call,
  the expunge record exact until ``folder.trim_expunge_record(modseq)``
  forgets the expunges up to ``modseq`` (then ``vanished_since`` answers
  with the superset, as after the real store trimmed its record).
- quota (issue 12): ``account.quota_limits = (octets, messages)`` (0: no
  limit) with usage the sum of the account's messages' sizes; appends,
  copies and deliveries beyond it fail with OverQuota.
- rights (issue 12): ``store.view(user)`` is the real
  :class:`mailsrv.store.shared.UserView` over :class:`FakeShares` (ACLs,
  private \\Seen sets in memory); ``store.public`` holds public mailboxes
  once ``store.make_public()`` made it.
"""

from __future__ import annotations

import io
import time
import uuid
from collections.abc import Iterable, Iterator, MutableMapping
from typing import Any, BinaryIO

from twisted.cred.checkers import InMemoryUsernamePasswordDatabaseDontUse
from twisted.cred.portal import IRealm, Portal
from twisted.internet import defer
from zope.interface import implementer

from mailsrv.store.acl import Acl
from mailsrv.store.crlf import to_crlf
from mailsrv.store.interfaces import (
    RIGHTS,
    AccountEvent,
    FlagsChanged,
    FolderCreated,
    FolderDeleted,
    FolderExists,
    FolderRenamed,
    IAccount,
    IAccountListener,
    IFolder,
    IFolderListener,
    InvalidFolderName,
    IStore,
    MessageGone,
    MessageInfo,
    MessagesAdded,
    MessagesExpunged,
    NoPermission,
    NoSuchFolder,
    OverQuota,
    QuotaResource,
    QuotaRoot,
    SubscriptionChanged,
)
from mailsrv.store.rightsfolder import PrivateSeen
from mailsrv.store.shared import UserView

DEFAULT_DATE = 1700000000.0
SPECIAL = {"Sent": "\\Sent", "Drafts": "\\Drafts", "Trash": "\\Trash", "Junk": "\\Junk", "Archive": "\\Archive"}


class _Failing:
    """``fail[name] = exc``: that method fails until the entry is removed."""

    fail: dict[str, BaseException]

    def _check(self, name: str) -> None:
        exc = self.fail.get(name)
        if exc is not None:
            raise exc

    def _deferred(self, name: str, value: Any) -> defer.Deferred[Any]:
        exc = self.fail.get(name)
        if exc is not None:
            return defer.fail(exc)
        return defer.succeed(value)


class _CountingFile(io.BytesIO):
    def __init__(self, data: bytes, folder: FakeFolder) -> None:
        super().__init__(data)
        self._folder = folder

    def read(self, n: int | None = -1) -> bytes:
        data = super().read(n)
        self._folder.bytes_read += len(data)
        return data


@implementer(IFolder)
class FakeFolder(_Failing):
    """A live folder: one object shared by every session that opens it."""

    rights = RIGHTS

    def __init__(self, name: str = "INBOX", uidvalidity: int = 1000) -> None:
        self.account: FakeAccount | None = None  # set by the account: whose quota applies, who hears every change
        self.acl: Acl | None = None  # its dovecot-acl (FakeShares)
        self.name = name
        self.uidvalidity = uidvalidity
        self.uidnext = 1
        self.highestmodseq = 1
        self.vanished_floor = 1
        self._gone: list[tuple[int, int]] = []  # (modseq, uid) of expunges, ascending
        self._msgs: dict[int, MessageInfo] = {}
        self._data: dict[int, bytes] = {}
        self._recent: set[int] = set()
        self._listeners: list[IFolderListener] = []
        self._external: list[bytes] = []
        self.cache: dict[tuple[int, str], bytes] = {}
        self.folder_cache: dict[str, bytes] = {}
        self.fail = {}
        self.calls: list[tuple[str, tuple[Any, ...]]] = []
        self.opens = 0
        self.opened: list[BinaryIO] = []
        self.bytes_read = 0
        self.refresh_count = 0
        self.prefetches: list[tuple[list[int], list[str], str | None]] = []
        self.mailboxid = uuid.uuid4().hex  # stays with the object through RENAME, as the real one
        self.saved: dict[int, float] = {}  # uid -> save date

    # -- for tests
    def add(self, raw: bytes, flags: Iterable[str] = (), internaldate: float | None = None,
            uid: int | None = None) -> MessageInfo:
        """Put a message in silently (it was there before); \\Recent until claimed."""
        if uid is None:
            uid = self.uidnext
        if uid < self.uidnext and uid in self._msgs:
            raise ValueError(f"uid {uid} is in use")
        self.uidnext = max(self.uidnext, uid + 1)
        self._data[uid] = raw
        info = MessageInfo(uid, f"k{uid}", len(to_crlf(raw)),
                           DEFAULT_DATE if internaldate is None else internaldate, frozenset(flags),
                           self.highestmodseq)
        self._msgs[uid] = info
        self._recent.add(uid)
        self.saved[uid] = time.time()
        return info

    def drop_external(self, raw: bytes) -> None:
        """A delivery by another process, noticed on the next refresh()."""
        self._external.append(raw)

    def raw(self, uid: int) -> bytes:
        return self._data[uid]

    def contents(self) -> list[bytes]:
        """The stored bytes of every message, in UID order."""
        return [self._data[u] for u in sorted(self._msgs)]

    def calls_to(self, name: str) -> list[tuple[Any, ...]]:
        """The arguments of every recorded call to ``name``, in order."""
        return [args for called, args in self.calls if called == name]

    def _bump(self) -> int:
        """A changing call's mod-sequence (one per call, as the real store)."""
        self.highestmodseq += 1
        return self.highestmodseq

    def _arrived(self, uids: list[int]) -> None:
        if uids:
            m = self._bump()
            for u in uids:
                self._msgs[u].modseq = m

    def trim_expunge_record(self, modseq: int) -> None:
        """Forget the expunges up to ``modseq`` (what trimming does)."""
        self._gone = [(m, u) for m, u in self._gone if m > modseq]
        self.vanished_floor = max(self.vanished_floor, modseq)

    def _tell(self, what: str, uids: list[int]) -> None:
        if uids and self.account is not None:
            self.account.tell(_NEWS[what](self.name, tuple(uids)))
        if uids:
            for listener in list(self._listeners):
                getattr(listener, what)(self, list(uids))

    # -- IFolder: reading
    def messages(self) -> list[MessageInfo]:
        return [self._msgs[u] for u in sorted(self._msgs)]

    def uids(self) -> list[int]:
        return sorted(self._msgs)

    def get(self, uid: int) -> MessageInfo | None:
        return self._msgs.get(uid)

    def open_message(self, uid: int) -> BinaryIO:
        self._check("open_message")
        if uid not in self._data:
            raise MessageGone(uid)
        self.opens += 1
        f = _CountingFile(self._data[uid], self)
        self.opened.append(f)
        return f

    def pop3_uidl(self, uid: int) -> str:
        if uid not in self._msgs:
            raise MessageGone(uid)
        return "%08x%08x" % (uid, self.uidvalidity)

    def keywords(self) -> list[str]:
        kw: set[str] = set()
        for i in self._msgs.values():
            kw.update(f for f in i.flags if not f.startswith("\\"))
        return sorted(kw)

    def total_size(self) -> int:
        return sum(i.size for i in self._msgs.values())

    def save_date(self, uid: int) -> float | None:
        return self.saved.get(uid) if uid in self._msgs else None

    def claim_recent(self) -> set[int]:
        r, self._recent = self._recent, set()
        return r

    def peek_recent(self) -> set[int]:
        return set(self._recent)

    # -- IFolder: changing
    def refresh(self) -> defer.Deferred[None]:
        self.refresh_count += 1
        if "refresh" in self.fail:
            return self._deferred("refresh", None)
        new, self._external = self._external, []
        uids = [self.add(raw).uid for raw in new]
        self._arrived(uids)
        self._tell("messages_added", uids)
        return defer.succeed(None)

    def append(self, source: bytes | BinaryIO, flags: Iterable[str] = (),
               internaldate: float | None = None) -> defer.Deferred[int]:
        flags = list(flags)
        self.calls.append(("append", (flags, internaldate)))
        if "append" in self.fail:
            return self._deferred("append", None)
        raw = source if isinstance(source, bytes) else source.read()
        if self.account is not None and self.account.over_quota(self.name, len(to_crlf(raw)), 1):
            return defer.fail(OverQuota("Quota exceeded"))
        uid = self.add(raw, flags, time.time() if internaldate is None else internaldate).uid
        self._arrived([uid])
        self._tell("messages_added", [uid])
        return defer.succeed(uid)

    def store_flags(self, uids: Iterable[int], flags: Iterable[str], mode: str) -> defer.Deferred[list[int]]:
        uids, flags = list(uids), set(flags)
        self.calls.append(("store_flags", (uids, sorted(flags), mode)))
        if "store_flags" in self.fail:
            return self._deferred("store_flags", None)
        return defer.succeed(self._store(uids, flags, mode, None)[0])

    def store_flags_unchanged_since(self, uids: Iterable[int], flags: Iterable[str], mode: str,
                                    unchangedsince: int) -> defer.Deferred[tuple[list[int], list[int]]]:
        uids, flags = list(uids), set(flags)
        self.calls.append(("store_flags_unchanged_since", (uids, sorted(flags), mode, unchangedsince)))
        if "store_flags" in self.fail:
            return self._deferred("store_flags", None)
        return defer.succeed(self._store(uids, flags, mode, unchangedsince))

    def _store(self, uids: list[int], flags: set[str], mode: str, unchangedsince: int | None
               ) -> tuple[list[int], list[int]]:
        changed: list[int] = []
        modified: list[int] = []
        new_flags = {}
        for uid in sorted(set(uids)):
            info = self._msgs.get(uid)
            if info is None:
                continue
            if unchangedsince is not None and info.modseq > unchangedsince:
                modified.append(uid)
                continue
            old = set(info.flags)
            new = old | flags if mode == "+" else old - flags if mode == "-" else set(flags)
            if new != old:
                new_flags[uid] = frozenset(new)
                changed.append(uid)
        if changed:
            m = self._bump()
            for uid in changed:
                info = self._msgs[uid]
                info.flags, info.modseq = new_flags[uid], m
        self._tell("flags_changed", changed)
        return changed, modified

    def uids_with_flag(self, flag: str) -> set[int]:
        low = flag.lower() if not flag.startswith("\\") else None
        return {u for u, i in self._msgs.items()
                if flag in i.flags or (low is not None and any(f.lower() == low for f in i.flags))}

    def changed_since(self, modseq: int) -> list[int]:
        return sorted(u for u, i in self._msgs.items() if i.modseq > modseq)

    def vanished_since(self, modseq: int) -> list[int]:
        if modseq >= self.vanished_floor:
            return sorted(u for m, u in self._gone if m > modseq)
        return [u for u in range(1, self.uidnext) if u not in self._msgs]

    def expunge(self, uids: Iterable[int] | None = None) -> defer.Deferred[list[int]]:
        asked = sorted(u for u, i in self._msgs.items() if "\\Deleted" in i.flags) if uids is None else list(uids)
        self.calls.append(("expunge", (asked,)))  # as asked, so a test sees repeats and order
        wanted = sorted(set(asked))
        if "expunge" in self.fail:
            return self._deferred("expunge", None)
        gone = [u for u in wanted if u in self._msgs]
        if gone:
            m = self._bump()
            self._gone.extend((m, u) for u in gone)
        for u in gone:
            del self._msgs[u]
            del self._data[u]
            self._recent.discard(u)
            for key in [k for k in self.cache if k[0] == u]:
                del self.cache[key]
        self._tell("messages_expunged", gone)
        return defer.succeed(gone)

    def copy_to(self, uids: Iterable[int], target: IFolder, move: bool = False
                ) -> defer.Deferred[list[tuple[int, int]]]:
        wanted = sorted(set(uids))
        self.calls.append(("copy_to", (wanted, target.name)))
        if "copy_to" in self.fail:
            return self._deferred("copy_to", None)
        handle = None
        unwrap = getattr(target, "unwrap", None)
        if unwrap is not None:
            if "i" not in target.rights:
                return defer.fail(NoPermission("no insert right"))
            handle, target = target, unwrap()
        assert isinstance(target, FakeFolder)
        acct = target.account
        size = sum(self._msgs[u].size for u in wanted if u in self._msgs)
        count = sum(1 for u in wanted if u in self._msgs)
        if acct is not None and not (move and acct is self.account) and acct.over_quota(target.name, size, count):
            return defer.fail(OverQuota("Quota exceeded"))
        pairs = []
        for u in wanted:
            info = self._msgs.get(u)
            if info is not None:
                flags = handle.incoming(info.flags) if handle is not None else info.flags
                pairs.append((u, target.add(self._data[u], flags, info.internaldate).uid))
        target._arrived([d for _, d in pairs])
        target._tell("messages_added", [d for _, d in pairs])
        if handle is not None:
            return handle.copied_in(pairs, {u: self._msgs[u].flags for u, _ in pairs})
        return defer.succeed(pairs)

    def touch_modseq(self, uids: Iterable[int]) -> defer.Deferred[list[int]]:
        hit = [u for u in uids if u in self._msgs]
        if hit:
            m = self._bump()
            for u in hit:
                self._msgs[u].modseq = m
        return defer.succeed(hit)

    # -- IFolder: listeners and cache
    def add_listener(self, listener: IFolderListener) -> None:
        if listener not in self._listeners:
            self._listeners.append(listener)

    def remove_listener(self, listener: IFolderListener) -> None:
        if listener in self._listeners:
            self._listeners.remove(listener)

    def get_cached(self, uid: int, kind: str) -> bytes | None:
        return self.cache.get((uid, kind))

    def set_cached(self, uid: int, kind: str, value: bytes) -> None:
        if uid in self._msgs or uid in self._data:
            self.cache[(uid, kind)] = value

    def get_cached_many(self, uids: Iterable[int], kind: str) -> dict[int, bytes]:
        out = {}
        for u in uids:
            v = self.cache.get((u, kind))
            if v is not None:
                out[u] = v
        return out

    def get_folder_cached(self, kind: str) -> bytes | None:
        return self.folder_cache.get(kind)

    def set_folder_cached(self, kind: str, value: bytes) -> None:
        self.folder_cache[kind] = bytes(value)

    def prefetch(self, uids: Iterable[int], kinds: Iterable[str] = (), body: str | None = None) -> defer.Deferred[None]:
        """Recorded in ``prefetches`` (what a remote backend would fetch)."""
        self.prefetches.append((list(uids), list(kinds), body))
        return self._deferred("prefetch", None)


_NEWS: dict[str, Any] = {"messages_added": MessagesAdded, "messages_expunged": MessagesExpunged,
                         "flags_changed": FlagsChanged}


@implementer(IAccount)
class FakeAccount(_Failing):
    """One user's folders: INBOX, the special-use folders (or the names
    given), subscriptions and the POP3 lock."""

    def __init__(self, user: str = "joe", folders: Iterable[str] | None = None) -> None:
        self.user = user
        self._validity = 2000
        names = list(SPECIAL) if folders is None else [n for n in folders if n != "INBOX"]
        self.account_listeners: list[IAccountListener] = []
        self.uses: dict[str, str] = {}  # set_special_use
        self.folders: dict[str, FakeFolder] = {"INBOX": self._folder("INBOX", 1000)}
        for name in names:
            self.folders[name] = self._folder(name, self._next_validity())
        self.quota_limits = (0, 0)
        self._subs: list[str] = ["INBOX", *names]
        self.fail = {}
        self.pop3_locked = False
        self.hold_deliveries = False
        self.pending: list[tuple[defer.Deferred[int], int]] = []
        self.delivered: list[tuple[str, bytes, tuple[str, ...]]] = []

    def _folder(self, name: str, uidvalidity: int) -> FakeFolder:
        f = FakeFolder(name, uidvalidity)
        f.account = self
        return f

    def usage(self) -> tuple[int, int]:
        msgs = [m for f in self.folders.values() for m in f.messages()]
        return sum(m.size for m in msgs), len(msgs)

    def over_quota(self, folder: str, octets: int, messages: int) -> bool:
        """Would storing this into ``folder`` go beyond the limits?"""
        blimit, climit = self.quota_limits
        used, count = self.usage()
        return bool((blimit and used + octets > blimit) or (climit and count + messages > climit))

    def quota(self) -> defer.Deferred[QuotaRoot | None]:
        blimit, climit = self.quota_limits
        if not blimit and not climit:
            return defer.succeed(None)
        used, count = self.usage()
        res = []
        if blimit:
            res.append(QuotaResource("STORAGE", used, blimit))
        if climit:
            res.append(QuotaResource("MESSAGE", count, climit))
        return defer.succeed(QuotaRoot("User quota", tuple(res)))

    def _next_validity(self) -> int:
        self._validity += 1
        return self._validity

    @staticmethod
    def _norm(name: str) -> str:
        return "INBOX" if name.upper() == "INBOX" else name

    @property
    def inbox(self) -> FakeFolder:
        return self.folders["INBOX"]

    def list_folders(self) -> list[str]:
        return sorted(self.folders)

    def folder_exists(self, name: str) -> bool:
        return self._norm(name) in self.folders

    def special_use(self, name: str) -> str | None:
        return self.uses.get(name) or SPECIAL.get(name)

    def set_special_use(self, name: str, use: str | None) -> None:
        name = self._norm(name)
        if name not in self.folders:
            raise NoSuchFolder(name)
        if use is None:
            self.uses.pop(name, None)
            return
        canonical = {u.lower(): u for u in SPECIAL.values()}.get(use.lower())
        if canonical is None:
            raise InvalidFolderName(use)
        self.uses[name] = canonical

    def open_folder(self, name: str) -> defer.Deferred[FakeFolder]:
        f = self.folders.get(self._norm(name))
        if f is None:
            return defer.fail(NoSuchFolder(name))
        return self._deferred("open_folder", f)

    def create_folder(self, name: str) -> defer.Deferred[None]:
        name = self._norm(name)
        if name in self.folders:
            return defer.fail(FolderExists(name))
        parts = name.split("/")
        if any(p in ("", ".", "..") for p in parts) or any(ord(c) < 32 for c in name):
            return defer.fail(InvalidFolderName(name))
        for i in range(1, len(parts) + 1):
            n = "/".join(parts[:i])
            if n not in self.folders:
                self.folders[n] = self._folder(n, self._next_validity())
                self.tell(FolderCreated(n))
        return self._deferred("create_folder", None)

    def delete_folder(self, name: str) -> defer.Deferred[None]:
        name = self._norm(name)
        if name == "INBOX":
            return defer.fail(InvalidFolderName(name))
        if name not in self.folders:
            return defer.fail(NoSuchFolder(name))
        f = self.folders.pop(name)
        f.expunge(f.uids())
        f.account = None
        self.uses.pop(name, None)
        self.tell(FolderDeleted(name))
        return self._deferred("delete_folder", None)

    def rename_folder(self, old: str, new: str) -> defer.Deferred[None]:
        old, new = self._norm(old), self._norm(new)
        if old not in self.folders:
            return defer.fail(NoSuchFolder(old))
        if new in self.folders:
            return defer.fail(FolderExists(new))
        if old == "INBOX":  # RFC 3501: the messages move, INBOX stays (empty)
            src = self.folders["INBOX"]
            self.create_folder(new)
            src.copy_to(src.uids(), self.folders[new])
            src.expunge(src.uids())
            return defer.succeed(None)
        for n in sorted(self.folders):
            if n == old or n.startswith(old + "/"):
                f = self.folders.pop(n)
                f.name = new + n[len(old):]
                self.folders[f.name] = f
                if n in self.uses:
                    self.uses[f.name] = self.uses.pop(n)
                self.tell(FolderRenamed(n, f.name))
        return self._deferred("rename_folder", None)

    def subscriptions(self) -> list[str]:
        return list(self._subs)

    def subscribe(self, name: str) -> None:
        if name not in self._subs:
            self._subs.append(name)
            self.tell(SubscriptionChanged(name, True))

    def unsubscribe(self, name: str) -> None:
        if name in self._subs:
            self._subs.remove(name)
            self.tell(SubscriptionChanged(name, False))

    # -- account events
    def add_account_listener(self, listener: IAccountListener) -> None:
        if listener not in self.account_listeners:
            self.account_listeners.append(listener)

    def remove_account_listener(self, listener: IAccountListener) -> None:
        if listener in self.account_listeners:
            self.account_listeners.remove(listener)

    def tell(self, event: AccountEvent) -> None:
        """Tell the account listeners (the fake's folders call this too)."""
        for listener in list(self.account_listeners):
            listener.account_event(self, event)

    def poll_folders(self, names: Iterable[str]) -> defer.Deferred[None]:
        """Every fake folder is "open": polling refreshes it, so deliveries
        by another process (``drop_external``) are told itemised."""
        for name in names:
            f = self.folders.get(self._norm(name))
            if f is not None:
                f.refresh()
        return defer.succeed(None)

    def deliver(self, folder: str, source: bytes | BinaryIO, flags: Iterable[str] = ()) -> defer.Deferred[int]:
        if "deliver" in self.fail:
            return self._deferred("deliver", None)
        f = self.folders.get(self._norm(folder))
        if f is None:
            return defer.fail(NoSuchFolder(folder))
        raw = source if isinstance(source, bytes) else source.read()
        if self.over_quota(f.name, len(to_crlf(raw)), 1):
            return defer.fail(OverQuota("Quota exceeded"))
        self.delivered.append((f.name, raw, tuple(flags)))
        d = f.append(raw, flags)
        if not self.hold_deliveries:
            return d
        held: defer.Deferred[int] = defer.Deferred()
        d.addCallback(lambda uid: self.pending.append((held, uid)))
        return held

    def contents(self, folder: str = "INBOX") -> list[bytes]:
        """The stored bytes of every message in ``folder``, in UID order."""
        return self.folders[self._norm(folder)].contents()

    def release(self) -> None:
        """Let held deliveries finish."""
        pending, self.pending = self.pending, []
        for d, uid in pending:
            d.callback(uid)

    def acquire_pop3_lock(self) -> defer.Deferred[bool]:
        if "acquire_pop3_lock" in self.fail:  # a failed Deferred, as the store's flock in a thread
            return self._deferred("acquire_pop3_lock", None)
        if self.pop3_locked:
            return defer.succeed(False)
        self.pop3_locked = True
        return defer.succeed(True)

    def release_pop3_lock(self) -> defer.Deferred[None]:
        """Stricter than a real store: releasing a lock not held is a test bug."""
        if not self.pop3_locked:
            raise AssertionError("POP3 lock released but not held")
        self.pop3_locked = False
        return defer.succeed(None)


@implementer(IStore)
class FakeStore(_Failing):
    """The process-wide store: an account per user, created on first use."""

    def __init__(self, **folders: Iterable[str]) -> None:
        """``FakeStore(alice=("Spam",))``: alice has INBOX and Spam."""
        self.accounts: dict[str, FakeAccount] = {u: FakeAccount(u, names) for u, names in folders.items()}
        self.fail = {}
        self.public: FakeAccount | None = None
        self.shares = FakeShares(self)
        self.views: list[str | None] = []  # every view(user) asked for, in order

    def view(self, user: str | None) -> UserView:
        self.views.append(user)
        return UserView(self.shares, user, self.account(user) if user is not None else None)

    def make_public(self, *names: str) -> FakeAccount:
        """Public mailboxes (``Public/<name>``)."""
        if self.public is None:
            self.public = FakeAccount("public", ())
        for n in names:
            self.public.create_folder(n)
        return self.public

    def public_mailbox(self, name: str) -> str | None:
        if self.public is None:
            return None
        for f in self.public.list_folders():
            if f != "INBOX" and f.lower() == name.lower():
                return "Public/" + f
        return None

    def account(self, user: str) -> FakeAccount:
        self._check("account")
        if user not in self.accounts:
            self.accounts[user] = FakeAccount(user)
        return self.accounts[user]

    def open_account(self, user: str) -> defer.Deferred[FakeAccount]:
        return defer.maybeDeferred(self.account, user)

    def add(self, account: FakeAccount) -> FakeAccount:
        """Serve an existing account object (shared by several stores' sessions)."""
        self.accounts[account.user] = account
        return account


class _AclsByName(MutableMapping[tuple[str, str], Acl]):
    """``acls[(owner, folder)]``: each folder's ACL kept on the folder
    object itself, so it moves with RENAME and goes with DELETE, as a
    ``dovecot-acl`` file in the folder's directory does (owner "public":
    the public mailboxes)."""

    def __init__(self, store: FakeStore) -> None:
        self.store = store

    def _account(self, owner: str) -> FakeAccount | None:
        return self.store.public if owner == "public" else self.store.accounts.get(owner)

    def _folder(self, key: tuple[str, str]) -> FakeFolder:
        account = self._account(key[0])
        folder = account.folders.get(account._norm(key[1])) if account is not None else None
        if folder is None:
            raise KeyError(key)
        return folder

    def __getitem__(self, key: tuple[str, str]) -> Acl:
        acl = self._folder(key).acl
        if acl is None:
            raise KeyError(key)
        return acl

    def __setitem__(self, key: tuple[str, str], acl: Acl) -> None:
        self._folder(key).acl = acl

    def __delitem__(self, key: tuple[str, str]) -> None:
        folder = self._folder(key)
        if folder.acl is None:
            raise KeyError(key)
        folder.acl = None

    def __iter__(self) -> Iterator[tuple[str, str]]:
        owners = [(u, a) for u, a in self.store.accounts.items()]
        if self.store.public is not None:
            owners.append(("public", self.store.public))
        return iter([(u, n) for u, a in owners for n, f in list(a.folders.items()) if f.acl is not None])

    def __len__(self) -> int:
        return sum(1 for _ in self)


class FakeShares:
    """In-memory ShareBackend (mailsrv.store.shared) over a FakeStore."""

    def __init__(self, store: FakeStore) -> None:
        self.store = store
        self.acls = _AclsByName(store)
        self.seen: dict[tuple[str, str], PrivateSeen] = {}

    def _key(self, account: FakeAccount, folder: str) -> tuple[str, str]:
        return ("public" if account is self.store.public else account.user, account._norm(folder))

    def owner_account(self, user: str) -> FakeAccount | None:
        return self.store.accounts.get(user)

    def public_account(self) -> FakeAccount | None:
        return self.store.public

    def read_acl(self, account: FakeAccount, folder: str) -> Acl | None:
        acl = self.acls.get(self._key(account, folder))
        return Acl(list(acl.entries)) if acl is not None else None

    def write_acl(self, account: FakeAccount, folder: str, acl: Acl | None) -> defer.Deferred[None]:
        if acl is None:
            self.acls.pop(self._key(account, folder), None)
        elif self._key(account, folder)[1] in account.folders:
            self.acls[self._key(account, folder)] = Acl(list(acl.entries))
        return defer.succeed(None)

    def sharers(self, user: str | None) -> list[str]:
        return sorted({owner for (owner, _), acl in self.acls.items()
                       if owner in self.store.accounts and "l" in acl.rights_of(user, owner=False)})

    def private_seen(self, user: str, folder: FakeFolder) -> defer.Deferred[PrivateSeen]:
        key = (user, folder.name)
        if key not in self.seen:
            self.seen[key] = PrivateSeen(folder.uidvalidity, set(), lambda v, s: defer.succeed(None))
        return defer.succeed(self.seen[key])


@implementer(IRealm)
class FakeRealm:
    """Hands out the store's IAccount avatars; counts logouts."""

    def __init__(self, store: Any) -> None:
        self.store = store
        self.logouts = 0

    def requestAvatar(self, avatarId: bytes | str, mind: object, *interfaces: Any) -> tuple[Any, Any, Any]:
        if IAccount not in interfaces:
            raise NotImplementedError("only IAccount avatars")
        name = avatarId.decode() if isinstance(avatarId, bytes) else avatarId

        def logout() -> None:
            self.logouts += 1

        return IAccount, self.store.view(name), logout


def make_portal(store: Any, passwords: dict[str, str] | None = None) -> Portal:
    """A portal over ``store`` (a FakeStore or the real Store); every user
    in ``passwords`` (default: each FakeStore account, password
    ``secret``) may log in."""
    if passwords is None:
        passwords = {name: "secret" for name in store.accounts}
    checker = InMemoryUsernamePasswordDatabaseDontUse(**{k: v.encode() for k, v in passwords.items()})
    return Portal(FakeRealm(store), [checker])
