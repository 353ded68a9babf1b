"""The live Maildir folder's per-message objects: what a session reads
(:class:`MaildirMessageInfo`) and the tmp/ file an APPEND literal streams
into (:class:`MaildirTempFile`)."""

from __future__ import annotations

from typing import Protocol

from mailsrv.store.fsutil import unlink_quiet
from mailsrv.store.interfaces import MessageInfo, StoreError


class MtimeSource(Protocol):
    """Who finds a message's file to stat it (the live folder)."""

    def file_mtime(self, m: MaildirMessageInfo) -> float: ...


class MaildirMessageInfo(MessageInfo):
    """MessageInfo plus where the file is; ``internaldate`` (the file's
    mtime) is read only when asked for, so opening a big folder needs no
    per-file stat.  Never mutated in its public fields: a flag change makes
    a new object, so snapshots handed out stay snapshots.  (``sub`` and
    ``info`` follow the file when someone else renamed it.)"""

    __slots__ = ("sub", "info", "pop3", "_folder", "_idate")

    def __init__(self, folder: MtimeSource, uid: int, key: str, size: int, flags: frozenset[str], modseq: int,
                 sub: str, info: str | None, pop3: str | None = None,
                 internaldate: float | None = None) -> None:
        self.uid = uid
        self.key = key
        self.size = size
        self.flags = flags
        self.modseq = modseq
        self.sub = sub
        self.info = info
        self.pop3 = pop3
        self._folder = folder
        self._idate = internaldate

    @property
    def internaldate(self) -> float:
        if self._idate is None:
            self._idate = self._folder.file_mtime(self)
        return self._idate

    @internaldate.setter
    def internaldate(self, value: float) -> None:
        self._idate = value

    def with_flags(self, flags: frozenset[str], modseq: int, sub: str, info: str | None) -> MaildirMessageInfo:
        """The same message after a flag change (its file now at sub/info)."""
        return MaildirMessageInfo(self._folder, self.uid, self.key, self.size, flags, modseq, sub, info,
                                  self.pop3, self._idate)


class MaildirTempFile:
    """A file in the folder's tmp/ that the IMAP layer streams an APPEND
    literal into; ``append`` then renames it into place instead of copying.
    ``discard()`` it if it is not appended (``with`` does that on error or
    when it was never appended)."""

    def __init__(self, path: str) -> None:
        self.name = path
        self.file = open(path, "x+b")
        self._claimed = False

    def write(self, data: bytes) -> int:
        return self.file.write(data)

    def read(self, n: int = -1) -> bytes:
        return self.file.read(n)

    def seek(self, pos: int, whence: int = 0) -> int:
        return self.file.seek(pos, whence)

    def tell(self) -> int:
        return self.file.tell()

    def flush(self) -> None:
        self.file.flush()

    def fileno(self) -> int:
        return self.file.fileno()

    def close(self) -> None:
        """Close the handle; the file stays for ``append`` (or ``discard``)."""
        self.file.close()

    @property
    def closed(self) -> bool:
        return self.file.closed

    def discard(self) -> None:
        self.file.close()
        if not self._claimed:
            unlink_quiet(self.name)

    def claim(self) -> None:
        """Hand the file to an append (once): closed here, renamed there."""
        if self._claimed:
            raise StoreError("this temporary file was already appended")
        self._claimed = True
        self.file.close()

    def __enter__(self) -> MaildirTempFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self.discard()
