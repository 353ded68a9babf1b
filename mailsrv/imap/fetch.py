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
from typing import IO, TypeAlias

from twisted.internet import task
from twisted.logger import Logger

from mailsrv.imap import commands as C
from mailsrv.imap import fetchdata as fd
from mailsrv.imap import fetchext, render
from mailsrv.imap.context import Context
from mailsrv.imap.results import Result, bad, no, ok
from mailsrv.imap.seqset import SeqSet, resolve_seq, resolve_uid, seq_in_range
from mailsrv.imap.session import SelectedMailbox
from mailsrv.imap.utf8 import downgrade_envelope
from mailsrv.store.crlf import CRLFEncoder, to_crlf
from mailsrv.store.interfaces import IFolder, MessageGone, MessageInfo

log = Logger()

STREAM_MIN = 1 << 20  # whole bodies above this size stream from the file
CHUNK = 1 << 18
FLUSH_AT = 1 << 18  # bytes of built responses sent to the transport at once


class BodyStream:
    """A literal to stream: bytes ``origin .. origin+length`` of the message."""

    def __init__(self, fileobj: IO[bytes], origin: int, length: int) -> None:
        self.file, self.origin, self.length = fileobj, origin, length


Item: TypeAlias = bytes | tuple[bytes, BodyStream]
Prefetched = dict[str, dict[int, bytes]]
Maker = Callable[[MessageInfo, Prefetched], Item]


def target(sel: SelectedMailbox, uid: bool, seqset: SeqSet) -> list[tuple[int, int]] | None:
    """(seq, uid) pairs for a command's set; None if a sequence number is
    out of range (BAD for non-UID commands).  A UID that is not in the view
    pairs with sequence number 0."""
    if uid:
        return [(sel.seq_of(u) or 0, u) for u in resolve_uid(seqset, sel.uids)]
    if not seq_in_range(seqset, len(sel)):
        return None
    return [(s, sel.uids[s - 1]) for s in resolve_seq(seqset, len(sel))]


def _literal(data: bytes) -> bytes:
    return b"{%d}\r\n" % len(data) + data


def _whole(folder: IFolder, info: MessageInfo, partial: tuple[int, int] | None) -> bytes | BodyStream:
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


def _labelled(label: bytes, body: bytes | BodyStream) -> Item:
    if isinstance(body, BodyStream):
        return (label, body)
    return label + body


def _section_label(a: C.FetchAtt, sec: C.Section) -> bytes:
    label = b"BODY[" + sec.render().encode("ascii") + b"]"
    if a.partial:
        label += b"<%d>" % a.partial[0]
    return label + b" "


