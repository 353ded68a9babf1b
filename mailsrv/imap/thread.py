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

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from mailsrv.imap import commands as C
from mailsrv.imap import sortdata as D
from mailsrv.imap.context import Context, Handlers
from mailsrv.imap.contextsearch import matches
from mailsrv.imap.results import SELECTED_ONLY, Result, no, ok
from mailsrv.imap.sort import BADCHARSET, CHARSETS, order

NONE = -1


class Links:
    """Step 1: nodes for Message-IDs, parent links between them."""

    __slots__ = ("index", "parent", "uid")

    def __init__(self) -> None:
        self.index: dict[str, int] = {}
        self.parent: list[int] = []  # NONE for a root
        self.uid: list[int] = []  # 0 for a dummy (an id only referenced)

    def new(self) -> int:
        self.parent.append(NONE)
        self.uid.append(0)
        return len(self.uid) - 1

    def node(self, msgid: str) -> int:
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
        if self.is_ancestor(c, p) or self.parent[c] == p:
            return
        if self.parent[c] < 0:
            self.parent[c] = p

    def add(self, uid: int, data: D.ThreadData) -> None:
        if data.msgid is None:
            i = self.new()
        else:
            i = self.node(data.msgid)
            if self.uid[i]:
                i = self.new()  # a duplicate Message-ID: the first message keeps it
        self.uid[i] = uid
        p = NONE
        if data.refs:
            p = self.node(data.refs[0])
            for ref in data.refs[1:]:
                c = self.node(ref)
                self.link(p, c)
                p = c
        if self.parent[i] >= 0 and self.parent[i] != p:
            self.parent[i] = NONE
        if p >= 0:
            self.link(p, i)


class _Root:
    __slots__ = ("idx", "uid", "dummy", "ignore", "date", "number", "under", "reply")

    def __init__(self, idx: int, uid: int) -> None:
        self.idx, self.uid = idx, uid
        self.dummy = uid == 0
        self.ignore = False
        self.date = 0
        self.number = 0  # 1-based position during subject gathering
        self.under = 0  # number of the root it merges into, 0: none
        self.reply = False


class Threader:
    """Steps 2 to 6 over a :class:`Links`, and the THREAD response."""

    def __init__(self, links: Links, date_of: Callable[[int], int], subject_of: Callable[[int], bytes],
                 reply_of: Callable[[int], bool]) -> None:
        self.links = links
        self.date_of, self.subject_of, self.reply_of = date_of, subject_of, reply_of
        self.children: dict[int, list[int]] = {}
        self.next_idx = len(links.uid)
        self.roots: list[_Root] = []
        uid, parent = links.uid, links.parent
        for idx in range(len(uid)):
            p = parent[idx]
            if p < 0:
                self.roots.append(_Root(idx, uid[idx]))
            elif uid[idx]:
                while not uid[p] and parent[p] >= 0:
                    p = parent[p]
                self.children.setdefault(p, []).append(idx)

    def uid(self, idx: int) -> int:
        return self.links.uid[idx] if idx < len(self.links.uid) else 0

    def sorted_children(self, idx: int) -> list[int]:
        kids = self.children.get(idx, [])
        if len(kids) > 1:
            kids.sort(key=lambda k: (self.date_of(self.uid(k)), self.uid(k)))
        return kids

    # -- REFERENCES
    def references(self) -> list[_Root]:
        self._sort_roots()
        self._gather_subjects()
        if self._merge():
            self._sort_roots()
        return self.roots

    def _sort_roots(self) -> None:
        for r in self.roots:
            if r.ignore:
                continue
            if r.dummy:
                kids = self.sorted_children(r.idx)
                if not kids:
                    r.ignore = True
                    continue
                if len(kids) == 1:  # deferred step 3: the only child takes the root's place
                    r.idx, r.dummy = kids[0], False
                    r.uid = self.uid(kids[0])
                    r.date = self.date_of(r.uid)
                else:
                    r.uid = self.uid(kids[0])
                    r.date = self.date_of(r.uid)
            else:
                r.date = self.date_of(r.uid)
        self.roots.sort(key=lambda r: (r.date, r.uid))

    def _gather_subjects(self) -> None:
        table: dict[bytes, _Root] = {}
        for n, r in enumerate(self.roots, 1):
            r.number = n
            if r.dummy and r.ignore:
                continue
            uid = self.uid(self.sorted_children(r.idx)[0]) if r.dummy else r.uid
            subject = self.subject_of(uid)
            if not subject:
                continue
            reply = self.reply_of(uid)
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
        changed = False
        for i in range(len(self.roots)):
            r = self.roots[i]
            if r.under and not r.ignore:
                self._merge_one(r)
                changed = True
        return changed

    def _merge_one(self, cur: _Root) -> None:
        top = cur
        while True:
            top = self.roots[top.under - 1]
            if not top.under:
                break
        if cur.dummy:
            # both dummies: the children become siblings
            self.children.setdefault(top.idx, []).extend(self.children.pop(cur.idx, []))
            cur.ignore = True
        elif top.dummy or (cur.reply and not top.reply):
            self.children.setdefault(top.idx, []).append(cur.idx)
            cur.ignore = True
        else:
            new = _Root(self.next_idx, 0)
            self.next_idx += 1
            new.number = len(self.roots) + 1
            self.children[new.idx] = [top.idx, cur.idx]
            top.under = new.number
            top.ignore = cur.ignore = True
            self.roots.append(new)

    # -- REFS
    def refs(self) -> list[_Root]:
        """Roots ordered by the newest message of their thread."""
        links = self.links
        by_idx = {r.idx: r for r in self.roots}
        for r in self.roots:
            if r.dummy and not self.children.get(r.idx):
                r.ignore = True
        for idx, uid in enumerate(links.uid):
            if not uid:
                continue
            top = idx
            while links.parent[top] >= 0:
                top = links.parent[top]
            root = by_idx[top]
            root.date = max(root.date, self.date_of(uid))
        self.roots.sort(key=lambda r: (r.date, r.uid))
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
        todo: list[str | list[int]] = [kids]
        while todo:
            item = todo.pop()
            if isinstance(item, str):
                out.append(item)
                continue
            if len(item) == 1:
                c = item[0]
                out.append(str(number(self.uid(c))))
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
                    todo.append(f"({number(self.uid(c))} ")
                else:
                    todo.append(f"({number(self.uid(c))})")


