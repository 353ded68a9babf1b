"""THREAD and UID THREAD (RFC 5256): ORDEREDSUBJECT, REFERENCES, and
Dovecot's REFS (REFERENCES without subject merging, threads ordered by
their latest message).

REFERENCES follows RFC 5256 section 3 as Dovecot 2.3 resolves its open
points, so both servers give the same answer for the same mailbox:

1. Links, message by message in UID order: a message owns its Message-ID
   unless an earlier message did (a duplicate gets a node of its own);
   References: (or, without any valid one, In-Reply-To:) link each id to
   the next, never making a loop and keeping a link made earlier; the
   last one becomes the message's parent, replacing a parent an earlier
   message's References gave it.
2-3. Roots are the nodes without parent; a message hangs under its
   nearest real ancestor (or the topmost dummy).
4. Siblings are ordered by sent date (the internal date when there is
   no usable Date:), then UID; a dummy root with one child becomes that
   child, a dummy root with several takes its oldest child's place.
5. Roots whose base subjects agree are merged: under a dummy root, under
   a root that is no reply when they are replies, else both under a new
   dummy.
6. Roots ordered again.

The per-message data (Message-ID, parent chain, base subject, reply
flag, date) come from :mod:`sortdata` columns, not from message files.
Rendering is iterative, so a thousand-deep reply chain costs no stack.
"""

from __future__ import annotations

import hashlib
import itertools
import operator
import weakref
from array import array
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from twisted.internet import threads

from mailsrv.imap import commands as C
from mailsrv.imap import sortcolumns as K
from mailsrv.imap import sortdata as D
from mailsrv.imap.context import Context, Handlers
from mailsrv.imap.contextsearch import Found, matches
from mailsrv.imap.results import SELECTED_ONLY, Result, no
from mailsrv.imap.sort import BADCHARSET, CHARSETS, arrival, info_lookup, order

NONE = -1


class Links:
    """Step 1: nodes for Message-IDs, parent links between them.  Ids are
    the cached bytes (compared exactly, as Dovecot does)."""

    __slots__ = ("index", "parent", "uid")

    def __init__(self) -> None:
        self.index: dict[bytes, int] = {}
        self.parent: list[int] = []  # NONE for a root
        self.uid: list[int] = []  # 0 for a dummy (an id only referenced)

    def new(self) -> int:
        self.parent.append(NONE)
        self.uid.append(0)
        return len(self.uid) - 1

    def node(self, msgid: bytes) -> int:
        i = self.index.get(msgid)
        if i is None:
            i = self.index[msgid] = self.new()
        return i

    def is_ancestor(self, ancestor: int, node: int) -> bool:
        """``ancestor`` is ``node`` or one of its ancestors."""
        parent = self.parent
        while node != ancestor:
            node = parent[node]
            if node < 0:
                return False
        return True

    def link(self, p: int, c: int) -> None:
        """Make ``p`` the parent of ``c`` unless that loops or ``c`` has one."""
        if self.parent[c] == p or self.is_ancestor(c, p):
            return
        if self.parent[c] < 0:
            self.parent[c] = p

    def add(self, uid: int, data: bytes) -> None:
        """One message; see :meth:`add_all`."""
        self.add_all([uid], {uid: data})

    def add_all(self, uids: Sequence[int], data: Mapping[int, bytes]) -> None:
        """Messages in UID order, each with its cached thread data
        (:class:`sortdata.ThreadData` encoding: flag and Message-ID, then
        the parent chain, NUL-separated).  The hot loop of THREAD on a big
        folder, so node creation and linking are written out inline."""
        index, parent, owner = self.index, self.parent, self.uid
        for uid in uids:
            ids = data[uid].split(b"\x00")
            msgid = ids[0][1:]
            i = index.get(msgid) if msgid else None
            if i is None or owner[i]:  # no id, or a duplicate: the first message keeps it
                i = len(owner)
                parent.append(NONE)
                owner.append(uid)
                if msgid and msgid not in index:
                    index[msgid] = i
            else:
                owner[i] = uid
            p = NONE
            for ref in ids[1:]:
                c = index.get(ref)
                if c is None:
                    c = index[ref] = len(owner)
                    parent.append(p)  # a new node: nothing can loop yet
                    owner.append(0)
                elif p >= 0:
                    self.link(p, c)
                p = c
            if parent[i] >= 0 and parent[i] != p:
                parent[i] = NONE
            if p >= 0:
                self.link(p, i)


