"""Maintenance commands of ``mailsrv``: ``mailbox list``, ``mailbox reindex``,
``check`` and ``import``.

They work on the Maildir directly through the store's synchronous,
thread-side half (:mod:`mailsrv.store.maildir`), which takes the same
``dovecot-uidlist`` dotlock as the server: they are safe to run while the
server is up, and the server notices their changes like Postfix's
deliveries.  No reactor is needed.

Errors are one ``mailsrv: ...`` line on stderr and a non-zero exit code.
"""

from __future__ import annotations

import argparse
import os
import sqlite3
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, BinaryIO, TextIO

from mailsrv import ranges
from mailsrv.store import layout, maildir, uidlist
from mailsrv.store.interfaces import InvalidFolderName, StoreError

CACHE_FILE = "mailsrv-cache.sqlite"  # mailsrv.store.cache.CACHE_FILE
IMPORT_BATCH = 200  # messages per uid-list update
IMPORT_BATCH_BYTES = 64 << 20


class AdminError(Exception):
    """Reported as one ``mailsrv: ...`` line; ``code`` is the exit status."""

    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.code = code


# -- registration ------------------------------------------------------------------


def register(subparsers: Any, common: argparse.ArgumentParser | None = None) -> None:
    """Add ``mailbox``, ``check`` and ``import`` to the ``mailsrv`` command.
    ``common`` is the parent parser with the global options (--data, --config)."""
    parents = [common] if common is not None else []
    mb = subparsers.add_parser("mailbox", parents=parents, help="inspect and reindex a user's folders",
                               description="Inspect and reindex a user's folders.")
    ms = mb.add_subparsers(dest="mailbox_command", metavar="ACTION", required=True)
    ls = ms.add_parser("list", parents=parents, help="folders with counts, sizes, UIDVALIDITY, unseen")
    ls.add_argument("name", metavar="NAME")
    ls.set_defaults(func=_entry(cmd_mailbox_list))
    ri = ms.add_parser("reindex", parents=parents,
                       help="rescan a user's folders: assign UIDs, drop dead entries, clear the cache")
    ri.add_argument("name", metavar="NAME")
    ri.add_argument("folder", metavar="FOLDER", nargs="?", help="only this folder (default: all)")
    ri.set_defaults(func=_entry(cmd_mailbox_reindex))

    ck = subparsers.add_parser(
        "check", parents=parents, help="verify mail stores against their uid lists and caches; repair",
        description="Verify each folder: files without a UID, uid list entries without a file, duplicate "
                    "keys, tmp/ leftovers older than 36 hours, unparsable names, a damaged cache.  "
                    "Repairs what can be repaired and reports what was done.")
    ck.add_argument("name", metavar="NAME", nargs="?", help="only this user (default: every user)")
    ck.add_argument("--dry-run", "-n", action="store_true", help="report only, change nothing")
    ck.set_defaults(func=_entry(cmd_check))

    im = subparsers.add_parser(
        "import", parents=parents, help="import an mbox file (Thunderbird, mutt, Dovecot export)",
        description="Import a standard mbox file into a folder.  mboxrd unquoting ('>From ' -> 'From '), "
                    "bytes otherwise exact; Status/X-Status/X-Mozilla-Status/X-Keywords become flags; "
                    "the From_ line's date becomes the internal date.")
    im.add_argument("name", metavar="NAME")
    im.add_argument("--mbox", required=True, metavar="FILE", help="the mbox file ('-' for stdin)")
    im.add_argument("--folder", default="INBOX", metavar="F", help="target folder (created if missing; default INBOX)")
    im.add_argument("--no-flags", action="store_true", help="ignore Status/X-Status headers: import everything unread")
    im.add_argument("--progress", choices=("auto", "yes", "no"), default="auto",
                    help="progress bar on stderr (auto: when stderr is a terminal)")
    im.set_defaults(func=_entry(cmd_import))


def _entry(fn: Callable[[argparse.Namespace, Any], int]) -> Callable[[Any, Any], int]:
    """mailsrv.cli calls func(args, config); accept (config, args) too.  Turns
    expected failures into one stderr line and an exit code."""

    def call(a: Any, b: Any) -> int:
        args, config = (a, b) if isinstance(a, argparse.Namespace) else (b, a)
        try:
            return fn(args, config)
        except AdminError as e:
            _err(str(e))
            return e.code
        except (StoreError, ValueError) as e:
            _err(str(e) or type(e).__name__)
            return 1
        except OSError as e:
            where = f"{e.filename}: " if e.filename else ""
            _err(f"{where}{e.strerror or e}")
            return 1
        except KeyboardInterrupt:
            _err("interrupted")
            return 130

    call.__name__ = fn.__name__
    call.__doc__ = fn.__doc__
    return call


