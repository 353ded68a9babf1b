"""Special-use attributes given with ``CREATE ... (USE (...))`` (RFC 6154
CREATE-SPECIAL-USE), kept per account in ``Maildir/mailsrv-special-use``:
one ``<attribute> TAB <IMAP name>`` line per folder, UTF-8.

Dovecot has no file for this (it takes special-use from its configuration
or from METADATA), so this is mailsrv's own; the default folders' attributes
(:data:`layout.DEFAULT_FOLDERS`) need no entry.  Written atomically; the
account keeps the table in memory, being the only writer."""

from __future__ import annotations

import os

from mailsrv.store.fsutil import atomic_write

FILE = "mailsrv-special-use"
USES = ("\\Archive", "\\Drafts", "\\Junk", "\\Sent", "\\Trash")
_CANONICAL = {u.lower(): u for u in USES}


def canonical_use(use: str) -> str | None:
    """The attribute as RFC 6154 spells it, or None if it cannot be given."""
    return _CANONICAL.get(use.lower())


def read(root: str) -> dict[str, str]:
    """``{folder name: attribute}``; lines that make no sense are skipped."""
    try:
        with open(os.path.join(root, FILE), "rb") as f:
            text = f.read().decode("utf-8", "replace")
    except FileNotFoundError:
        return {}
    out: dict[str, str] = {}
    for line in text.splitlines():
        use, sep, name = line.partition("\t")
        use_c = canonical_use(use)
        if sep and name and use_c:
            out[name] = use_c
    return out


def write(root: str, uses: dict[str, str]) -> None:
    body = "".join(f"{use}\t{name}\n" for name, use in sorted(uses.items()))
    atomic_write(os.path.join(root, FILE), body.encode("utf-8"), fsync=False)


def renamed(uses: dict[str, str], old: str, new: str) -> dict[str, str]:
    """The table after ``old`` (and its inferiors) became ``new``."""
    out = {}
    for name, use in uses.items():
        if name == old or name.startswith(old + "/"):
            name = new + name[len(old):]
        out[name] = use
    return out
