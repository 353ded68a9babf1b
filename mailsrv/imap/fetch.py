"""FETCH: per-message data items, written in batches with backpressure.

Each message's response is built whole (so a failing item never leaves a
half-written response) except full bodies of large messages, which stream
from the store through CRLF normalisation.  The items are compiled once per
command (:class:`Plan`); cached values (ENVELOPE, HEADER.FIELDS answers...)
are read in bulk per batch, and a batch's responses go to the transport in
one write.  Between batches we wait for the transport to drain and give the
reactor a turn, so a FETCH over 100,000 messages neither starves other
sessions nor fills memory.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Union

from twisted.internet import task
from twisted.logger import Logger

from mailsrv.imap import commands as C
from mailsrv.imap import render
from mailsrv.imap.seqset import resolve_seq, resolve_uid, seq_in_range
from mailsrv.store.crlf import CRLFEncoder, to_crlf
from mailsrv.store.interfaces import MessageGone, MessageInfo

log = Logger()

STREAM_MIN = 1 << 20  # whole bodies above this size stream from the file
CHUNK = 1 << 18
FLUSH_AT = 1 << 18  # bytes of built responses sent to the transport at once


class BodyStream:
    """A literal to stream: bytes ``origin .. origin+length`` of the message."""

    def __init__(self, fileobj, origin: int, length: int) -> None:
        self.file, self.origin, self.length = fileobj, origin, length


Item = Union[bytes, tuple[bytes, BodyStream]]


def fetchdata():
    from mailsrv.imap import fetchdata as fd
    return fd


def target(sel, uid: bool, seqset) -> list[tuple[int, int]] | None:
    """(seq, uid) pairs for a command's set; None if a sequence number is
    out of range (BAD for non-UID commands)."""
    if uid:
        return [(sel.seq_of(u), u) for u in resolve_uid(seqset, sel.uids)]
    if not seq_in_range(seqset, len(sel)):
        return None
    return [(s, sel.uids[s - 1]) for s in resolve_seq(seqset, len(sel))]


def _literal(data: bytes) -> bytes:
    return b"{%d}\r\n" % len(data) + data


def _whole(folder, info: MessageInfo, partial: tuple[int, int] | None) -> Item:
    size = info.size
    origin, length = partial if partial else (0, size)
    length = max(0, min(length, size - origin))
    f = folder.open_message(info.uid)
    if size <= STREAM_MIN:
        try:
            data = to_crlf(f.read())
        finally:
            f.close()
        if partial:
            data = data[origin:origin + length]
        return _literal(data)
    return BodyStream(f, origin, length)


def _section_bytes(folder, info: MessageInfo, sec: C.Section) -> bytes:
    return fetchdata().section(folder, info, sec.part, sec.text, sec.fields)


Maker = Callable[[MessageInfo, dict[str, dict[int, bytes]]], Item]


class Plan:
    """A FETCH's data items compiled once per command: one function per
    item, the cache kinds to read in bulk per batch, and whether any item
    may stream a body (else every response is built as one bytes object)."""

    def __init__(self, sel, atts: list[C.FetchAtt]) -> None:
        self.sel = sel
        self.folder = sel.folder
        self.kinds: list[str] = []
        self.may_stream = False
        self._flag_memo: dict[frozenset, bytes] = {}
        self.makers: list[Maker] = [self._maker(a) for a in atts]

    def flags(self, info: MessageInfo, pre=None) -> bytes:
        if info.uid in self.sel.recent:
            return b"FLAGS " + render.flag_list(self.sel.flags_of(info))
        fl = info.flags
        try:
            b = self._flag_memo.get(fl)
        except TypeError:  # a mutable set: not memoisable
            return b"FLAGS " + render.flag_list(sorted(fl))
        if b is None:
            b = self._flag_memo[fl] = b"FLAGS " + render.flag_list(sorted(fl))
        return b

    def _cached(self, prefix: bytes, kind: str, compute: Callable[[MessageInfo], bytes]) -> Maker:
        self.kinds.append(kind)

        def make(info, pre):
            v = pre[kind].get(info.uid)
            if v is None:
                v = compute(info)
            return prefix + v
        return make

    def _maker(self, a: C.FetchAtt) -> Maker:
        folder, fd, n = self.folder, fetchdata(), a.name
        if n == "UID":
            return lambda info, pre: b"UID %d" % info.uid
        if n == "FLAGS":
            return self.flags
        if n == "INTERNALDATE":
            return lambda info, pre: b"INTERNALDATE " + render.date_time(info.internaldate)
        if n == "RFC822.SIZE":
            return lambda info, pre: b"RFC822.SIZE %d" % info.size
        if n == "ENVELOPE":
            return self._cached(b"ENVELOPE ", fd.ENVELOPE, lambda info: fd.envelope(folder, info))
        if n == "BODYSTRUCTURE":
            return self._cached(b"BODYSTRUCTURE ", fd.BODYSTRUCTURE,
                                lambda info: fd.bodystructure(folder, info, True))
        if n == "BODY" and a.section is None:
            return self._cached(b"BODY ", fd.BODY, lambda info: fd.bodystructure(folder, info, False))
        if n == "RFC822":
            self.may_stream = True
            return lambda info, pre: _labelled(b"RFC822 ", _whole(folder, info, None))
        if n in ("RFC822.HEADER", "RFC822.TEXT"):
            sec = C.Section((), n[7:])
            head = n.encode() + b" "
            return lambda info, pre: head + _literal(_section_bytes(folder, info, sec))
        sec = a.section
        label = b"BODY[" + sec.render().encode("ascii") + b"]"
        if a.partial:
            label += b"<%d>" % a.partial[0]
        label += b" "
        partial = a.partial
        if not sec.part and sec.text is None:
            self.may_stream = True
            return lambda info, pre: _labelled(label, _whole(folder, info, partial))
        text = sec.text.upper() if sec.text else None
        kind = None
        if not sec.part and text == "HEADER":
            kind = fd.HEADER
        elif not sec.part and text in ("HEADER.FIELDS", "HEADER.FIELDS.NOT"):
            kind = fd.fields_kind(sec.fields, text.endswith(".NOT"))
        if kind is not None:
            self.kinds.append(kind)

        def make(info, pre):
            data = pre[kind].get(info.uid) if kind is not None else None
            if data is None:
                data = _section_bytes(folder, info, sec)
            if partial:
                data = data[partial[0]:partial[0] + partial[1]]
            return label + _literal(data)
        return make

    def prefetch(self, uids: list[int]) -> dict[str, dict[int, bytes]]:
        fd = fetchdata()
        return {k: fd.cached_many(self.folder, uids, k) for k in self.kinds}


def _labelled(label: bytes, body) -> Item:
    if isinstance(body, BodyStream):
        return (label, body)
    return label + body


def build_items(makers: list[Maker], info: MessageInfo, pre) -> list[Item]:
    """The data items of one FETCH response, in the order asked; streams
    opened for it are closed again if a later item fails."""
    out: list[Item] = []
    try:
        for m in makers:
            out.append(m(info, pre))
    except BaseException:
        for it in out:
            if isinstance(it, tuple):
                it[1].file.close()
        raise
    return out


def build(sel, info: MessageInfo, atts: list[C.FetchAtt]) -> list[Item]:
    """The data items of one FETCH response for one message."""
    plan = Plan(sel, atts)
    return build_items(plan.makers, info, plan.prefetch([info.uid]))


async def write_stream(server, s: BodyStream) -> None:
    """Send ``{length}`` then the bytes, chunk by chunk, waiting for the
    transport whenever it asks us to."""
    server.send(b"{%d}\r\n" % s.length)
    norm = CRLFEncoder()
    pos = sent = 0
    try:
        while sent < s.length:
            chunk = s.file.read(CHUNK)
            if not chunk:
                break
            data = norm.feed(chunk)
            if pos + len(data) <= s.origin:
                pos += len(data)
                continue
            start = max(0, s.origin - pos)
            pos += len(data)
            piece = data[start:start + (s.length - sent)]
            server.send(piece)
            sent += len(piece)
            await server.drained()
            if server.closed:
                return
    finally:
        s.file.close()
    if sent < s.length:
        log.error("message shorter than its recorded size; padding the literal")
        server.send(b" " * (s.length - sent))


def _marks_seen(atts: list[C.FetchAtt]) -> bool:
    return any(a.name in ("RFC822", "RFC822.TEXT") or (a.section is not None and not a.peek) for a in atts)


async def fetch(server, cmd: C.Fetch):
    from mailsrv.imap.server import bad, no, ok
    sel = server.selected
    pairs = target(sel, cmd.uid, cmd.seqset)
    if pairs is None:
        return bad("Invalid message sequence number")
    atts = list(cmd.atts)
    if cmd.uid and not any(a.name == "UID" for a in atts):
        atts.insert(0, C.FetchAtt("UID"))
    mark = _marks_seen(atts) and not sel.readonly
    has_flags = any(a.name == "FLAGS" for a in atts)
    plan = Plan(sel, atts)
    makers = plan.makers
    with_flags = makers + [plan.flags]
    may_stream = plan.may_stream
    folder = sel.folder
    get = folder.get
    gone = failed = 0
    step = max(1, server.yield_every)
    for start in range(0, len(pairs), step):
        batch = pairs[start:start + step]
        seen_now: set = set()
        if mark:
            need = [u for _, u in batch if (i := get(u)) is not None and "\\Seen" not in i.flags]
            if need:
                seen_now = set(await folder.store_flags(need, ["\\Seen"], "+"))
                sel.forget_flag_updates(seen_now)
        if has_flags:  # this response carries the flags: no second, unsolicited FETCH
            sel.forget_flag_updates([u for _, u in batch])
        pre = plan.prefetch([u for _, u in batch])
        lines: list[bytes] = []
        pending = 0
        for seq, uid in batch:
            info = get(uid)
            if info is None:
                gone += 1
                continue
            try:
                mk = with_flags if uid in seen_now and not has_flags else makers
                items = build_items(mk, info, pre) if may_stream else [m(info, pre) for m in mk]
            except MessageGone:
                gone += 1
                continue
            except Exception:  # noqa: BLE001  one bad message must not end the session
                log.failure("FETCH of uid {uid} failed", uid=uid)
                failed += 1
                continue
            if may_stream and any(isinstance(it, tuple) for it in items):
                server.send_many(lines)
                lines, pending = [], 0
                await _write_items(server, seq, items)
                if server.closed:
                    return None
                continue
            line = b"* %d FETCH (%b)\r\n" % (seq, b" ".join(items))
            lines.append(line)
            pending += len(line)
            if pending >= FLUSH_AT:
                server.send_many(lines)
                lines, pending = [], 0
                await server.drained()
                if server.closed:
                    return None
        server.send_many(lines)
        server.resetTimeout()
        await server.drained()
        if start + step < len(pairs):
            await task.deferLater(server.reactor, 0, lambda: None)
        if server.closed:
            return None
    if failed:
        return no("Some messages could not be fetched", "SERVERBUG")
    if gone:
        return no("Some of the requested messages no longer exist", "EXPUNGEISSUED")
    return ok()


async def _write_items(server, seq: int, items: list[Item]) -> None:
    buf = [b"* %d FETCH (" % seq]
    for i, item in enumerate(items):
        if i:
            buf.append(b" ")
        if isinstance(item, tuple):
            buf.append(item[0])
            server.send_many(buf)
            buf = []
            await write_stream(server, item[1])
        else:
            buf.append(item)
    buf.append(b")\r\n")
    server.send_many(buf)
