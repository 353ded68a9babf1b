"""One message file of a folder as a scan (or the folder's snapshot) sees
it: its UID, where the file is and what its name says.

:class:`Entry` is the named type; :class:`EntryTable` holds the many
entries of a whole folder column by column.  A full scan or snapshot load
of a 100k-message folder as a list of 100k Entry tuples would keep 100k
more objects alive while the folder's message objects are built, and the
cyclic garbage collector walks them on every collection (a tuple subclass
is never untracked as a plain tuple is): measured, that made a 100k open a
quarter slower.  Six columns of ints and strings are six objects.

When the index learns per-message mod-sequences (CONDSTORE), they become
another field of both.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Iterator, MutableSequence, Sequence
from typing import NamedTuple, Protocol, overload


class Entry(NamedTuple):
    uid: int
    key: str  # Maildir base name (before ':'): the message's stable identity
    sub: str  # "new" or "cur"
    info: str | None  # what follows ':' in the file name ("2,FS"); None without ':'
    size: int  # RFC 822 size (CRLF line ends)
    pop3: str | None  # a POP3 UIDL recorded in the uid list ('P' extension), if any


class EntryLike(Protocol):
    """Anything with an Entry's fields: an Entry, or the live folder's
    message object (what a snapshot is written from)."""

    @property
    def uid(self) -> int: ...
    @property
    def key(self) -> str: ...
    @property
    def sub(self) -> str: ...
    @property
    def info(self) -> str | None: ...
    @property
    def size(self) -> int: ...
    @property
    def pop3(self) -> str | None: ...


Row = tuple[int, str, str, str | None, int, str | None]  # an Entry's fields, as a plain tuple

#: Entry from a ready 6-tuple, without NamedTuple's argument-parsing
#: ``__new__`` (less than half its cost).
entry_of: Callable[[Row], Entry] = functools.partial(tuple.__new__, Entry)


class EntryTable(Sequence[Entry]):
    """Entries ascending by UID, one column per Entry field.  Indexing and
    iterating give Entry objects, made as they are read; :meth:`rows` gives
    plain tuples for loops that only unpack them.  The hot loops that build
    a table append to the columns directly."""

    __slots__ = ("uids", "keys", "subs", "infos", "sizes", "pop3s")

    def __init__(self, uids: MutableSequence[int] | None = None, keys: MutableSequence[str] | None = None,
                 subs: MutableSequence[str] | None = None, infos: MutableSequence[str | None] | None = None,
                 sizes: MutableSequence[int] | None = None, pop3s: MutableSequence[str | None] | None = None
                 ) -> None:
        self.uids: MutableSequence[int] = [] if uids is None else uids
        self.keys: MutableSequence[str] = [] if keys is None else keys
        self.subs: MutableSequence[str] = [] if subs is None else subs
        self.infos: MutableSequence[str | None] = [] if infos is None else infos
        self.sizes: MutableSequence[int] = [] if sizes is None else sizes
        self.pop3s: MutableSequence[str | None] = [] if pop3s is None else pop3s

    @classmethod
    def of(cls, entries: Iterable[EntryLike]) -> EntryTable:
        table = cls()
        for e in entries:
            table.append(e)
        return table

    def append(self, e: EntryLike) -> None:
        self.uids.append(e.uid)
        self.keys.append(e.key)
        self.subs.append(e.sub)
        self.infos.append(e.info)
        self.sizes.append(e.size)
        self.pop3s.append(e.pop3)

    def rows(self) -> Iterator[Row]:
        """The entries as plain tuples in Entry's field order."""
        return zip(self.uids, self.keys, self.subs, self.infos, self.sizes, self.pop3s, strict=True)

    def __iter__(self) -> Iterator[Entry]:
        return map(entry_of, self.rows())

    def __len__(self) -> int:
        return len(self.uids)

    @overload
    def __getitem__(self, i: int) -> Entry: ...

    @overload
    def __getitem__(self, i: slice) -> EntryTable: ...

    def __getitem__(self, i: int | slice) -> Entry | EntryTable:
        if isinstance(i, slice):
            return EntryTable(self.uids[i], self.keys[i], self.subs[i], self.infos[i], self.sizes[i], self.pop3s[i])
        return entry_of((self.uids[i], self.keys[i], self.subs[i], self.infos[i], self.sizes[i], self.pop3s[i]))

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Sequence):
            return NotImplemented
        return len(self) == len(other) and all(a == b for a, b in zip(self, other, strict=True))

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"EntryTable({list(self)!r})"
