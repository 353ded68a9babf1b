"""OBJECTID (RFC 8474): EMAILID and THREADID of a message.

Both are derived from the message itself, so they stay the same through
COPY and MOVE (the store gives a copy a new file name and UID, not a new
content) and need nothing stored beside the message:

- EMAILID: ``M`` and 24 hex digits of SHA-256 over the header block and
  the size.  Two messages get one EMAILID only when their headers (with
  Message-ID, Received, Date) and sizes are equal, which RFC 8474 5.1
  allows for identical content.
- THREADID: ``T`` and 24 hex digits of SHA-256 over the thread's root
  message-id: the first id of References, else In-Reply-To, else the
  message's own Message-ID (so a thread's first message shares the id of
  its replies); a message with none of them is a thread of its own.

MAILBOXID is the store's (:attr:`IFolder.mailboxid`).  Values are cached
per message (kinds ``emailid`` and ``threadid``).
"""

from __future__ import annotations

import hashlib
import re

from mailsrv.imap import fetchdata, headers
from mailsrv.store.interfaces import IFolder, MessageInfo

CAPABILITY = "OBJECTID"
EMAILID = "emailid"
THREADID = "threadid"
_MSGID = re.compile(rb"<[^<>\s]+>")


def _digest(prefix: bytes, data: bytes) -> bytes:
    return prefix + hashlib.sha256(data).hexdigest()[:24].encode()


def email_id(folder: IFolder, info: MessageInfo) -> bytes:
    v = folder.get_cached(info.uid, EMAILID)
    if v is None:
        v = _digest(b"M", fetchdata.header_bytes(folder, info) + b"\0%d" % info.size)
        folder.set_cached(info.uid, EMAILID, v)
    return v


def thread_root(header: bytes) -> bytes | None:
    """The root message-id of the thread a header belongs to."""
    fields = headers.parse_fields(header)
    for name in ("references", "in-reply-to", "message-id"):
        value = headers.first(fields, name)
        if value is not None:
            m = _MSGID.search(value)
            if m:
                return m.group(0)
    return None


def thread_id(folder: IFolder, info: MessageInfo) -> bytes:
    v = folder.get_cached(info.uid, THREADID)
    if v is None:
        root = thread_root(fetchdata.header_bytes(folder, info))
        v = _digest(b"T", root) if root is not None else b"T" + email_id(folder, info)[1:]
        folder.set_cached(info.uid, THREADID, v)
    return v
