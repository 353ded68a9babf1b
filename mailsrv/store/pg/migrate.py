"""Moving mail between the two backends, offline (no server running on
the source): ``mailsrv migrate --to postgresql://...`` and ``mailsrv
export --maildir DIR``.

Both read and write through the stores' own code: the Maildir side through
:class:`mailsrv.store.Store` (its interfaces only), the database side
through :mod:`.folder_sql` and :mod:`.account_sql`.  What a client can
see is preserved both ways: UIDs, UIDVALIDITY and UIDNEXT (so no client
resynchronises), flags and keywords, internal dates, subscriptions,
special-use, POP3 UIDLs (so no POP3 client downloads everything again),
and the passwd entries (same hash schemes on both sides).

Migration is resumable: each batch of messages is one transaction, and a
second run skips the UIDs a folder already has (a folder whose UIDVALIDITY
differs from the Maildir's is refused, never mixed).  Export writes into
an empty directory, then rewrites each folder's ``dovecot-uidlist`` with
the original UIDs, so Dovecot serves the result as it was.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TextIO

from twisted.internet import defer, threads

from mailsrv.store import layout
from mailsrv.store.interfaces import StoreError
from mailsrv.store.pg import account_sql, folder_sql
from mailsrv.store.pg.blobs import PgBlobs, spool
from mailsrv.store.pg.db import Database
from mailsrv.store.pg.folder_sql import NewMessage
from mailsrv.store.pg.message import FLAG_BITS, FlagDecoder, split_flags

BATCH_MESSAGES = 200
BATCH_BYTES = 16 << 20


class MigrationError(StoreError):
    code = "CANNOT"


@dataclass
class Report:
    users: int = 0
    folders: int = 0
    messages: int = 0  # copied in this run
    skipped: int = 0  # already there (an earlier, interrupted run)
    octets: int = 0
    problems: list[str] = field(default_factory=list)


class Progress:
    """A one-line progress bar on a terminal, a line per folder otherwise."""

    def __init__(self, total: int, out: TextIO | None = None, width: int = 30) -> None:
        self.total = max(total, 1)
        self.done = 0
        self.out = out or sys.stderr
        self.width = width
        self.tty = self.out.isatty()
        self._last = 0.0
        self.started = time.monotonic()

    def advance(self, n: int, label: str, force: bool = False) -> None:
        self.done += n
        now = time.monotonic()
        if not force and self.tty and now - self._last < 0.1:
            return
        self._last = now
        filled = int(self.width * self.done / self.total)
        rate = self.done / max(now - self.started, 1e-6)
        line = (f"[{'#' * filled}{' ' * (self.width - filled)}] {self.done}/{self.total} messages "
                f"{rate:.0f}/s  {label}")
        if self.tty:
            self.out.write("\r" + line[:200].ljust(100))
        elif force:
            self.out.write(line + "\n")
        self.out.flush()

    def finish(self) -> None:
        if self.tty:
            self.out.write("\n")
            self.out.flush()


# --- Maildir -> PostgreSQL ------------------------------------------------------------------

def _maildir_users(data_dir: str, only: list[str] | None) -> list[str]:
    if only:
        return list(only)
    names = []
    for name in sorted(os.listdir(data_dir)):
        if not name.startswith(".") and layout.user_exists_dir(data_dir, name):
            names.append(name)
    return names


def _count_files(data_dir: str, user: str) -> int:
    """Messages in a user's Maildir, by directory listing (for the progress
    bar only: nothing is opened)."""
    root = layout.maildir_root(data_dir, user)
    n = 0
    for name in layout.list_folder_names(root):
        for sub in ("cur", "new"):
            try:
                with os.scandir(os.path.join(layout.folder_path(root, name), sub)) as it:
                    n += sum(1 for e in it if not e.name.startswith("."))
            except FileNotFoundError:
                pass
    return n


class _Nobody:
    """A listener added and removed at once: how a tool tells a Maildir
    folder it may be let go (IFolder.remove_listener)."""

    def messages_added(self, folder: Any, uids: list) -> None:
        pass

    def flags_changed(self, folder: Any, uids: list) -> None:
        pass

    def messages_expunged(self, folder: Any, uids: list) -> None:
        pass


def _release(folder: Any) -> None:
    nobody = _Nobody()
    folder.add_listener(nobody)
    folder.remove_listener(nobody)


def _prepare_folder(conn: Any, aid: int, name: str, uidvalidity: int, uidnext: int,
                    special: str | None) -> tuple[int, set[int]]:
    """The folder's id and the UIDs it already holds; made with the
    Maildir's UIDVALIDITY if new (or if it exists empty and unused)."""
    row = conn.execute("SELECT id, uidvalidity, uidnext FROM folders WHERE account_id = %s AND name = %s FOR UPDATE",
                       (aid, name)).fetchone()
    if row is None:
        row = conn.execute("INSERT INTO folders (account_id, name, special_use, uidvalidity, uidnext) "
                           "VALUES (%s, %s, %s, %s, %s) RETURNING id, uidvalidity, uidnext",
                           (aid, name, special, uidvalidity, uidnext)).fetchone()
    fid, have_validity, have_next = int(row[0]), int(row[1]), int(row[2])
    if have_validity != uidvalidity:
        if have_next != 1:
            raise MigrationError(f"folder {name} exists in the database with another UIDVALIDITY "
                                 f"({have_validity}, Maildir {uidvalidity}) and has been used")
        conn.execute("UPDATE folders SET uidvalidity = %s WHERE id = %s", (uidvalidity, fid))
    uids = {int(r[0]) for r in conn.execute("SELECT uid FROM messages WHERE folder_id = %s", (fid,))}
    return fid, uids


