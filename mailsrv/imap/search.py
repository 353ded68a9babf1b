"""SEARCH evaluation over a session's view.

The key is the tuple tree the parser builds (see ``search`` below).  Each key
is compiled once into a predicate with a cost class; AND/OR evaluate cheaper
operands first, so flags, sequence numbers, UIDs, sizes and internal dates
(all in MessageInfo) decide before any header is looked at, headers come from
the folder cache (filled on first use), and message bodies are read only for
BODY/TEXT.  One pass over the view: O(messages x key size).

Dates: BEFORE/ON/SINCE compare the UTC calendar date of the internal date;
SENT* compare the date written in the Date: header (its own time zone, as
RFC 3501 says to disregard time and zone); a missing or unparsable Date:
matches no SENT* key.  String keys are case-insensitive substrings
(Unicode casefold) of the RFC 2047-decoded text; raw 8-bit is read as UTF-8.
"""

from __future__ import annotations

import calendar
import datetime
import email.utils
from bisect import bisect_right
from collections.abc import Callable, Iterable, Sequence

from mailsrv.imap import fetchdata, mime
from mailsrv.store.crlf import to_crlf
from mailsrv.store.interfaces import MessageInfo

Pred = Callable[[int, MessageInfo], bool]

CHEAP, HEADER, BODY = 0, 1, 2


class _Message:
    """Lazily derived data of the message being tested (one at a time)."""

    __slots__ = ("folder", "uid", "_info", "_header", "_fields", "_data", "_root")

    def __init__(self, folder) -> None:
        self.folder = folder
        self.uid = -1

    def use(self, info: MessageInfo) -> _Message:
        if info.uid != self.uid:
            self.uid = info.uid
            self._info = info
            self._header = self._fields = self._data = self._root = None
        return self

    def header(self) -> bytes:
        if self._header is None:
            self._header = fetchdata.header_bytes(self.folder, self._info)
        return self._header

    def fields(self) -> list[mime.Field]:
        if self._fields is None:
            self._fields = mime.parse_fields(self.header())
        return self._fields

    def data(self) -> bytes:
        if self._data is None:
            f = self.folder.open_message(self.uid)
            try:
                self._data = to_crlf(f.read())
            finally:
                f.close()
        return self._data

    def body_text(self) -> str:
        data = self.data()
        if self._root is None:
            self._root = mime.parse(data)
        return "\n".join(mime.decode_body(data, p) for p in mime.text_parts(self._root))


def search(folder, view: Sequence[MessageInfo], key: tuple, recent: set[int],
           charset: str | None = None) -> list[int]:
    """1-based sequence numbers of the messages of ``view`` matching ``key``.

    Keys: ('ALL',) ('NEW',) ('OLD',) ('RECENT',) ('FLAG', f) ('UNFLAG', f)
    ('BEFORE'|'ON'|'SINCE'|'SENTBEFORE'|'SENTON'|'SENTSINCE', date)
    ('LARGER'|'SMALLER', n) ('HEADER', name, value) ('BODY', s) ('TEXT', s)
    ('SEQ', seqset) ('UID', seqset) ('NOT', k) ('OR', k1, k2) ('AND', [k...]);
    a seqset is [(lo, hi)] with None for '*'.  ``charset`` is accepted for
    the interface: the parser has already turned the strings into str.
    """
    if not view:
        return []
    msg = _Message(folder)
    _, pred = _compile(key, view, recent, msg)
    return [i + 1 for i, info in enumerate(view) if pred(i, info)]


def _compile(key, view, recent: set[int], msg: _Message) -> tuple[int, Pred]:
    name = key[0]
    if name == "ALL":
        return CHEAP, lambda i, m: True
    if name == "RECENT":
        return CHEAP, lambda i, m: m.uid in recent
    if name == "OLD":
        return CHEAP, lambda i, m: m.uid not in recent
    if name == "NEW":
        return CHEAP, lambda i, m: m.uid in recent and "\\Seen" not in m.flags
    if name in ("FLAG", "UNFLAG"):
        flag, has = key[1], _has_flag(key[1])
        if name == "FLAG":
            return CHEAP, lambda i, m: flag in m.flags or has(m.flags)
        return CHEAP, lambda i, m: flag not in m.flags and not has(m.flags)
    if name in ("BEFORE", "ON", "SINCE"):
        lo = calendar.timegm(key[1].timetuple())
        hi = lo + 86400
        if name == "BEFORE":
            return CHEAP, lambda i, m: m.internaldate < lo
        if name == "SINCE":
            return CHEAP, lambda i, m: m.internaldate >= lo
        return CHEAP, lambda i, m: lo <= m.internaldate < hi
    if name in ("SENTBEFORE", "SENTON", "SENTSINCE"):
        return HEADER, _sent(name, key[1], msg)
    if name == "LARGER":
        n = key[1]
        return CHEAP, lambda i, m: m.size > n
    if name == "SMALLER":
        n = key[1]
        return CHEAP, lambda i, m: m.size < n
    if name == "SEQ":
        inside = _member(key[1], len(view))
        return CHEAP, lambda i, m: inside(i + 1)
    if name == "UID":
        inside = _member(key[1], view[-1].uid)
        return CHEAP, lambda i, m: inside(m.uid)
    if name == "HEADER":
        return HEADER, _header(key[1], key[2], msg, view)
    if name == "BODY":
        needle = key[1].casefold()
        return BODY, lambda i, m: needle in msg.use(m).body_text().casefold()
    if name == "TEXT":
        needle = key[1].casefold()

        def text(i, m):
            mm = msg.use(m)
            head = mime.decode_header_value(mime.unfold(mm.header()))
            return needle in head.casefold() or needle in mm.body_text().casefold()
        return BODY, text
    if name == "NOT":
        cost, p = _compile(key[1], view, recent, msg)
        return cost, lambda i, m: not p(i, m)
    if name == "OR":
        a = sorted((_compile(k, view, recent, msg) for k in key[1:]), key=lambda cp: cp[0])
        (ca, pa), (cb, pb) = a
        return max(ca, cb), lambda i, m: pa(i, m) or pb(i, m)
    if name == "AND":
        parts = sorted((_compile(k, view, recent, msg) for k in key[1]), key=lambda cp: cp[0])
        preds = [p for _, p in parts]
        cost = max((c for c, _ in parts), default=CHEAP)
        if len(preds) == 1:
            return cost, preds[0]
        return cost, lambda i, m: all(p(i, m) for p in preds)
    raise ValueError(f"unknown search key {name!r}")


