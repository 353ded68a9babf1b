"""Mod-sequences of the PostgreSQL store (RFC 7162 CONDSTORE/QRESYNC):
the expunge record in the database, and what a live folder keeps in
memory to answer ``vanished_since``, ``changed_since`` and
``uids_with_flag`` synchronously.

The counter itself is ``folders.highestmodseq``: every change to a
folder's messages - arrivals, flag changes, touches, expunges - locks the
folder row and takes ``highestmodseq + 1`` in the transaction that makes
the change (:mod:`.folder_sql`).  Whichever process or node writes, the
row lock orders the writers, so mod-sequences never repeat and never go
backwards, and a change is committed with its mod-sequence or not at all.

The expunge record is the ``expunged`` table: (UID, mod-sequence of the
expunge).  Like the Maildir store's (:mod:`mailsrv.store.modseq`) it keeps
the :data:`KEEP` most recent expunges of each folder; once it
holds a tenth more, an expunge also deletes the oldest rows, at most
:data:`TRIM_BATCH` per transaction (a record grown large under an older
schema shrinks over several expunges, none of them slow), and raises
``folders.vanished_floor`` to the highest mod-sequence it forgot.  Above
the floor the record is exact.

In memory (:class:`FolderIndex`), fed by the live folder's change feed
(its own writes and other nodes' through NOTIFY, :mod:`.folder`): the
record from the floor up, the (mod-sequence, UID) of every change in
mod-sequence order, and the UIDs per flag.  A feed that starts below the
floor (the folder missed more expunges than the record keeps) is a full
reload, and the index starts again from it.
"""

from __future__ import annotations

from array import array
from bisect import bisect_right
from collections.abc import Iterable, Mapping, Sequence
from operator import attrgetter
from typing import Any

from mailsrv.store.flagindex import FlagIndex
from mailsrv.store.interfaces import MessageInfo
from mailsrv.store.modseq import EXPUNGE_KEEP

KEEP = EXPUNGE_KEEP  # expunges remembered per folder, as the Maildir store does
TRIM_BATCH = 20_000  # expunge-record rows one transaction deletes at most

__all__ = ["KEEP", "TRIM_BATCH", "FolderIndex", "load_record", "record_expunges", "trim_count"]


def trim_count(rows: int) -> int:
    """How many of ``rows`` remembered expunges an expunge forgets: the
    oldest beyond :data:`KEEP` once they are a tenth more (the Maildir
    store's rule, :func:`mailsrv.store.modseq.trim_point`), at most
    :data:`TRIM_BATCH`."""
    excess = rows - KEEP
    return min(excess, TRIM_BATCH) if excess > KEEP // 10 else 0


# --- the expunge record (pool threads, inside the writer's transaction) ----------------------

def record_expunges(conn: Any, fid: int, uids: Sequence[int], modseq: int, rows: int) -> None:
    """Remember ``uids`` as expunged at ``modseq`` and trim the record
    when it has grown.  The caller holds the folder row's lock and has
    counted them in ``folders.expunged_rows``, which is now ``rows``."""
    conn.execute("INSERT INTO expunged (folder_id, uid, modseq) SELECT %s, u, %s FROM unnest(%s::bigint[]) u "
                 "ON CONFLICT (folder_id, uid) DO UPDATE SET modseq = EXCLUDED.modseq", (fid, modseq, list(uids)))
    count = trim_count(rows)
    if count:
        trim(conn, fid, count)


def trim(conn: Any, fid: int, count: int) -> int:
    """Forget the ``count`` oldest expunges of the folder; returns the new
    floor.  The row counter is set from a count afterwards, so it heals
    whatever drift it had (a UID expunged twice by a migration)."""
    rows = conn.execute("DELETE FROM expunged WHERE folder_id = %s AND uid IN (SELECT uid FROM expunged "
                        "WHERE folder_id = %s ORDER BY modseq, uid LIMIT %s) RETURNING modseq",
                        (fid, fid, count)).fetchall()
    cut = max((int(r[0]) for r in rows), default=0)
    row = conn.execute("UPDATE folders SET vanished_floor = greatest(vanished_floor, %s), "
                       "expunged_rows = (SELECT count(*) FROM expunged WHERE folder_id = %s) "
                       "WHERE id = %s RETURNING vanished_floor", (cut, fid, fid)).fetchone()
    return int(row[0])


