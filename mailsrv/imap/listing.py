"""LIST / LSUB (RFC 3501, LIST-EXTENDED 5258, LIST-STATUS 5819,
SPECIAL-USE 6154, CHILDREN 3348, LIST-MYRIGHTS 8440) and STATUS."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from mailsrv.imap import commands as C
from mailsrv.imap import condstore, render
from mailsrv.imap.commands_acl import list_myrights
from mailsrv.imap.context import Context
from mailsrv.store.interfaces import IAccount, IFolder

DELIM = "/"


def pattern_regex(pattern: str) -> re.Pattern[str]:
    if pattern[:5].upper() == "INBOX" and (len(pattern) == 5 or pattern[5] in "/%*"):
        pattern = "INBOX" + pattern[5:]
    out = []
    for ch in pattern:
        if ch == "*":
            out.append(".*")
        elif ch == "%":
            out.append("[^/]*")
        else:
            out.append(re.escape(ch))
    return re.compile("".join(out) + r"\Z", re.DOTALL)


def _ancestors(name: str) -> list[str]:
    parts = name.split(DELIM)
    return [DELIM.join(parts[:i]) for i in range(1, len(parts))]


async def status_values(ctx: Context, name: str, atts: list[str]) -> bytes:
    """``(MESSAGES n UIDNEXT m ...)`` for one mailbox (may be the selected one)."""
    folder: IFolder = await ctx.account.open_folder(name)
    await folder.refresh()
    msgs = folder.messages()
    sel = ctx.selected
    values = []
    for a in atts:
        if a == "MESSAGES":
            v = len(msgs)
        elif a == "RECENT":
            v = len(sel.recent) if sel is not None and sel.folder is folder else len(folder.peek_recent())
        elif a == "UIDNEXT":
            v = folder.uidnext
        elif a == "UIDVALIDITY":
            v = folder.uidvalidity
        elif a == "UNSEEN":
            v = sum(1 for m in msgs if "\\Seen" not in m.flags)
        elif a == "HIGHESTMODSEQ":
            condstore.enable_condstore(ctx)  # a CONDSTORE-enabling request (RFC 7162 3.1)
            v = folder.highestmodseq
        elif a == "MAILBOXID":  # RFC 8474
            values.append(f"MAILBOXID ({folder.mailboxid})")
            continue
        elif a == "DELETED":  # RFC 9208
            v = sum(1 for m in msgs if "\\Deleted" in m.flags)
        elif a == "DELETED-STORAGE":
            v = sum(m.size for m in msgs if "\\Deleted" in m.flags) // 1024
        else:  # SIZE
            v = folder.total_size()
        values.append(f"{a} {v}")
    return ("(" + " ".join(values) + ")").encode("ascii")


@dataclass
class _Listing:
    """One LIST/LSUB command against the account's folders and subscriptions."""

    cmd: C.ListCommand
    account: IAccount
    existing: set[str] = field(init=False)
    subs: set[str] = field(init=False)
    regexes: list[re.Pattern[str]] = field(init=False)
    children: set[str] = field(init=False)
    utf8: bool = False  # names in UTF-8 (UTF8=ACCEPT, IMAP4rev2)
    rev2: bool = False  # IMAP4rev2: \NonExistent for names that do not exist

    def __post_init__(self) -> None:
        cmd = self.cmd
        self.lsub = cmd.name == "LSUB"
        self.sel_subscribed = self.lsub or "SUBSCRIBED" in cmd.select_opts
        self.sel_special = "SPECIAL-USE" in cmd.select_opts
        self.recursive = "RECURSIVEMATCH" in cmd.select_opts
        self.ret_subscribed = "SUBSCRIBED" in cmd.return_opts or "SUBSCRIBED" in cmd.select_opts
        self.existing = set(self.account.list_folders())
        self.subs = set(self.account.subscriptions())
        self.regexes = [pattern_regex(cmd.reference + p) for p in cmd.patterns]
        self.children = {anc for name in self.existing for anc in _ancestors(name)}
        spaces = getattr(self.account, "namespaces", None)
        _, others, shared = spaces() if spaces is not None else ((), [], [])
        # (prefix, depth of its own levels): Shared/<owner>/..., Public/...
        self.foreign = [(p, 2) for p, _ in others] + [(p, 1) for p, _ in shared]

    def unlisted_parent(self, name: str) -> bool:
        """A name below another user's or the public namespace's own levels
        that is only the parent of listed mailboxes (the user may not look
        it up, or it is no mailbox): Dovecot's acl plugin lists it (as
        non-existent) only when the patterns miss its visible children,
        as RFC 4314 section 4's LIST example has it."""
        for prefix, depth in self.foreign:
            if name.startswith(prefix) and name.count(DELIM) >= depth:
                return any(self.matches(n) for n in self.existing if n.startswith(name + DELIM))
        return False

    def candidates(self) -> list[str]:
        """Every name that may be listed, INBOX first, then sorted."""
        names: set[str] = set(self.existing)
        for name in list(self.existing) + (list(self.subs) if self.sel_subscribed else []):
            names.update(_ancestors(name))
        if self.sel_subscribed:
            names.update(self.subs)
        return sorted(names, key=lambda n: (n != "INBOX", n))

    def matches(self, name: str) -> bool:
        return any(r.match(name) for r in self.regexes)

    def subscription_attrs(self, name: str) -> tuple[list[str], bytes] | None:
        """Attributes and CHILDINFO of a name that is not itself subscribed
        when listing subscriptions; None to leave it out."""
        if self.lsub and not self.recursive and any(
                s.startswith(name + DELIM) and not self.matches(s) for s in self.subs):
            # RFC 3501 6.3.9: a parent stands in (\Noselect) only for
            # subscribed children the pattern does not reach ("%")
            return ["\\Noselect"], b""
        if self.recursive and any(s.startswith(name + DELIM) and not self.matches(s) for s in self.subs):
            # RFC 5258 3.5: only for descendants the patterns do not list themselves
            return [], b' ("CHILDINFO" ("SUBSCRIBED"))'
        return None

    def line(self, name: str) -> bytes | None:
        """The LIST/LSUB response for one matching name, or None."""
        attrs: list[str] = []
        extra = b""
        exists = name in self.existing
        if self.sel_subscribed and name not in self.subs:
            got = self.subscription_attrs(name)
            if got is None:
                return None
            attrs, extra = got
        elif not self.sel_subscribed and not exists and self.unlisted_parent(name):
            return None
        special = self.account.special_use(name) if exists else None
        if self.sel_special and not special:
            return None
        if not exists and "\\Noselect" not in attrs:
            attrs.append("\\NonExistent" if self.cmd.extended or self.rev2 else "\\Noselect")
        if not self.lsub:
            attrs.append("\\HasChildren" if name in self.children else "\\HasNoChildren")
            if self.ret_subscribed and name in self.subs:
                attrs.append("\\Subscribed")
            if special:
                attrs.append(special)
        head = f"{self.cmd.name} (" + " ".join(attrs) + ') "/" '
        return b"* " + head.encode() + render.mailbox(name, self.utf8) + extra + b"\r\n"


