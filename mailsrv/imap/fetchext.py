"""FETCH items of issue 12: EMAILID and THREADID (RFC 8474), SAVEDATE
(RFC 8514), PREVIEW and PREVIEW (LAZY) (RFC 8970).  :class:`fetch.Plan`
asks :func:`maker` first for each item."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from mailsrv.imap import commands as C
from mailsrv.imap import objectid, preview, render
from mailsrv.store.interfaces import IFolder, MessageInfo

ITEMS = ("EMAILID", "THREADID", "SAVEDATE", "PREVIEW")
Maker = Callable[[MessageInfo, Any], bytes]


def _cached(plan: Any, kind: str) -> None:
    """Have the plan read ``kind`` in bulk per batch."""
    if kind not in plan.kinds:
        plan.kinds.append(kind)


def maker(plan: Any, a: C.FetchAtt) -> Maker | None:
    """The function answering item ``a`` for one message, or None when the
    item is not one of ours (``plan`` is the FETCH's :class:`fetch.Plan`)."""
    folder: IFolder = plan.folder
    if a.name == "EMAILID":
        _cached(plan, objectid.EMAILID)

        def emailid(info: MessageInfo, pre: Any) -> bytes:
            v = pre[objectid.EMAILID].get(info.uid) or objectid.email_id(folder, info)
            return b"EMAILID (" + v + b")"
        return emailid
    if a.name == "THREADID":
        _cached(plan, objectid.THREADID)

        def threadid(info: MessageInfo, pre: Any) -> bytes:
            v = pre[objectid.THREADID].get(info.uid) or objectid.thread_id(folder, info)
            return b"THREADID (" + v + b")"
        return threadid
    if a.name == "SAVEDATE":
        def savedate(info: MessageInfo, pre: Any) -> bytes:
            when = folder.save_date(info.uid)
            return b"SAVEDATE " + (b"NIL" if when is None else render.date_time(when))
        return savedate
    if a.name == "PREVIEW":
        _cached(plan, preview.KIND)
        lazy = "LAZY" in a.modifiers

        def make_preview(info: MessageInfo, pre: Any) -> bytes:
            v = pre[preview.KIND].get(info.uid) or preview.preview(folder, info, lazy)
            return b"PREVIEW " + v
        return make_preview
    return None
