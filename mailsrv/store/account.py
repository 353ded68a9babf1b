"""Accounts (one live object per user) and the process-wide Store."""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Callable, Iterable
from typing import Any

from twisted.internet import defer, threads
from twisted.internet.interfaces import IDelayedCall
from twisted.logger import Logger
from zope.interface import implementer

from mailsrv.store import layout, pop3lock, quota, specialuse
from mailsrv.store.diskfolder import DiskFolder, NewFile, discard_sources
from mailsrv.store.events import AccountListeners
from mailsrv.store.flags import normalize_flags
from mailsrv.store.folder import Folder
from mailsrv.store.groupcommit import GroupCommit
from mailsrv.store.interfaces import (
    FolderChanged,
    FolderCreated,
    FolderDeleted,
    FolderExists,
    FolderNotEmpty,
    FolderRenamed,
    IAccount,
    InvalidFolderName,
    IStore,
    MessagesAdded,
    NoSuchFolder,
    QuotaRoot,
    StoreError,
    SubscriptionChanged,
)
from mailsrv.store.layout import INBOX, SEP
from mailsrv.store.maildir import SUBDIRS, write_tmp
from mailsrv.store.poll import FolderStamps, poll_stamps
from mailsrv.store.shared import UserView
from mailsrv.store.sharedfiles import MaildirShares, public_root
from mailsrv.store.watch import FolderWatcher

log = Logger(namespace="mailsrv.store")


