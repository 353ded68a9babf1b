"""FETCH of whole message bodies (BODY[], BODY.PEEK[], RFC822, and their
``<origin.length>`` partials) at wire speed.

A body is never copied into the response: a :class:`Body` item carries its
literal's head (``BODY[] {n}\\r\\n``) and its payload, and the FETCH writer
hands the payload to :class:`mailsrv.wire.Wire` as it is.  The payload is
the cheapest thing that is byte-exact:

- a message stored with CRLF line ends (its stored length is its RFC 822
  size), on a plain TCP connection: a :class:`~mailsrv.wire.FileRange` the
  wire sends with ``sendfile``, from the page cache, without Python touching
  the bytes;
- a message stored with bare LF (as Postfix and Dovecot write Maildirs), or
  any message on TLS: its bytes read in one call and converted by the one
  encoder (:func:`mailsrv.store.crlf.to_crlf`, a ``bytes.replace``), a
  partial as a ``memoryview`` slice of that;
- a message over :data:`STREAM_MIN` that must be converted: a
  :class:`BodyStream`, read and converted chunk by chunk so memory stays
  bounded.

Files are opened by path with ``os.open`` when the folder can name them
(``message_path``, the Maildir store); a folder without files (another
backend) or a file that moved falls back to ``IFolder.open_message``.
"""

from __future__ import annotations

import os
from typing import IO

from twisted.logger import Logger

from mailsrv.imap.context import Context
from mailsrv.store.crlf import CRLFEncoder, to_crlf
from mailsrv.store.interfaces import IFolder, MessageInfo
from mailsrv.wire import FileRange, Item

log = Logger()

STREAM_MIN = 1 << 20  # bodies above this that need converting stream from the file
CHUNK = 1 << 18  # read size of a stream
_O_FLAGS = os.O_RDONLY | getattr(os, "O_CLOEXEC", 0)


class BodyStream:
    """A literal to stream: bytes ``origin .. origin+length`` of the message
    in CRLF form, converted on the way."""

    def __init__(self, fileobj: IO[bytes], origin: int, length: int) -> None:
        self.file, self.origin, self.length = fileobj, origin, length


class Body:
    """One body item of a FETCH response: ``head`` (label and literal
    length) and exactly one payload: bytes, a file range or a stream."""

    __slots__ = ("head", "payload")

    def __init__(self, label: bytes, length: int, payload: bytes | memoryview | FileRange | BodyStream) -> None:
        self.head = label + b"{%d}\r\n" % length
        self.payload = payload

    def close(self) -> None:
        """Release the payload's file (the response will not be sent)."""
        p = self.payload
        if isinstance(p, FileRange):
            p.close()
        elif isinstance(p, BodyStream):
            p.file.close()


def _open_fd(folder: IFolder, uid: int) -> int | None:
    """A descriptor on the message file, or None when the folder has no
    files or the file is not where the folder thought."""
    path_of = getattr(folder, "message_path", None)
    if path_of is None:
        return None
    try:
        return os.open(path_of(uid), _O_FLAGS)
    except FileNotFoundError:
        return None


def _read_fd(fd: int, size: int) -> bytes:
    """The whole file (``size`` is its length as fstat saw it; Maildir
    files never change, one read normally gets it all)."""
    data = os.read(fd, size)
    if len(data) == size:
        return data
    parts = [data]
    while more := os.read(fd, 1 << 20):
        parts.append(more)
    return b"".join(parts)


def _literal(label: bytes, data: bytes, partial: tuple[int, int] | None, crlf: bool = False) -> Body:
    """``data`` as stored, converted unless ``crlf`` (stored with CRLF and
    no bare LF: its stored length equals its RFC 822 size)."""
    if not crlf:
        data = to_crlf(data)
    if partial is None:
        return Body(label, len(data), data)
    piece = memoryview(data)[partial[0]:partial[0] + partial[1]]
    return Body(label, len(piece), piece)


