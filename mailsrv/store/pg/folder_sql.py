"""The SQL of one folder's life: load, change feed (delta), append, flags,
expunge, copy.  Every function here runs in a pool thread inside one
transaction (:meth:`Database.run`) and touches no reactor state; the live
folder (:mod:`.folder`) applies what they return.

Writers lock the folder row first (``SELECT ... FOR UPDATE``), so writers
to one folder take turns whichever process they run in: UIDs come from
``uidnext`` under that lock and are never handed out twice; the change
gets ``highestmodseq + 1``, an expunge too (:mod:`.modseq` keeps the
expunge record).  A write then reads the change feed since the
caller's last known mod-sequence, still under the lock, so the caller
applies its own change and everything that came before it in one step.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from mailsrv.store.interfaces import NoSuchFolder, OverQuota, StoreError
from mailsrv.store.pg.blobs import BlobBackend, Body
from mailsrv.store.pg.errors import TooManyKeywords
from mailsrv.store.pg.message import COLUMNS, DELETED_BIT, FlagDecoder, PgMessageInfo, info_from_row
from mailsrv.store.pg.modseq import load_record, record_expunges

MAX_KEYWORDS = 256
MAX_UID = 4294967295


@dataclass
class FolderState:
    uidvalidity: int
    uidnext: int
    highestmodseq: int
    first_recent_uid: int
    keywords: list[str]
    vanished_floor: int = 1


@dataclass
class Delta:
    """The folder's changes since mod-sequence ``since``: its row now (None:
    deleted), the messages changed or added, the UIDs expunged with their
    mod-sequences (ascending by mod-sequence).  ``full``: ``since`` was
    below the expunge record's floor (or 0), so the delta holds every
    message and the whole record instead; what the caller has and it
    lacks was expunged."""

    since: int
    state: FolderState | None
    infos: list[PgMessageInfo] = field(default_factory=list)
    expunged: list[int] = field(default_factory=list)
    expunged_modseqs: list[int] = field(default_factory=list)
    full: bool = False
    folder_values: dict[str, bytes] | None = None  # (load only) the folder-wide derived values

    @property
    def upto(self) -> int:
        return self.state.highestmodseq if self.state is not None else self.since


@dataclass
class QuotaCheck:
    """The quota that applies to storing into one folder (Dovecot's rules,
    mailsrv.store.quota): limits 0 mean none; ``ignored`` folders do not
    count towards usage."""

    account_id: int
    user: str
    octets: int
    messages: int
    ignored: list[str]
    temporary: bool = False


def usage(conn: Any, account_id: int, ignored: Sequence[str] = ()) -> tuple[int, int]:
    """(octets, messages) an account uses: a sum over its folders' counters."""
    row = conn.execute("SELECT coalesce(sum(storage), 0), coalesce(sum(messages), 0) FROM folders "
                       "WHERE account_id = %s AND NOT name = ANY(%s)", (account_id, list(ignored))).fetchone()
    return int(row[0]), int(row[1])


def check_quota(conn: Any, q: QuotaCheck | None, octets: int, messages: int) -> None:
    """Refuse (OverQuota, nothing stored) what would go beyond the limit;
    the account row is locked until the transaction ends, so two writers
    cannot both slip under it."""
    if q is None or (not q.octets and not q.messages):
        return
    conn.execute("SELECT 1 FROM accounts WHERE id = %s FOR UPDATE", (q.account_id,))
    used, count = usage(conn, q.account_id, q.ignored)
    if (q.octets and used + octets > q.octets) or (q.messages and count + messages > q.messages):
        err = OverQuota(f"Quota exceeded (mailbox for user {q.user} is full)")
        err.temporary = q.temporary
        raise err


@dataclass
class NewMessage:
    body: Body
    bits: int
    keywords: list[str]
    internaldate: float
    uid: int | None = None  # a given UID (migration); None: the next one
    pop3: str | None = None


def _state(row: Any) -> FolderState:
    return FolderState(int(row[0]), int(row[1]), int(row[2]), int(row[3]), list(row[4] or ()), int(row[5]))