def _finish_folder(conn: Any, fid: int, uidnext: int, keywords: list[str]) -> None:
    conn.execute("UPDATE folders SET uidnext = greatest(uidnext, %s), "
                 "keywords = ARRAY(SELECT DISTINCT k FROM unnest(keywords || %s::text[]) k ORDER BY k) WHERE id = %s",
                 (uidnext, keywords, fid))
    conn.execute("SELECT setval('uidvalidity_seq', greatest((SELECT last_value FROM uidvalidity_seq), "
                 "(SELECT uidvalidity FROM folders WHERE id = %s)))", (fid,))


def _account(conn: Any, user: str) -> int:
    row = conn.execute("INSERT INTO accounts (name) VALUES (%s) ON CONFLICT (name) DO UPDATE SET name = EXCLUDED.name "
                       "RETURNING id", (user,)).fetchone()
    return int(row[0])


def _subscriptions(conn: Any, aid: int, names: list[str]) -> None:
    for n in names:
        conn.execute("INSERT INTO subscriptions (account_id, name) VALUES (%s, %s) ON CONFLICT DO NOTHING", (aid, n))


def _users(conn: Any, entries: list[tuple[str, str, dict[str, str]]]) -> int:
    from psycopg.types.json import Jsonb

    n = 0
    for name, stored, fields in entries:
        if conn.execute("INSERT INTO users (name, password, fields) VALUES (%s, %s, %s) ON CONFLICT (name) "
                        "DO NOTHING RETURNING name", (name, stored, Jsonb(fields))).fetchone() is not None:
            n += 1
    return n


