"""Messages as the PostgreSQL backend holds them in memory, and the flag
encoding of the ``messages`` table (system flags as bits, keywords as a
text array)."""

from __future__ import annotations

from collections.abc import Iterable

from mailsrv.store.interfaces import MessageInfo

FLAG_BITS = {"\\Answered": 1, "\\Flagged": 2, "\\Deleted": 4, "\\Seen": 8, "\\Draft": 16}
DELETED_BIT = FLAG_BITS["\\Deleted"]
_BIT_FLAGS = [(bit, name) for name, bit in FLAG_BITS.items()]


class PgMessageInfo(MessageInfo):
    """MessageInfo plus the body's blob id and a stored POP3 UIDL.  Never
    mutated once made: a flag change makes a new object, so snapshots
    handed out stay snapshots."""

    __slots__ = ("blob", "pop3", "saved")

    def __init__(self, uid: int, size: int, internaldate: float, flags: frozenset, modseq: int,
                 blob: int, pop3: str | None, saved: float | None = None) -> None:
        self.uid = uid
        self.key = str(uid)
        self.size = size
        self.internaldate = internaldate
        self.flags = flags
        self.modseq = modseq
        self.blob = blob
        self.pop3 = pop3
        self.saved = saved


def split_flags(flags: Iterable[str]) -> tuple[int, list[str]]:
    """Normalised flags -> (bit mask, sorted keywords)."""
    mask = 0
    keywords = []
    for f in flags:
        bit = FLAG_BITS.get(f)
        if bit is not None:
            mask |= bit
        else:
            keywords.append(f)
    return mask, sorted(keywords)


class FlagDecoder:
    """(bits, keywords) -> frozenset, the same object for equal input (a
    100,000-message folder has a handful of distinct flag sets)."""

    def __init__(self) -> None:
        self._memo: dict[tuple[int, tuple[str, ...]], frozenset] = {}

    def __call__(self, bits: int, keywords: list[str] | None) -> frozenset:
        key = (bits, tuple(keywords) if keywords else ())
        f = self._memo.get(key)
        if f is None:
            names = [name for bit, name in _BIT_FLAGS if bits & bit]
            names.extend(key[1])
            f = self._memo[key] = frozenset(names)
        return f


Row = tuple[int, int, int, list, float, int, int, "str | None", "float | None"]
COLUMNS = "uid, blob_id, flags, keywords, internaldate, size, modseq, pop3_uidl, saved"


def info_from_row(row: Row, decode: FlagDecoder) -> PgMessageInfo:
    uid, blob, bits, keywords, idate, size, modseq, pop3, saved = row
    return PgMessageInfo(uid, size, idate, decode(bits, keywords), modseq, blob, pop3, saved)
