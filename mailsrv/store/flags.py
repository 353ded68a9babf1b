"""Flags as every store backend takes them: system flags in their one
canonical spelling (:data:`~mailsrv.store.interfaces.SYSTEM_FLAGS`),
keywords as IMAP atoms, ``\\Recent`` never stored.

Nothing here knows about Maildir; how a backend records flags (file name
letters, a database column) is its own business.
"""

from __future__ import annotations

from collections.abc import Iterable

from mailsrv.store.interfaces import SYSTEM_FLAGS, StoreError

RECENT = "\\Recent"
_SYSTEM_BY_LOWER = {f.lower(): f for f in SYSTEM_FLAGS}
_ATOM_SPECIALS = frozenset('(){%*"\\] ')


class InvalidFlag(StoreError):
    code = "CANNOT"


def normalize_flags(flags: Iterable[str]) -> frozenset[str]:
    """Canonical spelling of system flags, ``\\Recent`` dropped (the session
    computes it), keywords checked to be atoms.  Raises InvalidFlag."""
    out = set()
    for f in flags:
        if not isinstance(f, str) or not f:
            raise InvalidFlag(f"invalid flag {f!r}")
        if f.startswith("\\"):
            canon = _SYSTEM_BY_LOWER.get(f.lower())
            if canon is None:
                if f.lower() == RECENT.lower():
                    continue
                raise InvalidFlag(f"unknown system flag {f}")
            out.add(canon)
        else:
            if _ATOM_SPECIALS.intersection(f) or any(ord(c) < 33 or ord(c) > 126 for c in f):
                raise InvalidFlag(f"invalid keyword {f!r}")
            out.add(f)
    return frozenset(out)
