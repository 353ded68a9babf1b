"""The flag-set and CONDSTORE/QRESYNC methods of :class:`IFolder` (issues
9 and 10) worked out from the rest of the interface: a walk over
``messages()`` for ``uids_with_flag`` and ``changed_since``, no expunge
record (``vanished_floor`` is ``highestmodseq``, so ``vanished_since``
answers below it with every UID under ``uidnext`` that is not in the folder,
the superset RFC 7162 3.2.5.2 allows) and UNCHANGEDSINCE as a test in
memory followed by ``store_flags``.

Correct for a folder whose changes all pass through this process; a
backend gives each method its real form (an index, the expunge record, a
conditional update in one transaction) by defining it in its own class,
before this mixin in the bases.  The PostgreSQL store uses it until it
does (issue 13).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from twisted.internet import defer


class ScannedChanges:
    """Mixin for an IFolder that has ``messages()``, ``get()``, ``uids()``,
    ``uidnext``, ``highestmodseq`` and ``store_flags()``."""

    @property
    def vanished_floor(self) -> int:
        return int(self.highestmodseq)  # type: ignore[attr-defined]

    def uids_with_flag(self, flag: str) -> set:
        msgs = self.messages()  # type: ignore[attr-defined]
        if flag.startswith("\\"):
            return {m.uid for m in msgs if flag in m.flags}
        want = flag.lower()
        return {m.uid for m in msgs if any(f.lower() == want for f in m.flags)}

    def changed_since(self, modseq: int) -> list:
        return sorted(m.uid for m in self.messages() if m.modseq > modseq)  # type: ignore[attr-defined]

    def vanished_since(self, modseq: int) -> list:
        if modseq >= self.highestmodseq:  # type: ignore[attr-defined]
            return []  # nothing changed since: exact
        present = set(self.uids())  # type: ignore[attr-defined]
        return [u for u in range(1, self.uidnext) if u not in present]  # type: ignore[attr-defined]

    def store_flags_unchanged_since(self, uids: Iterable[int], flags: Iterable[str], mode: str,
                                    unchangedsince: int) -> defer.Deferred:
        get = self.get  # type: ignore[attr-defined]
        present = [u for u in dict.fromkeys(uids) if get(u) is not None]
        modified = sorted(u for u in present if get(u).modseq > unchangedsince)
        skip = set(modified)
        rest = [u for u in present if u not in skip]
        flags = list(flags)
        d = self.store_flags(rest, flags, mode) if rest else defer.succeed([])  # type: ignore[attr-defined]

        def done(changed: Any) -> tuple[list[int], list[int]]:
            return sorted(changed), modified

        return d.addCallback(done)
