"""Rights (RFC 4314) and Dovecot's ``dovecot-acl`` files.

A folder's ACL is the ``dovecot-acl`` file in its directory, one entry per
line: ``<identifier> <rights>``, identifiers ``owner``, ``anyone``,
``authenticated``, ``user=<name>``, ``group=<name>`` (never matched here:
mailsrv has no groups), ``-`` before one for negative rights; rights as
Dovecot's letters (``lrwstipekxa``).  Dovecot's ``vfile`` ACL backend reads
the same file, so rights set through mailsrv hold for Dovecot and back.
Without the file the owner has every right and nobody else any (Dovecot's
default).

How entries combine is Dovecot's rule (``acl_object_rebuild_cache`` in its
``src/plugins/acl/acl-api.c``), not a plain union: the entries that match
the user are applied in the order of their kind - ``anyone``,
``authenticated``, groups, ``owner``, ``user=``, ``group-override=`` - and
each kind's positive rights *replace* what the earlier kinds gave (its
negative rights likewise replace the earlier negative ones); the result is
the positive rights less the negative ones.  The owner starts from every
right and skips the kinds before ``owner``, so ``anyone lr`` never narrows
the owner, while ``user=bob lr`` gives bob exactly ``lr`` even when
``anyone`` has more.

On the wire the virtual RFC 2086 rights follow Dovecot and RFC 4314 2.1.1:
``c`` in a command means ``kx`` and ``d`` means ``te``; a rights list sent
back (MYRIGHTS, ACL) carries ``c`` when it has ``k`` or ``x`` and ``d``
when it has ``t`` or ``e``.  Files never hold ``c`` or ``d`` (Dovecot's
parser refuses them).

Pure functions plus small file helpers; the per-user view that applies
them is :mod:`mailsrv.store.shared`.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass

from mailsrv.store.fsutil import atomic_write, unlink_quiet
from mailsrv.store.interfaces import RIGHTS, StoreError

ACL_FILE = "dovecot-acl"
OBSOLETE = {"c": "kx", "d": "te"}  # RFC 4314 2.1.1: RFC 2086's rights, as Dovecot maps them
SPECIAL = ("owner", "anyone", "authenticated")


class BadRights(ValueError):
    """Rights with a letter that is no RFC 4314 right, or an empty
    identifier: a malformed command (BAD)."""


class AclRefused(StoreError):
    """A well-formed ACL change the server does not make (an ``owner``
    entry on a public mailbox, which has no owner)."""

    code = "CANNOT"


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


# Dovecot's enum acl_id_type: the order in which matching entries apply
ANYONE, AUTHENTICATED, GROUP, OWNER, USER, GROUP_OVERRIDE = range(6)


def kind(identifier: str) -> int | None:
    """The kind of a file identifier (without its ``-``), None if unknown."""
    if identifier == "anyone":
        return ANYONE
    if identifier == "authenticated":
        return AUTHENTICATED
    if identifier == "owner":
        return OWNER
    if identifier.startswith("user="):
        return USER
    if identifier.startswith("group-override="):
        return GROUP_OVERRIDE
    if identifier.startswith("group="):
        return GROUP
    return None


def with_virtual(rights: str) -> str:
    """Rights as sent to a client: ``c`` and ``d`` added (RFC 4314 2.1.1)."""
    out = rights
    if "k" in rights or "x" in rights:
        out += "c"
    if "t" in rights or "e" in rights:
        out += "d"
    return out


def to_imap(identifier: str) -> str:
    """File identifier -> IMAP identifier (``user=bob`` -> ``bob``,
    ``group=staff`` -> ``$staff``, ``group-override=x`` -> ``!$x``: Dovecot's
    IMAP names)."""
    neg = identifier.startswith("-")
    ident = identifier[1:] if neg else identifier
    if ident.startswith("user="):
        ident = ident[5:]
    elif ident.startswith("group-override="):
        ident = "!$" + ident[15:]
    elif ident.startswith("group="):
        ident = "$" + ident[6:]
    return ("-" if neg else "") + ident


def to_file(identifier: str) -> str:
    """IMAP identifier -> file identifier (``bob`` -> ``user=bob``)."""
    neg = identifier.startswith("-")
    ident = identifier[1:] if neg else identifier
    if ident.startswith("!$"):
        ident = "group-override=" + ident[2:]
    elif ident.startswith("$"):
        ident = "group=" + ident[1:]
    elif ident not in SPECIAL and not ident.startswith(("user=", "group=", "group-override=")):
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
        """What ``user`` (None: anonymous) holds; ``owner``: the user owns
        the mailbox.  Dovecot's rule (see the module docstring)."""
        pos: set[str] = set(RIGHTS) if owner else set()
        neg: set[str] = set()
        by_kind: dict[int, tuple[set[str] | None, set[str] | None]] = {}
        for ident, rights in self.entries:
            negative = ident.startswith("-")
            base = ident[1:] if negative else ident
            k = kind(base)
            if k is None or (owner and k < OWNER) or not _matches(base, k, user, owner):
                continue
            p, n = by_kind.get(k, (None, None))
            if negative:
                n = (n or set()) | set(rights)
            else:
                p = (p or set()) | set(rights)
            by_kind[k] = (p, n)
        for k in sorted(by_kind):
            p, n = by_kind[k]
            if p is not None:
                pos = p
            if n is not None:
                neg = n
        return "".join(r for r in RIGHTS if r in pos and r not in neg)

    def listing(self, owner: str | None, add_default: bool) -> list[tuple[str, str]]:
        """GETACL's (identifier, rights) pairs, as Dovecot's imap-acl shows
        them: in its order (kind, then name), ``owner`` shown as the
        owner's user name unless a ``user=`` entry of that name exists too,
        and - ``add_default``, a personal mailbox - the owner's implicit
        every right when no entry gives the owner positive rights.  Rights
        carry the virtual ``c``/``d``."""
        rows: list[tuple[int, str, bool, str]] = []
        for ident, rights in self.entries:
            negative = ident.startswith("-")
            base = ident[1:] if negative else ident
            k = kind(base)
            if k is not None:
                rows.append((k, base, negative, rights))
        rows.sort(key=lambda r: (r[0], r[1], r[2]))
        bases = {r[1] for r in rows}
        convert = owner is not None and "user=" + owner not in bases
        out: list[tuple[str, str]] = []
        positive_owner = False
        for k, base, negative, rights in rows:
            is_owner = k == OWNER or (owner is not None and base == "user=" + owner)
            if is_owner and not negative:
                positive_owner = True
            name = owner if (k == OWNER and convert and owner is not None) else to_imap(base)
            out.append((("-" if negative else "") + name, with_virtual(rights)))
        if add_default and owner is not None and not positive_owner:
            out.append((owner if convert else "owner", with_virtual(RIGHTS)))
        return out


def _matches(base: str, k: int, user: str | None, owner: bool) -> bool:
    if k == ANYONE:
        return True
    if k == AUTHENTICATED:
        return user is not None
    if k == OWNER:
        return owner
    if k == USER:
        return user is not None and base[5:] == user
    return False  # groups: mailsrv users belong to none


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
