"""IMAP sequence sets (RFC 3501 sequence-set): parse, resolve, render.

A set is a list of ``(lo, hi)`` tuples; ``None`` stands for ``*`` (the largest
number in use).  Resolution happens against a session's view at the moment a
command runs, because ``*`` and sequence numbers mean nothing on their own.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections.abc import Iterable, Sequence

from mailsrv import ranges

SeqSet = list[tuple[int | None, int | None]]

_MAX = 0xFFFFFFFF


class SavedResult(list[tuple[int | None, int | None]]):
    """``$`` as a command's sequence set (RFC 5182 SEARCHRES): the session
    resolves it to the UIDs its last SEARCH RETURN (SAVE) kept."""


class SeqSetError(ValueError):
    """Not a valid sequence-set."""


def _number(text: str) -> int | None:
    if text == "*":
        return None
    if not text.isdigit() or not text.isascii() or text.startswith("0"):
        raise SeqSetError(f"invalid sequence number {text!r}")
    n = int(text)
    if n > _MAX:
        raise SeqSetError("sequence number out of range")
    return n


def parse(text: str) -> SeqSet:
    """Parse ``1:4,7,9:*``; raise SeqSetError on anything else."""
    if not text:
        raise SeqSetError("empty sequence set")
    out: SeqSet = []
    for item in text.split(","):
        lo, sep, hi = item.partition(":")
        if sep:
            out.append((_number(lo), _number(hi)))
        else:
            n = _number(lo)
            out.append((n, n))
    return out


def _bounds(lo: int | None, hi: int | None, star: int) -> tuple[int, int]:
    a = star if lo is None else lo
    b = star if hi is None else hi
    return (a, b) if a <= b else (b, a)


def resolve_seq(seqset: SeqSet, count: int) -> list[int]:
    """Sequence numbers (1-based, ascending, unique) that exist in a view of
    ``count`` messages.  Numbers beyond the view are dropped; the caller
    decides whether that is an error (see :func:`seq_in_range`)."""
    if count == 0:
        return []
    picked: set = set()
    for lo, hi in seqset:
        a, b = _bounds(lo, hi, count)
        b = min(b, count)
        if a <= b:
            picked.update(range(a, b + 1))
    return sorted(picked)


def seq_in_range(seqset: SeqSet, count: int) -> bool:
    """False if a message sequence number lies outside 1..count (RFC 3501
    says that is an error for non-UID commands).  ``*`` always fits."""
    for lo, hi in seqset:
        for n in (lo, hi):
            if n is not None and n > count:
                return False
    return True


def resolve_uid(seqset: SeqSet, uids: Sequence[int]) -> list[int]:
    """UIDs of ``uids`` (ascending) that fall in the set.  ``*`` is the
    largest UID in use, so ``n:*`` always matches the last message (RFC 3501
    6.4.8), even when n is larger."""
    if not uids:
        return []
    star = uids[-1]
    picked: set = set()
    for lo, hi in seqset:
        a, b = _bounds(lo, hi, star)
        i = bisect_left(uids, a)
        j = bisect_right(uids, b)
        picked.update(uids[i:j])
    return sorted(picked)


def render(numbers: Iterable[int]) -> str:
    """Compact form of ascending-sortable numbers: ``1:3,5``."""
    return ranges.render_sorted(numbers)


def render_pairs(numbers: Sequence[int]) -> str:
    """Like :func:`render` but keeps the given order (COPYUID needs the
    source and destination sets to correspond element by element)."""
    return ranges.render(numbers)