def whole(folder: IFolder, info: MessageInfo, label: bytes, partial: tuple[int, int] | None,
          sendfile: bool) -> Body:
    """The ``label`` item (``BODY[] ``, ``BODY[]<10> ``, ``RFC822 ``) for
    the whole message or its ``partial`` (origin, length) in CRLF form;
    ``sendfile`` when the connection can take file ranges."""
    fd = _open_fd(folder, info.uid)
    if fd is None:
        return _from_file(folder.open_message(info.uid), info, label, partial)
    try:
        stored = os.fstat(fd).st_size
        size = info.size
        if stored == size and sendfile:  # CRLF on disk: page cache to socket
            origin, length = partial if partial else (0, size)
            length = max(0, min(length, size - origin))
            r = FileRange(fd, origin, length)
            fd = -1
            return Body(label, length, r)
        if stored > STREAM_MIN:
            f = os.fdopen(fd, "rb")
            fd = -1
            return _stream(f, info, label, partial)
        return _literal(label, _read_fd(fd, stored), partial, crlf=stored == size)
    finally:
        if fd >= 0:
            os.close(fd)


def _from_file(f: IO[bytes], info: MessageInfo, label: bytes, partial: tuple[int, int] | None) -> Body:
    """A message the folder gave as a file object (any backend)."""
    if info.size > STREAM_MIN:
        return _stream(f, info, label, partial)
    try:
        data = f.read()
    finally:
        f.close()
    return _literal(label, data, partial)


def _stream(f: IO[bytes], info: MessageInfo, label: bytes, partial: tuple[int, int] | None) -> Body:
    size = info.size
    origin, length = partial if partial else (0, size)
    length = max(0, min(length, size - origin))
    return Body(label, length, BodyStream(f, origin, length))


async def write_stream(ctx: Context, s: BodyStream) -> None:
    """Send the bytes of a stream (its head went before), chunk by chunk,
    waiting for the transport whenever it asks us to."""
    norm = CRLFEncoder()
    pos = sent = 0
    try:
        while sent < s.length:
            chunk = s.file.read(CHUNK)
            if not chunk:
                break
            data = norm.feed(chunk)
            if pos + len(data) <= s.origin:
                pos += len(data)
                continue
            start = max(0, s.origin - pos)
            pos += len(data)
            piece = data[start:start + (s.length - sent)]
            await ctx.wire.send([piece])
            sent += len(piece)
            if ctx.closed:
                return
    finally:
        s.file.close()
    if sent < s.length:
        log.error("message shorter than its recorded size; padding the literal")
        await ctx.wire.send([b" " * (s.length - sent)])


def in_one_piece(item: bytes | Body) -> bytes:
    """An item as bytes, a body read whole (a NOTIFY announcement is
    built in one piece, outside the wire)."""
    if isinstance(item, bytes):
        return item
    p = item.payload
    if isinstance(p, FileRange):
        try:
            data = p.read_all()
        finally:
            p.close()
    elif isinstance(p, BodyStream):
        enc = CRLFEncoder()
        try:
            whole = b"".join(enc.feed(chunk) for chunk in iter(lambda: p.file.read(CHUNK), b""))
        finally:
            p.file.close()
        data = whole[p.origin:p.origin + p.length]
    else:
        data = bytes(p)
    return item.head + data


def response_pieces(seq: int, items: list[bytes | Body]) -> tuple[list[Item], int] | None:
    """One ``* n FETCH (...)`` response as wire items (bodies not copied)
    and its length in octets; None if a body must stream
    (:func:`write_stream`)."""
    out: list[Item] = []
    cur = [b"* %d FETCH (" % seq]
    total = 0
    for i, it in enumerate(items):
        if i:
            cur.append(b" ")
        if isinstance(it, Body):
            cur.append(it.head)
            head = b"".join(cur)
            out.append(head)
            total += len(head)
            cur = []
            p = it.payload
            if isinstance(p, BodyStream):
                return None
            out.append(p)
            total += p.length if isinstance(p, FileRange) else len(p)
        else:
            cur.append(it)
    cur.append(b")\r\n")
    tail = b"".join(cur)
    out.append(tail)
    return out, total + len(tail)