def _folder_row(conn: Any, fid: int, lock: bool) -> FolderState | None:
    q = ("SELECT uidvalidity, uidnext, highestmodseq, first_recent_uid, keywords, vanished_floor "
         "FROM folders WHERE id = %s")
    row = conn.execute(q + (" FOR UPDATE" if lock else ""), (fid,)).fetchone()
    return None if row is None else _state(row)


def lock_folder(conn: Any, fid: int) -> FolderState:
    st = _folder_row(conn, fid, lock=True)
    if st is None:
        raise NoSuchFolder("the folder was deleted")
    return st


def snapshot(conn: Any) -> None:
    """Make the reads of this transaction one consistent picture."""
    conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")


def load(conn: Any, fid: int, decode: FlagDecoder) -> Delta:
    """Every message of the folder and its expunge record (a full delta)."""
    snapshot(conn)
    st = _folder_row(conn, fid, lock=False)
    if st is None:
        return Delta(0, None)
    d = _full(conn, fid, st, decode)
    with conn.cursor(binary=True) as cur:
        d.folder_values = {r[0]: bytes(r[1]) for r in cur.execute(
            "SELECT kind, value FROM folder_values WHERE folder_id = %s", (fid,))}
    return d


def _full(conn: Any, fid: int, st: FolderState, decode: FlagDecoder) -> Delta:
    with conn.cursor(binary=True) as cur:
        rows = cur.execute(f"SELECT {COLUMNS} FROM messages WHERE folder_id = %s ORDER BY uid", (fid,)).fetchall()
    gone, modseqs = load_record(conn, fid, st.vanished_floor)
    return Delta(0, st, [info_from_row(r, decode) for r in rows], gone, modseqs, full=True)


def delta(conn: Any, fid: int, since: int, decode: FlagDecoder, fresh: bool = True) -> Delta:
    """What changed after mod-sequence ``since`` (everything, if the
    expunge record no longer reaches back to it).  ``fresh``: a read-only
    transaction of its own (else: inside a writer that holds the lock)."""
    if fresh:
        snapshot(conn)
    st = _folder_row(conn, fid, lock=False)
    if st is None or st.highestmodseq <= since:
        return Delta(since, st)
    if since < st.vanished_floor:
        return _full(conn, fid, st, decode)
    with conn.cursor(binary=True) as cur:
        rows = cur.execute(f"SELECT {COLUMNS} FROM messages WHERE folder_id = %s AND modseq > %s ORDER BY uid",
                           (fid, since)).fetchall()
        gone = cur.execute("SELECT uid, modseq FROM expunged WHERE folder_id = %s AND modseq > %s "
                           "ORDER BY modseq, uid", (fid, since)).fetchall()
    return Delta(since, st, [info_from_row(r, decode) for r in rows], [int(r[0]) for r in gone],
                 [int(r[1]) for r in gone])


def _new_keywords(conn: Any, fid: int, st: FolderState, keywords: set[str]) -> None:
    """Define keywords in the folder (FLAGS lists them)."""
    missing = sorted(k for k in keywords if k not in st.keywords)
    if not missing:
        return
    if len(st.keywords) + len(missing) > MAX_KEYWORDS:
        raise TooManyKeywords(f"a folder has room for {MAX_KEYWORDS} keywords")
    conn.execute("UPDATE folders SET keywords = keywords || %s::text[] WHERE id = %s", (missing, fid))
    st.keywords.extend(missing)


