"""The base subject of RFC 5256 section 2.1, what SORT (SUBJECT) compares
and THREAD groups by, and the i;unicode-casemap form (RFC 5051) strings
are compared in.

The steps are the RFC's, on the decoded subject: (1) RFC 2047 words
decoded, whitespace runs packed to one space; (2) trailers (``(fwd)``,
spaces) removed; (3) a leader (``[blob]* re|fw|fwd [blob]:`` or a space)
removed; (4) a leading ``[blob]`` removed unless nothing would be left;
(5) (3) and (4) repeated; (6) ``[fwd: ... ]`` unwrapped and everything
again from (2).  Case-insensitivity comes from comparing the casemapped
text (titlecase + compatibility decomposition), as Dovecot does, so
``Re:`` and ``RE:`` are the same leader and ``_`` sorts after letters.
"""

from __future__ import annotations

import functools
import re
import unicodedata

from mailsrv.imap.headers import decode_header_value, unfold

_SPACES = re.compile(r"[ \t\r\n]+")
_REFWD = ("RE", "FWD", "FW")


@functools.lru_cache(maxsize=4096)
def _title(c: str) -> str:
    """The simple titlecase mapping of one character (one character out)."""
    t = c.title()
    if len(t) == 1:
        return t
    u = c.upper()
    return u if len(u) == 1 else c


def casemap(s: str) -> str:
    """i;unicode-casemap (RFC 5051): titlecase, then NFKD.  ASCII (the
    usual case) is just upper-cased."""
    if s.isascii():
        return s.upper()
    return unicodedata.normalize("NFKD", "".join(map(_title, s)))


def normalize(raw: bytes) -> str:
    """Step (1) and the casemap: the subject header value (raw, possibly
    folded) decoded, casemapped, cut at a NUL, whitespace packed."""
    text = decode_header_value(unfold(raw))
    nul = text.find("\x00")
    if nul >= 0:
        text = text[:nul]
    return _SPACES.sub(" ", casemap(text))


def _blob_end(s: str, i: int, end: int) -> int:
    """End of a subj-blob (``[`` *BLOBCHAR ``]`` and one space) at s[i]
    (looking no further than ``end``), or -1."""
    if i >= end or s[i] != "[":
        return -1
    j = i + 1
    while j < end and s[j] not in "[]":
        j += 1
    if j >= end or s[j] != "]":
        return -1
    j += 1
    if j < end and s[j] == " ":
        j += 1
    return j


def _leader_end(s: str, i: int, end: int) -> int:
    """End of a subj-leader at s[i] (``*subj-blob subj-refwd``), or -1.
    A single space is a leader too; the caller handles it first."""
    j = i
    while j < end and s[j] == "[":
        j = _blob_end(s, j, end)
        if j < 0:
            return -1
    for word in _REFWD:
        if s.startswith(word, j, end):
            j += len(word)
            break
    else:
        return -1
    if j < end and s[j] == " ":
        j += 1
    if j < end and s[j] == "[":
        j = _blob_end(s, j, end)
        if j < 0:
            return -1
    if j < end and s[j] == ":":
        return j + 1
    return -1


def _strip_trailers(s: str, start: int, end: int) -> tuple[int, bool]:
    """Step (2): the new end after removing ``(FWD)`` and spaces."""
    fwd = False
    while end > start:
        if s[end - 1] == " ":
            end -= 1
        elif end - 5 >= start and s.startswith("(FWD)", end - 5):
            fwd = True
            end -= 5
        else:
            break
    return end, fwd


def _strip_leaders(s: str, start: int, end: int) -> tuple[int, bool]:
    """Steps (3) to (5): the new start after leaders and removable blobs."""
    reply = False
    while True:
        found = False
        if start < end and s[start] == " ":
            start += 1
            found = True
        lead = _leader_end(s, start, end)
        if lead >= 0:
            start, found, reply = lead, True, True
        blob = _blob_end(s, start, end)
        if 0 <= blob < end:
            start, found = blob, True
        if not found:
            return start, reply


def extract(text: str) -> tuple[str, bool]:
    """Steps (2) to (7) on a normalised subject: (base subject, whether it
    was a reply or forward)."""
    reply = False
    start, end = 0, len(text)
    while True:
        end, fwd = _strip_trailers(text, start, end)
        start, rep = _strip_leaders(text, start, end)
        reply = reply or fwd or rep
        if text.startswith("[FWD:", start) and end - start >= 6 and text[end - 1] == "]":
            start += 5
            end -= 1
            reply = True
            continue
        return text[start:end], reply


def base_subject(raw: bytes) -> tuple[str, bool]:
    """The base subject of a raw Subject header value, casemapped, and
    whether the subject marked a reply or forward (THREAD needs both)."""
    return extract(normalize(raw))
