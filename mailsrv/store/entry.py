"""One message file of a folder as a scan (or the folder's snapshot) sees
it: its UID, where the file is and what its name says.

A NamedTuple, not a dataclass: a 100,000-message folder makes 100,000 of
them on every full scan and snapshot load, and a tuple costs no per-object
dict and unpacks at C speed.  When the index learns per-message
mod-sequences (CONDSTORE), they become another field here.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import NamedTuple


class Entry(NamedTuple):
    uid: int
    key: str  # Maildir base name (before ':'): the message's stable identity
    sub: str  # "new" or "cur"
    info: str | None  # what follows ':' in the file name ("2,FS"); None without ':'
    size: int  # RFC 822 size (CRLF line ends)
    pop3: str | None  # a POP3 UIDL recorded in the uid list ('P' extension), if any


#: Entry from a ready 6-tuple, without NamedTuple's argument-parsing
#: ``__new__`` (less than half its cost): what the 100k-entry loops use.
entry_of: Callable[[tuple], Entry] = functools.partial(tuple.__new__, Entry)