def ordered_subject(uids: list[int], subjects: Mapping[int, bytes], date_of: Callable[[int], int]) -> list[list[int]]:
    """ORDEREDSUBJECT: messages sorted by base subject then date, grouped
    by subject; threads ordered by their first message's date."""
    cols: dict[str, Mapping[int, Any]] = {D.SUBJECT: subjects, D.DATE: _Dates(date_of)}
    threads: list[list[int]] = []
    last: bytes | None = None
    for u in order(uids, [("SUBJECT", False), ("DATE", False)], lambda _: None, cols):
        s = subjects[u]
        if s != last or not threads:
            threads.append([])
            last = s
        threads[-1].append(u)
    threads.sort(key=lambda t: (date_of(t[0]), t[0]))
    return threads


class _Dates(Mapping[int, Any]):
    """A date column whose every value is known (no fallback needed)."""

    def __init__(self, date_of: Callable[[int], int]) -> None:
        self.date_of = date_of

    def __getitem__(self, uid: int) -> int:
        return self.date_of(uid)

    def __iter__(self) -> Any:
        return iter(())

    def __len__(self) -> int:
        return 0


def render_ordered(threads: list[list[int]], number: Callable[[int], int]) -> bytes:
    out = []
    for t in threads:
        nums = [number(u) for u in t]
        if len(nums) <= 2:
            out.append("(" + " ".join(map(str, nums)) + ")")
        else:
            out.append(f"({nums[0]} " + "".join(f"({n})" for n in nums[1:]) + ")")
    return "".join(out).encode("ascii")


async def thread(ctx: Context, cmd: C.Thread) -> Result:
    """THREAD / UID THREAD with any of the three algorithms."""
    sel = ctx.mailbox
    if cmd.charset not in CHARSETS:
        return no("Unsupported charset", BADCHARSET)
    _, found = matches(sel, cmd)
    folder = sel.folder
    uids = [u for _, u in found]
    seq_of = {u: s for s, u in found}
    step = ctx.reset_timeout
    subjects = await D.column(folder, uids, D.SUBJECT, ctx.reactor, step)
    dates = await D.column(folder, uids, D.DATE, ctx.reactor, step)
    get = folder.get

    def date_of(uid: int) -> int:
        d = dates.get(uid)
        if d is not None:
            return int(d)
        info = get(uid)
        return int(info.internaldate) if info is not None else 0

    number: Callable[[int], int] = (lambda u: u) if cmd.uid else seq_of.__getitem__
    if cmd.algorithm == "ORDEREDSUBJECT":
        body = render_ordered(ordered_subject(uids, subjects, date_of), number)
    else:
        data = await D.column(folder, uids, D.THREAD, ctx.reactor, step)
        links = Links()
        for u in uids:
            links.add(u, data[u])
        t = Threader(links, date_of, subjects.__getitem__, lambda u: bool(data[u].reply))
        roots = t.references() if cmd.algorithm == "REFERENCES" else t.refs()
        body = t.render(roots, number)
    ctx.send(b"* THREAD " + body + b"\r\n" if body else b"* THREAD\r\n")
    return ok()


HANDLERS: Handlers = {
    "THREAD": (thread, SELECTED_ONLY),
}
