"""``mailsrv check`` and ``mailsrv mailbox reindex``: verify each folder
against its uid list and cache, and repair what can be repaired.

:func:`check_folder` runs the checks below in order, one function each;
every check writes what it found into ``FolderCheck.problems`` and, when
repairing, what it did into ``actions`` (or what it could not into
``left``).  The checks only rename, link or remove files and leave the
numbering to :class:`~mailsrv.store.diskfolder.DiskFolder`, which takes the
server's ``dovecot-uidlist`` lock: safe while the server runs.
"""

from __future__ import annotations

import argparse
import filecmp
import os
import sys
import time
from dataclasses import dataclass, field
from typing import Any, TextIO

from mailsrv.admin.common import folders, uid_ranges, user_root, users
from mailsrv.store import cache, uidlist
from mailsrv.store.diskfolder import DiskFolder
from mailsrv.store.filename import final_key, message_path, split_filename
from mailsrv.store.maildir import SUBDIRS, old_tmp_files, write_tmp


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


@dataclass
class FolderScan:
    """What the checks look at: the uid list (or why it is unusable), the
    keys it names twice, and the message files by key, plus the names in
    new/ and cur/ that are no proper message file (sub, name, why)."""

    ul: uidlist.UidList | None
    corrupt: str | None
    duplicates: dict[str, list[int]]
    files: dict[str, list[tuple[str, str]]]
    bad: list[tuple[str, str, str]]

    @classmethod
    def read(cls, path: str) -> FolderScan:
        try:
            ul, _ = uidlist.read_uidlist(path)
            corrupt = None
        except uidlist.CorruptUidList as e:
            ul, corrupt = None, str(e)
        files: dict[str, list[tuple[str, str]]] = {}
        bad: list[tuple[str, str, str]] = []
        for sub in ("new", "cur"):
            for fn in os.listdir(os.path.join(path, sub)):
                if fn.startswith("."):
                    continue
                key, info = split_filename(fn)
                if not os.path.isfile(os.path.join(path, sub, fn)):
                    bad.append((sub, fn, "not a regular file"))
                elif not key or (info is not None and not info.startswith("2,")):
                    bad.append((sub, fn, "unparsable flags in name"))
                else:
                    files.setdefault(key, []).append((sub, fn))
        return cls(ul, corrupt, uidlist.duplicate_keys(path), files, bad)


# -- the checks, in the order they run --------------------------------------------------


def check_dirs(fc: FolderCheck, repair: bool) -> None:
    """cur/, new/ and tmp/ exist."""
    for sub in SUBDIRS:
        if not os.path.isdir(os.path.join(fc.path, sub)):
            fc.problems.append(f"missing {sub}/")
            if repair:
                os.makedirs(os.path.join(fc.path, sub), exist_ok=True)
                fc.actions.append(f"created {sub}/")


def check_uidlist_file(fc: FolderCheck, scan: FolderScan, repair: bool) -> None:
    """The uid list is there (when there is mail) and its header usable."""
    if scan.corrupt:
        fc.problems.append(f"uid list unusable ({scan.corrupt})")
        if repair:
            fc.actions.append("uid list rebuilt with a NEW UIDVALIDITY (clients re-download this folder)")
    elif scan.ul is None and scan.files:
        fc.problems.append("no uid list")
        if repair:
            fc.actions.append("uid list created")


def check_unreadable_lines(fc: FolderCheck, scan: FolderScan, repair: bool) -> None:
    """Uid list lines the parser skips, other than repeated keys."""
    if scan.ul is None:
        return
    bad_lines = scan.ul.bad_lines - sum(len(v) - 1 for v in scan.duplicates.values())
    if bad_lines > 0:
        fc.problems.append(f"{bad_lines} unreadable uid list lines")
        if repair:
            fc.actions.append(f"dropped {bad_lines} unreadable uid list lines")


