"""A user's view of the store (IUserView): own folders, other users'
shared folders under ``Shared/<owner>/``, public mailboxes under
``Public/``, every call checked against the user's rights (RFC 4314).

Backend-neutral: what it needs of a backend is :class:`ShareBackend` (raw
accounts, ACLs, who shares with whom, private \\Seen sets).  The Maildir
backend is :class:`mailsrv.store.sharedfiles.MaildirShares`; the test fake
store has an in-memory one.  Kept apart from the IMAP layer's NAMESPACE and
LIST code: the names here are store names, the wire form is the IMAP
layer's business.

ACL reads are small synchronous file reads (like subscriptions); ACL and
\\Seen writes go through the backend's Deferreds.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Protocol

from twisted.internet import defer
from zope.interface import implementer

from mailsrv.store.acl import Acl, AclRefused, BadRights, default, normalize, to_file
from mailsrv.store.interfaces import (
    OTHER_USERS_PREFIX,
    PUBLIC_PREFIX,
    RIGHTS,
    InvalidFolderName,
    IUserView,
    NoPermission,
    NoSuchFolder,
    QuotaRoot,
)
from mailsrv.store.rightsfolder import PrivateSeen, RightsFolder

DELIM = "/"


class ShareBackend(Protocol):
    """What a store backend supplies to user views."""

    def owner_account(self, user: str) -> Any:
        """The raw IAccount of an existing user, or None."""

    def public_account(self) -> Any:
        """The raw IAccount holding public mailboxes, or None."""

    def read_acl(self, account: Any, folder: str) -> Acl | None:
        """The folder's ACL (None: no ACL: the owner has every right)."""

    def write_acl(self, account: Any, folder: str, acl: Acl | None) -> defer.Deferred[None]:
        """Store the folder's ACL (None: remove it) and update who it is shared with."""

    def sharers(self, user: str | None) -> list[str]:
        """Owners who share at least one folder with ``user`` (or with anyone)."""

    def private_seen(self, user: str, folder: Any) -> defer.Deferred[PrivateSeen]:
        """The user's \\Seen set of a public mailbox (one object per user and mailbox)."""


@dataclass
class Target:
    """Where a name of the user's view points."""

    account: Any
    folder: str
    kind: str  # "own", "shared", "public"
    owner: str | None
    display: str