def load_record(conn: Any, fid: int, floor: int) -> tuple[list[int], list[int]]:
    """The record above ``floor`` as (UIDs, mod-sequences), ascending by
    mod-sequence (then UID)."""
    with conn.cursor(binary=True) as cur:
        rows = cur.execute("SELECT uid, modseq FROM expunged WHERE folder_id = %s AND modseq > %s "
                           "ORDER BY modseq, uid", (fid, floor)).fetchall()
    return [int(r[0]) for r in rows], [int(r[1]) for r in rows]


# --- in memory (reactor thread) -------------------------------------------------------------

class FolderIndex:
    """A live folder's expunge record, change index and flag sets (see the
    module doc).  The folder calls :meth:`restart` on a full load and
    :meth:`expunged` / :meth:`changed` / :meth:`trim` with each feed it
    applies, and keeps :attr:`flags` in step as its messages change."""

    def __init__(self) -> None:
        self.floor = 1
        self._gone_uids = array("q")
        self._gone_modseqs = array("q")
        self._changes: tuple[array, array] | None = None  # (modseqs, uids), ascending by modseq
        self.flags = FlagIndex()

    def restart(self, gone_uids: Sequence[int], gone_modseqs: Sequence[int], floor: int) -> None:
        """A full load: the record as the database holds it; the change
        index and the flag sets are rebuilt from the messages when asked."""
        self.floor = floor
        self._gone_uids = array("q", gone_uids)
        self._gone_modseqs = array("q", gone_modseqs)
        self._changes = None
        self.flags.reset()

    def expunged(self, uids: Sequence[int], modseqs: Sequence[int], above: int) -> None:
        """Expunges of a feed (ascending by mod-sequence); those at or
        below ``above`` were applied with an earlier feed."""
        start = bisect_right(modseqs, above)
        if start < len(uids):
            self._gone_uids.extend(uids[start:])
            self._gone_modseqs.extend(modseqs[start:])

    def trim(self, floor: int) -> None:
        """The database forgot the expunges at or below ``floor``."""
        if floor > self.floor:
            self.floor = floor
            cut = bisect_right(self._gone_modseqs, floor)
            del self._gone_uids[:cut]
            del self._gone_modseqs[:cut]

    def changed(self, infos: Iterable[MessageInfo], above: int, count: int) -> None:
        """Messages of a feed (new, changed, touched); those at or below
        ``above`` were applied with an earlier feed.  ``count``: how many
        messages the folder holds (an index mostly of stale entries is
        dropped, and rebuilt when next asked)."""
        changes = self._changes
        if changes is None:
            return
        if len(changes[0]) > 2 * count + 1000:
            self._changes = None
            return
        fresh = sorted((m.modseq, m.uid) for m in infos if m.modseq > above)
        changes[0].extend(m for m, _u in fresh)
        changes[1].extend(u for _m, u in fresh)

    def changed_since(self, modseq: int, msgs: Mapping[int, MessageInfo]) -> list[int]:
        changes = self._changes
        if changes is None:  # by mod-sequence, then UID: a stable sort of the folder's UID order
            order = sorted(msgs.values(), key=attrgetter("modseq"))
            changes = self._changes = (array("q", [m.modseq for m in order]), array("q", [m.uid for m in order]))
        i = bisect_right(changes[0], modseq)
        return sorted({u for u in changes[1][i:] if (m := msgs.get(u)) is not None and m.modseq > modseq})

    def vanished_since(self, modseq: int, uidnext: int, msgs: Mapping[int, MessageInfo]) -> list[int]:
        if modseq >= self.floor:
            return sorted(u for u in self._gone_uids[bisect_right(self._gone_modseqs, modseq):] if u not in msgs)
        return [u for u in range(1, uidnext) if u not in msgs]  # trimmed: every UID not here (a superset)