class Migration:
    """One run of Maildir data folder -> database."""

    def __init__(self, data_dir: str, dsn: str, passwd_path: str | None = None, users: list[str] | None = None,
                 progress: Callable[[int], Progress] | None = None, reactor: Any = None) -> None:
        from mailsrv.store import Store

        if reactor is None:
            from twisted.internet import reactor
        self.reactor = reactor
        self.data_dir = data_dir
        self.passwd_path = passwd_path or os.path.join(data_dir, "passwd")
        self.only = users
        self.source = Store(data_dir)
        self.db = Database(dsn, reactor, max_size=2)
        self.blobs = PgBlobs()
        self.decode = FlagDecoder()
        self.make_progress = progress or (lambda total: Progress(total))
        self.report = Report()

    async def run(self) -> Report:
        try:
            await self._users()
            names = _maildir_users(self.data_dir, self.only)
            progress = self.make_progress(sum(_count_files(self.data_dir, u) for u in names))
            for user in names:
                account = self.source.account(user)
                aid = await self.db.run(_account, user)
                await self.db.run(_subscriptions, aid, account.subscriptions())
                for name in account.list_folders():
                    folder = await account.open_folder(name)
                    try:
                        await self._folder(aid, account, name, folder, progress)
                    finally:
                        _release(folder)
                self.report.users += 1
            progress.finish()
            return self.report
        finally:
            await defer.maybeDeferred(self.source.close)
            await self.db.close()

    async def _users(self) -> None:
        if not os.path.exists(self.passwd_path):
            return
        from mailsrv.auth.passwd import PasswdFile

        pw = PasswdFile(self.passwd_path)
        entries = [(n, e.password, e.extra_fields()) for n in pw.users() if (e := pw.lookup(n)) is not None]
        if self.only:
            entries = [e for e in entries if e[0] in self.only]
        await self.db.run(_users, entries)

    async def _folder(self, aid: int, account: Any, name: str, folder: Any, progress: Progress) -> None:
        label = f"{account.user}/{name}"
        fid, have = await self.db.run(_prepare_folder, aid, name, folder.uidvalidity, folder.uidnext,
                                      account.special_use(name))
        todo = [m for m in folder.messages() if m.uid not in have]
        self.report.skipped += len(have)
        progress.advance(len(folder.messages()) - len(todo), label)
        batch: list[NewMessage] = []
        size = 0
        for m in todo:
            item = await threads.deferToThread(self._read, folder, m)
            batch.append(item)
            size += item.body.size
            if len(batch) >= BATCH_MESSAGES or size >= BATCH_BYTES:
                await self._store(fid, batch, progress, label)
                batch, size = [], 0
        if batch:
            await self._store(fid, batch, progress, label)
        await self.db.run(_finish_folder, fid, folder.uidnext, folder.keywords())
        self.report.folders += 1
        progress.advance(0, label, force=True)

    @staticmethod
    def _read(folder: Any, m: Any) -> NewMessage:
        with folder.open_message(m.uid) as f:
            body = spool(f)
        bits, keywords = split_flags(m.flags)
        uidl = folder.pop3_uidl(m.uid)
        default = "%08x%08x" % (m.uid, folder.uidvalidity)
        return NewMessage(body, bits, keywords, float(m.internaldate), uid=m.uid,
                          pop3=None if uidl == default else uidl)

    async def _store(self, fid: int, batch: list[NewMessage], progress: Progress, label: str) -> None:
        try:
            await self.db.run(folder_sql.append, fid, batch, self.blobs, None, self.decode)
        finally:
            for it in batch:
                it.body.discard()
        self.report.messages += len(batch)
        self.report.octets += sum(it.body.size for it in batch)
        progress.advance(len(batch), label)


async def migrate_to_postgresql(data_dir: str, dsn: str, **options: Any) -> Report:
    """Copy a Maildir data folder (mail, subscriptions, passwd entries) into
    the database at ``dsn``; see :class:`Migration`."""
    return await Migration(data_dir, dsn, **options).run()


# --- PostgreSQL -> Maildir ------------------------------------------------------------------

@dataclass
class _Folder:
    id: int
    name: str
    uidvalidity: int
    uidnext: int
    rows: list[tuple[int, int, int, list[str], float, str | None]]  # uid, blob, bits, keywords, date, pop3


def _read_account(conn: Any, user: str) -> tuple[list[_Folder], list[str]]:
    aid = account_sql.account_id(conn, user)
    if aid is None:
        return [], []
    folders = []
    for fid, name, validity, nxt in conn.execute("SELECT id, name, uidvalidity, uidnext FROM folders "
                                                 "WHERE account_id = %s ORDER BY name", (aid,)).fetchall():
        rows = conn.execute("SELECT uid, blob_id, flags, keywords, internaldate, pop3_uidl FROM messages "
                            "WHERE folder_id = %s ORDER BY uid", (fid,)).fetchall()
        folders.append(_Folder(int(fid), name, int(validity), int(nxt),
                               [(int(r[0]), int(r[1]), int(r[2]), list(r[3] or ()), float(r[4]), r[5]) for r in rows]))
    subs = [r[0] for r in conn.execute("SELECT name FROM subscriptions WHERE account_id = %s ORDER BY name", (aid,))]
    return folders, subs


def _blob_to_file(db: Database, blobs: PgBlobs, blob: int, path: str) -> None:
    with open(path, "wb") as out:
        pos = 0
        while True:
            chunk = db.call(blobs.read, blob, pos, 1 << 20)
            if not chunk:
                return
            out.write(chunk)
            pos += len(chunk)


