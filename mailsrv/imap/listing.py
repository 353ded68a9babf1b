"""LIST / LSUB (RFC 3501, LIST-EXTENDED 5258, LIST-STATUS 5819,
SPECIAL-USE 6154, CHILDREN 3348) and STATUS."""

from __future__ import annotations

import re

from mailsrv.imap import commands as C
from mailsrv.imap import render

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


async def status_values(server, name: str, atts: list[str]) -> bytes:
    """``(MESSAGES n UIDNEXT m ...)`` for one mailbox (may be the selected one)."""
    folder = await server.account.open_folder(name)
    await folder.refresh()
    msgs = folder.messages()
    sel = server.selected
    values = []
    for a in atts:
        if a == "MESSAGES":
            v = len(msgs)
        elif a == "RECENT":
            if sel is not None and sel.folder is folder:
                v = len(sel.recent)
            else:
                peek = getattr(folder, "peek_recent", None)
                v = len(peek()) if peek is not None else 0
        elif a == "UIDNEXT":
            v = folder.uidnext
        elif a == "UIDVALIDITY":
            v = folder.uidvalidity
        elif a == "UNSEEN":
            v = sum(1 for m in msgs if "\\Seen" not in m.flags)
        else:  # SIZE
            v = folder.total_size()
        values.append(f"{a} {v}")
    return ("(" + " ".join(values) + ")").encode("ascii")


async def list_mailboxes(server, cmd: C.ListCommand) -> None:
    account = server.account
    lsub = cmd.name == "LSUB"
    if not lsub and len(cmd.patterns) == 1 and cmd.patterns[0] == "" and not cmd.extended:
        # the delimiter and the reference's root (RFC 3501 6.3.8: "/usr/x" -> "/")
        ref = cmd.reference
        root = ref[:ref.index(DELIM) + 1] if DELIM in ref else ""
        server.send(b'* LIST (\\Noselect) "/" ' + render.mailbox(root) + b"\r\n")
        return
    existing = set(account.list_folders())
    subs = set(account.subscriptions())
    sel_subscribed = lsub or "SUBSCRIBED" in cmd.select_opts
    sel_special = "SPECIAL-USE" in cmd.select_opts
    recursive = "RECURSIVEMATCH" in cmd.select_opts
    ret_subscribed = "SUBSCRIBED" in cmd.return_opts or ("SUBSCRIBED" in cmd.select_opts)
    ret_status = "STATUS" in cmd.return_opts

    candidates: set[str] = set(existing)
    for name in list(existing) + (list(subs) if sel_subscribed else []):
        candidates.update(_ancestors(name))
    if sel_subscribed:
        candidates.update(subs)
    children: dict[str, bool] = {}
    for name in existing:
        for anc in _ancestors(name):
            children[anc] = True

    regexes = [pattern_regex(cmd.reference + p) for p in cmd.patterns]
    lines: list[bytes] = []
    status_for: list[str] = []
    for name in sorted(candidates, key=lambda n: (n != "INBOX", n)):
        if not any(r.match(name) for r in regexes):
            continue
        attrs: list[str] = []
        extra = b""
        exists = name in existing
        if sel_subscribed and name not in subs:
            sub_child = recursive and any(s.startswith(name + DELIM) for s in subs)
            if lsub and not recursive and any(
                    s.startswith(name + DELIM) and not any(r.match(s) for r in regexes) for s in subs):
                # RFC 3501 6.3.9: a parent stands in (\Noselect) only for
                # subscribed children the pattern does not reach ("%")
                attrs.append("\\Noselect")
            elif sub_child:
                extra = b' ("CHILDINFO" ("SUBSCRIBED"))'
            else:
                continue
        special = account.special_use(name) if exists else None
        if sel_special and not special:
            continue
        if not exists and "\\Noselect" not in attrs:
            attrs.append("\\NonExistent" if cmd.extended else "\\Noselect")
        if not lsub:
            attrs.append("\\HasChildren" if children.get(name) else "\\HasNoChildren")
            if ret_subscribed and name in subs:
                attrs.append("\\Subscribed")
            if special:
                attrs.append(special)
        head = f"{cmd.name} (" + " ".join(attrs) + ') "/" '
        lines.append(b"* " + head.encode() + render.mailbox(name) + extra + b"\r\n")
        if ret_status and exists:
            status_for.append(name)
        if len(lines) >= 256:
            server.send_many(lines)
            lines = []
    server.send_many(lines)
    for name in status_for:
        try:
            values = await status_values(server, name, cmd.status_atts)
        except Exception:  # noqa: BLE001  a folder vanished meanwhile: skip its STATUS
            continue
        server.send(b"* STATUS " + render.mailbox(name) + b" " + values + b"\r\n")
