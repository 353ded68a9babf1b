"""The UIDs of a folder by flag, kept up to date as flags change, so a
flag search (UNSEEN, FLAGGED, DELETED, KEYWORD ...) is set arithmetic
instead of a look at every message.

Backend-neutral bookkeeping for a live folder: built from the folder's
messages on first use, then told of each added message, flag change and
expunge; :meth:`FlagIndex.reset` drops it (after a rescan), and the next
question rebuilds it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Protocol


class Flagged(Protocol):
    @property
    def flags(self) -> frozenset[str]: ...


class FlagIndex:
    """flag -> UIDs carrying it (exact spelling; :meth:`uids` folds case)."""

    def __init__(self) -> None:
        self._sets: dict[str, set[int]] | None = None

    @property
    def built(self) -> bool:
        return self._sets is not None

    def reset(self) -> None:
        self._sets = None

    def uids(self, flag: str, messages: Mapping[int, Flagged]) -> set[int]:
        """The UIDs carrying ``flag`` (a keyword in any case).  The set is
        the index's own when the spelling is exact: do not change it."""
        sets = self._sets
        if sets is None:
            sets = self._sets = {}
            for uid, m in messages.items():
                for f in m.flags:
                    s = sets.get(f)
                    if s is None:
                        s = sets[f] = set()
                    s.add(uid)
        found = sets.get(flag)
        if flag.startswith("\\"):
            return found if found is not None else set()
        low = flag.lower()
        others = [s for f, s in sets.items() if f != flag and f.lower() == low]
        if not others:
            return found if found is not None else set()
        return set().union(found or (), *others)

    def added(self, uid: int, flags: Iterable[str]) -> None:
        sets = self._sets
        if sets is not None:
            for f in flags:
                sets.setdefault(f, set()).add(uid)

    def removed(self, uid: int, flags: Iterable[str]) -> None:
        sets = self._sets
        if sets is not None:
            for f in flags:
                s = sets.get(f)
                if s is not None:
                    s.discard(uid)

    def changed(self, uid: int, old: frozenset[str], new: frozenset[str]) -> None:
        if self._sets is not None:
            self.removed(uid, old - new)
            self.added(uid, new - old)