def check_repeated_keys(fc: FolderCheck, scan: FolderScan, repair: bool) -> None:
    """A key the uid list names twice keeps its first UID."""
    for key, uids in sorted(scan.duplicates.items()):
        fc.problems.append(f"key {key} listed {len(uids)} times (UIDs {', '.join(map(str, uids))})")
        if repair:
            fc.actions.append(f"kept UID {uids[0]} for {key}")


def check_file_names(fc: FolderCheck, scan: FolderScan, repair: bool) -> None:
    """Names in new/ and cur/ that are no message file: a file with flags
    Maildir does not know is renamed to carry none; anything else (a
    directory, a name without a key) is left for a human."""
    for sub, fn, why in scan.bad:
        key = split_filename(fn)[0]
        if why == "not a regular file" or not key:
            fc.problems.append(f"{sub}/{fn}: {why}; left alone, remove it by hand")
            fc.left.append(f"{sub}/{fn}")
            continue
        fc.problems.append(f"{sub}/{fn}: {why}")
        if not repair:
            continue
        dest = message_path(fc.path, "cur", key, "2,")
        if os.path.exists(dest) or key in scan.files:
            fc.left.append(f"{sub}/{fn}")
            fc.actions.append(f"{sub}/{fn} not renamed: its key is taken; remove it by hand")
            continue
        os.rename(os.path.join(fc.path, sub, fn), dest)
        scan.files[key] = [("cur", os.path.basename(dest))]
        fc.actions.append(f"renamed {sub}/{fn} to cur/{os.path.basename(dest)} (no flags)")


def check_duplicate_files(fc: FolderCheck, scan: FolderScan, repair: bool) -> None:
    """The same key twice on disk (a crash between link and unlink, or a
    copy by hand): the cur/ one stays; an identical copy goes, a different
    message gets a key of its own."""
    for key, where in sorted(scan.files.items()):
        if len(where) < 2:
            continue
        fc.problems.append(f"duplicate key {key}: " + ", ".join(f"{s}/{f}" for s, f in where))
        if not repair:
            continue
        keep_sub, keep_fn = next(((s, f) for s, f in where if s == "cur"), where[0])
        keep = os.path.join(fc.path, keep_sub, keep_fn)
        for s, f in where:
            other = os.path.join(fc.path, s, f)
            if other != keep:
                fc.actions.append(_separate(fc.path, keep, s, f))
        scan.files[key] = [(keep_sub, keep_fn)]


def _separate(path: str, keep: str, sub: str, fn: str) -> str:
    """Remove ``sub/fn`` if it is a copy of ``keep``, else give it a new key."""
    other = os.path.join(path, sub, fn)
    if filecmp.cmp(keep, other, shallow=False):
        os.unlink(other)
        return f"removed identical copy {sub}/{fn}"
    info = split_filename(fn)[1]
    with open(other, "rb") as src:
        tmp_path, size, vsize = write_tmp(path, src, os.stat(other).st_mtime)
    new_key = final_key(tmp_path, size, vsize)
    os.rename(tmp_path, message_path(path, sub, new_key, info))
    os.unlink(other)
    return f"different message under the same key: {sub}/{fn} renamed to key {new_key}"


def check_uids(fc: FolderCheck, scan: FolderScan, repair: bool) -> tuple[list[int], list[str]]:
    """Uid list entries without a file, files without a UID; returns both
    (the resync after the checks mends them)."""
    listed = scan.ul.uids if scan.ul is not None else {}
    missing = sorted(uid for key, uid in listed.items() if key not in scan.files)
    unlisted = sorted(k for k in scan.files if k not in listed)
    if missing:
        fc.problems.append(f"{len(missing)} uid list entries without a file (UIDs {uid_ranges(missing)})")
        if repair:
            fc.actions.append(f"dropped {len(missing)} dead uid list entries")
    if unlisted and scan.ul is not None:
        fc.problems.append(f"{len(unlisted)} files without a UID")
    return missing, unlisted


