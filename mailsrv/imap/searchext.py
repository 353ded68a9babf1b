"""SEARCH keys of issue 12: SAVEDBEFORE/SAVEDON/SAVEDSINCE and
SAVEDATESUPPORTED (SAVEDATE, RFC 8514), EMAILID and THREADID (OBJECTID,
RFC 8474).  The keys are in :mod:`searchkeys`; their evaluators are
registered here with :func:`search.compile_key` (the grammar imports this
module, so they are there whenever a key can be parsed)."""

from __future__ import annotations

import calendar

from mailsrv.imap import objectid
from mailsrv.imap import searchkeys as K
from mailsrv.imap.search import CHEAP, HEADER, Compiled, _Scope, compile_key
from mailsrv.store.interfaces import MessageInfo


@compile_key.register
def _save_date(key: K.SaveDate, scope: _Scope) -> Compiled:
    lo = calendar.timegm(key.day.timetuple())
    hi = lo + 86400
    save_date = scope.msg.folder.save_date

    def pred(i: int, m: MessageInfo) -> bool:
        when = save_date(m.uid)
        if when is None:
            return False
        if key.op == "BEFORE":
            return when < lo
        if key.op == "SINCE":
            return when >= lo
        return lo <= when < hi
    return HEADER, pred  # a stat per message the first time: dearer than a flag test


@compile_key.register
def _save_date_supported(key: K.SaveDateSupported, scope: _Scope) -> Compiled:
    return CHEAP, lambda i, m: True


@compile_key.register
def _object_id(key: K.ObjectId, scope: _Scope) -> Compiled:
    folder = scope.msg.folder
    fn = objectid.email_id if key.kind == objectid.EMAILID else objectid.thread_id
    want = key.value.encode("ascii", "replace")
    return HEADER, lambda i, m: fn(folder, m) == want
