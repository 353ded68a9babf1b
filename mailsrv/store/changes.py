"""What one operation of a live Maildir folder changed, with its
mod-sequence: worked out and recorded (:mod:`mailsrv.store.modseq`) in the
operation's worker thread, applied by the folder in the reactor.

The live folder runs every disk operation in a worker thread under its
lock; :class:`ModseqRecorder` is the thread-side keeper of the folder's
mod-sequences.  Each operation that changes something - arrivals, a flag
change, an expunge, a rescan that found other programs' changes - takes
the next mod-sequence and records what changed *before* the folder applies
it and tells its sessions (write-ahead), so nothing a client has seen can
be lost in a crash.  The folder then applies :class:`Changes` as they are:
it decides nothing about mod-sequences itself.

A rescan compares the scan with the folder's current view (read from the
worker thread: no other operation runs, and the reactor changes the view
only in operations).
"""

from __future__ import annotations

from collections.abc import Container, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from mailsrv.store.entry import EntryTable
from mailsrv.store.filename import flags_from_info
from mailsrv.store.modseq import Loaded, ModseqFile, canonical


class ViewMessage(Protocol):
    """What a rescan compares with: the folder's message objects."""

    @property
    def key(self) -> str: ...
    @property
    def flags(self) -> frozenset[str]: ...
    @property
    def modseq(self) -> int: ...


@dataclass
class Changes:
    """One operation's changes.  ``modseq`` is 0 when nothing changed;
    ``flags`` holds the flags of every changed or added message; ``reset``
    is set when the folder got a new UIDVALIDITY (everything anew, each
    message at the mod-sequence it holds)."""

    modseq: int = 0
    flags: dict[int, frozenset[str]] = field(default_factory=dict)
    added: list[int] = field(default_factory=list)
    changed: list[int] = field(default_factory=list)
    expunged: list[int] = field(default_factory=list)
    reset: Loaded | None = None


class ModseqRecorder:
    """The thread side of one folder's mod-sequences (see module doc)."""

    def __init__(self, folder_dir: str) -> None:
        self.file = ModseqFile(folder_dir)
        self._memo: dict[str | None, tuple[frozenset[str], str]] = {}
        self._keywords: list[str | None] | None = None

    def moved(self, folder_dir: str) -> None:
        self.file.moved(folder_dir)

    def _flags(self, info: str | None, keywords: list[str | None]) -> tuple[frozenset[str], str]:
        """(flags, canonical string) of a file name's info, memoised."""
        if keywords != self._keywords:
            self._keywords, self._memo = list(keywords), {}
        got = self._memo.get(info)
        if got is None:
            fl = flags_from_info(info, keywords)
            got = self._memo[info] = (fl, canonical(fl))
        return got

    def load(self, uidvalidity: int, uidnext: int, entries: EntryTable, keywords: list[str | None]) -> Loaded:
        """Opening: the recorded mod-sequence of each entry, reconciled
        with what the files say."""
        flags = self._flags
        for info in set(entries.infos):
            flags(info, keywords)
        memo = self._memo
        canon = [memo[i][1] for i in entries.infos]
        return self.file.load(uidvalidity, uidnext, entries.uids, canon)

    def arrivals(self, entries: Iterable[tuple[int, str | None]], keywords: list[str | None],
                 known: Container[int]) -> Changes:
        """New messages (UID, info); those already ``known`` are not new."""
        ch = Changes()
        for uid, info in entries:
            if uid not in known and uid not in ch.flags:
                ch.flags[uid] = self._flags(info, keywords)[0]
                ch.added.append(uid)
        return self._record(ch)

    def flagged(self, changed: Iterable[tuple[int, frozenset[str]]]) -> Changes:
        """Messages (UID, new flags) whose files are renamed to carry them
        next (recorded as pending until :meth:`ModseqFile.confirm`)."""
        ch = Changes()
        for uid, flags in changed:
            ch.flags[uid] = flags
            ch.changed.append(uid)
        return self._record(ch, pending=True)

    def touched(self, unchanged: Iterable[tuple[int, frozenset[str]]]) -> Changes:
        """Messages (UID, their unchanged flags) given a new mod-sequence
        only (a private flag kept elsewhere changed): nothing to rename."""
        ch = Changes()
        for uid, flags in unchanged:
            ch.flags[uid] = flags
            ch.changed.append(uid)
        return self._record(ch)

    def pending(self, uidvalidity: int, entries: EntryTable, keywords: list[str | None]
                ) -> list[tuple[str, str, str | None, frozenset[str]]]:
        """Opening: flag changes recorded before the process stopped whose
        files do not carry them yet, as items for ``DiskFolder.set_flags``."""
        pending = self.file.pending(uidvalidity)
        if not pending:
            return []
        items = []
        for uid, key, sub, info, _size, _pop3 in entries.rows():
            want = pending.get(uid)
            if want is not None and self._flags(info, keywords)[1] != want:
                items.append((key, sub, info, frozenset(want.split())))
        return items

    def expunged(self, uids: Sequence[int]) -> Changes:
        return self._record(Changes(expunged=list(uids)))

    def rescan(self, uidvalidity: int, uidnext: int, current_validity: int, entries: EntryTable,
               keywords: list[str | None], view: Mapping[int, ViewMessage]) -> Changes:
        """A full scan against the folder's view: arrivals, flag changes
        and expunges by anyone, one mod-sequence for all.  A new
        UIDVALIDITY starts the record again."""
        if view and uidvalidity != current_validity:
            return Changes(expunged=list(view), added=list(entries.uids),
                           reset=self.load(uidvalidity, uidnext, entries, keywords))
        ch = Changes()
        seen = 0
        for uid, key, _sub, info, _size, _pop3 in entries.rows():
            fl = self._flags(info, keywords)[0]
            m = view.get(uid)
            if m is not None and m.key == key:
                seen += 1
                if fl != m.flags:
                    ch.flags[uid] = fl
                    ch.changed.append(uid)
                continue
            ch.flags[uid] = fl
            ch.added.append(uid)
        if seen < len(view):
            present = set(entries.uids)
            ch.expunged = [u for u in view if u not in present]
        return self._record(ch)

    def _record(self, ch: Changes, pending: bool = False) -> Changes:
        if ch.flags or ch.expunged:
            ch.modseq = self.file.next_modseq()
            memo = {fl: canonical(fl) for fl in set(ch.flags.values())}
            self.file.record(ch.modseq, ((u, memo[fl]) for u, fl in ch.flags.items()), ch.expunged, pending)
        return ch

    def close(self, view: Mapping[int, ViewMessage], floor: int) -> None:
        """The folder goes away with ``view``: see :meth:`ModseqFile.close`."""
        memo: dict[frozenset[str], str] = {}
        uids = list(view)
        flags = []
        modseqs = []
        for m in view.values():
            fl = m.flags
            c = memo.get(fl)
            if c is None:
                c = memo[fl] = canonical(fl)
            flags.append(c)
            modseqs.append(m.modseq)
        self.file.close(uids, modseqs, flags, floor)

    def drop(self) -> None:
        """The folder was deleted: let go of the file."""
        self.file.close_file()
