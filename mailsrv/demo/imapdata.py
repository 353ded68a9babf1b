"""Tiny readers for the IMAP data the demo's client needs: a BODYSTRUCTURE
tree and the pieces of imaplib's FETCH results.

imaplib returns raw response lines; a real mail client parses BODYSTRUCTURE
to decide which part to download, and so does the demo.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

_TOKEN = re.compile(rb'\(|\)|"(?:[^"\\]|\\.)*"|\{\d+\}\r\n|[^\s()"]+')


@dataclass
class Part:
    number: str  # "1", "2.1", ... ("" for a single-part message body is "1")
    mime: str  # "text/plain"
    size: int  # octets in its transfer encoding
    encoding: str


def _parse(data: bytes) -> Any:
    stack: list[list] = [[]]
    pos = 0
    while pos < len(data):
        m = _TOKEN.search(data, pos)
        if not m:
            break
        tok = m.group(0)
        pos = m.end()
        if tok == b"(":
            stack.append([])
        elif tok == b")":
            if len(stack) == 1:
                break  # the parenthesis closing the FETCH response
            done = stack.pop()
            stack[-1].append(done)
            if len(stack) == 1:
                break  # the BODYSTRUCTURE is complete
        elif tok.startswith(b"{"):
            n = int(tok[1:tok.index(b"}")])
            stack[-1].append(data[pos:pos + n].decode("utf-8", "replace"))
            pos += n
        elif tok.startswith(b'"'):
            stack[-1].append(re.sub(rb"\\(.)", rb"\1", tok[1:-1]).decode("utf-8", "replace"))
        elif tok.upper() == b"NIL":
            stack[-1].append(None)
        else:
            stack[-1].append(tok.decode("utf-8", "replace"))
    return stack[0]


def fetch_bytes(data: list) -> bytes:
    """Re-join imaplib's FETCH result (strings and (prefix, literal) tuples)."""
    out = b""
    for item in data:
        if isinstance(item, tuple):
            out += item[0] + item[1]
        elif item:
            out += item
    return out


def bodystructure(data: list) -> list[Part]:
    """Leaf parts of the BODYSTRUCTURE in a FETCH result, in part order."""
    raw = fetch_bytes(data)
    i = raw.upper().find(b"BODYSTRUCTURE")
    if i < 0:
        raise ValueError("no BODYSTRUCTURE in the FETCH response")
    tree = _parse(raw[i + len(b"BODYSTRUCTURE"):])
    if not tree or not isinstance(tree[0], list):
        raise ValueError("unreadable BODYSTRUCTURE")
    parts: list[Part] = []
    _walk(tree[0], "", parts)
    return parts


def _walk(node: list, prefix: str, out: list[Part]) -> None:
    if node and isinstance(node[0], list):
        n = 0
        for child in node:
            if not isinstance(child, list):
                break
            n += 1
            _walk(child, f"{prefix}.{n}" if prefix else str(n), out)
        return
    mime = f"{(node[0] or '').lower()}/{(node[1] or '').lower()}"
    try:
        size = int(node[6])
    except (IndexError, TypeError, ValueError):
        size = 0
    out.append(Part(prefix or "1", mime, size, (node[5] or "").lower() if len(node) > 5 else ""))


def first_part(parts: list[Part], mime: str) -> Part | None:
    return next((p for p in parts if p.mime == mime), None)


def literal(data: list) -> bytes | None:
    """The first literal in a FETCH result (e.g. BODY[1]'s contents)."""
    for item in data:
        if isinstance(item, tuple) and len(item) > 1:
            return item[1]
    return None


def response_code(line: bytes) -> tuple[str | None, bytes]:
    """('IN-USE', text) from b'-ERR [IN-USE] text'."""
    m = re.match(rb"^[-+]\w+\s+\[([^\]]+)\]\s*(.*)$", line)
    if m:
        return m.group(1).decode("ascii", "replace"), m.group(2)
    return None, line
