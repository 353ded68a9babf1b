"""The Maildir store's :class:`~mailsrv.store.shared.ShareBackend`: ACLs in
``dovecot-acl`` files, who shares with whom in Dovecot's ``acl_shared_dict``
file format, public mailboxes in their own Maildir++ root, private \\Seen
sets in the user's Maildir.

- ``DATA/shared-mailboxes``: Dovecot's ``file:`` dict, alternating key and
  value lines, keys ``shared/shared-boxes/user/<to>/<from>`` and
  ``shared/shared-boxes/anyone/<from>`` (value ``1``): point Dovecot's
  ``acl_shared_dict = file:DATA/shared-mailboxes`` at it and Dovecot lists
  the same shared mailboxes.  Rebuilt for an owner whenever one of their
  ACLs changes.
- ``DATA/.public/Maildir``: the public namespace's Maildir++ root
  (``.info/`` is ``Public/info``); the leading dot keeps it from ever being
  a user's directory.  Dovecot: ``namespace { type = public; prefix =
  Public/; location = maildir:DATA/.public/Maildir }``.
- ``DATA/<user>/Maildir/mailsrv-seen.<folder>``: the user's \\Seen UIDs of
  a public mailbox (``V<uidvalidity>`` then runs ``1-5,9``).  Dovecot keeps
  these in its binary private index instead, which mailsrv does not write.
- ``dovecot-acl-list`` in a Maildir root: Dovecot's own list of the
  mailboxes there that others may look up, which it trusts until the
  file changes.  mailsrv removes it whenever it changes an ACL in that
  root, and Dovecot rebuilds it on next use (otherwise a folder shared
  through mailsrv would stay missing from Dovecot's other-users LIST).
"""

from __future__ import annotations

import os
import threading
from typing import Any

from twisted.internet import defer, threads

from mailsrv import ranges
from mailsrv.store import acl as aclmod
from mailsrv.store import layout
from mailsrv.store.acl import Acl
from mailsrv.store.fsutil import atomic_write, unlink_quiet
from mailsrv.store.interfaces import InvalidFolderName
from mailsrv.store.rightsfolder import PrivateSeen

SHARED_DICT = "shared-mailboxes"
PUBLIC_DIR = ".public"
SEEN_PREFIX = "mailsrv-seen."
DOVECOT_ACL_LIST = "dovecot-acl-list"
_KEY_USER = "shared/shared-boxes/user/"
_KEY_ANYONE = "shared/shared-boxes/anyone/"


def public_root(data_dir: str) -> str:
    return os.path.join(data_dir, PUBLIC_DIR, layout.MAILDIR)


def acl_changed(root: str) -> None:
    """An ACL under this Maildir root changed: drop Dovecot's list of the
    root's shared mailboxes so Dovecot rebuilds it (module docstring)."""
    unlink_quiet(os.path.join(root, DOVECOT_ACL_LIST))


def read_dict(path: str) -> dict[str, str]:
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            lines = f.read().split("\n")
    except FileNotFoundError:
        return {}
    return {lines[i]: lines[i + 1] for i in range(0, len(lines) - 1, 2) if lines[i]}


def write_dict(path: str, entries: dict[str, str]) -> None:
    atomic_write(path, "".join(f"{k}\n{v}\n" for k, v in sorted(entries.items())).encode("utf-8"))