class Plan:
    """A FETCH's data items compiled once per command: one function per
    item, the cache kinds to read in bulk per batch, and whether any item
    may stream a body (else every response is built as one bytes object)."""

    def __init__(self, sel: SelectedMailbox, atts: list[C.FetchAtt]) -> None:
        self.sel = sel
        self.folder = sel.folder
        self.kinds: list[str] = []
        self.may_stream = False
        self._flag_memo: dict[frozenset[str], bytes] = {}
        self.makers: list[Maker] = [self._maker(a) for a in atts]
        self.loads = _loads(atts, self.kinds)

    def flags(self, info: MessageInfo, pre: Prefetched | None = None) -> bytes:
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

        def make(info: MessageInfo, pre: Prefetched) -> Item:
            v = pre[kind].get(info.uid)
            if v is None:
                v = compute(info)
            return prefix + v
        return make

    def _maker(self, a: C.FetchAtt) -> Maker:
        folder, n = self.folder, a.name
        ext = fetchext.maker(self, a)  # EMAILID THREADID SAVEDATE PREVIEW
        if ext is not None:
            return ext
        if n == "UID":
            return lambda info, pre: b"UID %d" % info.uid
        if n == "FLAGS":
            return self.flags
        if n == "INTERNALDATE":
            return lambda info, pre: b"INTERNALDATE " + render.date_time(info.internaldate)
        if n == "RFC822.SIZE":
            return lambda info, pre: b"RFC822.SIZE %d" % info.size
        if n == "ENVELOPE":
            env = self._cached(b"ENVELOPE ", fd.ENVELOPE, lambda info: fd.envelope(folder, info))
            if self.sel.utf8:
                return env
            return lambda info, pre: downgrade_envelope(env(info, pre))  # type: ignore[arg-type]  # never a stream
        if n == "BODYSTRUCTURE":
            return self._cached(b"BODYSTRUCTURE ", fd.BODYSTRUCTURE,
                                lambda info: fd.bodystructure(folder, info, True))
        if n == "BODY" and a.section is None:
            return self._cached(b"BODY ", fd.BODY, lambda info: fd.bodystructure(folder, info, False))
        if n == "RFC822":
            self.may_stream = True
            return lambda info, pre: _labelled(b"RFC822 ", _whole(folder, info, None))
        if n in ("RFC822.HEADER", "RFC822.TEXT"):
            return self._rfc822_part(n)
        return self._section(a)

    def _rfc822_part(self, name: str) -> Maker:
        folder, sec = self.folder, C.Section((), name[7:])
        head = name.encode() + b" "
        return lambda info, pre: head + _literal(fd.section(folder, info, sec.part, sec.text, sec.fields))

    def _section(self, a: C.FetchAtt) -> Maker:
        """BODY[section]<partial>: the whole message may stream; header
        sections of the message come from the cache when they can."""
        folder, sec, partial = self.folder, a.section, a.partial
        assert sec is not None
        label = _section_label(a, sec)
        if not sec.part and sec.text is None:
            self.may_stream = True
            return lambda info, pre: _labelled(label, _whole(folder, info, partial))
        kind = self._section_kind(sec)
        if kind is not None:
            self.kinds.append(kind)

        def make(info: MessageInfo, pre: Prefetched) -> Item:
            data = pre[kind].get(info.uid) if kind is not None else None
            if data is None:
                data = fd.section(folder, info, sec.part, sec.text, sec.fields)
            if partial:
                data = data[partial[0]:partial[0] + partial[1]]
            return label + _literal(data)
        return make

    @staticmethod
    def _section_kind(sec: C.Section) -> str | None:
        """The cache kind that holds this section's answer, if any."""
        if sec.part:
            return None
        text = sec.text.upper() if sec.text else None
        if text == "HEADER":
            return fd.HEADER
        if text in ("HEADER.FIELDS", "HEADER.FIELDS.NOT"):
            return fd.fields_kind(sec.fields, text.endswith(".NOT"))
        return None

    def prefetch(self, uids: list[int]) -> Prefetched:
        return {k: fd.cached_many(self.folder, uids, k) for k in self.kinds}

    async def load(self, uids: list[int]) -> None:
        """Have the store fetch what the items will read (a remote store:
        without this its reads would wait in the reactor thread)."""
        for kinds, body in self.loads:
            await self.folder.prefetch(uids, kinds, body)


def _loads(atts: list[C.FetchAtt], kinds: list[str]) -> list[tuple[list[str], str | None]]:
    """The ``IFolder.prefetch`` calls a FETCH of ``atts`` needs per batch:
    cached values (with the start of each message that lacks one, to
    compute it from its header, or the whole message for a body
    structure), and whole messages for the items that always read them."""
    header_kinds = set(kinds) - {fd.BODYSTRUCTURE, fd.BODY}
    always = any(a.name in ("RFC822", "RFC822.TEXT") or (a.section is not None and (a.section.part or (
        a.section.text or "").upper() not in ("HEADER", "HEADER.FIELDS", "HEADER.FIELDS.NOT"))) for a in atts)
    if any(a.name == "RFC822.HEADER" for a in atts):
        header_kinds.add(fd.HEADER)
    out: list[tuple[list[str], str | None]] = []
    if fd.BODYSTRUCTURE in kinds or fd.BODY in kinds:
        out.append(([k for k in kinds if k in (fd.BODYSTRUCTURE, fd.BODY)], None if always else "full"))
    if header_kinds:
        out.append((sorted(header_kinds | {fd.HEADER}), None if always else "header"))
    if always:
        out.append(([], "full"))
    return out


def build_items(makers: list[Maker], info: MessageInfo, pre: Prefetched) -> list[Item]:
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


async def write_stream(ctx: Context, s: BodyStream) -> None:
    """Send ``{length}`` then the bytes, chunk by chunk, waiting for the
    transport whenever it asks us to."""
    ctx.send(b"{%d}\r\n" % s.length)
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
            ctx.send(piece)
            sent += len(piece)
            await ctx.drained()
            if ctx.closed:
                return
    finally:
        s.file.close()
    if sent < s.length:
        log.error("message shorter than its recorded size; padding the literal")
        ctx.send(b" " * (s.length - sent))


async def _write_items(ctx: Context, seq: int, items: list[Item]) -> None:
    buf = [b"* %d FETCH (" % seq]
    for i, item in enumerate(items):
        if i:
            buf.append(b" ")
        if isinstance(item, tuple):
            buf.append(item[0])
            ctx.send_many(buf)
            buf = []
            await write_stream(ctx, item[1])
        else:
            buf.append(item)
    buf.append(b")\r\n")
    ctx.send_many(buf)


