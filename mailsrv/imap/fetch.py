"""FETCH: per-message data items, written in batches with backpressure.

Each message's response is built whole (so a failing item never leaves a
half-written response) except full bodies of large messages, which stream
from the store through CRLF normalisation.  Between batches we wait for the
transport to drain and give the reactor a turn, so a FETCH over 100,000
messages neither starves other sessions nor fills memory.
"""

from __future__ import annotations

from typing import List, Optional, Tuple, Union

from twisted.internet import task
from twisted.logger import Logger

from mailsrv.imap import commands as C
from mailsrv.imap import render
from mailsrv.imap.seqset import resolve_seq, resolve_uid, seq_in_range
from mailsrv.store.crlf import CRLFNormalizer, to_crlf
from mailsrv.store.interfaces import MessageGone, MessageInfo

log = Logger()

STREAM_MIN = 1 << 20  # whole bodies above this size stream from the file
CHUNK = 1 << 16


class BodyStream:
    """A literal to stream: bytes ``origin .. origin+length`` of the message."""

    def __init__(self, fileobj, origin: int, length: int) -> None:
        self.file, self.origin, self.length = fileobj, origin, length


Item = Union[bytes, Tuple[bytes, BodyStream]]


def _labelled(label: bytes, body, streams: list) -> Item:
    if isinstance(body, BodyStream):
        streams.append(body)
        return (label, body)
    return label + body


def fetchdata():
    from mailsrv.imap import fetchdata as fd
    return fd


def target(sel, uid: bool, seqset) -> Optional[List[Tuple[int, int]]]:
    """(seq, uid) pairs for a command's set; None if a sequence number is
    out of range (BAD for non-UID commands)."""
    if uid:
        return [(sel.seq_of(u), u) for u in resolve_uid(seqset, sel.uids)]
    if not seq_in_range(seqset, len(sel)):
        return None
    return [(s, sel.uids[s - 1]) for s in resolve_seq(seqset, len(sel))]


def _literal(data: bytes) -> bytes:
    return b"{%d}\r\n" % len(data) + data


def _whole(folder, info: MessageInfo, partial: Optional[Tuple[int, int]]) -> Item:
    size = info.size
    origin, length = partial if partial else (0, size)
    length = max(0, min(length, size - origin))
    f = folder.open_message(info.uid)
    if size <= STREAM_MIN:
        try:
            data = to_crlf(f.read())
        finally:
            f.close()
        end = origin + length if partial else len(data)
        return _literal(data[origin:end])
    return BodyStream(f, origin, length)


def _section_bytes(folder, info: MessageInfo, sec: C.Section) -> bytes:
    return fetchdata().section(folder, info, sec.part, sec.text, sec.fields)


def build(sel, info: MessageInfo, atts: List[C.FetchAtt]) -> List[Item]:
    """The data items of one FETCH response, in the order asked."""
    folder = sel.folder
    out: List[Item] = []
    streams: List[BodyStream] = []
    try:
        for a in atts:
            n = a.name
            if n == "UID":
                out.append(b"UID %d" % info.uid)
            elif n == "FLAGS":
                out.append(b"FLAGS " + render.flag_list(sel.flags_of(info)))
            elif n == "INTERNALDATE":
                out.append(b"INTERNALDATE " + render.date_time(info.internaldate))
            elif n == "RFC822.SIZE":
                out.append(b"RFC822.SIZE %d" % info.size)
            elif n == "ENVELOPE":
                out.append(b"ENVELOPE " + fetchdata().envelope(folder, info))
            elif n == "BODYSTRUCTURE":
                out.append(b"BODYSTRUCTURE " + fetchdata().bodystructure(folder, info, True))
            elif n == "BODY" and a.section is None:
                out.append(b"BODY " + fetchdata().bodystructure(folder, info, False))
            elif n == "RFC822":
                out.append(_labelled(b"RFC822 ", _whole(folder, info, None), streams))
            elif n in ("RFC822.HEADER", "RFC822.TEXT"):
                data = _section_bytes(folder, info, C.Section((), n[7:]))
                out.append(n.encode() + b" " + _literal(data))
            else:
                sec = a.section
                label = b"BODY[" + sec.render().encode("ascii") + b"]"
                if a.partial:
                    label += b"<%d>" % a.partial[0]
                if not sec.part and sec.text is None:
                    out.append(_labelled(label + b" ", _whole(folder, info, a.partial), streams))
                    continue
                data = _section_bytes(folder, info, sec)
                if a.partial:
                    o, ln = a.partial
                    data = data[o:o + ln]
                out.append(label + b" " + _literal(data))
    except BaseException:
        for s in streams:
            s.file.close()
        raise
    return out


async def write_stream(server, s: BodyStream) -> None:
    """Send ``{length}`` then the bytes, chunk by chunk, waiting for the
    transport whenever it asks us to."""
    server.send(b"{%d}\r\n" % s.length)
    norm = CRLFNormalizer()
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


def _marks_seen(atts: List[C.FetchAtt]) -> bool:
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
    folder = sel.folder
    gone = failed = 0
    step = max(1, server.yield_every)
    for start in range(0, len(pairs), step):
        batch = pairs[start:start + step]
        seen_now: set = set()
        if mark:
            need = [u for _, u in batch if (i := folder.get(u)) is not None and "\\Seen" not in i.flags]
            if need:
                seen_now = set(await folder.store_flags(need, ["\\Seen"], "+"))
                sel.forget_flag_updates(seen_now)
        for seq, uid in batch:
            info = folder.get(uid)
            if info is None:
                gone += 1
                continue
            my_atts = atts
            if uid in seen_now and not has_flags:
                my_atts = atts + [C.FetchAtt("FLAGS")]
            try:
                items = build(sel, info, my_atts)
            except MessageGone:
                gone += 1
                continue
            except Exception:  # noqa: BLE001  one bad message must not end the session
                log.failure("FETCH of uid {uid} failed", uid=uid)
                failed += 1
                continue
            await _write_items(server, seq, items)
            if server.closed:
                return None
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


async def _write_items(server, seq: int, items: List[Item]) -> None:
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