async def list_mailboxes(ctx: Context, cmd: C.ListCommand) -> None:
    """Send the LIST/LSUB responses (and LIST-STATUS's STATUS responses)."""
    if cmd.name != "LSUB" and len(cmd.patterns) == 1 and cmd.patterns[0] == "" and not cmd.extended:
        # the delimiter and the reference's root (RFC 3501 6.3.8: "/usr/x" -> "/")
        ref = cmd.reference
        root = ref[:ref.index(DELIM) + 1] if DELIM in ref else ""
        ctx.send(b'* LIST (\\Noselect) "/" ' + ctx.mailbox_name(root) + b"\r\n")
        return
    listing = _Listing(cmd, ctx.account, utf8=ctx.dialect.utf8, rev2="IMAP4rev2" in ctx.enabled)
    ret_status = "STATUS" in cmd.return_opts
    ret_rights = "MYRIGHTS" in cmd.return_opts
    lines: list[bytes] = []
    status_for: list[str] = []
    for name in listing.candidates():
        if not listing.matches(name):
            continue
        line = listing.line(name)
        if line is None:
            continue
        lines.append(line)
        if ret_rights and name in listing.existing and not (listing.sel_subscribed and name not in listing.subs):
            rights = await list_myrights(ctx, name)  # RFC 8440: after its LIST line, listed mailboxes only
            if rights is not None:
                lines.append(rights)
        if ret_status and name in listing.existing:
            status_for.append(name)
        if len(lines) >= 256:
            ctx.send_many(lines)
            lines = []
    ctx.send_many(lines)
    for name in status_for:
        try:
            values = await status_values(ctx, name, cmd.status_atts)
        except Exception:  # noqa: BLE001  a folder vanished meanwhile: skip its STATUS
            continue
        ctx.send(b"* STATUS " + ctx.mailbox_name(name) + b" " + values + b"\r\n")