def append(conn: Any, fid: int, items: Sequence[NewMessage], blobs: BlobBackend, since: int | None,
           decode: FlagDecoder, quota: QuotaCheck | None = None) -> tuple[list[int], Delta | None]:
    """Store bodies (before taking the folder lock), then the messages.
    Returns their UIDs (aligned with ``items``) and the delta since
    ``since`` (None: no live folder to feed, only the folder's new state)."""
    blob_ids = [blobs.store(conn, it.body) for it in items]
    octets = sum(it.body.size for it in items)
    check_quota(conn, quota, octets, len(items))
    st = lock_folder(conn, fid)
    uids: list[int] = []
    nxt = st.uidnext
    for it in items:
        if it.uid is not None:
            if it.uid < st.uidnext and _exists(conn, fid, it.uid):
                raise StoreError(f"UID {it.uid} is taken")
            uids.append(it.uid)
            nxt = max(nxt, it.uid + 1)
        else:
            uids.append(nxt)
            nxt += 1
    if nxt - 1 > MAX_UID:
        raise StoreError("the folder has used up its UIDs; it must be recreated")
    modseq = st.highestmodseq + 1
    _new_keywords(conn, fid, st, {k for it in items for k in it.keywords})
    conn.execute(
        "INSERT INTO messages (folder_id, uid, blob_id, flags, keywords, internaldate, size, modseq, pop3_uidl, "
        "saved) SELECT %s, u, b, f, string_to_array(k, ' '), d, s, %s, p, extract(epoch FROM now()) "
        "FROM unnest(%s::bigint[], %s::bigint[], %s::smallint[], %s::text[], %s::float8[], %s::bigint[], "
        "%s::text[]) AS t(u, b, f, k, d, s, p)",
        (fid, modseq, uids, blob_ids, [it.bits for it in items], [" ".join(it.keywords) for it in items],
         [it.internaldate for it in items], [it.body.size for it in items], [it.pop3 for it in items]))
    conn.execute("UPDATE folders SET uidnext = %s, highestmodseq = %s, storage = storage + %s, "
                 "messages = messages + %s WHERE id = %s", (nxt, modseq, octets, len(items), fid))
    if since is None:  # no live folder: only where the folder is now ("nothing after this modseq")
        return uids, Delta(modseq, FolderState(st.uidvalidity, nxt, modseq, st.first_recent_uid, st.keywords,
                                               st.vanished_floor))
    return uids, delta(conn, fid, since, decode, fresh=False)


def _exists(conn: Any, fid: int, uid: int) -> bool:
    return conn.execute("SELECT 1 FROM messages WHERE folder_id = %s AND uid = %s", (fid, uid)).fetchone() is not None


_FLAG_SQL = {
    "+": ("flags = flags | %(bits)s::smallint, "
          "keywords = ARRAY(SELECT DISTINCT k FROM unnest(keywords || %(kw)s::text[]) k ORDER BY k)",
          "((flags & %(bits)s::smallint) <> %(bits)s::smallint OR NOT keywords @> %(kw)s::text[])"),
    "-": ("flags = flags & ~%(bits)s::smallint, "
          "keywords = ARRAY(SELECT k FROM unnest(keywords) k WHERE k <> ALL(%(kw)s::text[]) ORDER BY k)",
          "((flags & %(bits)s::smallint) <> 0 OR keywords && %(kw)s::text[])"),
    "=": ("flags = %(bits)s::smallint, keywords = %(kw)s::text[]",
          "(flags <> %(bits)s::smallint OR NOT (keywords @> %(kw)s::text[] AND %(kw)s::text[] @> keywords))"),
}


def store_flags(conn: Any, fid: int, uids: Sequence[int], bits: int, keywords: list[str], mode: str,
                since: int, decode: FlagDecoder) -> tuple[list[int], Delta]:
    """Change flags of those ``uids`` that would change (relative to what
    the database holds now, not to what the caller saw)."""
    changed, _modified, d = store_flags_unchanged_since(conn, fid, uids, bits, keywords, mode, None, since, decode)
    return changed, d


def store_flags_unchanged_since(conn: Any, fid: int, uids: Sequence[int], bits: int, keywords: list[str],
                                mode: str, unchangedsince: int | None, since: int,
                                decode: FlagDecoder) -> tuple[list[int], list[int], Delta]:
    """``store_flags`` with RFC 7162's UNCHANGEDSINCE (None: no test):
    the messages whose mod-sequence is above it are left alone and
    returned as modified.  Test and change happen under the folder lock
    that every writer on every node takes first, and the UPDATE repeats
    the test, so nothing comes between them."""
    st = lock_folder(conn, fid)
    modseq = st.highestmodseq + 1
    modified: list[int] = []
    targets = list(uids)
    params = {"bits": bits, "kw": keywords, "modseq": modseq, "fid": fid, "uids": targets,
              "limit": unchangedsince}
    test = ""
    if unchangedsince is not None:
        test = " AND modseq <= %(limit)s"
        modified = sorted(int(r[0]) for r in conn.execute(
            "SELECT uid FROM messages WHERE folder_id = %(fid)s AND uid = ANY(%(uids)s) AND modseq > %(limit)s",
            params))
    if mode != "-" and len(modified) < len(targets):
        _new_keywords(conn, fid, st, set(keywords))
    setter, differs = _FLAG_SQL[mode]
    rows = conn.execute(
        f"UPDATE messages SET {setter}, modseq = %(modseq)s "
        f"WHERE folder_id = %(fid)s AND uid = ANY(%(uids)s) AND {differs}{test} RETURNING uid", params).fetchall()
    changed = sorted(int(r[0]) for r in rows)
    if changed:
        conn.execute("UPDATE folders SET highestmodseq = %s WHERE id = %s", (modseq, fid))
    return changed, modified, delta(conn, fid, since, decode, fresh=False)


