"""NOTIFY (RFC 5465): one session follows the whole account.

``NOTIFY SET`` replaces the session's notification spec; ``NOTIFY NONE``
clears it.  What each part does:

- The selected mailbox (``SELECTED`` / ``SELECTED-DELAYED``) keeps the
  per-session view of :mod:`mailsrv.imap.session`; NOTIFY only decides
  when its changes go out: between commands as they happen (expunges too
  for ``SELECTED``, held for the next command that allows them for
  ``SELECTED-DELAYED``), whether other sessions' flag changes are reported
  (FlagChange), and FETCH responses with the requested attributes after
  the EXISTS of new messages (``MessageNew (UID FLAGS ...)``).  Expunges
  are reported the way the session reports them, so ``VANISHED`` once
  QRESYNC is enabled.
- Other mailboxes (``PERSONAL``, ``INBOXES``, ``SUBSCRIBED``,
  ``SUBTREE``, ``MAILBOXES``) are followed through the account's listener
  (:class:`mailsrv.store.interfaces.IAccountListener`): message events
  become ``STATUS`` responses (only when a reported value changed),
  MailboxName events ``LIST`` responses (``\\NonExistent`` for a deleted
  mailbox, ``OLDNAME`` for a renamed one), SubscriptionChange events
  ``LIST`` responses with or without ``\\Subscribed``.  Changes other
  processes make are found by polling the followed folders every
  ``ctx.idle_poll`` seconds (a few stats each).

Notifications go out at once when no command is running (or during
IDLE); otherwise they wait for the next point where RFC 3501 allows
untagged responses (just before a tagged response).  Events this server
does not have (annotations, metadata) are refused with ``NO [BADEVENT
(...)]`` naming those it has; more than :data:`MAX_NAMES` mailbox names
with ``NO [NOTIFICATIONOVERFLOW]``.
"""

from __future__ import annotations

from bisect import bisect_right
from dataclasses import dataclass, field
from typing import Any

from twisted.internet import defer, task
from twisted.logger import Logger
from zope.interface import implementer

from mailsrv.imap import commands as C
from mailsrv.imap.context import Context, Handlers
from mailsrv.imap.fetch import BodyStream, Plan, build_items
from mailsrv.imap.grammar_ext import SELECTED_FILTERS
from mailsrv.imap.results import AUTHENTICATED, Result, bad, no, ok
from mailsrv.imap.session import SelectedMailbox
from mailsrv.store.crlf import CRLFEncoder
from mailsrv.store.interfaces import (
    FlagsChanged,
    FolderChanged,
    FolderCreated,
    FolderDeleted,
    FolderRenamed,
    IAccount,
    IAccountListener,
    IFolder,
    MessagesAdded,
    MessagesExpunged,
    StoreError,
    SubscriptionChanged,
)

log = Logger()

CAPABILITY = "NOTIFY"
SUPPORTED = ("MessageNew", "MessageExpunge", "FlagChange", "MailboxName", "SubscriptionChange")
MESSAGE_EVENTS = frozenset({"MessageNew", "MessageExpunge", "FlagChange"})
MAX_NAMES = 100  # mailbox names in one NOTIFY (Dovecot's limit too)
ORDER = ("MESSAGES", "UIDNEXT", "UIDVALIDITY", "UNSEEN", "HIGHESTMODSEQ")
COUNTS = frozenset({"MESSAGES", "UIDNEXT", "UNSEEN"})


@dataclass(frozen=True)
class Watch:
    """One event group for mailboxes other than the selected one."""

    filter: str
    mailboxes: tuple[str, ...]
    events: frozenset[str]

    def matches(self, name: str, subscribed: set[str]) -> bool:
        if self.filter in ("PERSONAL", "INBOXES"):
            return True  # every mailbox can receive mail here (LMTP +detail), as Dovecot reads INBOXES
        if self.filter == "SUBSCRIBED":
            return name in subscribed
        if self.filter == "MAILBOXES":
            return name in self.mailboxes
        return any(name == m or name.startswith(m + "/") for m in self.mailboxes)  # SUBTREE


@dataclass
class Spec:
    """A checked NOTIFY SET."""

    watches: list[Watch] = field(default_factory=list)
    selected: frozenset[str] = frozenset()  # events for the selected mailbox
    immediate_expunges: bool = False
    fetch_atts: list[C.FetchAtt] = field(default_factory=list)

    def wanted(self, name: str, subscribed: set[str]) -> frozenset[str]:
        got: set[str] = set()
        for w in self.watches:
            if w.matches(name, subscribed):
                got |= w.events
        return frozenset(got)

    @property
    def message_watches(self) -> bool:
        return any(w.events & MESSAGE_EVENTS for w in self.watches)