@implementer(IUserView)
class UserView:
    """See IUserView.  ``user`` None is an anonymous poster."""

    def __init__(self, backend: ShareBackend, user: str | None, own: Any = None) -> None:
        """``own``: the user's raw account (made on first use by the store)."""
        self.backend = backend
        self.user = user or ""
        self._user = user
        self.own = own

    # -- names and rights
    def _resolve(self, name: str) -> Target:
        if name.startswith(OTHER_USERS_PREFIX):
            owner, _, folder = name[len(OTHER_USERS_PREFIX):].partition(DELIM)
            acct = self.backend.owner_account(owner) if owner and folder and owner != self._user else None
            if acct is None:
                raise NoSuchFolder(f"no folder {name}")
            return Target(acct, folder, "shared", owner, name)
        if name.startswith(PUBLIC_PREFIX):
            acct = self.backend.public_account()
            folder = name[len(PUBLIC_PREFIX):]
            if acct is None or not folder or folder.upper() == "INBOX":
                raise NoSuchFolder(f"no folder {name}")
            return Target(acct, folder, "public", None, name)
        if self.own is None:
            raise NoSuchFolder(f"no folder {name}")
        return Target(self.own, name, "own", self._user, name)

    def _rights(self, t: Target) -> str:
        acl = self.backend.read_acl(t.account, t.folder)
        if t.kind == "own":
            return RIGHTS if acl is None else acl.rights_of(self._user, owner=True)
        return "" if acl is None else acl.rights_of(self._user, owner=False)

    def _checked(self, name: str, right: str | None = None, what: str = "") -> tuple[Target, str]:
        """The target and the user's rights on it: NoSuchFolder when it does
        not exist or the user may not know it does, NoPermission when the
        needed right is missing."""
        t = self._resolve(name)
        if not t.account.folder_exists(t.folder):
            raise NoSuchFolder(f"no folder {name}")
        rights = self._rights(t)
        if not rights or ("l" not in rights and "r" not in rights and (right is None or right not in rights)):
            raise NoSuchFolder(f"no folder {name}")
        if right is not None and right not in rights:
            raise NoPermission(f"Permission denied: {what or 'this'} needs the '{right}' right on {name}")
        return t, rights

    def _parent_may_create(self, t: Target) -> None:
        """CREATE/RENAME target: ``k`` on the parent (always at the top of
        the personal namespace)."""
        parent, sep, _ = t.folder.rpartition(DELIM)
        if not sep:
            if t.kind == "own":
                return
            raise NoPermission(f"Permission denied: cannot create {t.display}")
        prefix = t.display[: len(t.display) - len(t.folder)]
        if not t.account.folder_exists(parent):
            if t.kind == "own":
                return
            raise NoPermission(f"Permission denied: {prefix + parent} does not exist")
        self._checked(prefix + parent, "k", "creating a mailbox")

    def _wrap(self, t: Target, folder: Any, rights: str) -> defer.Deferred[Any]:
        if t.kind == "own" and rights == RIGHTS:
            return defer.succeed(folder)  # the owner with every right: the live object itself
        if t.kind == "public" and self._user is not None:
            return self.backend.private_seen(self._user, folder).addCallback(
                lambda seen: RightsFolder(folder, t.display, rights, seen))
        return defer.succeed(RightsFolder(folder, t.display, rights))

    # -- IAccount
    def list_folders(self) -> list[str]:
        out: list[str] = []
        if self.own is not None:
            out += [n for n in self.own.list_folders() if "l" in self._rights(Target(self.own, n, "own", None, n))]
        for owner in self.backend.sharers(self._user):
            acct = self.backend.owner_account(owner)
            if acct is None or owner == self._user:
                continue
            for n in acct.list_folders():
                acl = self.backend.read_acl(acct, n)
                if acl is not None and "l" in acl.rights_of(self._user, owner=False):
                    out.append(f"{OTHER_USERS_PREFIX}{owner}{DELIM}{n}")
        public = self.backend.public_account()
        if public is not None:
            for n in public.list_folders():
                acl = self.backend.read_acl(public, n) if n != "INBOX" else None
                if acl is not None and "l" in acl.rights_of(self._user, owner=False):
                    out.append(PUBLIC_PREFIX + n)
        return out

    def folder_exists(self, name: str) -> bool:
        try:
            self._checked(name)
        except (NoSuchFolder, InvalidFolderName):
            return False
        return True

    def special_use(self, name: str) -> str | None:
        if self.own is None or name.startswith((OTHER_USERS_PREFIX, PUBLIC_PREFIX)):
            return None
        result: str | None = self.own.special_use(name)
        return result

    def open_folder(self, name: str) -> defer.Deferred[Any]:
        try:
            t, rights = self._checked(name)
        except (NoSuchFolder, NoPermission):
            return defer.fail()
        return t.account.open_folder(t.folder).addCallback(lambda f: self._wrap(t, f, rights))

    def create_folder(self, name: str) -> defer.Deferred[None]:
        try:
            t = self._resolve(name.rstrip(DELIM))
            self._parent_may_create(t)
        except (NoSuchFolder, NoPermission):
            return defer.fail()
        parent = t.folder.rpartition(DELIM)[0]
        inherited = self.backend.read_acl(t.account, parent) if parent else None

        def copy_acl(_: object) -> defer.Deferred[None] | None:
            if inherited is None:
                return None
            return self.backend.write_acl(t.account, t.folder, inherited)

        d: defer.Deferred[None] = t.account.create_folder(t.folder)
        return d.addCallback(copy_acl)

    def delete_folder(self, name: str) -> defer.Deferred[None]:
        try:
            t, _ = self._checked(name, "x", "deleting a mailbox")
        except (NoSuchFolder, NoPermission):
            return defer.fail()
        had_acl = self.backend.read_acl(t.account, t.folder) is not None
        d: defer.Deferred[None] = t.account.delete_folder(t.folder)
        if had_acl:
            d.addCallback(lambda _: self.backend.write_acl(t.account, t.folder, None))
        return d

    def rename_folder(self, old: str, new: str) -> defer.Deferred[None]:
        try:
            src, _ = self._checked(old, "x", "renaming a mailbox")
            dst = self._resolve(new)
            if dst.account is not src.account:
                raise NoPermission("Permission denied: cannot rename into another owner's mailboxes")
            self._parent_may_create(dst)
        except (NoSuchFolder, NoPermission):
            return defer.fail()
        d: defer.Deferred[None] = src.account.rename_folder(src.folder, dst.folder)
        return d.addCallback(lambda _: self._acls_moved(dst))

    def _acls_moved(self, dst: Target) -> defer.Deferred[None] | None:
        """The ACLs went along with a RENAME (RFC 4314: it SHOULD NOT change
        them); written again under their new names so the backend's index
        of who shares what (and Dovecot's) follows."""
        names = [dst.folder] + [n for n in dst.account.list_folders() if n.startswith(dst.folder + DELIM)]
        for name in names:
            acl = self.backend.read_acl(dst.account, name)
            if acl is not None:
                return self.backend.write_acl(dst.account, name, acl)
        return None

    def subscriptions(self) -> list[str]:
        return list(self.own.subscriptions()) if self.own is not None else []

    def subscribe(self, name: str) -> defer.Deferred[None] | None:
        if self.own is not None:
            return self.own.subscribe(name)  # a Deferred where the store is remote
        return None

    def unsubscribe(self, name: str) -> defer.Deferred[None] | None:
        if self.own is not None:
            return self.own.unsubscribe(name)
        return None

    def deliver(self, folder: str, source: Any, flags: Iterable[str] = ()) -> defer.Deferred[int]:
        try:
            t, _ = self._checked(folder, "p", "delivering")
        except (NoSuchFolder, NoPermission):
            return defer.fail()
        d: defer.Deferred[int] = t.account.deliver(t.folder, source, flags)
        return d

    def acquire_pop3_lock(self) -> defer.Deferred[bool]:
        if self.own is None:
            return defer.succeed(False)
        d: defer.Deferred[bool] = self.own.acquire_pop3_lock()
        return d

    def release_pop3_lock(self) -> defer.Deferred[None]:
        if self.own is None:
            return defer.succeed(None)
        d: defer.Deferred[None] = self.own.release_pop3_lock()
        return d

    # -- account events (NOTIFY) and special use (issue 12): the user's own folders
    def add_account_listener(self, listener: Any) -> None:
        if self.own is not None:
            self.own.add_account_listener(listener)

    def remove_account_listener(self, listener: Any) -> None:
        if self.own is not None:
            self.own.remove_account_listener(listener)

    def poll_folders(self, names: Iterable[str]) -> defer.Deferred[None]:
        own = [n for n in names if not n.startswith((OTHER_USERS_PREFIX, PUBLIC_PREFIX))]
        if self.own is None or not own:
            return defer.succeed(None)
        d: defer.Deferred[None] = self.own.poll_folders(own)
        return d

    def set_special_use(self, name: str, use: str | None) -> None:
        if self.own is None or name.startswith((OTHER_USERS_PREFIX, PUBLIC_PREFIX)):
            raise NoPermission(f"Permission denied: special use of {name}")
        self.own.set_special_use(name, use)

    def quota(self) -> defer.Deferred[QuotaRoot | None]:
        if self.own is None:
            return defer.succeed(None)
        d: defer.Deferred[QuotaRoot | None] = self.own.quota()
        return d

    # -- IUserView: namespaces and rights
    def namespaces(self) -> tuple[list[tuple[str, str]], list[tuple[str, str]], list[tuple[str, str]]]:
        personal = [("", DELIM)] if self.own is not None else []
        public = [(PUBLIC_PREFIX, DELIM)] if self.backend.public_account() is not None else []
        return personal, [(OTHER_USERS_PREFIX, DELIM)], public

    def my_rights(self, name: str) -> defer.Deferred[str]:
        try:
            t = self._resolve(name)
            rights = self._rights(t) if t.account.folder_exists(t.folder) else ""
        except NoSuchFolder:
            return defer.fail()
        if rights in ("", "p"):
            # the post right alone does not reveal that a mailbox exists (Dovecot)
            return defer.fail(NoSuchFolder(f"no folder {name}"))
        return defer.succeed(rights)

    def _acl_of(self, t: Target) -> Acl:
        acl = self.backend.read_acl(t.account, t.folder)
        return Acl(list(acl.entries)) if acl is not None else default() if t.kind == "own" else Acl([])

    def get_acl(self, name: str) -> defer.Deferred[list[tuple[str, str]]]:
        try:
            t, _ = self._checked(name, "a", "GETACL")
        except (NoSuchFolder, NoPermission):
            return defer.fail()
        acl = self.backend.read_acl(t.account, t.folder) or Acl([])
        return defer.succeed(acl.listing(t.owner if t.kind != "public" else None, add_default=t.kind == "own"))

    def set_acl(self, name: str, identifier: str, rights: str) -> defer.Deferred[None]:
        try:
            t, _ = self._checked(name, "a", "SETACL")
            ident = self._identifier(t, identifier)
            mode = rights[:1] if rights[:1] in ("+", "-") else ""
            letters = set(normalize(rights[1:] if mode else rights))
        except (NoSuchFolder, NoPermission, BadRights, AclRefused):
            return defer.fail()
        acl = self._acl_of(t)
        if t.kind == "own" and (ident == "owner" or ident == f"user={self.user}"):
            mode, letters = self._keep_admin(acl, ident, mode, letters)
        current = set(acl.get(ident))
        new = current | letters if mode == "+" else current - letters if mode == "-" else letters
        acl.set(ident, "".join(new))
        return self.backend.write_acl(t.account, t.folder, acl)

    def _identifier(self, t: Target, identifier: str) -> str:
        """The file identifier of an IMAP one, refused as Dovecot does."""
        if identifier in ("", "-"):
            raise BadRights("empty identifier")
        ident = to_file(identifier)
        if t.kind == "public" and ident.lstrip("-") == "owner":
            raise AclRefused("Public mailboxes have no owner")
        return ident

    def _keep_admin(self, acl: Acl, ident: str, mode: str, letters: set[str]) -> tuple[str, set[str]]:
        """A user never takes the admin right on their own mailbox from
        themselves (Dovecot's imap_acl_update_ensure_keep_admins): a
        replacement keeps ``a``, a removal leaves it, and an addition to an
        entry not yet there starts from the rights the user holds (Dovecot
        starts from the implicit ones when no entry names the owner; the
        rights held are the same then, and stay right when the file has an
        ``owner`` line, which Dovecot would turn into the added letters
        alone, losing ``a``)."""
        if mode == "":
            return mode, letters | {"a"}
        if mode == "-":
            return mode, letters - {"a"}
        if acl.get(ident):
            return mode, letters
        return "", letters | set(acl.rights_of(self._user, owner=True))

    def delete_acl(self, name: str, identifier: str) -> defer.Deferred[None]:
        try:
            t, _ = self._checked(name, "a", "DELETEACL")
            ident = self._identifier(t, identifier)
        except (NoSuchFolder, NoPermission, BadRights, AclRefused):
            return defer.fail()
        acl = self._acl_of(t)
        acl.set(ident, "")
        return self.backend.write_acl(t.account, t.folder, acl)

    def list_rights(self, name: str, identifier: str) -> defer.Deferred[tuple[str, list[str]]]:
        try:
            t, _ = self._checked(name, "a", "LISTRIGHTS")
            self._identifier(t, identifier)
        except (NoSuchFolder, NoPermission, BadRights, AclRefused):
            return defer.fail()
        # nothing is granted for sure (a negative entry can take any right),
        # each right on its own; c and d as RFC 4314 2.1.1 asks (Dovecot's answer)
        return defer.succeed(("", [*RIGHTS, "c", "d"]))

    def quota_roots(self, name: str) -> defer.Deferred[list[QuotaRoot]]:
        try:
            t, _ = self._checked(name)
        except (NoSuchFolder, NoPermission):
            return defer.fail()
        if t.kind != "own":
            return defer.succeed([])
        d: defer.Deferred[Any] = t.account.quota()
        return d.addCallback(lambda root: [root] if root is not None else [])

    def get_quota(self, root: str) -> defer.Deferred[QuotaRoot]:
        def pick(q: QuotaRoot | None) -> QuotaRoot:
            if q is None or q.name != root:
                raise NoSuchFolder(f"no quota root {root}")
            return q

        return self.quota().addCallback(pick)