def _has_flag(flag: str) -> Callable[[frozenset], bool]:
    low = flag.lower()

    def has(flags) -> bool:
        return flag in flags or any(f.lower() == low for f in flags)
    return has


def _member(seqset, star: int) -> Callable[[int], bool]:
    """Membership in a sequence set where None is ``star``; O(log ranges)."""
    spans = []
    for lo, hi in seqset:
        a = star if lo is None else lo
        b = star if hi is None else hi
        if a > b:
            a, b = b, a
        spans.append((a, b))
    spans.sort()
    merged: list[list[int]] = []
    for a, b in spans:
        if merged and a <= merged[-1][1] + 1:
            merged[-1][1] = max(merged[-1][1], b)
        else:
            merged.append([a, b])
    los = [a for a, _ in merged]
    his = [b for _, b in merged]

    def inside(n: int) -> bool:
        k = bisect_right(los, n) - 1
        return k >= 0 and n <= his[k]
    return inside


def _field_values(header: bytes, lname: bytes):
    """Unfolded values of every occurrence of the (lower-case) field name;
    a byte search on the lower-cased header, no full parse."""
    low = header.lower()
    pos = 0 if low.startswith(lname) else low.find(b"\n" + lname)
    while pos >= 0:
        start = pos if pos == 0 and low.startswith(lname) else pos + 1
        j = start + len(lname)
        while header[j:j + 1] in (b" ", b"\t"):
            j += 1
        if header[j:j + 1] == b":":
            end = j + 1
            while True:
                nl = header.find(b"\n", end)
                if nl < 0:
                    end = len(header)
                    break
                if header[nl + 1:nl + 2] in (b" ", b"\t"):
                    end = nl + 1
                    continue
                end = nl
                break
            yield mime.unfold(header[j + 1:end]).strip(b" \t\r")
        pos = low.find(b"\n" + lname, start + 1)


def _search_text(values: Iterable[bytes]) -> bytes:
    """What a HEADER key matches against: each value RFC 2047-decoded (raw
    8-bit as UTF-8) and casefolded, as UTF-8, each after a LF."""
    return b"".join(b"\n" + mime.decode_header_value(v).casefold().encode("utf-8", "surrogatepass")
                    for v in values)


def _header(field: str, value: str, msg: _Message, view: Sequence[MessageInfo]) -> Pred:
    """Case-insensitive substring match on any occurrence of the field.

    The decoded, casefolded values are cached per message (kind
    ``hs:<name>``) and read for the whole view in one query on first use,
    so a warm search is a bytes ``in`` per message.  A UTF-8 needle is a
    substring of the UTF-8 text exactly when it is one of the str; a needle
    without LF cannot span two values; an empty one matches any message
    that has the field at all."""
    needle = value.casefold().encode("utf-8", "surrogatepass")
    lname = field.lower().encode("utf-8", "replace")
    kind: str | None = fetchdata.SEARCH_TEXT + field.lower()
    if len(kind) > fetchdata.MAX_KIND:
        kind = None
    known: dict = {}
    loaded = []

    def text(m: MessageInfo) -> bytes:
        if not loaded:
            loaded.append(True)
            if kind is not None:
                known.update(fetchdata.cached_many(msg.folder, [i.uid for i in view], kind))
        t = known.get(m.uid)
        if t is None:
            t = _search_text(_field_values(msg.use(m).header(), lname))
            if kind is not None:
                msg.folder.set_cached(m.uid, kind, t)
        return t

    if not needle:
        return lambda i, m: bool(text(m))
    if b"\n" in needle:  # only a literal can hold one: match value by value
        return lambda i, m: any(needle in v for v in text(m).split(b"\n")[1:])
    return lambda i, m: needle in text(m)


def _sent(name: str, day: datetime.date, msg: _Message) -> Pred:
    def pred(i, m) -> bool:
        v = mime.first(msg.use(m).fields(), "date")
        if v is None:
            return False
        try:
            t = email.utils.parsedate_tz(mime.decode_raw(v))
        except (ValueError, IndexError, TypeError, OverflowError):
            return False
        if not t:
            return False
        try:
            d = datetime.date(t[0], t[1], t[2])
        except ValueError:
            return False
        if name == "SENTBEFORE":
            return d < day
        if name == "SENTSINCE":
            return d >= day
        return d == day
    return pred