def check(cmd: C.Notify) -> Spec | Result:
    """The spec of a NOTIFY SET, or the answer refusing it."""
    spec = Spec()
    selected_seen = False
    names = 0
    assert cmd.groups is not None
    for g in cmd.groups:
        unknown = [e for e in g.events if e not in SUPPORTED]
        if unknown:
            return no("Unsupported NOTIFY events: " + " ".join(unknown), f"BADEVENT ({' '.join(SUPPORTED)})")
        events = frozenset(g.events)
        if g.filter in SELECTED_FILTERS:
            if selected_seen:
                return bad("Duplicate selected filter")
            selected_seen = True
            new_or_gone = events & {"MessageNew", "MessageExpunge"}
            if len(new_or_gone) == 1:
                return bad("MessageNew and MessageExpunge must be together")
            if "FlagChange" in events and not new_or_gone:
                return bad("FlagChange requires MessageNew and MessageExpunge")
            spec.selected = events
            spec.immediate_expunges = g.filter == "SELECTED"
            spec.fetch_atts = list(g.fetch_atts)
            continue
        names += len(g.mailboxes)
        if events:
            spec.watches.append(Watch(g.filter, tuple(g.mailboxes), events))
    if names > MAX_NAMES:
        return no("Too many mailbox names", "NOTIFICATIONOVERFLOW")
    return spec


def _status_values(folder: IFolder, items: set[str]) -> dict[str, int]:
    msgs = folder.messages() if items & {"MESSAGES", "UNSEEN"} else []
    values: dict[str, int] = {}
    for a in ORDER:
        if a not in items:
            continue
        if a == "MESSAGES":
            values[a] = len(msgs)
        elif a == "UIDNEXT":
            values[a] = folder.uidnext
        elif a == "UIDVALIDITY":
            values[a] = folder.uidvalidity
        elif a == "UNSEEN":
            values[a] = sum(1 for m in msgs if "\\Seen" not in m.flags)
        else:
            values[a] = folder.highestmodseq
    return values


def _stream_bytes(s: BodyStream) -> bytes:
    """A streamed body, read whole (a notification is built in one piece)."""
    enc = CRLFEncoder()
    try:
        data = b"".join(enc.feed(chunk) for chunk in iter(lambda: s.file.read(1 << 18), b""))
    finally:
        s.file.close()
    return data[s.origin:s.origin + s.length]


def fetch_lines(sel: SelectedMailbox, atts: list[C.FetchAtt], pairs: list[tuple[int, int]]) -> list[bytes]:
    """FETCH responses for MessageNew (fetch-att ...): what FETCH would
    send, as .PEEK (a notification never sets \\Seen), UID always included."""
    atts = [C.FetchAtt(a.name, a.section, a.partial, peek=True) for a in atts]
    if not any(a.name == "UID" for a in atts):
        atts.insert(0, C.FetchAtt("UID"))
    plan = Plan(sel, atts)
    pre = plan.prefetch([u for _, u in pairs])
    out = []
    for seq, uid in pairs:
        info = sel.folder.get(uid)
        if info is None:
            continue
        try:
            items = build_items(plan.makers, info, pre)
        except StoreError:
            continue
        parts = [it if isinstance(it, bytes) else it[0] + b"{%d}\r\n" % it[1].length + _stream_bytes(it[1])
                 for it in items]
        out.append(b"* %d FETCH (%s)\r\n" % (seq, b" ".join(parts)))
    return out


