"""PREVIEW (RFC 8970): a short plain-text preview of a message.

Made the way Dovecot makes its snippets, so both servers show the same
text: the first text/plain part that is not an attachment (else the first
text/html one, its tags dropped and entities decoded), quoted lines
(``>``) left out, whitespace runs collapsed, at most 200 bytes of UTF-8.  The
text is computed once per message and cached (kind ``preview``); ``PREVIEW
(LAZY)`` answers from the cache only and NIL otherwise, as RFC 8970 allows.
"""

from __future__ import annotations

import html
import re

from mailsrv.imap import headers, mime, render
from mailsrv.store.crlf import to_crlf
from mailsrv.store.interfaces import IFolder, MessageInfo

CAPABILITY = "PREVIEW"
KIND = "preview"
MAX_BYTES = 200  # as Dovecot cuts (RFC 8970 allows up to 256 characters)
_TAG = re.compile(r"<[^>]*>", re.S)
_DROP = re.compile(r"<(script|style|head)\b.*?</\1\s*>", re.S | re.I)
_SPACE = re.compile(r"\s+")


def _chosen(root: mime.Part) -> mime.Part | None:
    """The part the preview is made of: text/plain first, then text/html."""
    found: dict[str, mime.Part] = {}
    stack = [root]
    while stack:
        part = stack.pop(0)
        if part.children:
            stack = list(part.children) + stack
            continue
        disposition = (headers.first(part.fields, "content-disposition") or b"").strip().lower()
        if part.maintype.lower() != "text" or disposition.startswith(b"attachment"):
            continue
        sub = part.subtype.lower()
        if sub in ("plain", "html") and sub not in found:
            found[sub] = part
    return found.get("plain") or found.get("html")


def preview_text(data: bytes) -> str:
    """The preview of a whole message (CRLF bytes)."""
    root = mime.parse(data)
    part = _chosen(root)
    if part is None:
        return ""
    text = mime.decode_body(data, part)
    if part.subtype.lower() == "html":
        text = html.unescape(_TAG.sub(" ", _DROP.sub(" ", text)))
    lines = [ln for ln in text.splitlines() if not ln.lstrip().startswith(">")]
    text = _SPACE.sub(" ", " ".join(lines)).strip()
    return text.encode("utf-8")[:MAX_BYTES].decode("utf-8", "ignore")


def preview(folder: IFolder, info: MessageInfo, lazy: bool = False) -> bytes:
    """``PREVIEW`` data: the string as sent, or NIL (lazy, not computed)."""
    v = folder.get_cached(info.uid, KIND)
    if v is None:
        if lazy:
            return b"NIL"
        f = folder.open_message(info.uid)
        try:
            data = to_crlf(f.read())
        finally:
            f.close()
        v = render.string(preview_text(data))
        folder.set_cached(info.uid, KIND, v)
    return v