class _Root:
    __slots__ = ("idx", "uid", "dummy", "ignore", "key", "number", "under", "reply")

    def __init__(self, idx: int, uid: int) -> None:
        self.idx, self.uid = idx, uid
        self.dummy = uid == 0
        self.ignore = False
        self.key = 0  # date and uid in one number (see Threader.key), what roots are ordered by
        self.number = 0  # 1-based position during subject gathering
        self.under = 0  # number of the root it merges into, 0: none
        self.reply = False


class Threader:
    """Steps 2 to 6 over a :class:`Links`, and the THREAD response.
    ``dates`` holds each message's sort date, ``subjects`` its base subject
    (empty: none), ``data`` its cached thread data (for the reply flag)."""

    def __init__(self, links: Links, dates: Mapping[int, int], subjects: Mapping[int, bytes],
                 data: Mapping[int, bytes]) -> None:
        self.links = links
        self.subjects, self.data = subjects, data
        self.children: dict[int, list[int]] = {}
        self.ordered: set[int] = set()  # nodes whose children are in order
        uid, parent = links.uid, links.parent
        # (date, uid) as one int: orders the same, compares faster
        self.key: list[int] = [(dates[u] << 32) + u if u else 0 for u in uid]
        self.next_idx = len(uid)
        self.roots: list[_Root] = [_Root(i, uid[i]) for i in itertools.compress(range(len(parent)),
                                                                              map(NONE.__eq__, parent))]
        children = self.children
        # nodes with a parent that are messages: hang each under its nearest message ancestor
        for idx in itertools.compress(range(len(parent)), map(operator.and_, map(NONE.__ne__, parent),
                                                               map(bool, uid))):
            p = parent[idx]
            while not uid[p] and parent[p] >= 0:
                p = parent[p]
            kids = children.get(p)
            if kids is None:
                children[p] = [idx]
            else:
                kids.append(idx)

    def uid(self, idx: int) -> int:
        return self.links.uid[idx] if idx < len(self.links.uid) else 0

    def sorted_children(self, idx: int) -> list[int]:
        kids = self.children.get(idx)
        if kids is None:
            return []
        if idx not in self.ordered:
            if len(kids) > 1:
                kids.sort(key=self.key.__getitem__)
            self.ordered.add(idx)
        return kids

    # -- REFERENCES
    def references(self) -> list[_Root]:
        self._sort_roots()
        self._gather_subjects()
        if self._merge():
            self._sort_roots()
        return self.roots

    def _sort_roots(self) -> None:
        key = self.key
        for r in self.roots:
            if r.ignore:
                continue
            if r.dummy:
                kids = self.sorted_children(r.idx)
                if not kids:
                    r.ignore = True
                    continue
                r.key = key[kids[0]]
                r.uid = self.links.uid[kids[0]]
                if len(kids) == 1:  # deferred step 3: the only child takes the root's place
                    r.idx, r.dummy = kids[0], False
            else:
                r.key = key[r.idx]
        self.roots.sort(key=lambda r: r.key)

    def _gather_subjects(self) -> None:
        table: dict[bytes, _Root] = {}
        for n, r in enumerate(self.roots, 1):
            r.number = n
            if r.ignore:
                continue
            uid = r.uid  # a dummy's is its oldest child's
            subject = self.subjects[uid]
            if not subject:
                continue
            reply = self.data[uid][:1] == b"R"
            held = table.get(subject)
            if held is None:
                table[subject] = r
            elif not held.dummy and (r.dummy or (held.reply and not reply)):
                held.under = r.number
                table[subject] = r
            else:
                r.under = held.number
            r.reply = reply

    def _merge(self) -> bool:
        """Step 5.C for every root that found an earlier one with its
        subject (one loop, locals only: a big folder has tens of thousands)."""
        roots, children, ordered = self.roots, self.children, self.ordered
        changed = False
        for i in range(len(roots)):
            cur = roots[i]
            if not cur.under or cur.ignore:
                continue
            changed = True
            top = roots[cur.under - 1]
            while top.under:
                top = roots[top.under - 1]
            if cur.dummy:  # both dummies: the children become siblings
                adopt, kids = top.idx, children.pop(cur.idx, [])
            elif top.dummy or (cur.reply and not top.reply):
                adopt, kids = top.idx, [cur.idx]
            else:  # both under a new dummy, which takes the subject's place
                new = _Root(self.next_idx, 0)
                self.next_idx += 1
                new.number = len(roots) + 1
                adopt, kids = new.idx, [top.idx, cur.idx]
                top.under = new.number
                top.ignore = True
                roots.append(new)
            cur.ignore = True
            children.setdefault(adopt, []).extend(kids)
            ordered.discard(adopt)
        return changed

    # -- REFS
    def refs(self) -> list[_Root]:
        """Roots ordered by the newest message of their thread."""
        links, key = self.links, self.key
        by_idx = {r.idx: r for r in self.roots}
        for r in self.roots:
            if r.dummy and not self.children.get(r.idx):
                r.ignore = True
            r.key = r.uid
        newest: dict[int, int] = {}
        for idx, uid in enumerate(links.uid):
            if not uid:
                continue
            top = idx
            while links.parent[top] >= 0:
                top = links.parent[top]
            newest[top] = max(newest.get(top, 0), key[idx] >> 32)
        for top, date in newest.items():
            r = by_idx[top]
            r.key = (date << 32) + r.uid
        self.roots.sort(key=lambda r: r.key)
        return self.roots

    # -- the response
    def render(self, roots: Sequence[_Root], number: Callable[[int], int]) -> bytes:
        """``(a (b c)(d))...`` as Dovecot writes it: a lone child follows its
        parent without parentheses, siblings each get their own."""
        out: list[str] = []
        for r in roots:
            if r.ignore:
                continue
            kids = self.sorted_children(r.idx)
            uid = 0 if r.dummy else r.uid
            if not kids:
                if uid:
                    out.append(f"({number(uid)})")
                continue
            out.append(f"({number(uid)} " if uid else "(")
            self._render_level(kids, number, out)
            out.append(")")
        return "".join(out).encode("ascii")

    def _render_level(self, kids: list[int], number: Callable[[int], int], out: list[str]) -> None:
        uid = self.links.uid
        todo: list[str | list[int]] = [kids]
        while todo:
            item = todo.pop()
            if isinstance(item, str):
                out.append(item)
                continue
            if len(item) == 1:
                c = item[0]
                out.append(str(number(uid[c])))
                sub = self.sorted_children(c)
                if sub:
                    out.append(" ")
                    todo.append(sub)
                continue
            for c in reversed(item):
                sub = self.sorted_children(c)
                if sub:
                    todo.append(")")
                    todo.append(sub)
                    todo.append(f"({number(uid[c])} ")
                else:
                    todo.append(f"({number(uid[c])})")