@implementer(IAccountListener)
class NotifyState:
    """One session's NOTIFY: its spec, the account listener, what waits to
    be sent and the STATUS values last sent per mailbox."""

    def __init__(self) -> None:
        self.ctx: Context | None = None
        self.spec: Spec | None = None
        self.queue: list[bytes] = []
        self.sent: dict[str, dict[str, int]] = {}
        self.dirty: dict[str, set[str]] = {}
        self.subscribed: set[str] = set()
        self.seen_uid = 0
        self._sel: SelectedMailbox | None = None
        self._listening: IAccount | None = None
        self._computing = False
        self._polling = False
        self._loop: task.LoopingCall | None = None

    # -- life cycle
    def bind(self, ctx: Context) -> None:
        if self.ctx is None:
            self.ctx = ctx
            ctx.unsolicited.append(self.flush)
            ctx.select_hooks.append(self.configure)
            ctx.end_hooks.append(self.stop)

    def start(self, spec: Spec | None) -> None:
        """Use ``spec`` from now on (None: NOTIFY NONE)."""
        ctx = self.ctx
        assert ctx is not None
        self.stop()
        self.spec = spec if spec is not None else Spec()
        self.queue, self.dirty = [], {}
        selected = self.spec.selected
        ctx.push_selected = bool(selected & {"MessageNew", "MessageExpunge", "FlagChange"})
        ctx.push_expunges = self.spec.immediate_expunges
        if ctx.selected is not None:
            self.configure(ctx.selected)
        if self.spec.watches:
            self.subscribed = set(ctx.account.subscriptions())
            ctx.account.add_account_listener(self)
            self._listening = ctx.account
        if self.spec.message_watches or ctx.push_selected:
            self._loop = task.LoopingCall(self.poll)
            self._loop.clock = ctx.reactor
            self._loop.start(ctx.idle_poll, now=False)

    def stop(self) -> None:
        if self._listening is not None:
            self._listening.remove_account_listener(self)
            self._listening = None
        if self._loop is not None and self._loop.running:
            self._loop.stop()
        self._loop = None
        if self.ctx is not None:
            self.ctx.push_selected = False
            self.ctx.push_expunges = True

    def configure(self, sel: SelectedMailbox) -> None:
        """A mailbox was selected: apply the spec's selected part to it."""
        spec = self.spec
        sel.report_flags = spec is None or "FlagChange" in spec.selected
        self._sel = sel
        self.seen_uid = sel.uids[-1] if sel.uids else 0

    # -- what goes out
    def flush(self, allow_expunge: bool) -> list[bytes]:
        """Called by ``ctx.flush_pending`` right after the selected
        mailbox's own responses: FETCH for new messages, then the queue."""
        out = self._new_message_fetches()
        if self.queue:
            out += self.queue
            self.queue = []
        return out

    def _new_message_fetches(self) -> list[bytes]:
        ctx, spec, sel = self.ctx, self.spec, self._sel
        if ctx is None or spec is None or sel is None or sel is not ctx.selected or not sel.uids:
            return []
        last = sel.uids[-1]
        if last <= self.seen_uid:
            return []
        start = bisect_right(sel.uids, self.seen_uid)
        self.seen_uid = last
        if "MessageNew" not in spec.selected or not spec.fetch_atts:
            return []
        pairs = [(i + 1, sel.uids[i]) for i in range(start, len(sel.uids))]
        return fetch_lines(sel, spec.fetch_atts, pairs)

    def push(self) -> None:
        ctx = self.ctx
        if ctx is not None and self.queue and ctx.can_push():
            lines, self.queue = self.queue, []
            ctx.send_many(lines)

    # -- the account's news
    def account_event(self, account: Any, event: Any) -> None:
        ctx, spec = self.ctx, self.spec
        if ctx is None or spec is None or ctx.closed:
            return
        if isinstance(event, (MessagesAdded, MessagesExpunged, FlagsChanged, FolderChanged)):
            self._message_event(event)
        elif isinstance(event, SubscriptionChanged):
            self._subscription_event(event)
        else:
            self._name_event(event)
        if self.dirty and not self._computing:
            defer.ensureDeferred(self._compute()).addErrback(
                lambda f: log.failure("NOTIFY STATUS failed", f))
        self.push()

    def _condstore(self) -> bool:
        assert self.ctx is not None
        return bool({"CONDSTORE", "QRESYNC"} & self.ctx.enabled)

    def _message_event(self, event: Any) -> None:
        assert self.ctx is not None and self.spec is not None
        name = event.folder
        sel = self.ctx.selected
        if sel is not None and sel.folder.name == name:
            return  # the selected mailbox reports for itself
        wanted = self.spec.wanted(name, self.subscribed) & MESSAGE_EVENTS
        if not wanted:
            return
        items: set[str] = set()
        if isinstance(event, MessagesAdded) and "MessageNew" in wanted:
            items |= COUNTS
        elif isinstance(event, MessagesExpunged) and "MessageExpunge" in wanted:
            items |= COUNTS
        elif isinstance(event, FlagsChanged) and "FlagChange" in wanted:
            items.add("UNSEEN")
        elif isinstance(event, FolderChanged):
            items |= COUNTS | {"UIDVALIDITY"}
        if items and self._condstore():
            items.add("HIGHESTMODSEQ")
        if items:
            self.dirty.setdefault(name, set()).update(items)

    def _list_line(self, name: str, attrs: list[str], extra: bytes = b"") -> bytes:
        assert self.ctx is not None
        return (b"* LIST (" + " ".join(attrs).encode() + b') "/" ' + self.ctx.mailbox_name(name) + extra
                + b"\r\n")

    def _attrs(self, name: str) -> list[str]:
        acct = self.ctx.account if self.ctx is not None else None
        if acct is None or not acct.folder_exists(name):
            return ["\\NonExistent"]
        prefix = name + "/"
        attrs = ["\\HasChildren" if any(n.startswith(prefix) for n in acct.list_folders()) else "\\HasNoChildren"]
        special = acct.special_use(name)
        if special:
            attrs.append(special)
        return attrs

    def _name_event(self, event: FolderCreated | FolderDeleted | FolderRenamed) -> None:
        assert self.spec is not None and self.ctx is not None
        if isinstance(event, FolderRenamed):
            old, new = event.old, event.new
            if old in self.sent:
                self.sent[new] = self.sent.pop(old)
            if "MailboxName" in (self.spec.wanted(old, self.subscribed) | self.spec.wanted(new, self.subscribed)):
                extra = b' ("OLDNAME" (' + self.ctx.mailbox_name(old) + b"))"
                self.queue.append(self._list_line(new, self._attrs(new), extra))
            return
        name = event.folder
        if isinstance(event, FolderDeleted):
            self.sent.pop(name, None)
            self.dirty.pop(name, None)
        if "MailboxName" in self.spec.wanted(name, self.subscribed):
            attrs = ["\\NonExistent"] if isinstance(event, FolderDeleted) else self._attrs(name)
            self.queue.append(self._list_line(name, attrs))

    def _subscription_event(self, event: SubscriptionChanged) -> None:
        assert self.spec is not None
        name = event.folder
        self.subscribed.add(name)  # the SUBSCRIBED filter matches it either way for this event
        wanted = self.spec.wanted(name, self.subscribed)
        if not event.subscribed:
            self.subscribed.discard(name)
        if "SubscriptionChange" in wanted:
            attrs = self._attrs(name) + (["\\Subscribed"] if event.subscribed else [])
            self.queue.append(self._list_line(name, attrs))

    # -- STATUS
    async def status_line(self, name: str, items: set[str], only_changed: bool) -> bytes | None:
        """``* STATUS`` for ``name`` with ``items``; None when the mailbox
        is gone or (``only_changed``) nothing differs from what was sent."""
        ctx = self.ctx
        assert ctx is not None
        try:
            folder: IFolder = await ctx.account.open_folder(name)
        except StoreError:
            return None
        values = _status_values(folder, items)
        last = self.sent.setdefault(name, {})
        if only_changed and all(last.get(k) == v for k, v in values.items()):
            return None
        last.update(values)
        body = " ".join(f"{k} {v}" for k, v in values.items())
        return b"* STATUS " + ctx.mailbox_name(name) + b" (" + body.encode() + b")\r\n"

    async def _compute(self) -> None:
        self._computing = True
        try:
            while self.dirty:
                name = next(iter(self.dirty))
                items = self.dirty.pop(name)
                line = await self.status_line(name, items, only_changed=True)
                if line is not None:
                    self.queue.append(line)
        finally:
            self._computing = False
        self.push()

    async def initial_status(self) -> None:
        """NOTIFY SET STATUS: the STATUS of every followed mailbox but the
        selected one, now (RFC 5465 3.1)."""
        ctx, spec = self.ctx, self.spec
        assert ctx is not None and spec is not None
        items = set(COUNTS | {"UIDVALIDITY"})
        if any("FlagChange" in w.events for w in spec.watches):
            items.add("HIGHESTMODSEQ")
        selected = ctx.selected.folder.name if ctx.selected is not None else None
        for name in ctx.account.list_folders():
            if name == selected or not spec.wanted(name, self.subscribed) & MESSAGE_EVENTS:
                continue
            line = await self.status_line(name, items, only_changed=False)
            if line is not None:
                ctx.send(line)

    # -- other processes
    def poll(self) -> None:
        """Every ``idle_poll`` seconds: look at the followed folders (and
        the selected one) for changes made outside this process."""
        ctx, spec = self.ctx, self.spec
        if ctx is None or spec is None or self._polling or ctx.closed:
            return
        names = []
        if spec.message_watches:
            names = [n for n in ctx.account.list_folders() if spec.wanted(n, self.subscribed) & MESSAGE_EVENTS]
        if ctx.selected is not None and ctx.push_selected and ctx.selected.folder.name not in names:
            names.append(ctx.selected.folder.name)
        if not names:
            return
        self._polling = True

        def done(_: object) -> None:
            self._polling = False

        ctx.account.poll_folders(names).addErrback(lambda f: log.failure("NOTIFY poll failed", f)).addBoth(done)


async def notify(ctx: Context, cmd: C.Notify) -> Result:
    """NOTIFY SET [STATUS] ... / NOTIFY NONE."""
    state = ctx.session_data(NotifyState)
    if cmd.groups is None:
        state.bind(ctx)
        state.start(None)
        return ok()
    spec = check(cmd)
    if isinstance(spec, Result):
        return spec
    state.bind(ctx)
    state.start(spec)
    if cmd.status:
        await state.initial_status()
    return ok()


HANDLERS: Handlers = {
    "NOTIFY": (notify, AUTHENTICATED),
}
