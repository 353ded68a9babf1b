"""Maildir message file names, Dovecot's way, as pure string work (no I/O).

``<time>.M<usec>P<pid>Q<n>.<host>,S=<size>,W=<vsize>:2,<flags>``: the part
before ``:`` is the message's stable *key*; ``S=`` is the file's size and
``W=`` its RFC 822 (CRLF) size; after ``2,`` come the flag letters of
maildir(5) in ASCII order, lowercase letters naming the folder's keywords
(``dovecot-keywords`` maps them).
"""

from __future__ import annotations

import itertools
import os
import socket
import threading
import time
from collections.abc import Sequence

from mailsrv.store.interfaces import StoreError

# maildir(5) info letters of the system flags (the one list of those is
# interfaces.SYSTEM_FLAGS; tests check the two agree).
FLAG_CHARS = {"\\Draft": "D", "\\Flagged": "F", "\\Answered": "R", "\\Seen": "S", "\\Deleted": "T"}
CHAR_FLAGS = {v: k for k, v in FLAG_CHARS.items()}
MAX_KEYWORDS = 26  # letters a..z


class TooManyKeywords(StoreError):
    """Maildir filenames have room for 26 keywords per folder."""

    code = "LIMIT"


def split_filename(filename: str) -> tuple[str, str | None]:
    """'key:2,FS' -> ('key', '2,FS'); no ':' -> ('key', None)."""
    key, sep, info = filename.partition(":")
    return key, (info if sep else None)


def join_filename(key: str, info: str | None) -> str:
    """The inverse of :func:`split_filename`."""
    return key if info is None else f"{key}:{info}"


def message_path(folder_dir: str, sub: str, key: str, info: str | None) -> str:
    return os.path.join(folder_dir, sub, key if info is None else f"{key}:{info}")


def filename_size(key: str, field_name: str = "W") -> int | None:
    """The ``,W=`` (or ``,S=``) size from a key, if present."""
    i = key.find("," + field_name + "=")
    if i < 0:
        return None
    i += 3
    j = key.find(",", i)
    digits = key[i:] if j < 0 else key[i:j]
    return int(digits) if digits.isdigit() else None


def size_of(key: str) -> int | None:
    """``filename_size(key)``, fast for the usual name ending in ``,W=<n>``."""
    i = key.rfind(",W=")
    if i >= 0:
        tail = key[i + 3:]
        if tail.isdigit():
            return int(tail)
    return filename_size(key)


def _host() -> str:
    return socket.gethostname().replace("/", r"\057").replace(":", r"\072").replace(",", r"\054")


_counter = itertools.count(1)
_counter_lock = threading.Lock()


def new_key_base() -> str:
    """A unique Maildir base name (no size fields yet)."""
    with _counter_lock:
        n = next(_counter)
    now = time.time()
    sec = int(now)
    usec = int((now - sec) * 1_000_000)
    return f"{sec}.M{usec:06d}P{os.getpid()}Q{n}.{_host()}"


def final_key(tmp_path: str, size: int, vsize: int) -> str:
    """The key a file written into tmp/ gets in new/ or cur/: its tmp/ base
    name with the ``S=`` and ``W=`` sizes."""
    base = os.path.basename(tmp_path).split(",", 1)[0].split(":", 1)[0]
    return f"{base},S={size},W={vsize}"


def flag_chars(info: str | None) -> str:
    """The flag letters of an info ('' unless it is the '2,' kind)."""
    if info and info.startswith("2,"):
        return info[2:]
    return ""


def flags_from_info(info: str | None, keywords: Sequence[str | None]) -> frozenset[str]:
    out = []
    for c in flag_chars(info):
        f = CHAR_FLAGS.get(c)
        if f:
            out.append(f)
        elif "a" <= c <= "z":
            idx = ord(c) - 97
            if idx < len(keywords):
                kw = keywords[idx]
                if kw:
                    out.append(kw)
    return frozenset(out)


def info_for(flags: frozenset[str], keywords: Sequence[str | None], old_info: str | None) -> str:
    """The ``2,<chars>`` info for ``flags``, keeping characters of the old
    info that have no IMAP meaning (P = passed, unknown keyword letters).
    Raises TooManyKeywords for a keyword without a letter in ``keywords``."""
    index = {k.lower(): i for i, k in enumerate(keywords) if k}
    chars = set()
    for f in flags:
        c = FLAG_CHARS.get(f)
        if c:
            chars.add(c)
        else:
            i = index.get(f.lower())
            if i is None:
                raise TooManyKeywords(f"keyword {f} has no letter in this folder")
            chars.add(chr(97 + i))
    for c in flag_chars(old_info):
        if c in CHAR_FLAGS:
            continue
        if "a" <= c <= "z" and ord(c) - 97 < len(keywords) and keywords[ord(c) - 97]:
            continue
        chars.add(c)
    return "2," + "".join(sorted(chars))
