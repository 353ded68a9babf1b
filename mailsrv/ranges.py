"""Runs of consecutive numbers, in the one place they are computed.

IMAP sequence sets (``1:3,7``), the admin tools' problem reports
(``1-3, 7``) and the benchmarks all print sets of UIDs compactly.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence


def runs(numbers: Sequence[int]) -> list[tuple[int, int]]:
    """``[1, 2, 3, 7]`` -> ``[(1, 3), (7, 7)]``, keeping the given order
    (a run continues only while each number is one more than the last)."""
    out: list[tuple[int, int]] = []
    for n in numbers:
        if out and n == out[-1][1] + 1:
            out[-1] = (out[-1][0], n)
        else:
            out.append((n, n))
    return out


def render(numbers: Sequence[int], sep: str = ":", joiner: str = ",", limit: int | None = None) -> str:
    """Runs as text: ``1:3,7`` by default, ``1-3, 7`` with other separators;
    ``limit`` shows at most that many runs, then ``...``."""
    parts = [str(a) if a == b else f"{a}{sep}{b}" for a, b in runs(numbers)]
    if limit is not None and len(parts) > limit:
        parts = parts[:limit] + ["..."]
    return joiner.join(parts)


def render_sorted(numbers: Iterable[int]) -> str:
    """IMAP form of a set of numbers in any order, duplicates dropped."""
    return render(sorted(set(numbers)))
