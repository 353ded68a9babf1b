"""UTF8=ACCEPT (RFC 6855) and what a client that never enables it gets.

After ``ENABLE UTF8=ACCEPT`` mailbox names are UTF-8 on the wire in both
directions (:class:`reader.Dialect`), APPEND takes ``UTF8 (~{n}...)``
messages whose headers are UTF-8 (RFC 6532), and SEARCH with a CHARSET is
refused with BAD as RFC 6855 section 3 asks.

A client that does not enable it keeps seeing modified UTF-7 names, and
an ENVELOPE whose header values are raw UTF-8 is downgraded for it as RFC
6857 section 3 describes: each such value becomes an RFC 2047 encoded word,
so the client gets 7-bit strings it can decode.  The message itself (BODY[],
header sections, RFC822.SIZE) is served as stored: rewriting it would change
its size and its bytes between clients, which RFC 6857 allows a server not
to do.
"""

from __future__ import annotations

import base64
import re

from mailsrv.imap.context import Context
from mailsrv.imap.results import SELECTED

CAPABILITY = "UTF8=ACCEPT"


def enabled(ctx: Context) -> bool:
    return CAPABILITY in ctx.enabled


def enable(ctx: Context) -> bool:
    """ENABLE UTF8=ACCEPT: only in the authenticated state (RFC 6855 3)."""
    if ctx.state == SELECTED:
        return False
    ctx.dialect.utf8 = True
    return True


_LITERAL = re.compile(rb"\{(\d+)\}\r\n")
_MAX_WORD_TEXT = 45  # bytes of text per encoded word: 60 base64 characters, under RFC 2047's 75


def encoded_words(text: bytes) -> bytes:
    """``=?UTF-8?B?...?=`` words, space-separated, never splitting a
    UTF-8 character across two words."""
    s = text.decode("utf-8")
    words, cur = [], b""
    for ch in s:
        b = ch.encode("utf-8")
        if len(cur) + len(b) > _MAX_WORD_TEXT:
            words.append(cur)
            cur = b""
        cur += b
    if cur:
        words.append(cur)
    return b" ".join(b"=?UTF-8?B?" + base64.b64encode(w) + b"?=" for w in words)


def downgrade_text(text: bytes) -> bytes:
    """A header value with raw UTF-8 as RFC 2047 text: each run of words
    that are not ASCII becomes encoded words (the spaces inside the run go
    into them, since spaces between encoded words are dropped on decoding);
    ASCII words, encoded words already there included, stay as they are."""
    words = text.split(b" ")
    out: list[bytes] = []
    run: list[bytes] = []
    for w in words + [b""]:
        if w and not w.isascii():
            run.append(w)
            continue
        if run:
            out.append(encoded_words(b" ".join(run)))
            run = []
        out.append(w)
    return b" ".join(out[:-1])


def _quoted(data: bytes) -> bytes | None:
    """A quoted string of ``data``, or None when it cannot be one."""
    if any(c < 0x20 or c > 0x7E for c in data) or len(data) >= 1024:
        return None
    return b'"' + data.replace(b"\\", b"\\\\").replace(b'"', b'\\"') + b'"'


def downgrade_envelope(env: bytes) -> bytes:
    """The ENVELOPE for a client without UTF8=ACCEPT: every string that is
    a literal because it holds UTF-8 becomes quoted encoded words.  Literals
    that are not valid UTF-8 (raw Latin-1 and such) or hold line breaks are
    left as they are."""
    if b"}\r\n" not in env:
        return env
    out = []
    pos = 0
    for m in _LITERAL.finditer(env):
        if m.start() < pos:
            continue  # inside a literal already copied
        start, n = m.end(), int(m.group(1))
        data = env[start:start + n]
        out.append(env[pos:m.start()])
        if data.isascii() or b"\r" in data or b"\n" in data:
            out.append(env[m.start():start + n])
        else:
            try:
                q = _quoted(downgrade_text(data))
            except UnicodeDecodeError:
                q = None
            out.append(env[m.start():start + n] if q is None else q)
        pos = start + n
    out.append(env[pos:])
    return b"".join(out)