def ordered_subject(uids: list[int], subjects: Mapping[int, bytes], dates: Mapping[int, int]) -> list[list[int]]:
    """ORDEREDSUBJECT: messages sorted by base subject then date, grouped
    by subject; threads ordered by their first message's date."""
    cols: dict[str, Mapping[int, Any]] = {D.SUBJECT: subjects, D.DATE: dates}
    threads: list[list[int]] = []
    last: bytes | None = None
    for u in order(uids, [("SUBJECT", False), ("DATE", False)], lambda _: None, cols):
        s = subjects[u]
        if s != last or not threads:
            threads.append([])
            last = s
        threads[-1].append(u)
    threads.sort(key=lambda t: (dates[t[0]], t[0]))
    return threads


def render_ordered(threads: list[list[int]], number: Callable[[int], int]) -> bytes:
    out = []
    for t in threads:
        nums = [number(u) for u in t]
        if len(nums) <= 2:
            out.append("(" + " ".join(map(str, nums)) + ")")
        else:
            out.append(f"({nums[0]} " + "".join(f"({n})" for n in nums[1:]) + ")")
    return "".join(out).encode("ascii")


_LAST: weakref.WeakKeyDictionary[Any, tuple[bytes, bytes]] = weakref.WeakKeyDictionary()
"""The last THREAD answer per live folder, with the digest of what it was
computed from (:func:`_digest`).  A message's threading data never
changes, so the same inputs give the same answer; clients ask the same
THREAD on every view of a folder, and a changed folder or search misses.
For a big folder the answer is also kept with the folder's cache (kind
``thread:<algorithm>:<form>``), so it survives a restart."""