def touch(conn: Any, fid: int, uids: Sequence[int], since: int, decode: FlagDecoder) -> tuple[list[int], Delta]:
    """A new mod-sequence for these messages, flags unchanged (a user's
    private \\Seen changed: IFolder.touch_modseq, issue 12)."""
    st = lock_folder(conn, fid)
    modseq = st.highestmodseq + 1
    rows = conn.execute("UPDATE messages SET modseq = %s WHERE folder_id = %s AND uid = ANY(%s) RETURNING uid",
                        (modseq, fid, list(uids))).fetchall()
    touched = sorted(int(r[0]) for r in rows)
    if touched:
        conn.execute("UPDATE folders SET highestmodseq = %s WHERE id = %s", (modseq, fid))
    return touched, delta(conn, fid, since, decode, fresh=False)


_DELETED = f"(flags & {DELETED_BIT}) <> 0"  # spelled as the partial index messages_deleted (schema step 5)


def expunge(conn: Any, fid: int, uids: Sequence[int] | None, since: int,
            decode: FlagDecoder) -> tuple[list[int], list[int], Delta]:
    """Remove the given UIDs (None: those flagged \\Deleted); returns the
    UIDs removed, the blobs they used, and the delta.  With None the
    database says which messages are flagged, whatever this node has
    heard so far; when none is (a CLOSE, usually) the folder is not
    locked at all: a flag being set meanwhile comes after this EXPUNGE."""
    if uids is None and conn.execute(f"SELECT 1 FROM messages WHERE folder_id = %s AND {_DELETED} LIMIT 1",
                                     (fid,)).fetchone() is None:
        return [], [], delta(conn, fid, since, decode, fresh=False)
    st = lock_folder(conn, fid)
    if uids is None:
        rows = conn.execute(f"DELETE FROM messages WHERE folder_id = %s AND {_DELETED} "
                            "RETURNING uid, blob_id, size", (fid,)).fetchall()
    else:
        rows = conn.execute("DELETE FROM messages WHERE folder_id = %s AND uid = ANY(%s) RETURNING uid, blob_id, size",
                            (fid, list(uids))).fetchall()
    gone = sorted(int(r[0]) for r in rows)
    if gone:
        modseq = st.highestmodseq + 1
        kept = conn.execute("UPDATE folders SET highestmodseq = %s, storage = storage - %s, messages = messages - %s, "
                            "expunged_rows = expunged_rows + %s WHERE id = %s RETURNING expunged_rows",
                            (modseq, sum(int(r[2]) for r in rows), len(rows), len(gone), fid)).fetchone()[0]
        record_expunges(conn, fid, gone, modseq, int(kept))
    return gone, sorted({int(r[1]) for r in rows}), delta(conn, fid, since, decode, fresh=False)


