"""Rights (RFC 4314) and Dovecot's ``dovecot-acl`` files.

A folder's ACL is the ``dovecot-acl`` file in its directory, one entry per
line: ``<identifier> <rights>``, identifiers ``owner``, ``anyone``,
``authenticated``, ``user=<name>``, ``group=<name>`` (never matched here:
mailsrv has no groups), ``-`` before one for negative rights; rights as
Dovecot's letters (``lrwstipekxa``).  Dovecot's ``vfile`` ACL backend reads
the same file, so rights set through mailsrv hold for Dovecot and back.
Without the file the owner has every right and nobody else any (Dovecot's
default).  A user's rights are the union of every entry naming them, less
their negative entries.

Pure functions plus small file helpers; the per-user view that applies
them is :mod:`mailsrv.store.shared`.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass

from mailsrv.store.fsutil import atomic_write, unlink_quiet
from mailsrv.store.interfaces import RIGHTS

ACL_FILE = "dovecot-acl"
OBSOLETE = {"c": "k", "d": "xte"}  # RFC 4314 2.1.1: RFC 2086's rights
SPECIAL = ("owner", "anyone", "authenticated")


class BadRights(ValueError):
    """Rights with a letter that is no RFC 4314 right."""


def normalize(rights: str) -> str:
    """Rights as a string in RIGHTS order; obsolete c/d expanded."""
    got = set()
    for ch in rights:
        if ch in RIGHTS:
            got.add(ch)
        elif ch in OBSOLETE:
            got.update(OBSOLETE[ch])
        else:
            raise BadRights(f"unknown right {ch!r}")
    return "".join(r for r in RIGHTS if r in got)


def to_imap(identifier: str) -> str:
    """File identifier -> IMAP identifier (``user=bob`` -> ``bob``)."""
    neg = identifier.startswith("-")
    ident = identifier[1:] if neg else identifier
    if ident.startswith("user="):
        ident = ident[5:]
    return ("-" if neg else "") + ident


def to_file(identifier: str) -> str:
    """IMAP identifier -> file identifier (``bob`` -> ``user=bob``)."""
    neg = identifier.startswith("-")
    ident = identifier[1:] if neg else identifier
    if ident not in SPECIAL and not ident.startswith(("user=", "group=", "group-override=")):
        ident = "user=" + ident
    return ("-" if neg else "") + ident


@dataclass
class Acl:
    """An ACL: (file identifier, rights) in file order."""

    entries: list[tuple[str, str]]

    def get(self, identifier: str) -> str:
        for ident, rights in self.entries:
            if ident == identifier:
                return rights
        return ""

    def set(self, identifier: str, rights: str) -> None:
        """Replace (empty: remove) one identifier's rights."""
        rights = normalize(rights)
        for i, (ident, _) in enumerate(self.entries):
            if ident == identifier:
                if rights:
                    self.entries[i] = (ident, rights)
                else:
                    del self.entries[i]
                return
        if rights:
            self.entries.append((identifier, rights))

    def users(self) -> list[str]:
        """User names given positive rights (who it is shared with)."""
        return [i[5:] for i, r in self.entries if i.startswith("user=") and r]

    def rights_of(self, user: str | None, owner: bool) -> str:
        """What ``user`` (None: anonymous) holds."""
        pos: set[str] = set()
        neg: set[str] = set()
        names = {"anyone"}
        if user is not None:
            names.update(("authenticated", "user=" + user))
            if owner:
                names.add("owner")
        for ident, rights in self.entries:
            target = neg if ident.startswith("-") else pos
            if ident.lstrip("-") in names:
                target.update(rights)
        return "".join(r for r in RIGHTS if r in pos and r not in neg)


def parse(text: str) -> Acl:
    entries = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        ident, _, rights = line.partition(" ")
        rights = rights.strip().split(" ", 1)[0]  # Dovecot may add ":extended" rights after a space
        try:
            entries.append((ident, normalize(rights)))
        except BadRights:
            entries.append((ident, normalize("".join(c for c in rights if c in RIGHTS or c in OBSOLETE))))
    return Acl(entries)


def render(acl: Acl) -> str:
    return "".join(f"{ident} {rights}\n" for ident, rights in acl.entries)


def read(folder_dir: str) -> Acl | None:
    """The folder's ACL, or None when it has no dovecot-acl file."""
    try:
        with open(os.path.join(folder_dir, ACL_FILE), encoding="utf-8", errors="replace") as f:
            return parse(f.read())
    except (FileNotFoundError, NotADirectoryError):
        return None


def write(folder_dir: str, acl: Acl) -> None:
    """Replace the folder's dovecot-acl file atomically."""
    atomic_write(os.path.join(folder_dir, ACL_FILE), render(acl).encode("utf-8"), fsync=True)


def remove(folder_dir: str) -> None:
    unlink_quiet(os.path.join(folder_dir, ACL_FILE))


def default(owner_rights: str = RIGHTS) -> Acl:
    """What a folder without a file means, written out (Dovecot writes the
    owner's line when SETACL first creates the file)."""
    return Acl([("owner", owner_rights)])


def grants(pairs: Iterable[tuple[str, str]]) -> Acl:
    """An ACL from IMAP (identifier, rights) pairs."""
    acl = Acl([])
    for ident, rights in pairs:
        acl.set(to_file(ident), rights)
    return acl
