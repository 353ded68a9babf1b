"""The SQL of an account: its row, folder list and subscriptions, and the
folder-level operations (create, delete, rename).  Like
:mod:`.folder_sql`, every function runs in a pool thread inside one
transaction; the live account (:mod:`.account`) applies the result.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from psycopg import errors as pgerrors

from mailsrv.store.interfaces import FolderExists, NoSuchFolder
from mailsrv.store.layout import DEFAULT_FOLDERS, INBOX, SEP
from mailsrv.store.pg import folder_sql
from mailsrv.store.pg.message import FlagDecoder


@dataclass
class AccountState:
    id: int
    folders: dict[str, tuple[int, str | None]]  # name -> (folder id, special-use)
    subscriptions: list[str]
    acls: dict[str, str] = field(default_factory=dict)  # name -> dovecot-acl text, for folders that have one
    fields: dict[str, str] = field(default_factory=dict)  # the user's extra fields (userdb_quota_rule...)


def _children_clause() -> str:
    return "(name = %(name)s OR starts_with(name, %(prefix)s))"


def load(conn: Any, user: str, create: bool = True, defaults: bool = True) -> AccountState | None:
    """The account (made on first use with INBOX and, with ``defaults``,
    the default folders, subscribed, as the Maildir backend does); None if
    absent and not ``create``."""
    row = conn.execute("SELECT id FROM accounts WHERE name = %s", (user,)).fetchone()
    if row is None and create:
        row = conn.execute("INSERT INTO accounts (name) VALUES (%s) ON CONFLICT (name) DO NOTHING RETURNING id",
                           (user,)).fetchone()
        if row is not None and defaults:
            _populate(conn, int(row[0]))
        else:
            row = conn.execute("SELECT id FROM accounts WHERE name = %s", (user,)).fetchone()
    if row is None:
        return None
    aid = int(row[0])
    return read(conn, aid)


def read(conn: Any, aid: int) -> AccountState:
    folders: dict[str, tuple[int, str | None]] = {}
    acls: dict[str, str] = {}
    for name, fid, use, acl in conn.execute("SELECT name, id, special_use, acl FROM folders WHERE account_id = %s",
                                            (aid,)):
        folders[name] = (int(fid), use)
        if acl is not None:
            acls[name] = acl
    if INBOX not in folders:
        row = conn.execute("INSERT INTO folders (account_id, name) VALUES (%s, %s) ON CONFLICT DO NOTHING "
                           "RETURNING id", (aid, INBOX)).fetchone()
        if row is None:
            row = conn.execute("SELECT id FROM folders WHERE account_id = %s AND name = %s", (aid, INBOX)).fetchone()
        folders[INBOX] = (int(row[0]), None)
    subs = [r[0] for r in conn.execute("SELECT name FROM subscriptions WHERE account_id = %s ORDER BY name", (aid,))]
    row = conn.execute("SELECT u.fields FROM users u JOIN accounts a ON a.name = u.name WHERE a.id = %s",
                       (aid,)).fetchone()
    fields = {str(k): str(v) for k, v in (row[0] or {}).items()} if row is not None else {}
    return AccountState(aid, folders, subs, acls, fields)


def _populate(conn: Any, aid: int) -> None:
    conn.execute("INSERT INTO folders (account_id, name) VALUES (%s, %s)", (aid, INBOX))
    for name, use in DEFAULT_FOLDERS.items():
        conn.execute("INSERT INTO folders (account_id, name, special_use) VALUES (%s, %s, %s)", (aid, name, use))
        conn.execute("INSERT INTO subscriptions (account_id, name) VALUES (%s, %s)", (aid, name))


def parents_of(name: str) -> list[str]:
    parts = name.split(SEP)
    return [SEP.join(parts[:i]) for i in range(1, len(parts)) if SEP.join(parts[:i]) != INBOX]


def _insert_folder(conn: Any, aid: int, name: str) -> int | None:
    row = conn.execute("INSERT INTO folders (account_id, name, special_use) VALUES (%s, %s, %s) "
                       "ON CONFLICT (account_id, name) DO NOTHING RETURNING id",
                       (aid, name, DEFAULT_FOLDERS.get(name))).fetchone()
    return None if row is None else int(row[0])


def create(conn: Any, aid: int, name: str) -> AccountState:
    """Create ``name`` and any missing parents; FolderExists if it is there."""
    for parent in parents_of(name):
        _insert_folder(conn, aid, parent)
    if _insert_folder(conn, aid, name) is None:
        raise FolderExists(f"{name} already exists")
    return read(conn, aid)


def delete(conn: Any, aid: int, name: str) -> tuple[int, list[int], AccountState]:
    """Delete a folder and its messages; its inferiors stay (RFC 3501
    6.3.4, as Dovecot's Maildir++: the name lives on only as their
    parent).  Returns its id, the blobs its messages used (to collect)
    and the account's new state."""
    row = conn.execute("SELECT id FROM folders WHERE account_id = %s AND name = %s FOR UPDATE",
                       (aid, name)).fetchone()
    if row is None:
        raise NoSuchFolder(f"no folder {name}")
    fid = int(row[0])
    blobs = [int(r[0]) for r in conn.execute("SELECT DISTINCT blob_id FROM messages WHERE folder_id = %s", (fid,))]
    conn.execute("DELETE FROM folders WHERE id = %s", (fid,))
    return fid, blobs, read(conn, aid)