def _err(message: str) -> None:
    print("mailsrv: " + " ".join(message.split("\n")), file=sys.stderr)


# -- shared helpers ------------------------------------------------------------------


def _user_root(config: Any, name: str, must_exist: bool = True) -> str:
    """The user's Maildir root; the user must be in the passwd file or have mail."""
    from mailsrv.auth.passwd import PasswdFile

    try:
        root = layout.maildir_root(config.data_dir, name)
    except ValueError:
        raise AdminError(f"invalid user name {name!r}") from None
    known = False
    if os.path.exists(config.passwd_path):
        known = PasswdFile(config.passwd_path).lookup(name) is not None
    if not known and not os.path.isdir(root):
        raise AdminError(f"no such user: {name}", 67)
    if must_exist and not os.path.isdir(root):
        raise AdminError(f"{name} has no mail store yet ({root})")
    return root


def _folders(root: str, only: str | None = None) -> list[tuple[str, str]]:
    """(IMAP name, directory) of every folder, or of ``only``."""
    if only is not None:
        try:
            name = layout.canonical(only)
        except InvalidFolderName as e:
            raise AdminError(f"bad folder name {only!r}: {e}") from None
        path = layout.folder_path(root, name)
        if not os.path.isdir(os.path.join(path, "cur")):
            raise AdminError(f"no such folder: {only}")
        return [(name, path)]
    out = []
    for name in layout.list_folder_names(root):
        path = layout.folder_path(root, name)
        if os.path.isdir(os.path.join(path, "cur")):
            out.append((name, path))
    return out


def _users(config: Any) -> list[str]:
    """Users with a mail store under the data folder."""
    try:
        entries = sorted(os.listdir(config.data_dir))
    except FileNotFoundError:
        raise AdminError(f"no data folder {config.data_dir}") from None
    return [u for u in entries
            if not u.startswith(".") and os.path.isdir(os.path.join(config.data_dir, u, layout.MAILDIR))]


