"""SEARCH by flags only (UNSEEN, FLAGGED, DELETED, KEYWORD, NOT/OR/AND of
them, ALL, RECENT/NEW/OLD), answered from the store's flag sets
(``IFolder.uids_with_flag``) with set arithmetic instead of a look at
every message of the view; anything else goes to :mod:`search`.

The answer is the same as :func:`mailsrv.imap.search.search` gives,
without the messages another session expunged that this one has not
been told of yet (the SEARCH handler leaves those out in any case).
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Callable

from mailsrv.imap import searchkeys as K
from mailsrv.imap.session import SelectedMailbox

_ONLY_FLAGS = (K.Flag, K.All, K.Recent, K.New, K.Old)


def answerable(key: K.SearchKey) -> bool:
    """The key asks about flags (and \\Recent) only."""
    if isinstance(key, _ONLY_FLAGS):
        return True
    if isinstance(key, K.Not):
        return answerable(key.key)
    if isinstance(key, K.Or):
        return answerable(key.a) and answerable(key.b)
    if isinstance(key, K.And):
        return all(answerable(k) for k in key.keys)
    return False


class _View:
    """The session's live UIDs, as a set built only when a NOT or an
    absent flag needs it."""

    def __init__(self, sel: SelectedMailbox) -> None:
        self.sel = sel
        self._set: set[int] | None = None

    def all(self) -> set[int]:
        if self._set is None:
            get = self.sel.folder.get
            self._set = {u for u in self.sel.uids if get(u) is not None}
        return self._set

    def keep(self, uids: set[int]) -> set[int]:
        """Those of ``uids`` that are in the view."""
        if self._set is not None:
            return uids & self._set
        seq_of, get = self.sel.seq_of, self.sel.folder.get
        return {u for u in uids if seq_of(u) is not None and get(u) is not None}


def _eval(key: K.SearchKey, view: _View, flagged: Callable[[str], set[int]]) -> set[int]:
    sel = view.sel
    if isinstance(key, K.Flag):
        has = view.keep(flagged(key.flag))
        return has if key.present else view.all() - has
    if isinstance(key, K.All):
        return set(view.all())
    if isinstance(key, K.Recent):
        return view.keep(set(sel.recent))
    if isinstance(key, K.New):
        return view.keep(set(sel.recent)) - flagged("\\Seen")
    if isinstance(key, K.Old):
        return view.all() - set(sel.recent)
    if isinstance(key, K.Not):
        return view.all() - _eval(key.key, view, flagged)
    if isinstance(key, K.Or):
        return _eval(key.a, view, flagged) | _eval(key.b, view, flagged)
    assert isinstance(key, K.And)
    out = _eval(key.keys[0], view, flagged)
    for k in key.keys[1:]:
        if not out:
            break
        out &= _eval(k, view, flagged)
    return out


def search(sel: SelectedMailbox, key: K.SearchKey) -> list[int] | None:
    """Ascending sequence numbers of the live messages matching ``key``,
    or None when the key asks about more than flags."""
    if not answerable(key):
        return None
    folder = sel.folder
    found = _eval(key, _View(sel), folder.uids_with_flag)
    uids = sel.uids
    if len(found) * 8 < len(uids):
        return sorted(bisect_left(uids, u) + 1 for u in found)
    return [i for i, u in enumerate(uids, 1) if u in found]