def _digest(cmd: C.Thread, uidvalidity: int, found: Found) -> bytes:
    """What a THREAD answer depends on: algorithm, UID form, UIDVALIDITY,
    the matched UIDs and (for sequence numbers) their numbers."""
    h = hashlib.sha256(f"{cmd.algorithm} {cmd.uid} {uidvalidity} ".encode())
    h.update(array("I", found.uids).tobytes())
    if not cmd.uid:
        h.update(array("I", found.seqs).tobytes())
    return h.digest()


async def thread(ctx: Context, cmd: C.Thread) -> Result:
    """THREAD / UID THREAD with any of the three algorithms."""
    sel = ctx.mailbox
    if cmd.charset not in CHARSETS:
        return no("Unsupported charset", BADCHARSET)
    _, found = await matches(sel, cmd)
    folder = sel.folder
    digest = _digest(cmd, folder.uidvalidity, found)
    kept_kind = f"thread:{cmd.algorithm}:{'uid' if cmd.uid else 'seq'}"
    big = len(found.uids) >= K.PACK_MIN
    last = _LAST.get(folder)
    if (last is None or last[0] != digest) and big:
        kept = folder.get_folder_cached(kept_kind)
        if kept is not None and kept[:32] == digest:
            last = (digest, kept[32:])
    if last is not None and last[0] == digest:
        body = last[1]
    else:
        body = await _compute(ctx, cmd, found)
        if big:
            folder.set_folder_cached(kept_kind, digest + body)
    _LAST[folder] = (digest, body)
    ctx.send(b"* THREAD " + body + b"\r\n" if body else b"* THREAD\r\n")
    return found.result()


WORKER_MIN = 5000  # threading this many messages or more runs in a worker thread


def _snapshot(col: Mapping[int, Any], uids: Sequence[int]) -> dict[int, Any]:
    """The values of these UIDs, in a dict of its own (the shared column
    may change in the reactor thread while a worker reads this)."""
    return dict(zip(uids, map(col.__getitem__, uids), strict=True))


def build(algorithm: str, uids: list[int], subjects: Mapping[int, bytes], dates: Mapping[int, int],
          data: Mapping[int, bytes] | None, number: Callable[[int], int]) -> bytes:
    """The THREAD response body from the per-message values: pure
    computation over data nobody else changes, so a worker thread may run it."""
    if algorithm == "ORDEREDSUBJECT":
        return render_ordered(ordered_subject(uids, subjects, dates), number)
    assert data is not None
    links = Links()
    links.add_all(uids, data)
    t = Threader(links, dates, subjects, data)
    roots = t.references() if algorithm == "REFERENCES" else t.refs()
    return t.render(roots, number)


async def _compute(ctx: Context, cmd: C.Thread, found: Found) -> bytes:
    folder = ctx.mailbox.folder
    uids = found.uids
    step = ctx.reset_timeout
    subjects: Mapping[int, bytes] = await K.column(folder, uids, D.SUBJECT, ctx.reactor, step)
    sent = await K.column(folder, uids, D.DATE, ctx.reactor, step)
    data: Mapping[int, bytes] | None = None
    if cmd.algorithm != "ORDEREDSUBJECT":
        data = await K.column(folder, uids, D.THREAD, ctx.reactor, step)
    info_of = info_lookup(folder, len(uids))
    dates = {u: d if (d := sent[u]) is not None else arrival(info_of(u)) for u in uids}
    number: Callable[[int], int] = int if cmd.uid else dict(found.seq_of()).__getitem__
    if len(uids) < WORKER_MIN:
        return build(cmd.algorithm, uids, subjects, dates, data, number)
    # hundreds of milliseconds of pure Python: not on the reactor thread
    subjects = _snapshot(subjects, uids)
    if data is not None:
        data = _snapshot(data, uids)
        K.release(folder, D.THREAD)  # ~17 MB per 100,000 messages; the answer is kept instead
    body: bytes = await threads.deferToThread(build, cmd.algorithm, list(uids), subjects, dates, data, number)
    return body


HANDLERS: Handlers = {
    "THREAD": (thread, SELECTED_ONLY),
}
