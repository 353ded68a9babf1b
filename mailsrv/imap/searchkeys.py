"""SEARCH keys as typed values (RFC 3501 6.4.4), built by the grammar and
evaluated by :mod:`mailsrv.imap.search`.

One frozen dataclass per kind of test, not per keyword: ``UNSEEN`` is
``Flag("\\Seen", present=False)``, ``FROM x`` is ``Header("From", "x")``,
``SENTBEFORE d`` is ``Date("sent", "BEFORE", d)``.  A later key (MODSEQ,
SAVEDATE, SEARCHRES's ``$``) is a new class here, a parse function in the
grammar's key table and one registered evaluator in ``search``; nothing
else changes.  Values are frozen and hashable (sequence sets are tuples),
so a key can be compared in tests and cached.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass
from typing import Literal, TypeAlias

Ranges = tuple[tuple[int | None, int | None], ...]  # a sequence set; None is '*'
DateOp = Literal["BEFORE", "ON", "SINCE"]


@dataclass(frozen=True, slots=True)
class All:
    """ALL: every message."""


@dataclass(frozen=True, slots=True)
class Recent:
    """RECENT: \\Recent in this session."""


@dataclass(frozen=True, slots=True)
class New:
    """NEW: \\Recent and not \\Seen."""


@dataclass(frozen=True, slots=True)
class Old:
    """OLD: not \\Recent."""


@dataclass(frozen=True, slots=True)
class Flag:
    """A system flag or keyword set (``present``) or not set."""

    flag: str
    present: bool = True


@dataclass(frozen=True, slots=True)
class Header:
    """Case-insensitive substring of a header field's decoded value
    (FROM TO CC BCC SUBJECT HEADER); an empty value: the field exists."""

    field: str
    value: str


@dataclass(frozen=True, slots=True)
class Body:
    """BODY: substring of the decoded text parts."""

    text: str


@dataclass(frozen=True, slots=True)
class Text:
    """TEXT: substring of the header or the body."""

    text: str


@dataclass(frozen=True, slots=True)
class Date:
    """BEFORE/ON/SINCE (``internal``: the internal date) and SENTBEFORE/
    SENTON/SENTSINCE (``sent``: the Date: header)."""

    field: Literal["internal", "sent"]
    op: DateOp
    day: datetime.date


@dataclass(frozen=True, slots=True)
class Size:
    """LARGER n / SMALLER n on the RFC 822 size."""

    op: Literal["LARGER", "SMALLER"]
    n: int


@dataclass(frozen=True, slots=True)
class Seq:
    """A sequence set of message numbers."""

    seqset: Ranges


@dataclass(frozen=True, slots=True)
class Uid:
    """UID set."""

    seqset: Ranges


@dataclass(frozen=True, slots=True)
class Not:
    key: SearchKey


@dataclass(frozen=True, slots=True)
class Or:
    a: SearchKey
    b: SearchKey


@dataclass(frozen=True, slots=True)
class And:
    """A parenthesised list, or the keys of the command itself."""

    keys: tuple[SearchKey, ...]


# -- issue 12: SAVEDATE (RFC 8514), OBJECTID (RFC 8474); evaluated in searchext


@dataclass(frozen=True, slots=True)
class SaveDate:
    """SAVEDBEFORE / SAVEDON / SAVEDSINCE: the UTC calendar date of the
    save date, as BEFORE/ON/SINCE read the internal date."""

    op: DateOp
    day: datetime.date


@dataclass(frozen=True, slots=True)
class SaveDateSupported:
    """SAVEDATESUPPORTED: every message when the mailbox keeps save dates
    (every mailbox here does)."""


@dataclass(frozen=True, slots=True)
class ObjectId:
    """EMAILID x / THREADID x: the message's id is exactly ``value``."""

    kind: Literal["emailid", "threadid"]
    value: str


SearchKey: TypeAlias = (All | Recent | New | Old | Flag | Header | Body | Text | Date | Size | Seq | Uid | Not | Or
                        | And | SaveDate | SaveDateSupported | ObjectId)