def rename(conn: Any, aid: int, old: str, new: str) -> tuple[dict[int, str], AccountState]:
    """Rename a folder with its inferiors (and their subscriptions);
    returns {folder id: new name} and the new state."""
    params = {"aid": aid, "name": old, "prefix": old + SEP}
    rows = conn.execute("SELECT id, name FROM folders WHERE account_id = %(aid)s AND " + _children_clause()
                        + " ORDER BY name FOR UPDATE", params).fetchall()
    if not any(r[1] == old for r in rows):
        raise NoSuchFolder(f"no folder {old}")
    for parent in parents_of(new):
        _insert_folder(conn, aid, parent)
    moved = {int(r[0]): new + r[1][len(old):] for r in rows}
    try:
        with conn.transaction():
            conn.execute("UPDATE folders SET name = t.n FROM unnest(%s::bigint[], %s::text[]) AS t(i, n) "
                         "WHERE folders.id = t.i", (list(moved), list(moved.values())))
    except pgerrors.UniqueViolation:
        raise FolderExists(f"{new} (or one of its subfolders) already exists") from None
    subs = [r[0] for r in conn.execute("DELETE FROM subscriptions WHERE account_id = %(aid)s AND "
                                       + _children_clause() + " RETURNING name", params)]
    for s in subs:
        conn.execute("INSERT INTO subscriptions (account_id, name) VALUES (%s, %s) ON CONFLICT DO NOTHING",
                     (aid, new + s[len(old):]))
    return moved, read(conn, aid)


def rename_inbox(conn: Any, aid: int, inbox: int, new: str, since: int,
                 decode: FlagDecoder) -> tuple[AccountState, folder_sql.Delta]:
    """RFC 3501 RENAME INBOX: its messages move to a new folder ``new``
    (UIDs 1..n there); INBOX stays, empty, its UIDs never reused."""
    for parent in parents_of(new):
        _insert_folder(conn, aid, parent)
    target = _insert_folder(conn, aid, new)
    if target is None:
        raise FolderExists(f"{new} already exists")
    st = folder_sql.lock_folder(conn, inbox)
    uids = [int(r[0]) for r in conn.execute("SELECT uid FROM messages WHERE folder_id = %s ORDER BY uid", (inbox,))]
    if uids:
        new_uids = list(range(1, len(uids) + 1))
        conn.execute(
            "INSERT INTO messages (folder_id, uid, blob_id, flags, keywords, internaldate, size, modseq, saved) "
            "SELECT %s, t.n, m.blob_id, m.flags, m.keywords, m.internaldate, m.size, 2, extract(epoch FROM now()) "
            "FROM unnest(%s::bigint[], %s::bigint[]) AS t(o, n) JOIN messages m ON m.folder_id = %s AND m.uid = t.o",
            (target, uids, new_uids, inbox))
        conn.execute("UPDATE folders SET uidnext = %s, highestmodseq = 2, keywords = %s::text[], "
                     "storage = (SELECT coalesce(sum(size), 0) FROM messages WHERE folder_id = %s), messages = %s "
                     "WHERE id = %s", (len(uids) + 1, st.keywords, target, len(uids), target))
        folder_sql.expunge(conn, inbox, uids, since, decode)
    return read(conn, aid), folder_sql.delta(conn, inbox, since, decode, fresh=False)


def set_special_use(conn: Any, aid: int, name: str, use: str | None) -> None:
    conn.execute("UPDATE folders SET special_use = %s WHERE account_id = %s AND name = %s", (use, aid, name))