def copy(conn: Any, src: int, uids: Sequence[int], dst: int, since: int | None,
         decode: FlagDecoder, quota: QuotaCheck | None = None) -> tuple[list[tuple[int, int]], Delta | None]:
    """Copy messages (their blobs are shared, not copied) with flags and
    internal dates; (source UID, new UID) pairs ascending by source UID."""
    rows = conn.execute("SELECT uid, keywords, size FROM messages WHERE folder_id = %s AND uid = ANY(%s) "
                        "ORDER BY uid FOR SHARE", (src, list(uids))).fetchall()
    octets = sum(int(r[2]) for r in rows)
    check_quota(conn, quota, octets, len(rows))
    st = lock_folder(conn, dst)
    if not rows:
        return [], (None if since is None else delta(conn, dst, since, decode, fresh=False))
    src_uids = [int(r[0]) for r in rows]
    new_uids = list(range(st.uidnext, st.uidnext + len(rows)))
    if new_uids[-1] > MAX_UID:
        raise StoreError("the target folder has used up its UIDs")
    modseq = st.highestmodseq + 1
    _new_keywords(conn, dst, st, {k for r in rows for k in (r[1] or ())})
    conn.execute(
        "INSERT INTO messages (folder_id, uid, blob_id, flags, keywords, internaldate, size, modseq, saved) "
        "SELECT %s, t.n, m.blob_id, m.flags, m.keywords, m.internaldate, m.size, %s, extract(epoch FROM now()) "
        "FROM unnest(%s::bigint[], %s::bigint[]) AS t(o, n) JOIN messages m ON m.folder_id = %s AND m.uid = t.o",
        (dst, modseq, src_uids, new_uids, src))
    conn.execute("UPDATE folders SET uidnext = %s, highestmodseq = %s, storage = storage + %s, "
                 "messages = messages + %s WHERE id = %s", (new_uids[-1] + 1, modseq, octets, len(rows), dst))
    pairs = list(zip(src_uids, new_uids, strict=True))
    return pairs, (None if since is None else delta(conn, dst, since, decode, fresh=False))


def claim_recent(conn: Any, fid: int, upto: int) -> None:
    """Every UID below ``upto`` has been \\Recent for some session."""
    conn.execute("UPDATE folders SET first_recent_uid = greatest(first_recent_uid, %s) WHERE id = %s", (upto, fid))


# --- bodies and derived values ------------------------------------------------------------

def read_slices(conn: Any, wanted: Sequence[tuple[int, int]]) -> dict[int, bytes]:
    """``{blob: bytes}`` of the first ``length`` bytes of each (blob, length)."""
    if not wanted:
        return {}
    with conn.cursor(binary=True) as cur:
        rows = cur.execute("SELECT b.id, substring(b.data FROM 1 FOR t.n) FROM unnest(%s::bigint[], %s::int[]) "
                           "AS t(id, n) JOIN blobs b ON b.id = t.id",
                           ([w[0] for w in wanted], [w[1] for w in wanted])).fetchall()
    return {int(r[0]): bytes(r[1]) for r in rows}


def cached_values(conn: Any, blobs: Sequence[int], kinds: Sequence[str]) -> list[tuple[int, str, bytes]]:
    if not blobs or not kinds:
        return []
    with conn.cursor(binary=True) as cur:
        rows = cur.execute("SELECT blob_id, kind, value FROM cache WHERE blob_id = ANY(%s) AND kind = ANY(%s)",
                           (list(blobs), list(kinds))).fetchall()
    return [(int(r[0]), r[1], bytes(r[2])) for r in rows]


def save_values(conn: Any, values: Sequence[tuple[int, str, bytes]],
                folder_values: Sequence[tuple[int, str, bytes, float]] = ()) -> None:
    """Remember derived values (a value for a blob removed meanwhile is
    dropped: it would die with the blob anyway), and folder-wide ones
    (folder, kind, value, when set): the latest set wins, whatever order
    the writes arrive in."""
    if folder_values:
        conn.execute("INSERT INTO folder_values (folder_id, kind, value, written) SELECT t.f, t.k, t.v, t.w "
                     "FROM unnest(%s::bigint[], %s::text[], %s::bytea[], %s::float8[]) AS t(f, k, v, w) "
                     "WHERE EXISTS (SELECT 1 FROM folders WHERE id = t.f) ON CONFLICT (folder_id, kind) DO UPDATE "
                     "SET value = EXCLUDED.value, written = EXCLUDED.written "
                     "WHERE folder_values.written <= EXCLUDED.written",
                     ([v[0] for v in folder_values], [v[1] for v in folder_values], [v[2] for v in folder_values],
                      [v[3] for v in folder_values]))
    if not values:
        return
    conn.execute("INSERT INTO cache (blob_id, kind, value) SELECT t.b, t.k, t.v "
                 "FROM unnest(%s::bigint[], %s::text[], %s::bytea[]) AS t(b, k, v) "
                 "WHERE EXISTS (SELECT 1 FROM blobs WHERE id = t.b) ON CONFLICT (blob_id, kind) DO NOTHING",
                 ([v[0] for v in values], [v[1] for v in values], [v[2] for v in values]))
