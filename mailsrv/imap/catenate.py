"""CATENATE (RFC 4469) and the literal8 side of APPEND (RFC 3516): the
messages of an APPEND made ready before any is stored.

A CATENATE message is built from its TEXT literals and URL parts (IMAP
URLs, RFC 5092, into the user's own mailboxes: relative ``/mailbox/;UID=``
or absolute with the session's user) into a spooled temporary file, part
by part and bounded by APPENDLIMIT as it grows, so a large message never
sits in memory whole.  Every message of a MULTIAPPEND is built before the
first one is stored: a bad URL in the last leaves nothing behind.

Errors, as RFC 4469 and Dovecot answer them: a URL that cannot be parsed,
names another user, a mailbox that does not exist or cannot be read, a
wrong UIDVALIDITY, a message or part that is not there gives
``NO [BADURL url]``; too big, ``NO [TOOBIG]``; a literal8 TEXT when the
first part was not one, ``NO [UNKNOWN-CTE]``.  A message whose first part
is a literal8 (and any APPEND literal8) is stored with its ``binary``
parts base64-encoded (:func:`binary.store_form`).
"""

from __future__ import annotations

import tempfile
from typing import IO

from mailsrv.imap import binary, fetchdata, imapurl, mime
from mailsrv.imap import commands as C
from mailsrv.imap.context import Context
from mailsrv.imap.results import Result, no
from mailsrv.store.crlf import CRLFEncoder, to_crlf
from mailsrv.store.interfaces import IFolder, MessageGone, NoSuchFolder

SPOOL_MEMORY = 1 << 20
CHUNK = 1 << 16


class _Refused(Exception):
    def __init__(self, result: Result) -> None:
        super().__init__(result.text)
        self.result = result


def _badurl(url: str, why: str) -> _Refused:
    """``NO [BADURL url]``: the URL as given (RFC 4469's url-resp-text is
    unquoted text without "]"), as Dovecot answers."""
    text = "".join(c for c in url if c not in "]\r\n")
    return _Refused(no(f"Bad URL: {why}", f"BADURL {text}"))


async def prepare(ctx: Context, cmd: C.Append) -> Result | None:
    """Build every CATENATE message and convert every literal8 one; the
    refusal when one cannot be."""
    try:
        for m in cmd.messages:
            if m.parts is not None:
                await _assemble(ctx, m)
            if m.binary:
                _to_store_form(m)
    except _Refused as e:
        return e.result
    return None


def _to_store_form(m: C.AppendMessage) -> None:
    data = m.data.read()
    m.data.close()
    stored = binary.store_form(data)
    m.data = tempfile.SpooledTemporaryFile(max_size=SPOOL_MEMORY)
    m.data.write(stored)
    m.data.seek(0)
    m.size = len(stored)


async def _assemble(ctx: Context, m: C.AppendMessage) -> None:
    assert m.parts is not None
    limit = ctx.config.append_limit
    out: IO[bytes] = tempfile.SpooledTemporaryFile(max_size=SPOOL_MEMORY)
    m.data.close()
    m.data = out
    first = m.parts[0]
    m.binary = isinstance(first, C.CatText) and first.binary
    size = 0
    for part in m.parts:
        if isinstance(part, C.CatText):
            if part.binary and not m.binary:
                raise _Refused(no("Binary input allowed only when the first part is binary", "UNKNOWN-CTE"))
            size += part.size
            _check_size(size, limit)
            _copy(part.data, out)
        else:
            size = await _copy_url(ctx, part.url, out, size, limit)
    out.seek(0)
    m.size = size


def _check_size(size: int, limit: int) -> None:
    if size > limit:
        raise _Refused(no("Message too large", "TOOBIG"))


def _copy(src: IO[bytes], out: IO[bytes]) -> None:
    src.seek(0)
    while chunk := src.read(CHUNK):
        out.write(chunk)


async def _folder(ctx: Context, url: imapurl.ImapUrl, text: str) -> IFolder:
    if url.user is not None and url.user != ctx.account.user:
        raise _badurl(text, "another user's message")
    try:
        folder: IFolder = await ctx.account.open_folder(url.mailbox)
    except NoSuchFolder:
        raise _badurl(text, "no such mailbox") from None
    if "r" not in getattr(folder, "rights", "r"):  # a shared mailbox this user may not read (RFC 4314)
        raise _badurl(text, "mailbox not readable")
    if url.uidvalidity is not None and url.uidvalidity != folder.uidvalidity:
        raise _badurl(text, "UIDVALIDITY has changed")
    return folder


async def _copy_url(ctx: Context, text: str, out: IO[bytes], size: int, limit: int) -> int:
    """Append what the URL names to ``out``; the new size."""
    try:
        url = imapurl.parse(text)
    except imapurl.BadUrl as e:
        raise _badurl(text, str(e)) from None
    folder = await _folder(ctx, url, text)
    info = folder.get(url.uid)
    if info is None:
        raise _badurl(text, "no such message")
    try:
        if not url.section and url.partial is None:
            return _copy_message(folder, info.uid, out, size, limit)
        if url.part and binary.locate(mime.parse(_whole(folder, info.uid)), url.part) is None:
            raise _badurl(text, "no such part")
        data = fetchdata.section(folder, info, url.part, url.text, url.fields) if url.section \
            else _whole(folder, info.uid)
    except MessageGone:
        raise _badurl(text, "no such message") from None
    if url.partial is not None:
        off, length = url.partial
        data = data[off:] if length is None else data[off:off + length]
    size += len(data)
    _check_size(size, limit)
    out.write(data)
    return size


def _whole(folder: IFolder, uid: int) -> bytes:
    f = folder.open_message(uid)
    try:
        return to_crlf(f.read())
    finally:
        f.close()


def _copy_message(folder: IFolder, uid: int, out: IO[bytes], size: int, limit: int) -> int:
    """A whole message, streamed in chunks through CRLF normalisation."""
    f = folder.open_message(uid)
    enc = CRLFEncoder()
    try:
        while chunk := f.read(CHUNK):
            data = enc.feed(chunk)
            size += len(data)
            _check_size(size, limit)
            out.write(data)
    finally:
        f.close()
    return size