@implementer(IAccount)
class Account:
    """See :class:`IAccount`.  Folder objects are shared through
    ``_folders`` while any session listens to them (or an operation runs)."""

    def __init__(self, store: Store, user: str, root: str | None = None) -> None:
        """``root``: a Maildir elsewhere than the user's (the public
        mailboxes' root), created without the default folders."""
        self.store = store
        self.user = user
        self._defaults = root is None
        self.root = root or layout.maildir_root(store.data_dir, user)
        self._quota: quota.QuotaTracker | None = None
        self._folders: dict[str, Folder] = {}
        self._modseqs: dict[str, int] = {}
        self._light: dict[str, GroupCommit] = {}
        self._pop3_locked = False
        self._pop3_fd: int | None = None
        self._idle_timers: dict[str, IDelayedCall] = {}
        self._events = AccountListeners(self)
        self._polled: dict[str, FolderStamps] = {}
        self._uses: dict[str, str] | None = None  # special-use given with CREATE (USE ...)
        self._ensure_created()

    def _ensure_created(self) -> None:
        """First use: the Maildir with the default folders, subscribed."""
        fresh = not os.path.isdir(self.root)
        layout.make_folder_dirs(self.root, is_inbox=True)
        if fresh and self._defaults:
            for name in layout.DEFAULT_FOLDERS:
                layout.make_folder_dirs(layout.folder_path(self.root, name))
            layout.write_subscriptions(self.root, list(layout.DEFAULT_FOLDERS))

    def _path(self, name: str) -> str:
        return layout.folder_path(self.root, name)

    # --- what a live folder asks of its account (folder.FolderHost) -------------------

    def modseq_floor(self, name: str) -> int:
        """Mod-sequences live in memory only; a folder object made again in
        this process starts where the last one stopped, never lower."""
        return self._modseqs.get(name, 1)

    def remember_modseq(self, name: str, value: int) -> None:
        self._modseqs[name] = max(value, self._modseqs.get(name, 1))

    def folder_news(self, folder: Folder, what: str, uids: list[int]) -> None:
        self._events.folder_news(folder, what, uids)

    # --- account events (NOTIFY) ----------------------------------------------------------

    def add_account_listener(self, listener: Any) -> None:
        self._events.add(listener)

    def remove_account_listener(self, listener: Any) -> None:
        self._events.remove(listener)

    def poll_folders(self, names: Iterable[str]) -> defer.Deferred:
        """See IAccount.  Open folders refresh themselves; the others are
        compared with the stamps of their previous poll in a worker thread."""
        live: list[Folder] = []
        paths: dict[str, str] = {}
        for name in names:
            try:
                name = layout.canonical(name)
            except InvalidFolderName:
                continue
            f = self._folders.get(name)
            if f is not None:
                live.append(f)
            else:
                paths[name] = self._path(name)

        def compare(stamps: dict[str, FolderStamps | None]) -> None:
            for name, st in stamps.items():
                old = self._polled.get(name)
                if st is None:
                    self._polled.pop(name, None)
                    continue
                self._polled[name] = st
                if old is not None and old != st and name not in self._folders:
                    self._events.tell(FolderChanged(name))

        ds = [f.refresh() for f in live if not f.gone]
        if paths:
            ds.append(threads.deferToThread(poll_stamps, paths).addCallback(compare))
        return defer.gatherResults(ds, consumeErrors=True).addCallback(lambda _: None)

    # --- quota (issue 12; mailsrv.store.quota) ----------------------------------------

    @property
    def quota_tracker(self) -> quota.QuotaTracker:
        if self._quota is None:
            store, user, personal = self.store, self.user, self._defaults
            # the public mailboxes' root has no owner and no quota
            self._quota = quota.QuotaTracker(self.root, user,
                                             lambda: store.quota_rules(user) if personal else quota.QuotaRules(),
                                             store.quota_warnings, store.quota_tempfail)
        return self._quota

    def account_usage(self, name: str, octets: int, messages: int, check: bool) -> None:
        """Worker threads: record a change of usage in folder ``name``;
        with ``check``, OverQuota instead when it goes beyond the limit."""
        self.quota_tracker.change(name, octets, messages, check)

    def quota(self) -> defer.Deferred[QuotaRoot | None]:
        return threads.deferToThread(self.quota_tracker.root_info)

    # --- names ----------------------------------------------------------------------

    def list_folders(self) -> list[str]:
        return layout.list_folder_names(self.root)

    def folder_exists(self, name: str) -> bool:
        try:
            name = layout.canonical(name)
        except InvalidFolderName:
            return False
        return name == INBOX or os.path.isdir(self._path(name))

    def special_use(self, name: str) -> str | None:
        return self._special_uses().get(name) or layout.DEFAULT_FOLDERS.get(name)

    def _special_uses(self) -> dict[str, str]:
        if self._uses is None:
            self._uses = specialuse.read(self.root)
        return self._uses

    def set_special_use(self, name: str, use: str | None) -> None:
        name = layout.canonical(name)
        if not self.folder_exists(name):
            raise NoSuchFolder(f"no folder {name}")
        uses = dict(self._special_uses())
        if use is None:
            uses.pop(name, None)
        else:
            canonical = specialuse.canonical_use(use)
            if canonical is None:
                raise InvalidFolderName(f"{use} cannot be given to a folder")
            uses[name] = canonical
        specialuse.write(self.root, uses)
        self._uses = uses

    def _uses_moved(self, old: str, new: str | None) -> None:
        """Special-use entries follow RENAME (``new``) and go with DELETE."""
        uses = self._special_uses()
        if new is None:
            changed = {n: u for n, u in uses.items() if n != old}
        else:
            changed = specialuse.renamed(uses, old, new)
        if changed != uses:
            specialuse.write(self.root, changed)
            self._uses = changed

    # --- folders ----------------------------------------------------------------------

    def open_folder(self, name: str) -> defer.Deferred:
        try:
            name = layout.canonical(name)
        except InvalidFolderName as e:
            return defer.fail(NoSuchFolder(str(e)))
        f = self._folders.get(name)
        if f is not None:
            return f.ready()
        path = self._path(name)
        if not os.path.isdir(path):
            return defer.fail(NoSuchFolder(f"no folder {name}"))
        try:
            layout.make_folder_dirs(path, is_inbox=(name == INBOX))
        except OSError as e:
            return defer.fail(StoreError(f"cannot open {name}: {e.strerror}"))
        f = Folder(self, name, path, use_index=self.store.use_index)
        self._folders[name] = f

        def failed(fail: Any) -> Any:
            if self._folders.get(name) is f:
                del self._folders[name]
            return fail

        return f.load().addErrback(failed)

    def live_folder(self, name: str) -> Folder | None:
        """The folder object if some session has it open (no disk access)."""
        try:
            return self._folders.get(layout.canonical(name))
        except InvalidFolderName:
            return None

    def folder_busy(self, folder: Folder) -> None:
        """A first listener: changes from outside should reach it at once."""
        if self.store.watcher is not None:
            self.store.watcher.watch(folder)

    def folder_idle(self, folder: Folder) -> None:
        """No listener left: let the object go once its operations finish,
        or, in a server (``Store.idle_ttl``), after a quiet period, so that
        the next login finds the folder loaded (SELECT on 100k messages costs
        a directory scan otherwise; the kept object stays exact through the
        cheap stat check every session does)."""
        if self.store.watcher is not None:
            self.store.watcher.unwatch(folder)

        def release(_: object = None) -> None:
            self._idle_timers.pop(folder.name, None)
            if not folder.has_listeners() and self._folders.get(folder.name) is folder:
                del self._folders[folder.name]
                folder.close()

        old = self._idle_timers.pop(folder.name, None)
        if old is not None and old.active():
            old.cancel()
        if self.store.idle_ttl > 0:
            self._idle_timers[folder.name] = self.store.reactor.callLater(
                self.store.idle_ttl, lambda: folder.quiesce().addBoth(release))
        else:
            folder.quiesce().addBoth(release)

    def create_folder(self, name: str) -> defer.Deferred:
        try:
            name = layout.canonical(name)
        except InvalidFolderName:
            return defer.fail()
        if name == INBOX or os.path.isdir(self._path(name)):
            return defer.fail(FolderExists(f"{name} already exists"))
        try:
            made = self._make_parents(name)
            try:
                os.mkdir(self._path(name))
            except FileExistsError:
                return defer.fail(FolderExists(f"{name} already exists"))
            layout.make_folder_dirs(self._path(name))
        except OSError as e:
            return defer.fail(StoreError(f"cannot create {name}: {e.strerror}"))
        for n in made + [name]:
            self._events.tell(FolderCreated(n))
        return defer.succeed(None)

    def _make_parents(self, name: str) -> list[str]:
        """Create the missing parents of ``name``; returns those created."""
        made = []
        parts = name.split(SEP)
        for i in range(1, len(parts)):
            parent = SEP.join(parts[:i])
            if parent != INBOX:
                if not os.path.isdir(self._path(parent)):
                    made.append(parent)
                layout.make_folder_dirs(self._path(parent))
        return made

    def _children(self, name: str) -> list[str]:
        prefix = name + SEP
        return [n for n in self.list_folders() if n.startswith(prefix)]

    def delete_folder(self, name: str) -> defer.Deferred:
        try:
            name = layout.canonical(name)
        except InvalidFolderName:
            return defer.fail()
        if name == INBOX:
            return defer.fail(InvalidFolderName("INBOX cannot be deleted"))
        path = self._path(name)
        if not os.path.isdir(path):
            return defer.fail(NoSuchFolder(f"no folder {name}"))
        if self._children(name):
            return defer.fail(FolderNotEmpty(f"{name} has subfolders; delete them first"))
        trash = os.path.join(os.path.dirname(self.root), f".mailsrv-deleted-{uuid.uuid4().hex}")

        def work() -> defer.Deferred[None]:
            try:
                os.rename(path, trash)
            except FileNotFoundError:
                raise NoSuchFolder(f"no folder {name}") from None
            live = self._folders.pop(name, None)
            if live is not None:
                if self.store.watcher is not None:
                    self.store.watcher.unwatch(live)
                live.deleted()
            self._polled.pop(name, None)
            self._uses_moved(name, None)
            self._events.tell(FolderDeleted(name))
            return threads.deferToThread(self._remove_tree, name, trash)

        live = self._folders.get(name)
        if live is not None:
            return live.run_exclusive(work).addCallback(lambda _: None)
        return defer.maybeDeferred(work).addCallback(lambda _: None)

    def _remove_tree(self, name: str, trash: str) -> None:
        """Worker thread: a deleted folder's files go, and its usage with them."""
        octets, messages = quota.folder_usage(trash)
        shutil.rmtree(trash, True)
        self.account_usage(name, -octets, -messages, check=False)

    def rename_folder(self, old: str, new: str) -> defer.Deferred:
        try:
            old = layout.canonical(old)
            new = layout.canonical(new)
        except InvalidFolderName:
            return defer.fail()
        if not self.folder_exists(old):
            return defer.fail(NoSuchFolder(f"no folder {old}"))
        if new == INBOX or os.path.isdir(self._path(new)):
            return defer.fail(FolderExists(f"{new} already exists"))
        if old == INBOX:
            return self._rename_inbox(new)
        if new == old or new.startswith(old + SEP):
            return defer.fail(InvalidFolderName("cannot rename a folder into itself"))
        names = [old] + self._children(old)
        lives = [self._folders[n] for n in names if n in self._folders]
        return _exclusively(lives, lambda: self._rename_tree(old, new, names))

    def _rename_tree(self, old: str, new: str, names: list[str]) -> None:
        """Move ``old`` and its inferiors ``names`` to ``new`` on disk, their
        live objects with them, and their subscriptions (no live folder of
        them is in an operation)."""
        made = self._make_parents(new)
        moved = []
        for n in names:
            target = new + n[len(old):]
            tpath = self._path(target)
            if os.path.exists(tpath):
                raise FolderExists(f"{target} already exists")
            os.rename(self._path(n), tpath)
            f = self._folders.pop(n, None)
            if f is not None:
                f.moved(target, tpath)
                self._folders[target] = f
            self._polled.pop(n, None)
            moved.append((n, target))
        self._uses_moved(old, new)
        for p in made:
            self._events.tell(FolderCreated(p))
        for n, target in moved:
            self._events.tell(FolderRenamed(n, target))
        subs = self.subscriptions()
        if any(s == old or s.startswith(old + SEP) for s in subs):
            layout.write_subscriptions(self.root, [
                new + s[len(old):] if (s == old or s.startswith(old + SEP)) else s for s in subs])

    def _rename_inbox(self, new: str) -> defer.Deferred:
        """RFC 3501: INBOX's messages move to a new folder, INBOX stays
        (empty, with its subfolders)."""
        d = self.create_folder(new)

        def move(_: object) -> defer.Deferred[Any]:
            target = self._path(new)
            live = self._folders.get(INBOX)
            if live is not None:
                return live.move_messages_to(target)
            return threads.deferToThread(DiskFolder(self.root).move_all_to, target).addCallback(
                lambda _: self._events.tell(FolderChanged(INBOX)))

        def moved(_: object) -> None:
            self._events.tell(FolderChanged(new))

        return d.addCallback(move).addCallback(moved)

    # --- subscriptions -------------------------------------------------------------------

    def subscriptions(self) -> list[str]:
        return layout.read_subscriptions(self.root)

    def subscribe(self, name: str) -> None:
        name = layout.canonical(name)
        subs = self.subscriptions()
        if name not in subs:
            layout.write_subscriptions(self.root, subs + [name])
            self._events.tell(SubscriptionChanged(name, True))

    def unsubscribe(self, name: str) -> None:
        try:
            name = layout.canonical(name)
        except InvalidFolderName:
            pass
        subs = self.subscriptions()
        if name in subs:
            layout.write_subscriptions(self.root, [s for s in subs if s != name])
            self._events.tell(SubscriptionChanged(name, False))

    # --- delivery and POP3 ------------------------------------------------------------------

    def deliver(self, folder: str, source: Any, flags: Iterable[str] = ()) -> defer.Deferred:
        try:
            name = layout.canonical(folder)
            flagset = normalize_flags(flags)
        except StoreError:
            return defer.fail()
        path = self._path(name)
        if name != INBOX and not os.path.isdir(path):
            return defer.fail(NoSuchFolder(f"no folder {name}"))

        def write() -> tuple[str, int, int]:
            for sub in SUBDIRS:
                os.makedirs(os.path.join(path, sub), exist_ok=True)
            written = write_tmp(path, source)
            try:
                self.account_usage(name, written[1], 1, check=True)
            except BaseException:
                os.unlink(written[0])
                raise
            return written

        def submit(written: tuple[str, int, int]) -> defer.Deferred[int]:
            tmp, size, vsize = written
            item = NewFile(tmp, "rename", flagset, size, vsize, new=True)
            live = self._folders.get(name)
            if live is not None and not live.gone:
                d = live.deliver_file(item)
            else:
                batch = self._light.get(path)
                if batch is None:
                    batch = self._light[path] = GroupCommit(lambda items: self._add_light(path, items, name))
                d = batch.submit(item)

            def undo(f: Any) -> Any:
                threads.deferToThread(self.account_usage, name, -size, -1, False)
                return f

            return d.addErrback(undo)

        return threads.deferToThread(write).addCallback(submit)

    def _add_light(self, path: str, items: list[NewFile], name: str) -> defer.Deferred:
        """Deliveries into a folder no session has open: append-only UIDs,
        no scan."""
        def failed(f: Any) -> Any:
            discard_sources(items)
            return f

        def added(uids: list[int | None]) -> list[int | None]:
            got = tuple(u for u in uids if u is not None)
            if got:
                self._events.tell(MessagesAdded(name, got))
            return uids

        return threads.deferToThread(DiskFolder(path).add_light, items).addCallbacks(added, failed)

    def acquire_pop3_lock(self) -> defer.Deferred[bool]:
        """In this process a flag; on disk :mod:`mailsrv.store.pop3lock`
        (flock), so other processes on the same data folder are kept out."""
        if self._pop3_locked:
            return defer.succeed(False)
        self._pop3_locked = True

        def locked(fd: int | None) -> bool:
            self._pop3_fd = fd
            if fd is None:
                self._pop3_locked = False
            return fd is not None

        def failed(f: Any) -> Any:
            self._pop3_locked = False
            return f

        return threads.deferToThread(pop3lock.try_lock, self.root).addCallbacks(locked, failed)

    def release_pop3_lock(self) -> defer.Deferred[None]:
        fd, self._pop3_fd = self._pop3_fd, None
        self._pop3_locked = False
        if fd is not None:
            pop3lock.unlock(fd)  # a close(2): no disk work
        return defer.succeed(None)

    def close(self) -> defer.Deferred:
        for timer in self._idle_timers.values():
            if timer.active():
                timer.cancel()
        self._idle_timers.clear()
        return defer.gatherResults([f.close() for f in list(self._folders.values())])


