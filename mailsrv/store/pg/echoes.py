"""Telling this account's own deliveries from other processes' changes in
the change feed of folders no session here has open.

A delivery into such a folder is told to account listeners (NOTIFY,
RFC 5465) itemised, as :class:`MessagesAdded`, when its transaction
returns.  Its commit also sends a NOTIFY, which may arrive before or after
that; another process's change sends one too, and is told as
:class:`FolderChanged`.  Each change has its own mod-sequence, and
PostgreSQL delivers notifications in commit order, so: while a delivery
into a folder is in flight its notifications are held; one whose
mod-sequence is a delivery's own is an echo and dropped; any other is
another process's change.
"""

from __future__ import annotations

MAX_REMEMBERED = 1000  # own mod-sequences kept per folder when no echo comes (the feed was down)


class OwnWrites:
    """Per account: the deliveries in flight and their mod-sequences."""

    def __init__(self) -> None:
        self._flight: dict[int, int] = {}
        self._held: dict[int, list[int]] = {}
        self._mine: dict[int, set[int]] = {}

    def started(self, fid: int) -> None:
        self._flight[fid] = self._flight.get(fid, 0) + 1

    def finished(self, fid: int, modseq: int | None) -> bool:
        """A delivery into ``fid`` returned (``modseq``: its own, None if
        it failed).  True: another process changed the folder meanwhile."""
        left = self._flight[fid] - 1
        if left:
            self._flight[fid] = left
        else:
            del self._flight[fid]
        if modseq is not None:
            mine = self._mine.setdefault(fid, set())
            mine.add(modseq)
            if len(mine) > MAX_REMEMBERED:
                mine.discard(min(mine))
        if left:
            return False
        foreign = [self._foreign(fid, m) for m in sorted(self._held.pop(fid, ()))]
        return any(foreign)

    def notified(self, fid: int, modseq: int) -> bool:
        """A NOTIFY for ``fid``; True: tell it (another process's change,
        or the folder was deleted)."""
        if modseq < 0:
            return True
        if self._flight.get(fid):
            self._held.setdefault(fid, []).append(modseq)
            return False
        return self._foreign(fid, modseq)

    def _foreign(self, fid: int, modseq: int) -> bool:
        mine = self._mine.get(fid)
        if not mine or modseq not in mine:
            return True
        for m in [m for m in mine if m <= modseq]:  # in commit order: the earlier ones are past
            mine.discard(m)
        if not mine:
            del self._mine[fid]
        return False