def _marks_seen(atts: list[C.FetchAtt]) -> bool:
    return any(a.name in ("RFC822", "RFC822.TEXT") or (a.section is not None and not a.peek) for a in atts)


class _FetchRun:
    """One FETCH command: the plan, the \\Seen rule and the counts of
    messages that were gone or failed, batch after batch."""

    def __init__(self, ctx: Context, sel: SelectedMailbox, atts: list[C.FetchAtt]) -> None:
        self.ctx = ctx
        self.sel = sel
        self.folder = sel.folder
        self.mark = _marks_seen(atts) and not sel.readonly
        self.has_flags = any(a.name == "FLAGS" for a in atts)
        self.plan = Plan(sel, atts)
        self.with_flags = self.plan.makers + [self.plan.flags]
        self.gone = self.failed = 0

    async def _seen_now(self, batch: list[tuple[int, int]]) -> set[int]:
        """Set \\Seen where the items ask for it; the uids that changed
        (their responses carry FLAGS, RFC 3501 6.4.5)."""
        seen_now: set[int] = set()
        if self.mark:
            get = self.folder.get
            need = [u for _, u in batch if (i := get(u)) is not None and "\\Seen" not in i.flags]
            if need:
                seen_now = set(await self.folder.store_flags(need, ["\\Seen"], "+"))
                self.sel.forget_flag_updates(seen_now)
        if self.has_flags:  # this response carries the flags: no second, unsolicited FETCH
            self.sel.forget_flag_updates([u for _, u in batch])
        return seen_now

    async def batch(self, batch: list[tuple[int, int]]) -> bool:
        """Answer for one batch; False once the connection is gone.  The
        loop is the hot path of a large FETCH: everything it needs is a
        local."""
        ctx, get = self.ctx, self.folder.get
        seen_now = await self._seen_now(batch)
        await self.plan.load([u for _, u in batch])
        pre = self.plan.prefetch([u for _, u in batch])
        makers, with_flags, has_flags = self.plan.makers, self.with_flags, self.has_flags
        may_stream = self.plan.may_stream
        lines: list[bytes] = []
        pending = 0
        for seq, uid in batch:
            info = get(uid)
            if info is None:
                self.gone += 1
                continue
            mk = with_flags if uid in seen_now and not has_flags else makers
            try:
                items = build_items(mk, info, pre) if may_stream else [m(info, pre) for m in mk]
            except MessageGone:
                self.gone += 1
                continue
            except Exception:  # noqa: BLE001  one bad message must not end the session
                log.failure("FETCH of uid {uid} failed", uid=uid)
                self.failed += 1
                continue
            if may_stream and any(isinstance(it, tuple) for it in items):
                ctx.send_many(lines)
                lines, pending = [], 0
                await _write_items(ctx, seq, items)
                if ctx.closed:
                    return False
                continue
            line = b"* %d FETCH (%b)\r\n" % (seq, b" ".join(items))  # type: ignore[arg-type]  # no streams here
            lines.append(line)
            pending += len(line)
            if pending >= FLUSH_AT:
                ctx.send_many(lines)
                lines, pending = [], 0
                await ctx.drained()
                if ctx.closed:
                    return False
        ctx.send_many(lines)
        return True

    def result(self) -> Result:
        if self.failed:
            return no("Some messages could not be fetched", "SERVERBUG")
        if self.gone:
            return no("Some of the requested messages no longer exist", "EXPUNGEISSUED")
        return ok()


async def fetch(ctx: Context, cmd: C.Fetch) -> Result | None:
    """FETCH and UID FETCH (which always includes UID, RFC 3501 6.4.8)."""
    sel = ctx.mailbox
    pairs = target(sel, cmd.uid, cmd.seqset)
    if pairs is None:
        return bad("Invalid message sequence number")
    atts = list(cmd.atts)
    if cmd.uid and not any(a.name == "UID" for a in atts):
        atts.insert(0, C.FetchAtt("UID"))
    run = _FetchRun(ctx, sel, atts)
    step = max(1, ctx.yield_every)
    for start in range(0, len(pairs), step):
        if not await run.batch(pairs[start:start + step]):
            return None
        ctx.reset_timeout()
        await ctx.drained()
        if start + step < len(pairs):
            await task.deferLater(ctx.reactor, 0, lambda: None)
        if ctx.closed:
            return None
    return run.result()