def check_tmp(fc: FolderCheck, now: float, repair: bool) -> None:
    """Leftovers in tmp/ older than 36 hours (a writer that crashed)."""
    old = old_tmp_files(fc.path, now)
    if not old:
        return
    fc.problems.append(f"{len(old)} files in tmp/ older than 36 hours")
    if repair:
        for n in old:
            try:
                os.unlink(os.path.join(fc.path, "tmp", n))
            except FileNotFoundError:
                pass
        fc.actions.append(f"removed {len(old)} tmp/ leftovers")


def check_cache(fc: FolderCheck, scan: FolderScan) -> bool:
    """The cache file is readable and for this UIDVALIDITY; True when not."""
    problem = cache.check_file(fc.path, scan.ul.uidvalidity if scan.ul else None)
    if problem:
        fc.problems.append(problem)
    return problem is not None


def resync(fc: FolderCheck, scan: FolderScan, unlisted: list[str], report_rescan: bool) -> None:
    """A full scan under the uid list lock: dead entries dropped, unlisted
    files numbered, a broken list rebuilt (what the server's own scan does)."""
    before = scan.ul.uidnext if scan.ul is not None else None
    result = DiskFolder(fc.path).sync()
    if unlisted:
        wanted = set(unlisted)
        new_uids = sorted(e.uid for e in result.entries if e.key in wanted)
        fc.actions.append(f"assigned UIDs {uid_ranges(new_uids)} to {len(unlisted)} files" if new_uids
                          else f"{len(unlisted)} files vanished meanwhile")
    if report_rescan:
        fc.actions.append(f"rescanned: {len(result.entries)} messages, UIDNEXT {result.uidnext}"
                          + (f" (was {before})" if before not in (None, result.uidnext) else ""))


def check_folder(user: str, name: str, path: str, repair: bool, reindex: bool = False,
                 now: float | None = None) -> FolderCheck:
    """Verify one folder against its uid list and cache; repair if asked
    (``reindex``: rescan and drop the cache even when all is well)."""
    now = time.time() if now is None else now
    fc = FolderCheck(user, name, path)
    check_dirs(fc, repair)
    scan = FolderScan.read(path)
    check_uidlist_file(fc, scan, repair)
    check_unreadable_lines(fc, scan, repair)
    check_repeated_keys(fc, scan, repair)
    check_file_names(fc, scan, repair)
    check_duplicate_files(fc, scan, repair)
    missing, unlisted = check_uids(fc, scan, repair)
    check_tmp(fc, now, repair)
    cache_bad = check_cache(fc, scan)
    needs_sync = bool(scan.corrupt or (scan.ul is not None and scan.ul.bad_lines) or unlisted or missing)
    if repair and (needs_sync or reindex):
        resync(fc, scan, unlisted, report_rescan=reindex and not needs_sync)
    if repair and (cache_bad or reindex or scan.corrupt) and os.path.exists(os.path.join(path, cache.CACHE_FILE)):
        cache.remove(path)
        fc.actions.append("cache removed (rebuilt on demand)")
    return fc


# -- the commands ----------------------------------------------------------------------------


def print_checks(checks: list[FolderCheck], repair: bool, out: TextIO) -> int:
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
    names = [args.name] if args.name else users(config)
    if not names:
        out.write(f"no mail stores under {config.data_dir}\n")
        return 0
    checks = []
    for user in names:
        root = user_root(config, user)
        for name, path in folders(root):
            checks.append(check_folder(user, name, path, repair=not args.dry_run))
    return print_checks(checks, not args.dry_run, out)


def cmd_mailbox_reindex(args: argparse.Namespace, config: Any, out: TextIO | None = None) -> int:
    """Rescan folders (assign UIDs, drop dead entries) and drop their caches."""
    out = out or sys.stdout
    root = user_root(config, args.name)
    checks = [check_folder(args.name, n, p, repair=True, reindex=True) for n, p in folders(root, args.folder)]
    for fc in checks:
        out.write(f"{fc.label}: reindexed\n")
        for p in fc.problems:
            out.write(f"  - {p}\n")
        for a in fc.actions:
            out.write(f"  + {a}\n")
    return 1 if any(fc.left for fc in checks) else 0
