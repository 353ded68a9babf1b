"""The syntax of the searching commands: SEARCH (RFC 3501, ESEARCH's
RETURN of RFC 4731, SEARCHRES's SAVE of RFC 5182, CONTEXT/UPDATE/PARTIAL
of RFC 5267), SORT (RFC 5256, ESORT), THREAD and CANCELUPDATE.

Kept apart from :mod:`grammar` (which registers these with
``COMMANDS.update(parsers(search_key))``) so neither grows past a
readable size; the search-key parser is passed in, so this module does
not import the grammar back.
"""

from __future__ import annotations

from collections.abc import Callable

from mailsrv.imap import commands as C
from mailsrv.imap import searchkeys as K
from mailsrv.imap.reader import Reader, Syntax

TextFn = Callable[[bytes], str]
KeyParser = Callable[[Reader, TextFn], K.SearchKey]
ParseFn = Callable[[Reader, str, str, bool], C.Command]

RETURN_OPTIONS = frozenset({"MIN", "MAX", "ALL", "COUNT", "SAVE", "CONTEXT", "UPDATE"})
SORT_KEYS = frozenset({"ARRIVAL", "CC", "DATE", "FROM", "SIZE", "SUBJECT", "TO", "DISPLAYFROM", "DISPLAYTO"})
THREAD_ALGORITHMS = frozenset({"ORDEREDSUBJECT", "REFERENCES", "REFS"})


def _utf8(b: bytes) -> str:
    return b.decode("utf-8", "replace")


def _latin1(b: bytes) -> str:
    return b.decode("latin-1")


def partial_range(r: Reader) -> tuple[int, int]:
    """RFC 5267 ``partial-range = nz-number ":" nz-number`` (either order)."""
    lo = r.number()
    r.expect(b":")
    hi = r.number()
    if lo == 0 or hi == 0:
        raise Syntax("PARTIAL range numbers start at 1")
    return (lo, hi) if lo <= hi else (hi, lo)


def return_options(r: Reader) -> tuple[list[str], tuple[int, int] | None]:
    """``(...)`` after RETURN: the options (ALL when none but CONTEXT asks
    for anything, RFC 4731 and Dovecot) and a PARTIAL range."""
    opts: list[str] = []
    partial = None
    r.expect(b"(")
    while not r.maybe(b")"):
        if opts or partial:
            r.sp()
        o = r.atom().upper()
        if o == "PARTIAL":
            if partial is not None:
                raise Syntax("PARTIAL can be used only once")
            r.sp()
            partial = partial_range(r)
        elif o not in RETURN_OPTIONS:
            raise Syntax(f"unknown search return option {o}")
        elif o == "UPDATE" and o in opts:
            raise Syntax("duplicate UPDATE")
        else:
            opts.append(o)
    if partial is not None and "ALL" in opts:
        raise Syntax("PARTIAL conflicts with ALL")
    if partial is None and not set(opts) - {"CONTEXT"}:
        opts.append("ALL")
    return opts, partial


def sort_criteria(r: Reader) -> list[C.SortCriterion]:
    """``(["REVERSE" SP] key *(SP ["REVERSE" SP] key))``."""
    def criterion() -> C.SortCriterion:
        word = r.atom().upper()
        reverse = word == "REVERSE"
        if reverse:
            r.sp()
            word = r.atom().upper()
        if word not in SORT_KEYS:
            raise Syntax(f"unknown sort key {word}")
        return word, reverse
    return r.paren_list(criterion, allow_empty=False)


def parsers(search_key: KeyParser) -> dict[str, ParseFn]:
    """The parse functions of the searching commands, for the grammar's table."""

    def keys(r: Reader, charset: str | None) -> K.SearchKey:
        text = _utf8 if charset in (None, "UTF-8", "US-ASCII") else _latin1
        found = [search_key(r, text)]
        while not r.at_end():
            r.sp()
            found.append(search_key(r, text))
        return found[0] if len(found) == 1 else K.And(tuple(found))

    def returning(r: Reader) -> tuple[list[str] | None, tuple[int, int] | None]:
        if not r.maybe(b"RETURN "):
            return None, None
        opts, partial = return_options(r)
        r.sp()
        return opts, partial

    def charset_word(r: Reader) -> str:
        charset = r.astring().decode("ascii", "replace").upper()
        r.sp()
        return charset

    def search(r: Reader, tag: str, name: str, uid: bool) -> C.Command:
        """SEARCH [RETURN (...)] [CHARSET x] search-key..."""
        r.sp()
        return_opts, partial = returning(r)
        charset = charset_word(r) if r.maybe(b"CHARSET ") else None
        return C.Search(tag, "SEARCH", uid=uid, charset=charset, key=keys(r, charset), return_opts=return_opts,
                        partial=partial)

    def sort(r: Reader, tag: str, name: str, uid: bool) -> C.Command:
        """SORT [RETURN (...)] (criteria) charset search-key..."""
        r.sp()
        return_opts, partial = returning(r)
        criteria = sort_criteria(r)
        r.sp()
        charset = charset_word(r)
        return C.Sort(tag, "SORT", uid=uid, charset=charset, key=keys(r, charset), return_opts=return_opts,
                      partial=partial, criteria=criteria)

    def thread(r: Reader, tag: str, name: str, uid: bool) -> C.Command:
        """THREAD algorithm charset search-key..."""
        r.sp()
        algorithm = r.atom().upper()
        if algorithm not in THREAD_ALGORITHMS:
            raise Syntax(f"unknown thread algorithm {algorithm}")
        r.sp()
        charset = charset_word(r)
        return C.Thread(tag, "THREAD", uid=uid, algorithm=algorithm, charset=charset, key=keys(r, charset))

    def cancelupdate(r: Reader, tag: str, name: str, uid: bool) -> C.Command:
        """CANCELUPDATE 1*(SP quoted) (RFC 5267 4.3.5)."""
        tags = []
        while not r.at_end():
            r.sp()
            tags.append(r.quoted().decode("utf-8", "replace"))
        if not tags:
            raise Syntax("CANCELUPDATE needs a tag")
        return C.CancelUpdate(tag, name, tags=tags)

    return {"SEARCH": search, "SORT": sort, "THREAD": thread, "CANCELUPDATE": cancelupdate}
