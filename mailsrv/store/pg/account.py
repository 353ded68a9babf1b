"""The live account of the PostgreSQL backend: one object per user in the
process, holding the folder list and subscriptions in memory so that the
synchronous IAccount methods (``list_folders``, ``folder_exists``,
``subscriptions``) answer without a query.

The account is read at login (``PgStore.open_account``, which the realm
and the LMTP recipient lookup use), and again whenever any process changes
the folder list or subscriptions (a NOTIFY ``a<account id>``), so every
node's copy follows within milliseconds.  Opening a folder this copy does
not know yet asks the database, so a folder created a moment ago on
another node opens.

One piece although over 600 lines: the folder list, ACLs, subscriptions,
quota, the account events and the POP3 lock all read and change the same
in-memory state under one rule (changes take turns, a read that overlapped
one is made again), which splitting would spread over modules.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

from twisted.internet import defer
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from mailsrv.store import acl as aclmod
from mailsrv.store import layout
from mailsrv.store.acl import Acl
from mailsrv.store.events import AccountListeners
from mailsrv.store.flags import normalize_flags
from mailsrv.store.groupcommit import GroupCommit
from mailsrv.store.interfaces import (
    FolderChanged,
    FolderCreated,
    FolderDeleted,
    FolderExists,
    FolderRenamed,
    IAccount,
    InvalidFolderName,
    MessagesAdded,
    NoSuchFolder,
    QuotaResource,
    QuotaRoot,
    StoreError,
    SubscriptionChanged,
)
from mailsrv.store.layout import INBOX, SEP
from mailsrv.store.pg import account_sql, folder_sql
from mailsrv.store.pg.account_sql import AccountState
from mailsrv.store.pg.echoes import OwnWrites
from mailsrv.store.pg.errors import describe
from mailsrv.store.pg.folder import PgFolder
from mailsrv.store.pg.folder_sql import NewMessage, QuotaCheck
from mailsrv.store.pg.message import FlagDecoder, split_flags
from mailsrv.store.pg.parts import StoreParts
from mailsrv.store.quota import ROOT_NAME

log = Logger(namespace="mailsrv.store.pg")

SPECIAL_USES = ("\\Archive", "\\Drafts", "\\Junk", "\\Sent", "\\Trash")
POP3_LOCK_SPACE = 0x504F5033 << 32  # 'POP3' in the high half of the advisory lock key


@implementer(IAccount)
class PgAccount:
    """See :class:`IAccount`.  ``acquire_pop3_lock``, ``release_pop3_lock``,
    ``subscribe`` and ``unsubscribe`` return Deferreds (the lock is held in
    the database; callers use ``maybeDeferred``)."""

    def __init__(self, store: StoreParts, user: str, special: bool = False) -> None:
        """``special``: the account holding the public mailboxes (a name no
        user can have, no default folders)."""
        if not special:
            layout.check_user(user)
        self.special = special
        self.store = store
        self.user = user
        self.id: int | None = None
        self._folders: dict[str, tuple[int, str | None]] = {}
        self._subs: list[str] = []
        self._acls: dict[str, str] = {}
        self.fields: dict[str, str] = {}
        self.rules: Any = None  # QuotaRules for these fields (made on first need)
        self._parsed_acls: dict[str, Acl] = {}
        self._live: dict[str, PgFolder] = {}
        self._loaded = False
        self._load_waiters: list[defer.Deferred] = []
        self._reloading = False
        self._reload_again = False
        self._mutex = defer.DeferredLock()
        self._epoch = 0
        self._idle_timers: dict[int, Any] = {}
        self._batches: dict[int, GroupCommit] = {}
        self._own = OwnWrites()
        self._decode = FlagDecoder()
        self._pop3_locked = False
        self._account_listeners = AccountListeners(self)
        self._renamed: dict[str, str] = {}  # old -> new of a rename of ours, for the next adopt's events

    # --- loading ---------------------------------------------------------------------------
    #
    # Reads of the folder list race with this process's own changes: a read
    # started before a change committed may arrive after it.  So changes
    # take turns (``_mutex``), each adopts the state its own transaction
    # read, and a read that overlapped a change (``_epoch`` moved) is
    # dropped and made again.

    def _ready(self) -> defer.Deferred:
        """Fires with self once the account has been read (reads it if needed)."""
        if self._loaded:
            return defer.succeed(self)
        d: defer.Deferred = defer.Deferred()
        self._load_waiters.append(d)
        if len(self._load_waiters) == 1:
            r = self.store.db.run(account_sql.load, self.user, True, not self.special)
            r.addCallback(self._adopt)
            r.addBoth(self._load_done)
        return d

    def _load_done(self, result: Any) -> None:
        waiters, self._load_waiters = self._load_waiters, []
        for w in waiters:
            if isinstance(result, Failure):
                w.errback(result)
            else:
                w.callback(self)

    def reload(self) -> defer.Deferred:
        """Read the folder list and subscriptions again (login, NOTIFY);
        fires with self."""
        if not self._loaded or self.id is None:
            return self._ready()
        epoch = self._epoch

        def got(state: AccountState) -> Any:
            if self._epoch != epoch or self._mutex.locked:
                # overlapped a change of ours: read again once it is done
                return self._mutex.run(lambda: None).addCallback(lambda _: self.reload())
            self._adopt(state)
            return self

        return self.store.db.run(account_sql.read, self.id).addCallback(got)

    def _mutate(self, work: Callable[[], defer.Deferred]) -> defer.Deferred:
        """Run a change of the folder list or subscriptions, one at a time."""
        def run() -> defer.Deferred:
            self._epoch += 1
            return defer.maybeDeferred(work).addBoth(done)

        def done(result: Any) -> Any:
            self._epoch += 1
            return result

        return self._ready().addCallback(lambda _: self._mutex.run(run))

    def notified(self) -> None:
        """Another process changed our folder list or subscriptions."""
        if self._reloading:
            self._reload_again = True
            return
        self._reloading = True

        def done(result: Any) -> None:
            self._reloading = False
            if isinstance(result, Failure):
                log.warn("account {u}: reload failed: {e}", u=self.user, e=describe(result.value))
            if self._reload_again:
                self._reload_again = False
                self.notified()

        self.reload().addBoth(done)

    def _adopt(self, state: AccountState | None) -> None:
        if state is None:
            raise NoSuchFolder(f"no account {self.user}")
        if self.id is None:
            self.id = state.id
            self.store.account_loaded(self)
        if self._loaded and self._account_listeners:
            self._tell_changes(state)
        self._folders = state.folders
        self._subs = state.subscriptions
        if state.acls != self._acls:
            self._acls, self._parsed_acls = state.acls, {}
        if state.fields != self.fields:
            self.fields, self.rules = state.fields, None
        self._loaded = True
        by_id = {fid: name for name, (fid, _use) in state.folders.items()}
        for f in list(self._live.values()):
            new_name = by_id.get(f.id)
            if new_name is None:
                f.sync().addErrback(lambda _: None)  # deleted elsewhere: the feed says so
            elif new_name != f.name:
                f.name = new_name
        self._live = {f.name: f for f in self._live.values() if f.id in by_id}

    # --- account events (NOTIFY) ----------------------------------------------------------------

    def add_account_listener(self, listener: Any) -> None:
        self._account_listeners.add(listener)

    def remove_account_listener(self, listener: Any) -> None:
        self._account_listeners.remove(listener)

    def folder_news(self, folder: Any, what: str, uids: list[int]) -> None:
        self._account_listeners.folder_news(folder, what, uids)

    def folder_changed(self, fid: int, modseqs: Sequence[int]) -> None:
        """A folder no session here has open changed (NOTIFYs, in commit
        order): told as one FolderChanged (its listeners read the counters
        again), unless they are all echoes of deliveries of ours, told
        itemised already."""
        foreign = [self._own.notified(fid, m) for m in modseqs]
        if any(foreign):
            self._tell_folder_changed(fid)

    def _tell_folder_changed(self, fid: int) -> None:
        if self._account_listeners:
            name = next((n for n, (i, _u) in self._folders.items() if i == fid), None)
            if name is not None:
                self._account_listeners.tell(FolderChanged(name))

    def has_account_listeners(self) -> bool:
        return bool(self._account_listeners)

    def _tell_changes(self, state: AccountState) -> None:
        """Folder-list and subscription events between what we knew and
        ``state`` (renames of ours as renames, the rest as create/delete)."""
        old, new = set(self._folders), set(state.folders)
        renamed, self._renamed = self._renamed, {}
        for o, n in sorted(renamed.items()):
            if o in old and n in new:
                self._account_listeners.tell(FolderRenamed(o, n))
                old.discard(o)
                new.discard(n)
        for name in sorted(new - old):
            self._account_listeners.tell(FolderCreated(name))
        for name in sorted(old - new):
            self._account_listeners.tell(FolderDeleted(name))
        before, after = set(self._subs), set(state.subscriptions)
        for name in sorted(after - before):
            self._account_listeners.tell(SubscriptionChanged(name, True))
        for name in sorted(before - after):
            self._account_listeners.tell(SubscriptionChanged(name, False))

    def poll_folders(self, names: Iterable[str]) -> defer.Deferred:
        """Nothing to look for: every change, by any process, is pushed
        (NOTIFY) to live folders and, as FolderChanged, to account listeners."""
        return defer.succeed(None)

    def set_special_use(self, name: str, use: str | None) -> None:
        """(CREATE-SPECIAL-USE) Kept in memory at once, stored behind."""
        if use is not None:
            use = next((u for u in SPECIAL_USES if u.lower() == use.lower()), None) or use
            if use not in SPECIAL_USES:
                raise InvalidFolderName(f"not a special use this server sets: {use}")
        self._need_loaded()
        name = layout.canonical(name)
        meta = self._folders.get(name)
        if meta is None:
            raise NoSuchFolder(f"no folder {name}")
        self._folders[name] = (meta[0], use)
        # with the other changes of the folder list, in order (a RENAME next reads it back)
        d = self._mutate(lambda: self.store.db.run(account_sql.set_special_use, self.id, name, use))
        d.addErrback(lambda f: log.warn("special use of {n} not stored: {e}", n=name, e=describe(f.value)))

    def _need_loaded(self) -> None:
        """The synchronous methods answer from memory; an account nobody
        read yet is read now, blocking (logged: callers should use
        ``PgStore.open_account``)."""
        if not self._loaded:
            self.store.note_blocking("account read before open_account()")
            self._adopt(self.store.db.call(account_sql.load, self.user, True, not self.special))

    # --- names ------------------------------------------------------------------------------

    def list_folders(self) -> list[str]:
        self._need_loaded()
        return [INBOX] + sorted(n for n in self._folders if n != INBOX)

    def folder_exists(self, name: str) -> bool:
        try:
            name = layout.canonical(name)
        except InvalidFolderName:
            return False
        self._need_loaded()
        return name in self._folders

    def special_use(self, name: str) -> str | None:
        self._need_loaded()
        try:
            meta = self._folders.get(layout.canonical(name))
        except InvalidFolderName:
            return None
        return None if meta is None else meta[1]

    # --- folders ------------------------------------------------------------------------------

    def open_folder(self, name: str) -> defer.Deferred:
        try:
            name = layout.canonical(name)
        except InvalidFolderName as e:
            return defer.fail(NoSuchFolder(str(e)))
        return self._ready().addCallback(lambda _: self._open(name, True))

    def _open(self, name: str, ask: bool) -> defer.Deferred:
        f = self._live.get(name)
        if f is not None:
            return f.load()
        meta = self._folders.get(name)
        if meta is None:
            if not ask:
                return defer.fail(NoSuchFolder(f"no folder {name}"))
            return self.reload().addCallback(lambda _: self._open(name, False))
        f = PgFolder(self, meta[0], name)
        self._live[name] = f
        self.store.register_folder(f)

        def failed(fail: Any) -> Any:
            if self._live.get(f.name) is f:
                del self._live[f.name]
            self.store.forget_folder(f)
            return fail

        return f.load().addErrback(failed)

    def live_folder(self, name: str) -> PgFolder | None:
        try:
            return self._live.get(layout.canonical(name))
        except InvalidFolderName:
            return None

    def folder_idle(self, folder: PgFolder) -> None:
        """No listener left: drop the object now, or after ``idle_ttl``
        (kept objects stay exact through the change feed)."""
        def release() -> None:
            self._idle_timers.pop(folder.id, None)
            if not folder.has_listeners() and self._live.get(folder.name) is folder:
                del self._live[folder.name]
                self.store.forget_folder(folder)

        old = self._idle_timers.pop(folder.id, None)
        if old is not None and old.active():
            old.cancel()
        if self.store.idle_ttl > 0:
            self._idle_timers[folder.id] = self.store.reactor.callLater(self.store.idle_ttl, release)
        else:
            release()

    def create_folder(self, name: str) -> defer.Deferred:
        try:
            name = layout.canonical(name)
        except InvalidFolderName:
            return defer.fail()

        def create() -> defer.Deferred:
            if name in self._folders:
                raise FolderExists(f"{name} already exists")
            return self.store.db.run(account_sql.create, self.id, name).addCallback(self._adopt)

        return self._mutate(create).addCallback(lambda _: None)

    def delete_folder(self, name: str) -> defer.Deferred:
        try:
            name = layout.canonical(name)
        except InvalidFolderName:
            return defer.fail()
        if name == INBOX:
            return defer.fail(InvalidFolderName("INBOX cannot be deleted"))

        def delete() -> defer.Deferred:
            if name not in self._folders:
                raise NoSuchFolder(f"no folder {name}")
            return self.store.db.run(account_sql.delete, self.id, name).addCallback(deleted)

        def deleted(result: tuple[int, list[int], AccountState]) -> None:
            fid, blobs, state = result
            live = self._live.pop(name, None)
            if live is not None and live.id == fid:
                live.mark_deleted()
            self._adopt(state)
            self.store.collect_blobs(blobs)

        return self._mutate(delete)

    def rename_folder(self, old: str, new: str) -> defer.Deferred:
        try:
            old = layout.canonical(old)
            new = layout.canonical(new)
        except InvalidFolderName:
            return defer.fail()

        def rename() -> defer.Deferred:
            if old not in self._folders:
                raise NoSuchFolder(f"no folder {old}")
            if new == INBOX or new in self._folders:
                raise FolderExists(f"{new} already exists")
            if old == INBOX:
                return self._rename_inbox(new)
            if new == old or new.startswith(old + SEP):
                raise InvalidFolderName("cannot rename a folder into itself")
            return self.store.db.run(account_sql.rename, self.id, old, new).addCallback(renamed)

        def renamed(result: tuple[dict[int, str], AccountState]) -> None:
            moved, state = result
            by_id = {i: n for n, (i, _u) in self._folders.items()}
            self._renamed = {by_id[i]: n for i, n in moved.items() if i in by_id}
            for f in self._live.values():
                if f.id in moved:
                    f.name = moved[f.id]
            self._adopt(state)

        return self._mutate(rename).addCallback(lambda _: None)

    def _rename_inbox(self, new: str) -> defer.Deferred:
        inbox_id = self._folders[INBOX][0]
        live = self._live.get(INBOX)
        since = live.synced if live is not None else 0
        decode = live.decode if live is not None else self._decode

        def done(result: tuple[AccountState, folder_sql.Delta]) -> None:
            state, delta = result
            if live is not None:
                live.apply_delta(delta)
            self._adopt(state)

        return self.store.db.run(account_sql.rename_inbox, self.id, inbox_id, new, since, decode).addCallback(done)

    # --- subscriptions -----------------------------------------------------------------------

    def subscriptions(self) -> list[str]:
        self._need_loaded()
        return list(self._subs)

    def subscribe(self, name: str) -> defer.Deferred:
        name = layout.canonical(name)
        return self._subscribe(name, True)

    def unsubscribe(self, name: str) -> defer.Deferred:
        try:
            name = layout.canonical(name)
        except InvalidFolderName:
            pass
        return self._subscribe(name, False)

    def _subscribe(self, name: str, on: bool) -> defer.Deferred:
        """Changed here at once (and the account listeners told), stored
        behind; the Deferred fires once it is stored."""
        if self._loaded and (name in self._subs) != on:
            if on:
                self._subs.append(name)
            else:
                self._subs.remove(name)
            self._account_listeners.tell(SubscriptionChanged(name, on))
        return self._mutate(lambda: self.store.db.run(account_sql.subscribe, self.id, name, on)
                            .addCallback(self._adopt))

    # --- delivery and POP3 ------------------------------------------------------------------

    def deliver(self, folder: str, source: Any, flags: Iterable[str] = ()) -> defer.Deferred:
        try:
            name = layout.canonical(folder)
            bits, keywords = split_flags(normalize_flags(flags))
        except StoreError:
            return defer.fail()
        spooled = self.store.spool(source)
        ready = self._ready()
        d = defer.gatherResults([spooled, ready], consumeErrors=True)
        d.addErrback(_first_error, spooled)
        d.addCallback(lambda r: self._deliver(name, NewMessage(r[0], bits, keywords, self.store.reactor.seconds())))
        return d

    def _deliver(self, name: str, item: NewMessage, ask: bool = True) -> defer.Deferred:
        live = self._live.get(name)
        if live is not None and not live.gone:
            return live.submit(item)
        quota = self.quota_check(name)
        meta = self._folders.get(name)
        if meta is None:
            if not ask:
                item.body.discard()
                return defer.fail(NoSuchFolder(f"no folder {name}"))
            return self.reload().addCallback(lambda _: self._deliver(name, item, False))
        fid = meta[0]
        if quota is not None:
            return self._store_batch(fid, [item], quota).addCallback(lambda uids: uids[0])
        batch = self._batches.get(fid)
        if batch is None:
            batch = self._batches[fid] = GroupCommit(lambda items: self._store_batch(fid, items))
        return batch.submit(item)

    def _store_batch(self, fid: int, items: list[NewMessage], quota: QuotaCheck | None = None) -> defer.Deferred:
        """Deliveries into a folder no session has open: no change feed to
        apply; account listeners are told itemised (and of any other
        process's change that came meanwhile, :mod:`.echoes`)."""
        self._own.started(fid)
        d = self.store.db.run(folder_sql.append, fid, items, self.store.blobs, None, self._decode, quota)

        def stored(result: tuple[list[int], Any]) -> list[int]:
            uids, where = result
            others = self._own.finished(fid, where.upto)
            name = next((n for n, (i, _u) in self._folders.items() if i == fid), None)
            if name is not None and self._account_listeners:
                self._account_listeners.tell(MessagesAdded(name, tuple(uids)))
            if others:
                self._tell_folder_changed(fid)
            return uids

        def failed(f: Any) -> Any:
            if self._own.finished(fid, None):
                self._tell_folder_changed(fid)
            return f

        d.addCallbacks(stored, failed)

        def cleanup(result: Any) -> Any:
            for it in items:
                it.body.discard()
            return result

        return d.addBoth(cleanup)

    # --- rights (issue 12; the checks are mailsrv.store.shared's) ------------------------------

    def acl_of(self, name: str) -> Acl | None:
        """The folder's ACL (None: none, the owner has every right), from memory."""
        self._need_loaded()
        acl = self._parsed_acls.get(name)
        if acl is None:
            text = self._acls.get(name)
            if text is None:
                return None
            acl = self._parsed_acls[name] = aclmod.parse(text)
        return Acl(list(acl.entries))

    def write_acl(self, name: str, acl: Acl | None) -> defer.Deferred:
        """Store the folder's ACL (None: drop it) and who it is shared with."""
        text = None if acl is None else aclmod.render(acl)

        def write() -> defer.Deferred:
            if name not in self._folders:
                return defer.succeed(None)  # gone meanwhile (DELETE drops its ACL with it)
            return self.store.db.run(account_sql.set_acl, self.id, self.user, name, text,
                                     not self.special).addCallback(self._adopt)

        return self._mutate(write).addCallback(lambda _: None)

    # --- quota ------------------------------------------------------------------------------

    def quota_check(self, folder: str) -> QuotaCheck | None:
        """What limits storing into ``folder`` (None: nothing does)."""
        rules = self.store.quota_rules(self.user)
        if rules is None or not rules.enforced or rules.ignored(folder) or self.id is None:
            return None
        octets, messages = rules.limits_for(folder)
        return QuotaCheck(self.id, self.user, octets, messages, [n for n in self._folders if rules.ignored(n)],
                          self.store.quota_tempfail)

    def quota(self) -> defer.Deferred:
        """The owner's QuotaRoot (usage summed from the folders' counters,
        never a scan), or None without limits."""
        rules = self.store.quota_rules(self.user)
        if rules is None or not rules.enforced:
            return defer.succeed(None)

        def root(_: Any) -> defer.Deferred:
            ignored = [n for n in self._folders if rules.ignored(n)]
            return self.store.db.run(folder_sql.usage, self.id, ignored).addCallback(made)

        def made(used: tuple[int, int]) -> QuotaRoot:
            res = []
            if rules.bytes:
                res.append(QuotaResource("STORAGE", used[0], rules.bytes))
            if rules.count:
                res.append(QuotaResource("MESSAGE", used[1], rules.count))
            return QuotaRoot(ROOT_NAME, tuple(res))

        return self._ready().addCallback(root)

    def _pop3_key(self) -> int:
        assert self.id is not None
        return POP3_LOCK_SPACE | self.id

    def acquire_pop3_lock(self) -> defer.Deferred:
        """Fires True if this session now holds the maildrop lock (held in
        the database, so it holds on every node), False if another has it."""
        if self._pop3_locked:
            return defer.succeed(False)
        self._pop3_locked = True

        def lock(_: Any) -> defer.Deferred:
            return self.store.db.in_thread(self.store.locks.try_lock, self._pop3_key())

        def done(got: Any) -> Any:
            if got is not True:
                self._pop3_locked = False
            return got

        return self._ready().addCallback(lock).addBoth(done)

    def release_pop3_lock(self) -> defer.Deferred:
        if not self._pop3_locked or self.id is None:
            self._pop3_locked = False
            return defer.succeed(None)
        key = self._pop3_key()

        def unlocked(result: Any) -> Any:
            self._pop3_locked = False
            return result

        return self.store.db.in_thread(self.store.locks.unlock, key).addBoth(unlocked)

    def close(self) -> defer.Deferred:
        for timer in self._idle_timers.values():
            if timer.active():
                timer.cancel()
        self._idle_timers.clear()
        return defer.succeed(None)


def _first_error(failure: Any, spooled: defer.Deferred) -> Any:
    """gatherResults wraps the first failure: unwrap it, and drop a body
    that was spooled for nothing."""
    def discard(body: Any) -> None:
        if hasattr(body, "discard"):
            body.discard()
    spooled.addCallback(discard)
    spooled.addErrback(lambda _: None)
    sub = getattr(failure.value, "subFailure", None)
    return sub if sub is not None else failure