def _human(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GiB"


# -- mailbox list ------------------------------------------------------------------------


@dataclass
class FolderStats:
    name: str
    messages: int = 0
    size: int = 0
    unseen: int = 0
    without_uid: int = 0
    uidvalidity: int | None = None
    uidnext: int | None = None


def folder_stats(name: str, path: str) -> FolderStats:
    """Counts from the directory listing and the uid list, changing nothing."""
    st = FolderStats(name)
    try:
        ul, _ = uidlist.read_uidlist(path)
    except uidlist.CorruptUidList:
        ul = None
    if ul is not None:
        st.uidvalidity, st.uidnext = ul.uidvalidity, ul.uidnext
    for sub in ("new", "cur"):
        for fn in os.listdir(os.path.join(path, sub)):
            if fn.startswith("."):
                continue
            key, info = maildir.split_filename(fn)
            st.messages += 1
            if "S" not in maildir.flag_chars(info):
                st.unseen += 1
            size = maildir.filename_size(key)
            if size is None and ul is not None:
                w = ul.exts.get(key, {}).get("W")
                size = int(w) if w and w.isdigit() else None
            if size is None:
                try:
                    size = maildir.file_crlf_size(os.path.join(path, sub, fn))
                except OSError:
                    size = 0
            st.size += size
            if ul is None or key not in ul.uids:
                st.without_uid += 1
    return st


def cmd_mailbox_list(args: argparse.Namespace, config: Any, out: TextIO | None = None) -> int:
    """Folders with message counts, sizes, UIDVALIDITY and unseen counts."""
    out = out or sys.stdout
    root = _user_root(config, args.name)
    rows = [folder_stats(n, p) for n, p in _folders(root)]
    header = ("FOLDER", "MESSAGES", "UNSEEN", "SIZE", "UIDVALIDITY", "UIDNEXT")
    table = [header] + [(r.name, str(r.messages), str(r.unseen), _human(r.size),
                         str(r.uidvalidity) if r.uidvalidity else "-", str(r.uidnext) if r.uidnext else "-")
                        for r in rows]
    widths = [max(len(row[i]) for row in table) for i in range(len(header))]
    for row in table:
        cells = [row[0].ljust(widths[0])] + [c.rjust(w) for c, w in zip(row[1:], widths[1:])]
        out.write("  ".join(cells) + "\n")
    total = sum(r.messages for r in rows)
    out.write(f"{len(rows)} folders, {total} messages, {_human(sum(r.size for r in rows))}\n")
    pending = sum(r.without_uid for r in rows)
    if pending:
        out.write(f"({pending} messages not yet indexed: they get UIDs when the folder is next opened)\n")
    return 0


# -- check / reindex -----------------------------------------------------------------------


@dataclass
class FolderCheck:
    """Findings for one folder and what was done about them."""

    user: str
    name: str
    path: str
    problems: list[str] = field(default_factory=list)
    actions: list[str] = field(default_factory=list)
    left: list[str] = field(default_factory=list)  # problems not repaired

    @property
    def label(self) -> str:
        return f"{self.user}/{self.name}"


def _uidlist_duplicates(path: str) -> dict[str, list[int]]:
    """Keys listed more than once in dovecot-uidlist (the parser keeps the
    first and drops the rest)."""
    try:
        with open(os.path.join(path, uidlist.UIDLIST), "rb") as f:
            text = f.read().decode("utf-8", "surrogateescape")
    except FileNotFoundError:
        return {}
    seen: dict[str, list[int]] = {}
    for line in text.split("\n")[1:]:
        uid_s, _, rest = line.partition(" ")
        if not uid_s.isdigit():
            continue
        i = rest.rfind(":")
        if i < 0:
            continue
        key = rest[i + 1:] if rest[:1] != ":" else rest[1:]
        key = key.split(":", 1)[0]
        seen.setdefault(key, []).append(int(uid_s))
    return {k: v for k, v in seen.items() if len(v) > 1}


def _scan(path: str) -> tuple[dict[str, list[tuple[str, str]]], list[tuple[str, str, str]]]:
    """key -> [(sub, filename)] of message files, and (sub, filename, why)
    of names in new/ or cur/ that are not proper message file names."""
    files: dict[str, list[tuple[str, str]]] = {}
    bad: list[tuple[str, str, str]] = []
    for sub in ("new", "cur"):
        for fn in os.listdir(os.path.join(path, sub)):
            if fn.startswith("."):
                continue
            key, info = maildir.split_filename(fn)
            if not os.path.isfile(os.path.join(path, sub, fn)):
                bad.append((sub, fn, "not a regular file"))
            elif not key or (info is not None and not info.startswith("2,")):
                bad.append((sub, fn, "unparsable flags in name"))
            else:
                files.setdefault(key, []).append((sub, fn))
    return files, bad


def _old_tmp(path: str, now: float) -> list[str]:
    out = []
    tmpdir = os.path.join(path, "tmp")
    try:
        names = os.listdir(tmpdir)
    except FileNotFoundError:
        return out
    for n in names:
        try:
            if now - os.stat(os.path.join(tmpdir, n)).st_mtime > maildir.TMP_MAX_AGE:
                out.append(n)
        except OSError:
            pass
    return out


def _cache_state(path: str, uidvalidity: int | None) -> str | None:
    """None when the cache is absent or usable, else why it must be rebuilt."""
    p = os.path.join(path, CACHE_FILE)
    if not os.path.exists(p):
        return None
    try:
        db = sqlite3.connect(f"file:{p}?mode=ro", uri=True, timeout=5)
        try:
            ok = db.execute("PRAGMA quick_check").fetchone()
            if not ok or ok[0] != "ok":
                return "cache file damaged"
            row = db.execute("SELECT v FROM meta WHERE k='uidvalidity'").fetchone()
        finally:
            db.close()
    except sqlite3.DatabaseError as e:
        return f"cache file unreadable ({e})"
    if uidvalidity is not None and row is not None and row[0] != str(uidvalidity):
        return f"cache is for UIDVALIDITY {row[0]}, folder has {uidvalidity}"
    return None


def _same_content(a: str, b: str) -> bool:
    if os.path.getsize(a) != os.path.getsize(b):
        return False
    with open(a, "rb") as fa, open(b, "rb") as fb:
        while True:
            x, y = fa.read(1 << 16), fb.read(1 << 16)
            if x != y:
                return False
            if not x:
                return True


def _drop_cache(path: str) -> None:
    """Remove the cache so the store rebuilds it; a running server that has it
    open keeps its handle on the old file until it reopens the folder."""
    for suffix in ("", "-journal", "-wal", "-shm"):
        try:
            os.unlink(os.path.join(path, CACHE_FILE + suffix))
        except FileNotFoundError:
            pass


def check_folder(user: str, name: str, path: str, repair: bool, reindex: bool = False,
                 now: float | None = None) -> FolderCheck:
    """Verify one folder against its uid list and cache; repair if asked."""
    now = time.time() if now is None else now
    fc = FolderCheck(user, name, path)
    for sub in ("cur", "new", "tmp"):
        if not os.path.isdir(os.path.join(path, sub)):
            fc.problems.append(f"missing {sub}/")
            if repair:
                os.makedirs(os.path.join(path, sub), exist_ok=True)
                fc.actions.append(f"created {sub}/")
    try:
        ul, _ = uidlist.read_uidlist(path)
        corrupt = None
    except uidlist.CorruptUidList as e:
        ul, corrupt = None, str(e)
    files, bad = _scan(path)
    if corrupt:
        fc.problems.append(f"uid list unusable ({corrupt})")
        if repair:
            fc.actions.append("uid list rebuilt with a NEW UIDVALIDITY (clients re-download this folder)")
    elif ul is None and files:
        fc.problems.append("no uid list")
        if repair:
            fc.actions.append("uid list created")
    dups_list = _uidlist_duplicates(path)
    bad_lines = (ul.bad_lines - sum(len(v) - 1 for v in dups_list.values())) if ul is not None else 0
    if bad_lines > 0:
        fc.problems.append(f"{bad_lines} unreadable uid list lines")
        if repair:
            fc.actions.append(f"dropped {bad_lines} unreadable uid list lines")
    for key, uids in sorted(dups_list.items()):
        fc.problems.append(f"key {key} listed {len(uids)} times (UIDs {', '.join(map(str, uids))})")
        if repair:
            fc.actions.append(f"kept UID {uids[0]} for {key}")
    for sub, fn, why in bad:
        key = maildir.split_filename(fn)[0]
        if why == "not a regular file" or not key:
            fc.problems.append(f"{sub}/{fn}: {why}; left alone, remove it by hand")
            fc.left.append(f"{sub}/{fn}")
            continue
        fc.problems.append(f"{sub}/{fn}: {why}")
        if repair:
            dest = maildir.message_path(path, "cur", key, "2,")
            if os.path.exists(dest) or key in files:
                fc.left.append(f"{sub}/{fn}")
                fc.actions.append(f"{sub}/{fn} not renamed: its key is taken; remove it by hand")
                continue
            os.rename(os.path.join(path, sub, fn), dest)
            files[key] = [("cur", os.path.basename(dest))]
            fc.actions.append(f"renamed {sub}/{fn} to cur/{os.path.basename(dest)} (no flags)")
    # the same key twice on disk (a crash between link and unlink, or a copy by hand)
    for key, where in sorted(files.items()):
        if len(where) < 2:
            continue
        names = ", ".join(f"{s}/{f}" for s, f in where)
        fc.problems.append(f"duplicate key {key}: {names}")
        if not repair:
            continue
        keep_sub, keep_fn = next(((s, f) for s, f in where if s == "cur"), where[0])
        keep = os.path.join(path, keep_sub, keep_fn)
        for s, f in where:
            other = os.path.join(path, s, f)
            if other == keep:
                continue
            if _same_content(keep, other):
                os.unlink(other)
                fc.actions.append(f"removed identical copy {s}/{f}")
            else:
                info = maildir.split_filename(f)[1]
                with open(other, "rb") as src:
                    tmp_path, size, vsize = maildir.write_tmp(path, src, os.stat(other).st_mtime)
                new_key = maildir.final_key(tmp_path, size, vsize)
                os.rename(tmp_path, maildir.message_path(path, s, new_key, info))
                os.unlink(other)
                fc.actions.append(f"different message under the same key: {s}/{f} renamed to key {new_key}")
        files[key] = [(keep_sub, keep_fn)]
    listed = ul.uids if ul is not None else {}
    missing = sorted(uid for key, uid in listed.items() if key not in files)
    unlisted = sorted(k for k in files if k not in listed)
    if missing:
        fc.problems.append(f"{len(missing)} uid list entries without a file (UIDs {_ranges(missing)})")
        if repair:
            fc.actions.append(f"dropped {len(missing)} dead uid list entries")
    if unlisted and ul is not None:
        fc.problems.append(f"{len(unlisted)} files without a UID")
    old = _old_tmp(path, now)
    if old:
        fc.problems.append(f"{len(old)} files in tmp/ older than 36 hours")
        if repair:
            for n in old:
                try:
                    os.unlink(os.path.join(path, "tmp", n))
                except FileNotFoundError:
                    pass
            fc.actions.append(f"removed {len(old)} tmp/ leftovers")
    cache_problem = _cache_state(path, ul.uidvalidity if ul else None)
    if cache_problem:
        fc.problems.append(cache_problem)
    needs_sync = bool(corrupt or (ul is not None and ul.bad_lines) or unlisted or missing)
    if repair and (needs_sync or reindex):
        before = ul.uidnext if ul is not None else None
        result = maildir.DiskFolder(path).sync()
        if unlisted:
            wanted = set(unlisted)
            new_uids = sorted(e[0] for e in result.entries if e[1] in wanted)
            fc.actions.append(f"assigned UIDs {_ranges(new_uids)} to {len(unlisted)} files" if new_uids
                              else f"{len(unlisted)} files vanished meanwhile")
        if reindex and not needs_sync:
            fc.actions.append(f"rescanned: {len(result.entries)} messages, UIDNEXT {result.uidnext}"
                              + (f" (was {before})" if before not in (None, result.uidnext) else ""))
    if repair and (cache_problem or reindex or corrupt) and os.path.exists(os.path.join(path, CACHE_FILE)):
        _drop_cache(path)
        fc.actions.append("cache removed (rebuilt on demand)")
    return fc


def _ranges(nums: Sequence[int]) -> str:
    """[1,2,3,7] -> '1-3, 7' (at most a few ranges shown)."""
    return ranges.render(nums, sep="-", joiner=", ", limit=8)


def _print_checks(checks: list[FolderCheck], repair: bool, out: TextIO) -> int:
    bad = 0
    for fc in checks:
        if not fc.problems:
            out.write(f"{fc.label}: ok\n")
            continue
        out.write(f"{fc.label}: {len(fc.problems)} problem{'s' if len(fc.problems) != 1 else ''}\n")
        for p in fc.problems:
            out.write(f"  - {p}\n")
        for a in fc.actions:
            out.write(f"  + {a}\n")
        if not repair or fc.left:
            bad += 1
    if not repair and bad:
        out.write(f"{bad} folder{'s' if bad != 1 else ''} need repair (run without --dry-run)\n")
    return 1 if bad else 0


def cmd_check(args: argparse.Namespace, config: Any, out: TextIO | None = None) -> int:
    """Verify every folder of one user (or of all users); repair unless --dry-run."""
    out = out or sys.stdout
    users = [args.name] if args.name else _users(config)
    if not users:
        out.write(f"no mail stores under {config.data_dir}\n")
        return 0
    checks = []
    for user in users:
        root = _user_root(config, user)
        for name, path in _folders(root):
            checks.append(check_folder(user, name, path, repair=not args.dry_run))
    return _print_checks(checks, not args.dry_run, out)


def cmd_mailbox_reindex(args: argparse.Namespace, config: Any, out: TextIO | None = None) -> int:
    """Rescan folders (assign UIDs, drop dead entries) and drop their caches."""
    out = out or sys.stdout
    root = _user_root(config, args.name)
    checks = [check_folder(args.name, n, p, repair=True, reindex=True) for n, p in _folders(root, args.folder)]
    for fc in checks:
        out.write(f"{fc.label}: reindexed\n")
        for p in fc.problems:
            out.write(f"  - {p}\n")
        for a in fc.actions:
            out.write(f"  + {a}\n")
    return 1 if any(fc.left for fc in checks) else 0


# -- import ----------------------------------------------------------------------------------


class Progress:
    """A one-line progress bar on stderr (only when enabled)."""

    def __init__(self, total: int | None, enabled: bool, stream: TextIO = sys.stderr) -> None:
        self.total, self.enabled, self.stream = total, enabled, stream
        self._last = 0.0

    def update(self, done_bytes: int, messages: int, force: bool = False) -> None:
        if not self.enabled:
            return
        now = time.monotonic()
        if not force and now - self._last < 0.1:
            return
        self._last = now
        if self.total:
            frac = min(1.0, done_bytes / self.total)
            bar = "#" * int(frac * 30)
            line = f"\rimporting [{bar:<30}] {frac * 100:5.1f}%  {messages} messages  {_human(done_bytes)}"
        else:
            line = f"\rimporting  {messages} messages  {_human(done_bytes)}"
        self.stream.write(line)
        self.stream.flush()

    def done(self) -> None:
        if self.enabled:
            self.stream.write("\n")
            self.stream.flush()


@dataclass
class ImportReport:
    messages: int = 0
    bytes: int = 0
    uids: list[int] = field(default_factory=list)
    flags: dict[str, int] = field(default_factory=dict)
    created_folder: bool = False


def _ensure_folder(root: str, folder: str) -> tuple[str, str, bool]:
    """(canonical name, directory, created?) for the import target."""
    try:
        name = layout.canonical(folder)
    except InvalidFolderName as e:
        raise AdminError(f"bad folder name {folder!r}: {e}") from None
    path = layout.folder_path(root, name)
    if name == layout.INBOX:
        layout.make_folder_dirs(path, is_inbox=True)
        return name, path, False
    created = not os.path.isdir(os.path.join(path, "cur"))
    layout.make_folder_dirs(root, is_inbox=True)
    layout.make_folder_dirs(path)
    if created:
        subs = layout.read_subscriptions(root)
        if name not in subs:
            layout.write_subscriptions(root, subs + [name])
    return name, path, created


def import_mbox(folder_dir: str, stream: BinaryIO, use_flags: bool = True,
                progress: Progress | None = None) -> ImportReport:
    """Store every message of the mbox ``stream`` in the folder, in order,
    crash-safely (tmp/, fsync, rename) with UIDs assigned in batches under
    the uid list lock.  Messages already stored stay stored if a later one
    fails."""
    from mailsrv.mbox import iter_mbox

    report = ImportReport()
    disk = maildir.DiskFolder(folder_dir)
    disk.sync()  # a uid list must exist first, or the first batch is numbered by a rescan
    batch: list[maildir.NewFile] = []
    batch_bytes = 0

    def flush() -> None:
        nonlocal batch, batch_bytes
        if not batch:
            return
        try:
            res = disk.add(batch)
        except BaseException:
            for it in batch:
                maildir._unlink_quiet(it.src)
            raise
        report.uids.extend(e[0] for e in res.entries)
        batch, batch_bytes = [], 0

    try:
        for msg in iter_mbox(stream):
            flags = maildir.normalize_flags(msg.flags) if use_flags else frozenset()
            tmp, size, vsize = maildir.write_tmp(folder_dir, msg.body, msg.internaldate)
            batch.append(maildir.NewFile(tmp, "rename", flags, size, vsize))
            batch_bytes += size
            report.messages += 1
            report.bytes += size
            for f in flags:
                report.flags[f] = report.flags.get(f, 0) + 1
            if len(batch) >= IMPORT_BATCH or batch_bytes >= IMPORT_BATCH_BYTES:
                flush()
            if progress is not None:
                progress.update(_position(stream), report.messages)
        flush()
    finally:
        for it in batch:  # only left over when something failed
            maildir._unlink_quiet(it.src)
    return report


def _position(stream: BinaryIO) -> int:
    try:
        return stream.tell()
    except (OSError, ValueError):
        return 0


def cmd_import(args: argparse.Namespace, config: Any, out: TextIO | None = None) -> int:
    """Import an mbox file into a user's folder."""
    from mailsrv.mbox import MboxError

    out = out or sys.stdout
    root = _user_root(config, args.name, must_exist=False)
    layout.make_folder_dirs(root, is_inbox=True)
    name, path, created = _ensure_folder(root, args.folder)
    if args.mbox == "-":
        stream, total = sys.stdin.buffer, None
    else:
        try:
            stream = open(args.mbox, "rb")
        except OSError as e:
            raise AdminError(f"cannot read {args.mbox}: {e.strerror}") from None
        total = os.fstat(stream.fileno()).st_size
    show = args.progress == "yes" or (args.progress == "auto" and sys.stderr.isatty())
    progress = Progress(total, show)
    try:
        report = import_mbox(path, stream, use_flags=not args.no_flags, progress=progress)
    except MboxError as e:
        progress.done()
        raise AdminError(f"{args.mbox}: {e}") from None
    except maildir.TooManyKeywords as e:
        progress.done()
        raise AdminError(f"{args.mbox}: {e}") from None
    finally:
        if stream is not sys.stdin.buffer:
            stream.close()
    progress.update(total or report.bytes, report.messages, force=True)
    progress.done()
    where = f"{args.name}/{name}" + (" (new folder)" if created else "")
    uids = f", UIDs {_ranges(report.uids)}" if report.uids else ""
    flags = ", ".join(f"{n} {f}" for f, n in sorted(report.flags.items()))
    out.write(f"imported {report.messages} messages ({_human(report.bytes)}) into {where}{uids}"
              + (f"; flags: {flags}" if flags else "") + "\n")
    return 0