@implementer(IStore)
class Store:
    """The process-wide Maildir++ store rooted at ``data_dir``
    (``<data_dir>/<user>/Maildir``)."""

    def __init__(self, data_dir: str, idle_ttl: float = 0.0, reactor: Any = None, use_index: bool = True,
                 quota_rules: Callable[[str], quota.QuotaRules] | None = None,
                 quota_warnings: Iterable[int] = (), quota_tempfail: bool = False, watch: bool = False) -> None:
        """``idle_ttl``: seconds an unused folder object stays loaded (0: none,
        for tools and tests; the server keeps them a while).  ``use_index``:
        open unchanged folders from their snapshot (mailsrv.store.index).
        ``quota_rules(user)``: that user's quota rules (default: none);
        ``quota_warnings``: percentages logged when crossed;
        ``quota_tempfail``: OverQuota says "try again later".
        ``watch``: inotify on the folders sessions listen to, so outside
        changes reach them at once (mailsrv.store.watch; the server's)."""
        self.data_dir = data_dir
        self.idle_ttl = idle_ttl
        self.use_index = use_index
        self.quota_rules: Callable[[str], quota.QuotaRules] = quota_rules or (lambda user: quota.QuotaRules())
        self.quota_warnings = list(quota_warnings)
        self.quota_tempfail = quota_tempfail
        self.shares = MaildirShares(self)
        self._public: Account | None = None
        if reactor is None and (idle_ttl > 0 or watch):
            from twisted.internet import reactor
        self.reactor = reactor
        self._accounts: dict[str, Account] = {}
        self.watcher: FolderWatcher | None = FolderWatcher(reactor) if watch else None

    def account(self, user: str) -> Account:
        a = self._accounts.get(user)
        if a is None:
            a = self._accounts[user] = Account(self, user)
        return a

    def open_account(self, user: str) -> defer.Deferred[Account]:
        """The account is on local disk: nothing to read first."""
        return defer.maybeDeferred(self.account, user)

    def view(self, user: str | None) -> UserView:
        """See IStore.view (mailsrv.store.shared)."""
        return UserView(self.shares, user, self.account(user) if user is not None else None)

    def public_account(self) -> Account:
        """The raw account of the public mailboxes (``Public/...``)."""
        if self._public is None:
            self._public = Account(self, "public", root=public_root(self.data_dir))
        return self._public

    def public_mailbox(self, name: str) -> str | None:
        if not os.path.isdir(public_root(self.data_dir)):
            return None
        for folder in self.public_account().list_folders():
            if folder != INBOX and folder.lower() == name.lower():
                return "Public/" + folder
        return None

    def close(self) -> defer.Deferred:
        """Flush folder caches and write folder snapshots (call on service
        stop); fires when the snapshot writes are done - a service's
        stopService should return it so the process waits for them."""
        if self.watcher is not None:
            self.watcher.close()
        accounts = list(self._accounts.values()) + ([self._public] if self._public is not None else [])
        return defer.gatherResults([a.close() for a in accounts])

    def stats(self) -> dict[str, int]:
        """What is held in memory (the server's metrics read it)."""
        return {"accounts": len(self._accounts),
                "folders": sum(len(a._folders) for a in self._accounts.values())}


def _exclusively(folders: list[Folder], work: Callable[[], Any]) -> defer.Deferred[Any]:
    """Run ``work`` while none of ``folders`` is in an operation: each
    folder's exclusive section nested in the previous one's."""
    if not folders:
        return defer.maybeDeferred(work)
    return folders[0].run_exclusive(lambda: _exclusively(folders[1:], work))