class Export:
    """One run of database -> Maildir data folder ``out_dir`` (which must
    not hold those users' mail yet)."""

    def __init__(self, dsn: str, out_dir: str, users: list[str] | None = None,
                 progress: Callable[[int], Progress] | None = None, reactor: Any = None) -> None:
        if reactor is None:
            from twisted.internet import reactor
        self.reactor = reactor
        self.out_dir = out_dir
        self.only = users
        self.db = Database(dsn, reactor, max_size=2)
        self.blobs = PgBlobs()
        self.make_progress = progress or (lambda total: Progress(total))
        self.report = Report()

    async def run(self) -> Report:
        from mailsrv.store import Store

        os.makedirs(self.out_dir, exist_ok=True)
        try:
            names = self.only or list(await self.db.run(account_sql.names))
            for user in names:
                if os.path.isdir(layout.maildir_root(self.out_dir, user)):
                    raise MigrationError(f"{layout.maildir_root(self.out_dir, user)} exists; export into an "
                                         "empty data folder")
            await self._passwd(names)
            plans = [(u, await self.db.run(_read_account, u)) for u in names]
            progress = self.make_progress(sum(len(f.rows) for _u, (fs, _s) in plans for f in fs))
            target = Store(self.out_dir)
            try:
                for user, (folders, subs) in plans:
                    await self._account(target, user, folders, subs, progress)
            finally:
                await defer.maybeDeferred(target.close)
            for user, (folders, _subs) in plans:
                await threads.deferToThread(self._restore_uids, user, folders)
            progress.finish()
            return self.report
        finally:
            await self.db.close()

    async def _passwd(self, names: list[str]) -> None:
        from mailsrv.auth.passwd import PasswdFile

        rows = await self.db.run(lambda c: c.execute("SELECT name, password FROM users WHERE name = ANY(%s) "
                                                     "ORDER BY name", (names,)).fetchall())
        pw = PasswdFile(os.path.join(self.out_dir, "passwd"))
        for name, stored in rows:
            if pw.lookup(name) is None:
                pw.add_user(name, stored)

    async def _account(self, target: Any, user: str, folders: list[_Folder], subs: list[str],
                       progress: Progress) -> None:
        account = target.account(user)
        for s in account.subscriptions():
            if s not in subs:
                account.unsubscribe(s)
        for s in subs:
            account.subscribe(s)
        for f in folders:
            if not account.folder_exists(f.name):
                await account.create_folder(f.name)
            folder = await account.open_folder(f.name)
            for _uid, blob, bits, keywords, date, _pop3 in f.rows:
                path = os.path.join(self.out_dir, f".mailsrv-export-{os.getpid()}-{blob}")
                await self.db.in_thread(_blob_to_file, self.db, self.blobs, blob, path)
                try:
                    flags = [name for name, bit in FLAG_BITS.items() if bits & bit] + keywords
                    with open(path, "rb") as fh:
                        await folder.append(fh, flags, date)
                finally:
                    os.unlink(path)
                self.report.messages += 1
                progress.advance(1, f"{user}/{f.name}")
            self.report.folders += 1
        self.report.users += 1

    def _restore_uids(self, user: str, folders: list[_Folder]) -> None:
        """Give every exported message its database UID again (appending
        numbered them 1..n) and each folder its UIDVALIDITY and UIDNEXT;
        stored POP3 UIDLs become the records' ``P`` fields, as Dovecot
        keeps them.  The folder's snapshot and cache are dropped: they
        describe the numbering just replaced."""
        from mailsrv.store.uidlist import read_uidlist, write_uidlist

        root = layout.maildir_root(self.out_dir, user)
        for f in folders:
            path = layout.folder_path(root, f.name)
            ul, _st = read_uidlist(path)
            if ul is None:
                raise MigrationError(f"{path}: no uid list after export")
            keys = [k for k, _u in sorted(ul.uids.items(), key=lambda kv: kv[1])]
            if len(keys) != len(f.rows):
                raise MigrationError(f"{path}: {len(keys)} messages written, {len(f.rows)} expected")
            ul.uids = {k: row[0] for k, row in zip(keys, f.rows, strict=True)}
            for k, row in zip(keys, f.rows, strict=True):
                if row[5]:
                    ul.exts.setdefault(k, {})["P"] = row[5]
            ul.uidvalidity = f.uidvalidity
            ul.uidnext = max(f.uidnext, max((r[0] for r in f.rows), default=0) + 1)
            write_uidlist(path, ul)
            for name in os.listdir(path):
                if name.startswith(("mailsrv-index.sqlite", "mailsrv-cache.sqlite")):
                    os.unlink(os.path.join(path, name))


async def export_to_maildir(dsn: str, out_dir: str, **options: Any) -> Report:
    """Write the database's mail out as a Dovecot-readable Maildir data
    folder; see :class:`Export`."""
    return await Export(dsn, out_dir, **options).run()
