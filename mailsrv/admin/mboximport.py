"""``mailsrv import``: an mbox file into a folder, crash-safely and in
order, with UIDs assigned in batches under the uid list lock."""

from __future__ import annotations

import argparse
import os
import sys
import time
from dataclasses import dataclass, field
from typing import Any, BinaryIO, TextIO

from mailsrv.admin.common import AdminError, human, uid_ranges, user_root
from mailsrv.store import layout
from mailsrv.store.diskfolder import DiskFolder, NewFile, discard_sources
from mailsrv.store.filename import TooManyKeywords
from mailsrv.store.flags import normalize_flags
from mailsrv.store.interfaces import InvalidFolderName
from mailsrv.store.maildir import write_tmp

IMPORT_BATCH = 200  # messages per uid-list update
IMPORT_BATCH_BYTES = 64 << 20


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
            line = f"\rimporting [{bar:<30}] {frac * 100:5.1f}%  {messages} messages  {human(done_bytes)}"
        else:
            line = f"\rimporting  {messages} messages  {human(done_bytes)}"
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


def ensure_folder(root: str, folder: str) -> tuple[str, str, bool]:
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
    disk = DiskFolder(folder_dir)
    disk.sync()  # a uid list must exist first, or the first batch is numbered by a rescan
    batch: list[NewFile] = []
    batch_bytes = 0

    def flush() -> None:
        nonlocal batch, batch_bytes
        if not batch:
            return
        try:
            res = disk.add(batch)
        except BaseException:
            discard_sources(batch)
            raise
        report.uids.extend(e.uid for e in res.entries)
        batch, batch_bytes = [], 0

    try:
        for msg in iter_mbox(stream):
            flags = normalize_flags(msg.flags) if use_flags else frozenset()
            tmp, size, vsize = write_tmp(folder_dir, msg.body, msg.internaldate)
            batch.append(NewFile(tmp, "rename", flags, size, vsize))
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
        discard_sources(batch)  # only left over when something failed
    return report


def _position(stream: BinaryIO) -> int:
    try:
        return stream.tell()
    except (OSError, ValueError):
        return 0


def _open_mbox(path: str) -> tuple[BinaryIO, int | None]:
    """The mbox stream and its size (unknown for stdin)."""
    if path == "-":
        return sys.stdin.buffer, None
    try:
        stream = open(path, "rb")
    except OSError as e:
        raise AdminError(f"cannot read {path}: {e.strerror}") from None
    return stream, os.fstat(stream.fileno()).st_size


def cmd_import(args: argparse.Namespace, config: Any, out: TextIO | None = None) -> int:
    """Import an mbox file into a user's folder."""
    from mailsrv.mbox import MboxError

    out = out or sys.stdout
    root = user_root(config, args.name, must_exist=False)
    layout.make_folder_dirs(root, is_inbox=True)
    name, path, created = ensure_folder(root, args.folder)
    stream, total = _open_mbox(args.mbox)
    show = args.progress == "yes" or (args.progress == "auto" and sys.stderr.isatty())
    progress = Progress(total, show)
    try:
        report = import_mbox(path, stream, use_flags=not args.no_flags, progress=progress)
    except (MboxError, TooManyKeywords) as e:
        progress.done()
        raise AdminError(f"{args.mbox}: {e}") from None
    finally:
        if stream is not sys.stdin.buffer:
            stream.close()
    progress.update(total or report.bytes, report.messages, force=True)
    progress.done()
    where = f"{args.name}/{name}" + (" (new folder)" if created else "")
    uids = f", UIDs {uid_ranges(report.uids)}" if report.uids else ""
    flags = ", ".join(f"{n} {f}" for f, n in sorted(report.flags.items()))
    out.write(f"imported {report.messages} messages ({human(report.bytes)}) into {where}{uids}"
              + (f"; flags: {flags}" if flags else "") + "\n")
    return 0