class MaildirShares:
    """See the module docstring; ``store`` is the Maildir Store."""

    def __init__(self, store: Any) -> None:
        self.store = store
        self.data_dir = store.data_dir
        self.dict_path = os.path.join(self.data_dir, SHARED_DICT)
        self._lock = threading.Lock()
        self._seen: dict[tuple[str, str], defer.Deferred[PrivateSeen]] = {}
        self._dict_cache: tuple[tuple[int, int], dict[str, str]] | None = None

    # -- accounts
    def owner_account(self, user: str) -> Any:
        if not layout.user_exists_dir(self.data_dir, user):
            return None
        return self.store.account(user)

    def public_account(self) -> Any:
        if not os.path.isdir(public_root(self.data_dir)):
            return None
        return self.store.public_account()

    # -- ACLs
    @staticmethod
    def _dir(account: Any, folder: str) -> str | None:
        try:
            return layout.folder_path(account.root, layout.canonical(folder))
        except InvalidFolderName:
            return None

    def read_acl(self, account: Any, folder: str) -> Acl | None:
        path = self._dir(account, folder)
        return aclmod.read(path) if path is not None else None

    def write_acl(self, account: Any, folder: str, acl: Acl | None) -> defer.Deferred[None]:
        path = self._dir(account, folder)

        def work() -> None:
            if path is not None and os.path.isdir(path):
                if acl is None:
                    aclmod.remove(path)
                else:
                    aclmod.write(path, acl)
                acl_changed(account.root)
            if account.root != public_root(self.data_dir):
                self.update_index(account.user, account.root)

        return threads.deferToThread(work)

    def update_index(self, owner: str, root: str) -> None:
        """Rewrite the owner's entries of the shared dict from their ACLs."""
        users: set[str] = set()
        anyone = False
        for name in layout.list_folder_names(root):
            a = aclmod.read(layout.folder_path(root, name))
            if a is None:
                continue
            for ident, rights in a.entries:
                if "l" not in rights or ident.startswith("-"):
                    continue
                if ident.startswith("user="):
                    users.add(ident[5:])
                elif ident in ("anyone", "authenticated"):
                    anyone = True
        with self._lock:
            entries = read_dict(self.dict_path)
            entries = {k: v for k, v in entries.items()
                       if not (k.startswith((_KEY_USER, _KEY_ANYONE)) and k.rsplit("/", 1)[-1] == owner)}
            for u in users - {owner}:
                entries[f"{_KEY_USER}{u}/{owner}"] = "1"
            if anyone:
                entries[f"{_KEY_ANYONE}{owner}"] = "1"
            write_dict(self.dict_path, entries)
            self._dict_cache = None

    def _entries(self) -> dict[str, str]:
        try:
            st = os.stat(self.dict_path)
        except FileNotFoundError:
            return {}
        ident = (st.st_ino, st.st_mtime_ns)
        if self._dict_cache is None or self._dict_cache[0] != ident:
            self._dict_cache = (ident, read_dict(self.dict_path))
        return self._dict_cache[1]

    def sharers(self, user: str | None) -> list[str]:
        out = set()
        for key in self._entries():
            if key.startswith(_KEY_ANYONE):
                out.add(key[len(_KEY_ANYONE):])
            elif user is not None and key.startswith(f"{_KEY_USER}{user}/"):
                out.add(key[len(_KEY_USER) + len(user) + 1:])
        return sorted(out)

    # -- private \Seen
    def private_seen(self, user: str, folder: Any) -> defer.Deferred[PrivateSeen]:
        key = (user, folder.name)
        d = self._seen.get(key)
        if d is None:
            path = os.path.join(layout.maildir_root(self.data_dir, user),
                                SEEN_PREFIX + layout.encode_name(folder.name))

            def save(uidvalidity: int, seen: set[int]) -> defer.Deferred[None]:
                text = f"V{uidvalidity}\n{ranges.render(sorted(seen), sep='-')}\n"
                return threads.deferToThread(atomic_write, path, text.encode("ascii"), False)

            def load() -> PrivateSeen:
                return PrivateSeen(*_read_seen(path), save=save)

            d = self._seen[key] = threads.deferToThread(load)
        out: defer.Deferred[PrivateSeen] = defer.Deferred()

        def give(ps: PrivateSeen) -> PrivateSeen:
            out.callback(ps)
            return ps

        d.addCallback(give)
        return out


def _read_seen(path: str) -> tuple[int, set[int]]:
    try:
        with open(path, encoding="ascii", errors="replace") as f:
            head, _, body = f.read().partition("\n")
    except FileNotFoundError:
        return 0, set()
    seen: set[int] = set()
    try:
        validity = int(head[1:]) if head.startswith("V") else 0
        for part in body.strip().split(","):
            if part:
                a, _, b = part.partition("-")
                seen.update(range(int(a), int(b or a) + 1))
    except ValueError:
        return 0, set()
    return validity, seen
