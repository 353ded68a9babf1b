"""SEARCH evaluation over a session's view.

The key is a :mod:`searchkeys` value.  Each key is compiled once into a
predicate with a cost class (one function per key class, registered with
:func:`compile_key`); AND/OR evaluate cheaper
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
import functools
from bisect import bisect_right
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass

from mailsrv.imap import addresses as addr_mod
from mailsrv.imap import fetchdata, headers, mime
from mailsrv.imap import searchkeys as K
from mailsrv.store.crlf import to_crlf
from mailsrv.store.interfaces import IFolder, MessageGone, MessageInfo

Pred = Callable[[int, MessageInfo], bool]
Compiled = tuple[int, Pred]  # (cost class, predicate)

CHEAP, HEADER, BODY = 0, 1, 2


class _Message:
    """Lazily derived data of the message being tested (one at a time)."""

    __slots__ = ("folder", "uid", "_info", "_header", "_fields", "_data", "_root")

    def __init__(self, folder: IFolder) -> None:
        self.folder = folder
        self.uid = -1
        self._info: MessageInfo | None = None
        self._header: bytes | None = None
        self._fields: list[headers.Field] | None = None
        self._data: bytes | None = None
        self._root: mime.Part | None = None

    def use(self, info: MessageInfo) -> _Message:
        if info.uid != self.uid:
            self.uid = info.uid
            self._info = info
            self._header = self._fields = self._data = self._root = None
        return self

    def header(self) -> bytes:
        if self._header is None:
            assert self._info is not None
            self._header = fetchdata.header_bytes(self.folder, self._info)
        return self._header

    def fields(self) -> list[headers.Field]:
        if self._fields is None:
            self._fields = headers.parse_fields(self.header())
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


@dataclass
class _Scope:
    """What compiling a key may look at: the view, this session's \\Recent
    set and the message being tested."""

    view: Sequence[MessageInfo]
    recent: set[int]
    msg: _Message


def search(folder: IFolder, view: Sequence[MessageInfo], key: K.SearchKey, recent: set[int],
           charset: str | None = None) -> list[int]:
    """1-based sequence numbers of the messages of ``view`` matching ``key``
    (a :mod:`searchkeys` value).  ``charset`` is accepted for the
    interface: the grammar has already turned the strings into str."""
    if not view:
        return []
    _, pred = compile_key(key, _Scope(view, recent, _Message(folder)))
    return [i + 1 for i, info in enumerate(view) if pred(i, info)]


def _guarded(pred: Pred, gone: set[int]) -> Pred:
    """``pred``, with a message that is gone when it is read (MessageGone:
    expunged meanwhile, its file removed) left out and its UID added to
    ``gone``, so the answer can say ``[EXPUNGEISSUED]`` (as Dovecot's
    does) instead of the whole command failing."""

    def test(i: int, info: MessageInfo) -> bool:
        try:
            return pred(i, info)
        except MessageGone:
            gone.add(info.uid)
            return False

    return test


LOAD_CHUNK = 200  # messages whose headers or bodies are fetched at a time


async def search_loaded(folder: IFolder, view: Sequence[MessageInfo], key: K.SearchKey, recent: set[int],
                        charset: str | None = None, gone: set[int] | None = None) -> list[int]:
    """:func:`search`, with what the key reads (headers, cached header
    texts, bodies) fetched from the store chunk by chunk first
    (``IFolder.prefetch``), each chunk tested while its data is at hand:
    a remote store's reads never wait in the reactor thread, and a body
    search over a large folder never holds more than a chunk of bodies.
    Messages found gone while read are left out, their UIDs added to
    ``gone`` (when given; otherwise MessageGone propagates)."""
    if not view:
        return []
    kinds, body = needs(key)
    cost, pred = compile_key(key, _Scope(view, recent, _Message(folder)))
    if cost != CHEAP and gone is not None:
        pred = _guarded(pred, gone)
    if cost == CHEAP or body is None:
        return [i + 1 for i, info in enumerate(view) if pred(i, info)]
    out: list[int] = []
    for start in range(0, len(view), LOAD_CHUNK):
        chunk = view[start:start + LOAD_CHUNK]
        await folder.prefetch([m.uid for m in chunk], sorted(kinds), body)
        out.extend(start + j + 1 for j, info in enumerate(chunk) if pred(start + j, info))
    return out


def needs(key: K.SearchKey) -> tuple[set[str], str | None]:
    """The cached kinds and the part of each message ("header", "full" or
    None) that evaluating ``key`` may read."""
    if isinstance(key, (K.Header, K.Address)):
        prefix = fetchdata.SEARCH_ADDRESSES if isinstance(key, K.Address) else fetchdata.SEARCH_TEXT
        full_kind = prefix + key.field.lower()
        kinds = {fetchdata.HEADER} | ({full_kind} if len(full_kind) <= fetchdata.MAX_KIND else set())
        return kinds, "header"
    if isinstance(key, K.Date) and key.field == "sent":
        return {fetchdata.HEADER}, "header"
    if isinstance(key, (K.Body, K.Text)):
        return set(), "full"
    subs: tuple[K.SearchKey, ...] = ()
    if isinstance(key, K.Not):
        subs = (key.key,)
    elif isinstance(key, K.Or):
        subs = (key.a, key.b)
    elif isinstance(key, K.And):
        subs = key.keys
    parts = [needs(sub) for sub in subs]
    bodies = {b for _k, b in parts}
    if "full" in bodies:
        return set(), "full"  # whole messages for every one: the header texts follow from them
    kinds = set().union(*(k for k, _b in parts)) if parts else set()
    return kinds, ("header" if "header" in bodies else None)


def search_among(folder: IFolder, view: Sequence[MessageInfo], key: K.SearchKey, recent: set[int],
                 positions: Iterable[int]) -> list[int]:
    """:func:`search` for the messages at these 0-based positions of
    ``view`` only (what changed, for RFC 5267 context updates); sequence
    numbers and ``*`` in the key still refer to the whole view.  A message
    gone when read is no hit (its expunge is reported in any case)."""
    if not view:
        return []
    cost, pred = compile_key(key, _Scope(view, recent, _Message(folder)))
    if cost != CHEAP:
        pred = _guarded(pred, set())
    return [i + 1 for i in positions if pred(i, view[i])]


@functools.singledispatch
def compile_key(key: object, scope: _Scope) -> Compiled:
    """A predicate and its cost class for one key; one function registered
    per key class below."""
    raise ValueError(f"unknown search key {key!r}")


@compile_key.register
def _all(key: K.All, scope: _Scope) -> Compiled:
    return CHEAP, lambda i, m: True


@compile_key.register
def _recent(key: K.Recent, scope: _Scope) -> Compiled:
    recent = scope.recent
    return CHEAP, lambda i, m: m.uid in recent


@compile_key.register
def _old(key: K.Old, scope: _Scope) -> Compiled:
    recent = scope.recent
    return CHEAP, lambda i, m: m.uid not in recent


@compile_key.register
def _new(key: K.New, scope: _Scope) -> Compiled:
    recent = scope.recent
    return CHEAP, lambda i, m: m.uid in recent and "\\Seen" not in m.flags


@compile_key.register
def _flag(key: K.Flag, scope: _Scope) -> Compiled:
    flag, has = key.flag, _has_flag(key.flag)
    if key.present:
        return CHEAP, lambda i, m: flag in m.flags or has(m.flags)
    return CHEAP, lambda i, m: flag not in m.flags and not has(m.flags)


@compile_key.register
def _date(key: K.Date, scope: _Scope) -> Compiled:
    if key.field == "sent":
        return HEADER, _sent(key.op, key.day, scope.msg)
    lo = calendar.timegm(key.day.timetuple())
    hi = lo + 86400
    if key.op == "BEFORE":
        return CHEAP, lambda i, m: m.internaldate < lo
    if key.op == "SINCE":
        return CHEAP, lambda i, m: m.internaldate >= lo
    return CHEAP, lambda i, m: lo <= m.internaldate < hi


@compile_key.register
def _size(key: K.Size, scope: _Scope) -> Compiled:
    n = key.n
    if key.op == "LARGER":
        return CHEAP, lambda i, m: m.size > n
    return CHEAP, lambda i, m: m.size < n


@compile_key.register
def _seq(key: K.Seq, scope: _Scope) -> Compiled:
    inside = _member(key.seqset, len(scope.view))
    return CHEAP, lambda i, m: inside(i + 1)


@compile_key.register
def _uid(key: K.Uid, scope: _Scope) -> Compiled:
    inside = _member(key.seqset, scope.view[-1].uid)
    return CHEAP, lambda i, m: inside(m.uid)


@compile_key.register
def _modseq(key: K.Modseq, scope: _Scope) -> Compiled:
    n = key.n
    return CHEAP, lambda i, m: m.modseq >= n


@compile_key.register
def _header_key(key: K.Header, scope: _Scope) -> Compiled:
    return HEADER, _header(key.field, key.value, scope.msg, scope.view)


@compile_key.register
def _address_key(key: K.Address, scope: _Scope) -> Compiled:
    return HEADER, _header(key.field, key.value, scope.msg, scope.view, addresses=True)


@compile_key.register
def _body(key: K.Body, scope: _Scope) -> Compiled:
    needle, msg = key.text.casefold(), scope.msg
    return BODY, lambda i, m: needle in msg.use(m).body_text().casefold()


@compile_key.register
def _text(key: K.Text, scope: _Scope) -> Compiled:
    needle, msg = key.text.casefold(), scope.msg

    def text(i: int, m: MessageInfo) -> bool:
        mm = msg.use(m)
        head = headers.decode_header_value(headers.unfold(mm.header()))
        return needle in head.casefold() or needle in mm.body_text().casefold()
    return BODY, text


@compile_key.register
def _not(key: K.Not, scope: _Scope) -> Compiled:
    cost, p = compile_key(key.key, scope)
    return cost, lambda i, m: not p(i, m)


@compile_key.register
def _or(key: K.Or, scope: _Scope) -> Compiled:
    # the cheaper operand first: it often decides alone
    (ca, pa), (cb, pb) = sorted((compile_key(k, scope) for k in (key.a, key.b)), key=lambda cp: cp[0])
    return max(ca, cb), lambda i, m: pa(i, m) or pb(i, m)


@compile_key.register
def _and(key: K.And, scope: _Scope) -> Compiled:
    parts = sorted((compile_key(k, scope) for k in key.keys), key=lambda cp: cp[0])
    preds = [p for _, p in parts]
    cost = max((c for c, _ in parts), default=CHEAP)
    if len(preds) == 1:
        return cost, preds[0]
    return cost, lambda i, m: all(p(i, m) for p in preds)


def _has_flag(flag: str) -> Callable[[frozenset[str]], bool]:
    """Keywords match case-insensitively (RFC 3501 flags are)."""
    low = flag.lower()

    def has(flags: frozenset[str]) -> bool:
        return flag in flags or any(f.lower() == low for f in flags)
    return has


def _member(seqset: K.Ranges, star: int) -> Callable[[int], bool]:
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


def _field_values(header: bytes, lname: bytes) -> Iterator[bytes]:
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
            yield headers.unfold(header[j + 1:end]).strip(b" \t\r")
        pos = low.find(b"\n" + lname, start + 1)


def _search_text(values: Iterable[bytes]) -> bytes:
    """What a HEADER key matches against: each value RFC 2047-decoded (raw
    8-bit as UTF-8) and casefolded, as UTF-8, each after a LF."""
    return b"".join(b"\n" + headers.decode_header_value(v).casefold().encode("utf-8", "surrogatepass")
                    for v in values)


def _address_text(values: Iterable[bytes]) -> bytes:
    """What an address key matches against: each value's addresses parsed
    and written out the way Dovecot does (so ``<a (x)@ b>`` reads
    ``<a@b>``), then as :func:`_search_text`."""
    return _search_text(addr_mod.written(addr_mod.parse(v)) for v in values)


def _header(field: str, value: str, msg: _Message, view: Sequence[MessageInfo], addresses: bool = False) -> Pred:
    """Case-insensitive substring match on any occurrence of the field
    (``addresses``: on its addresses as parsed, see :func:`_address_text`).

    The decoded, casefolded values are cached per message (kind
    ``hs:<name>``, ``ha:<name>`` for addresses) and read for the whole view
    in one query on first use, so a warm search is a bytes ``in`` per
    message.  A UTF-8 needle is a substring of the UTF-8 text exactly when
    it is one of the str; a needle without LF cannot span two values; an
    empty one matches any message that has the field at all."""
    needle = value.casefold().encode("utf-8", "surrogatepass")
    lname = field.lower().encode("utf-8", "replace")
    full_kind = (fetchdata.SEARCH_ADDRESSES if addresses else fetchdata.SEARCH_TEXT) + field.lower()
    to_text = _address_text if addresses else _search_text
    kind = full_kind if len(full_kind) <= fetchdata.MAX_KIND else None
    # the whole view's texts in one read (from memory when warm)
    known = fetchdata.cached_many(msg.folder, [i.uid for i in view], kind) if kind is not None else {}

    def text(m: MessageInfo) -> bytes:
        t = known.get(m.uid)
        if t is None and kind is not None:
            t = msg.folder.get_cached(m.uid, kind)  # fetched since the first look (search_loaded)
        if t is None:
            t = to_text(_field_values(msg.use(m).header(), lname))
            if kind is not None:
                msg.folder.set_cached(m.uid, kind, t)
        return t

    if not needle:
        return lambda i, m: bool(text(m))
    if b"\n" in needle:  # only a literal can hold one: match value by value
        return lambda i, m: any(needle in v for v in text(m).split(b"\n")[1:])
    get = known.get
    return lambda i, m: needle in (get(m.uid) or text(m))


def _sent(op: K.DateOp, day: datetime.date, msg: _Message) -> Pred:
    def pred(i: int, m: MessageInfo) -> bool:
        v = headers.first(msg.use(m).fields(), "date")
        if v is None:
            return False
        try:
            t = email.utils.parsedate_tz(headers.decode_raw(v))
        except (ValueError, IndexError, TypeError, OverflowError):
            return False
        if not t:
            return False
        try:
            d = datetime.date(t[0], t[1], t[2])
        except ValueError:
            return False
        if op == "BEFORE":
            return d < day
        if op == "SINCE":
            return d >= day
        return d == day
    return pred