def subscribe(conn: Any, aid: int, name: str, on: bool) -> AccountState:
    if on:
        conn.execute("INSERT INTO subscriptions (account_id, name) VALUES (%s, %s) ON CONFLICT DO NOTHING",
                     (aid, name))
    else:
        conn.execute("DELETE FROM subscriptions WHERE account_id = %s AND name = %s", (aid, name))
    return read(conn, aid)


def folder_id(conn: Any, aid: int, name: str) -> int | None:
    row = conn.execute("SELECT id FROM folders WHERE account_id = %s AND name = %s", (aid, name)).fetchone()
    return None if row is None else int(row[0])


def account_id(conn: Any, user: str) -> int | None:
    row = conn.execute("SELECT id FROM accounts WHERE name = %s", (user,)).fetchone()
    return None if row is None else int(row[0])


def delete_account(conn: Any, user: str) -> list[int]:
    """Remove an account with all its folders; returns the blobs to collect."""
    row = conn.execute("SELECT id FROM accounts WHERE name = %s", (user,)).fetchone()
    if row is None:
        return []
    aid = int(row[0])
    blobs = [int(r[0]) for r in conn.execute(
        "SELECT DISTINCT m.blob_id FROM messages m JOIN folders f ON f.id = m.folder_id WHERE f.account_id = %s",
        (aid,))]
    conn.execute("DELETE FROM accounts WHERE id = %s", (aid,))
    return blobs


def names(conn: Any) -> Sequence[str]:
    return [r[0] for r in conn.execute("SELECT name FROM accounts ORDER BY name")]


# --- rights and sharing (issue 12) --------------------------------------------------------------

ANYONE = "*"  # the grantee of a folder shared with anyone (or any authenticated user)


def set_acl(conn: Any, aid: int, owner: str, name: str, text: str | None, track: bool) -> AccountState:
    """Store a folder's ACL (None: drop it); with ``track``, renew who the
    owner shares with (``shares``), from all of their folders' ACLs."""
    if conn.execute("UPDATE folders SET acl = %s WHERE account_id = %s AND name = %s RETURNING id",
                    (text, aid, name)).fetchone() is None:
        raise NoSuchFolder(f"no folder {name}")
    if track:
        from mailsrv.store import acl as aclmod

        grantees: set[str] = set()
        for (t,) in conn.execute("SELECT acl FROM folders WHERE account_id = %s AND acl IS NOT NULL", (aid,)):
            for ident, rights in aclmod.parse(t).entries:
                if "l" not in rights or ident.startswith("-"):
                    continue
                if ident.startswith("user=") and ident[5:] != owner:
                    grantees.add(ident[5:])
                elif ident in ("anyone", "authenticated"):
                    grantees.add(ANYONE)
        have = {r[0] for r in conn.execute("SELECT grantee FROM shares WHERE owner = %s", (owner,))}
        if have != grantees:
            conn.execute("DELETE FROM shares WHERE owner = %s", (owner,))
            if grantees:
                conn.execute("INSERT INTO shares (owner, grantee) SELECT %s, unnest(%s::text[])",
                             (owner, sorted(grantees)))
    return read(conn, aid)


def sharers(conn: Any, users: Sequence[str]) -> dict[str, list[str]]:
    """``{user: [owners who share a folder with them or with anyone]}``."""
    rows = conn.execute("SELECT grantee, owner FROM shares WHERE grantee = ANY(%s) ORDER BY owner",
                        (list(users) + [ANYONE],)).fetchall()
    anyone = [o for g, o in rows if g == ANYONE]
    return {u: sorted({o for g, o in rows if g == u} | set(anyone)) for u in users}


def load_seen(conn: Any, user: str, fid: int) -> tuple[int, set[int]]:
    row = conn.execute("SELECT uidvalidity, uids FROM private_seen WHERE user_name = %s AND folder_id = %s",
                       (user, fid)).fetchone()
    return (0, set()) if row is None else (int(row[0]), {int(u) for u in row[1]})


def save_seen(conn: Any, user: str, fid: int, uidvalidity: int, uids: Sequence[int]) -> None:
    conn.execute("INSERT INTO private_seen (user_name, folder_id, uidvalidity, uids) VALUES (%s, %s, %s, %s) "
                 "ON CONFLICT (user_name, folder_id) DO UPDATE SET uidvalidity = EXCLUDED.uidvalidity, "
                 "uids = EXCLUDED.uids", (user, fid, uidvalidity, sorted(uids)))
