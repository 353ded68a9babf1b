"""The per-session view of a selected mailbox (RFC 3501 / RFC 2180).

Each session numbers messages on its own: its view changes only when it
tells the client (EXISTS, EXPUNGE), so sequence numbers stay meaningful
while other sessions, POP3 and deliveries change the shared folder.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Callable, Iterable

from zope.interface import implementer

from mailsrv.imap import render
from mailsrv.imap.flags import RECENT
from mailsrv.imap.seqset import render as render_set
from mailsrv.store.interfaces import RIGHTS, SYSTEM_FLAGS, IFolder, IFolderListener, MessageInfo
from mailsrv.store.rightsfolder import permanent_flags


def _recent(folder: IFolder, readonly: bool) -> set[int]:
    """SELECT claims \\Recent; EXAMINE shows it and leaves it for the next
    SELECT (RFC 3501 6.3.2)."""
    recent: set[int] = folder.claim_recent() if not readonly else folder.peek_recent()
    return recent


@implementer(IFolderListener)
class SelectedMailbox:
    """Sequence-number view plus the changes not yet reported."""

    def __init__(self, folder: IFolder, readonly: bool, on_change: Callable[[], None] | None = None) -> None:
        self.folder = folder
        self.readonly = readonly
        self.on_change = on_change  # called when something is queued (IDLE pushes it)
        # the Maildir store's uids() (not part of IFolder) beats a MessageInfo walk
        uids = getattr(folder, "uids", None)
        self.uids: list[int] = uids() if uids is not None else [m.uid for m in folder.messages()]
        self.recent: set[int] = set(_recent(folder, readonly))
        self._added: set[int] = set()
        self._flags: set[int] = set()
        self._expunged: set[int] = set()
        self._known_keywords = set(folder.keywords())
        # RFC 7162, set by the session: FETCH updates carry MODSEQ
        # (CONDSTORE), expunges are reported as VANISHED (QRESYNC)
        self.modseqs = False
        self.vanished = False
        self._expunge_modseq = 0  # the lowest mod-sequence of the expunges not yet reported
        self.report_recent = True  # False under IMAP4rev2: no \Recent, no RECENT
        self.utf8 = False  # the client reads UTF-8 header values (UTF8=ACCEPT, IMAP4rev2)
        self.report_flags = True  # False: other sessions' flag changes are not reported (NOTIFY without FlagChange)
        self.saved: list[int] = []  # SEARCHRES (RFC 5182): the UIDs the last SEARCH RETURN (SAVE) kept
        self.on_close: list[Callable[[], None]] = []  # per-selection extension state to drop
        folder.add_listener(self)

    def close(self) -> None:
        self.folder.remove_listener(self)
        self.on_change = None
        hooks, self.on_close = self.on_close, []
        for hook in hooks:
            hook()

    # -- IFolderListener
    def messages_added(self, folder: IFolder, uids: list[int]) -> None:
        self._added.update(uids)
        self._notify()

    def flags_changed(self, folder: IFolder, uids: list[int]) -> None:
        self._flags.update(uids)
        self._notify()

    def messages_expunged(self, folder: IFolder, uids: list[int]) -> None:
        if not self._expunged:
            self._expunge_modseq = folder.highestmodseq  # the expunge's own: listeners hear after it is noted
        self._expunged.update(uids)
        self._added.difference_update(uids)
        self._notify()

    def _notify(self) -> None:
        if self.on_change is not None:
            self.on_change()

    # -- lookups
    def __len__(self) -> int:
        return len(self.uids)

    def seq_of(self, uid: int) -> int | None:
        i = bisect_left(self.uids, uid)
        if i < len(self.uids) and self.uids[i] == uid:
            return i + 1
        return None

    def uid_of(self, seq: int) -> int:
        return self.uids[seq - 1]

    def is_pending_expunge(self, uid: int) -> bool:
        return uid in self._expunged

    def expunged_in_view(self) -> bool:
        """Some messages of this view were expunged elsewhere and the
        expunge is not reported yet (a search cannot judge them)."""
        return any(self.seq_of(u) is not None for u in self._expunged)

    def has_pending(self) -> bool:
        return bool(self._added or self._flags or self._expunged)

    def forget_flag_updates(self, uids: Iterable[int]) -> None:
        """This session reported (or was told not to report) these itself."""
        self._flags.difference_update(uids)

    def infos(self) -> list[MessageInfo]:
        """MessageInfo per sequence number; placeholders for messages that
        were expunged elsewhere but are still in this view."""
        get = self.folder.get
        return [info if (info := get(uid)) is not None else MessageInfo(uid, "", 0, 0.0, frozenset({"\\Deleted"}))
                for uid in self.uids]

    def flags_of(self, info: MessageInfo) -> list[str]:
        fl = sorted(info.flags)
        if info.uid in self.recent:
            fl.append(RECENT)
        return fl

    def flags_response(self) -> list[bytes]:
        kws = sorted(self.folder.keywords())
        self._known_keywords = set(kws)
        allf = list(SYSTEM_FLAGS) + kws
        # narrowed to what the user may change (RFC 4314 5.1.1; issue 12)
        perm = [] if self.readonly else permanent_flags(getattr(self.folder, "rights", RIGHTS), kws)
        return [
            render.untagged(b"FLAGS " + render.flag_list(allf)),
            render.untagged(b"OK [PERMANENTFLAGS " + render.flag_list(perm) + b"] Flags permitted."),
        ]

    def new_keywords_response(self) -> list[bytes]:
        """FLAGS and PERMANENTFLAGS again if keywords were added since the
        client last heard (empty otherwise)."""
        if set(self.folder.keywords()) <= self._known_keywords:
            return []
        return self.flags_response()

    # -- reporting
    def flush(self, allow_expunge: bool, uid_fetch: bool = True) -> list[bytes]:
        """Untagged responses for queued changes; updates the view."""
        out: list[bytes] = []
        if not set(self.folder.keywords()) <= self._known_keywords:
            out.extend(self.flags_response())
        if allow_expunge and self._expunged:
            self._flush_expunged(out)
        if self._added:
            self._flush_added(out)
        if self._flags and not self.report_flags:
            self._flags.clear()
        if self._flags:
            self._flush_flags(out, uid_fetch)
        if self._expunged and self.modseqs:
            # expunges held back while newer MODSEQs may have gone out: a
            # client must not take those as its sync point (RFC 5162 erratum 1810)
            out.append(b"* OK [HIGHESTMODSEQ %d] Highest\r\n" % (self._expunge_modseq - 1))
        return out

    def _flush_expunged(self, out: list[bytes]) -> None:
        gone = sorted((s for s in (self.seq_of(u) for u in self._expunged) if s is not None), reverse=True)
        if self.vanished and gone:
            out.append(b"* VANISHED %s\r\n" % render_set([self.uids[s - 1] for s in gone]).encode())
            out.append(b"* OK [HIGHESTMODSEQ %d] Highest\r\n" % self.folder.highestmodseq)
        else:  # descending order: each EXPUNGE leaves the lower numbers valid
            out.extend(b"* %d EXPUNGE\r\n" % seq for seq in gone)
        if gone:
            dead = self._expunged
            self.uids = [u for u in self.uids if u not in dead]
        self.recent.difference_update(self._expunged)
        self._flags.difference_update(self._expunged)
        self._expunged.clear()

    def _flush_added(self, out: list[bytes]) -> None:
        last = self.uids[-1] if self.uids else 0
        new = sorted(u for u in self._added if u > last and self.folder.get(u) is not None)
        self._added.clear()
        if new:
            self.uids.extend(new)
            out.append(b"* %d EXISTS\r\n" % len(self.uids))
            if self.report_recent:
                self.recent.update(_recent(self.folder, self.readonly))
                out.append(b"* %d RECENT\r\n" % sum(1 for u in self.recent if self.seq_of(u)))
            if self.vanished and not self._expunged:
                out.append(b"* OK [HIGHESTMODSEQ %d] Highest\r\n" % self.folder.highestmodseq)

    def _flush_flags(self, out: list[bytes], uid_fetch: bool) -> None:
        changed = sorted(self._flags)
        self._flags.clear()
        for uid in changed:
            seq = self.seq_of(uid)
            info = self.folder.get(uid)
            if seq is None or info is None:
                continue
            items = b"FLAGS " + render.flag_list(self.flags_of(info))
            if uid_fetch or self.modseqs:
                items = b"UID %d " % uid + items
            if self.modseqs:
                items += b" MODSEQ (%d)" % info.modseq
            out.append(b"* %d FETCH (%s)\r\n" % (seq, items))
