"""FETCH: per-message data items, written in batches with backpressure.

Each message's response is built whole (so a failing item never leaves a
half-written response) except full bodies of large messages, which stream
from the store through CRLF normalisation.  The items are compiled once per
command (:class:`Plan`); cached values (ENVELOPE, HEADER.FIELDS answers...)
are read in bulk per batch, and a batch's responses go to the transport in
one write.  Between batches we wait for the transport to drain and give the
reactor a turn, so a FETCH over 100,000 messages neither starves other
sessions nor fills memory.

Whole bodies (BODY[], RFC822) are :class:`mailsrv.imap.bodies.Body` items:
their bytes are never copied into a response, and a FETCH that has them
writes through the connection's :class:`mailsrv.wire.Wire` (big
scatter-gather writes, sendfile on plain TCP).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeAlias

from twisted.internet import task
from twisted.logger import Logger

from mailsrv.imap import binary, bodies, condstore, fetchext, render
from mailsrv.imap import commands as C
from mailsrv.imap import fetchdata as fd
from mailsrv.imap.bodies import Body, BodyStream
from mailsrv.imap.context import Context
from mailsrv.imap.results import Result, bad, no, ok
from mailsrv.imap.seqset import SavedResult, SeqSet, resolve_seq, resolve_uid, seq_in_range
from mailsrv.imap.session import SelectedMailbox
from mailsrv.imap.utf8 import downgrade_envelope
from mailsrv.store.interfaces import MessageGone, MessageInfo
from mailsrv.wire import Item as WireItem

log = Logger()

FLUSH_AT = 1 << 18  # bytes of built responses sent to the transport at once
BODY_FLUSH_AT = 1 << 18  # octets of responses with bodies per wire write
YIELD_BYTES = 4 << 20  # body octets between reactor turns (other sessions)


Item: TypeAlias = bytes | Body
Prefetched = dict[str, dict[int, bytes]]
Maker = Callable[[MessageInfo, Prefetched], Item]


def target(sel: SelectedMailbox, uid: bool, seqset: SeqSet) -> list[tuple[int, int]] | None:
    """(seq, uid) pairs for a command's set; None if a sequence number is
    out of range (BAD for non-UID commands).  A UID that is not in the view
    pairs with sequence number 0.  ``$`` (RFC 5182) is the saved result's
    messages still in the view, for UID and sequence forms alike."""
    if isinstance(seqset, SavedResult):
        return [(s, u) for u in sorted(sel.saved) if (s := sel.seq_of(u)) is not None]
    if uid:
        return [(sel.seq_of(u) or 0, u) for u in resolve_uid(seqset, sel.uids)]
    if not seq_in_range(seqset, len(sel)):
        return None
    return [(s, sel.uids[s - 1]) for s in resolve_seq(seqset, len(sel))]


def _literal(data: bytes) -> bytes:
    return b"{%d}\r\n" % len(data) + data


def _section_label(a: C.FetchAtt, sec: C.Section) -> bytes:
    label = b"BODY[" + sec.render().encode("ascii") + b"]"
    if a.partial:
        label += b"<%d>" % a.partial[0]
    return label + b" "


class Plan:
    """A FETCH's data items compiled once per command: one function per
    item, the cache kinds to read in bulk per batch, and whether any item
    may stream a body (else every response is built as one bytes object)."""

    def __init__(self, sel: SelectedMailbox, atts: list[C.FetchAtt], sendfile: bool = False) -> None:
        self.sel = sel
        self.folder = sel.folder
        self.sendfile = sendfile  # bodies may be file ranges (plain TCP)
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
        if n == "MODSEQ":
            return lambda info, pre: condstore.modseq_item(info)
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
        if n in ("BINARY", "BINARY.SIZE"):
            return binary.maker(folder, a)
        if n == "RFC822":
            self.may_stream = True
            return lambda info, pre: bodies.whole(folder, info, b"RFC822 ", None, self.sendfile)
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
            return lambda info, pre: bodies.whole(folder, info, label, partial, self.sendfile)
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
            if isinstance(it, Body):
                it.close()
        raise
    return out


async def _write_streamed(ctx: Context, seq: int, items: list[Item]) -> None:
    """A response with a body too big to hold: what precedes the stream,
    the stream, then the rest."""
    buf: list[WireItem] = [b"* %d FETCH (" % seq]
    for i, item in enumerate(items):
        if i:
            buf.append(b" ")
        if not isinstance(item, Body):
            buf.append(item)
            continue
        buf.append(item.head)
        p = item.payload
        if isinstance(p, BodyStream):
            await ctx.wire.send(buf)
            buf = []
            await bodies.write_stream(ctx, p)
        else:
            buf.append(p)
    buf.append(b")\r\n")
    await ctx.wire.send(buf)


# items read from the message object alone: they cannot fail or stream
_SIMPLE = frozenset({"UID", "FLAGS", "RFC822.SIZE", "MODSEQ"})


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
        self.simple = all(a.name in _SIMPLE for a in atts)  # FETCH 1:* (UID FLAGS): the sync loop of clients
        self.plan = Plan(sel, atts, sendfile=ctx.wire.direct)
        self.with_flags = self.plan.makers + [self.plan.flags]
        if sel.modseqs:  # setting \Seen is a change: its FETCH carries UID and MODSEQ (RFC 7162 3.1.4)
            names = {a.name for a in atts}
            if "UID" not in names:
                self.with_flags.insert(0, lambda info, pre: b"UID %d" % info.uid)
            if "MODSEQ" not in names:
                self.with_flags.append(lambda info, pre: condstore.modseq_item(info))
        self.gone = self.failed = self.unknown_cte = 0
        self.sent = 0  # body octets written since the reactor last had a turn

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
        if self.has_flags or seen_now:
            # a keyword another session just introduced: FLAGS first, so no
            # FETCH shows one the client was not told of
            ctx.send_many(self.sel.new_keywords_response())
        if self.simple:  # MessageInfo only: nothing to load
            self._simple_batch(batch)
            return True
        await self.plan.load([u for _, u in batch])
        if self.plan.may_stream:
            return await self._body_batch(batch, seen_now)
        pre = self.plan.prefetch([u for _, u in batch])
        makers, with_flags, has_flags = self.plan.makers, self.with_flags, self.has_flags
        lines: list[bytes] = []
        pending = 0
        for seq, uid in batch:
            info = get(uid)
            if info is None:
                self.gone += 1
                continue
            mk = with_flags if uid in seen_now and not has_flags else makers
            try:
                items = [m(info, pre) for m in mk]
            except MessageGone:
                self.gone += 1
                continue
            except binary.UnknownCTE:
                self.unknown_cte += 1
                continue
            except Exception:  # noqa: BLE001  one bad message must not end the session
                log.failure("FETCH of uid {uid} failed", uid=uid)
                self.failed += 1
                continue
            line = b"* %d FETCH (%b)\r\n" % (seq, b" ".join(items))  # type: ignore[arg-type]  # no bodies here
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

    def _simple_batch(self, batch: list[tuple[int, int]]) -> None:
        """A batch of items from the message objects alone: one expression
        per message, one write."""
        get, makers = self.folder.get, self.plan.makers
        no: Prefetched = {}
        if len(makers) == 1:
            m = makers[0]
            lines = [b"* %d FETCH (%b)\r\n" % (seq, m(info, no)) for seq, uid in batch  # type: ignore[str-format]
                     if (info := get(uid)) is not None]
        else:
            lines = [b"* %d FETCH (%b)\r\n" % (seq, b" ".join([m(info, no) for m in makers]))  # type: ignore[misc]
                     for seq, uid in batch if (info := get(uid)) is not None]
        self.gone += len(batch) - len(lines)
        self.ctx.send(b"".join(lines))

    def _items(self, info: MessageInfo, mk: list[Maker], pre: Prefetched) -> list[Item] | None:
        """One message's items; None (counted) if it is gone or failed."""
        try:
            return build_items(mk, info, pre)
        except MessageGone:
            self.gone += 1
        except binary.UnknownCTE:
            self.unknown_cte += 1
        except Exception:  # noqa: BLE001  one bad message must not end the session
            log.failure("FETCH of uid {uid} failed", uid=info.uid)
            self.failed += 1
        return None

    async def _body_batch(self, batch: list[tuple[int, int]], seen_now: set[int]) -> bool:
        """A batch whose responses carry bodies: written through the wire
        in big writes, bodies not copied (mailsrv.imap.bodies); the reactor
        gets a turn every YIELD_BYTES so other sessions are served too."""
        ctx, get, wire = self.ctx, self.folder.get, self.ctx.wire
        pre = self.plan.prefetch([u for _, u in batch])
        makers, with_flags, has_flags = self.plan.makers, self.with_flags, self.has_flags
        pieces: list[WireItem] = []
        pending = 0
        for seq, uid in batch:
            info = get(uid)
            if info is None:
                self.gone += 1
                continue
            items = self._items(info, with_flags if uid in seen_now and not has_flags else makers, pre)
            if items is None:
                continue
            built = bodies.response_pieces(seq, items)
            if built is None:  # a body too big to hold streams
                await wire.send(pieces)
                pieces, pending = [], 0
                await _write_streamed(ctx, seq, items)
            else:
                more, size = built
                pieces += more
                pending += size
                if pending < BODY_FLUSH_AT:
                    continue
                await wire.send(pieces)
                pieces = []
                self.sent += pending
                pending = 0
            if ctx.closed:
                return False
            if self.sent >= YIELD_BYTES:
                self.sent = 0
                await task.deferLater(ctx.reactor, 0, lambda: None)
        await wire.send(pieces)
        return not ctx.closed

    def result(self) -> Result:
        if self.unknown_cte:
            return no("Unknown Content-Transfer-Encoding", binary.UnknownCTE.code)
        if self.failed:
            return no("Some messages could not be fetched", "SERVERBUG")
        if self.gone:
            # another session expunged them (this one has not been told
            # yet): the rest was sent; OK, as Dovecot answers (RFC 2180 4.1)
            return ok("Some messages were already expunged", "EXPUNGEISSUED")
        return ok()


async def fetch(ctx: Context, cmd: C.Fetch) -> Result | None:
    """FETCH and UID FETCH (which always includes UID, RFC 3501 6.4.8)."""
    sel = ctx.mailbox
    if cmd.changedsince is None:
        pairs = target(sel, cmd.uid, cmd.seqset)
    else:  # only what changed: from the store's change index, not the whole set
        pairs = condstore.changed_targets(sel, cmd, cmd.changedsince)
    if pairs is None:
        return bad("Invalid message sequence number")
    atts = list(cmd.atts)
    if cmd.uid and not any(a.name == "UID" for a in atts):
        atts.insert(0, C.FetchAtt("UID"))
    prepared = condstore.fetch_prepare(ctx, cmd, pairs, atts)
    if isinstance(prepared, Result):
        return prepared
    pairs = prepared
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
