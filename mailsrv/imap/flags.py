"""Flags as the IMAP layer sees them: the store's one list of system flags
(:data:`mailsrv.store.interfaces.SYSTEM_FLAGS`) plus the session-only
``\\Recent``.  Everything here is derived from that list, so a system flag
is never spelled out twice."""

from __future__ import annotations

from collections.abc import Iterable

from mailsrv.store.interfaces import SYSTEM_FLAGS

RECENT = "\\Recent"

# upper-case spelling -> canonical spelling, for flags clients send in any case
_CANONICAL = {f.upper(): f for f in (*SYSTEM_FLAGS, RECENT)}

# SEARCH ANSWERED/DELETED/... (and UN...) name the system flags without "\"
SEARCH_FLAG_KEYS = {f[1:].upper(): f for f in SYSTEM_FLAGS}


def canonical(flag: str) -> str:
    """``\\SEEN`` -> ``\\Seen``; keywords and unknown flags unchanged."""
    return _CANONICAL.get(flag.upper(), flag)


def storable(flags: Iterable[str]) -> list[str] | None:
    """The flags a STORE or APPEND may set (\\Recent dropped: the server
    owns it), or None when one is an unknown system flag (a BAD command)."""
    out = []
    for f in flags:
        if f == RECENT:
            continue
        if f.startswith("\\") and f not in SYSTEM_FLAGS:
            return None
        out.append(f)
    return out
