"""Minimal stand-ins for mailsrv.imap.fetchdata and mailsrv.imap.search,
used by these tests only while the real modules (written in parallel) are
missing.  Deliberately simple: single-part messages, substring search."""

from __future__ import annotations

import email
import email.utils
import types

from mailsrv.store.crlf import to_crlf


def _raw(folder, info) -> bytes:
    f = folder.open_message(info.uid)
    try:
        return to_crlf(f.read())
    finally:
        f.close()


def _split(data: bytes):
    i = data.find(b"\r\n\r\n")
    if i < 0:
        return data, b""
    return data[:i + 4], data[i + 4:]


def _q(v):
    if v is None:
        return b"NIL"
    return b'"' + v.encode("utf-8").replace(b"\\", b"\\\\").replace(b'"', b'\\"') + b'"'


def envelope(folder, info) -> bytes:
    msg = email.message_from_bytes(_raw(folder, info))

    def addrs(name):
        v = msg.get_all(name)
        if not v:
            return b"NIL"
        out = []
        for disp, addr in email.utils.getaddresses(v):
            local, _, dom = addr.partition("@")
            out.append(b"(" + _q(disp or None) + b" NIL " + _q(local) + b" " + _q(dom) + b")")
        return b"(" + b"".join(out) + b")"

    frm = addrs("From")
    return b"(" + b" ".join([
        _q(msg.get("Date")), _q(msg.get("Subject")), frm, addrs("Sender") if msg.get("Sender") else frm,
        addrs("Reply-To") if msg.get("Reply-To") else frm, addrs("To"), addrs("Cc"), addrs("Bcc"),
        _q(msg.get("In-Reply-To")), _q(msg.get("Message-ID"))]) + b")"


def bodystructure(folder, info, extended: bool) -> bytes:
    head, body = _split(_raw(folder, info))
    lines = body.count(b"\n")
    return b'("TEXT" "PLAIN" ("CHARSET" "US-ASCII") NIL NIL "7BIT" %d %d)' % (len(body), lines)


def section(folder, info, part, text, fields) -> bytes:
    head, body = _split(_raw(folder, info))
    if part not in ((), (1,)):
        return b""
    if part == (1,) and text is None:
        return body
    if text == "HEADER" or (text == "MIME" and part):
        return head
    if text == "TEXT":
        return body
    if text and text.startswith("HEADER.FIELDS"):
        want = {f.upper() for f in fields}
        out = []
        cur = None
        for raw in head.split(b"\r\n"):
            if not raw:
                continue
            if raw[:1] in (b" ", b"\t") and cur is not None:
                cur.append(raw)
                continue
            name = raw.split(b":", 1)[0].decode("ascii", "replace").strip().upper()
            keep = (name in want) != text.endswith(".NOT")
            cur = [raw] if keep else None
            if keep:
                out.append(cur)
        return b"".join(b"\r\n".join(c) + b"\r\n" for c in out) + b"\r\n"
    return head + body


def _match(folder, info, seq, n, key, recent):
    op = key[0]
    if op == "ALL":
        return True
    if op == "FLAG":
        return key[1] in info.flags
    if op == "UNFLAG":
        return key[1] not in info.flags
    if op == "RECENT":
        return info.uid in recent
    if op == "NEW":
        return info.uid in recent and "\\Seen" not in info.flags
    if op == "OLD":
        return info.uid not in recent
    if op in ("LARGER", "SMALLER"):
        return info.size > key[1] if op == "LARGER" else info.size < key[1]
    if op in ("SEQ", "UID"):
        val = seq if op == "SEQ" else info.uid
        top = n if op == "SEQ" else folder.uidnext - 1
        for lo, hi in key[1]:
            lo = top if lo is None else lo
            hi = top if hi is None else hi
            if min(lo, hi) <= val <= max(lo, hi):
                return True
        return False
    if op == "NOT":
        return not _match(folder, info, seq, n, key[1], recent)
    if op == "OR":
        return _match(folder, info, seq, n, key[1], recent) or _match(folder, info, seq, n, key[2], recent)
    if op == "AND":
        return all(_match(folder, info, seq, n, k, recent) for k in key[1])
    data = _raw(folder, info)
    head, body = _split(data)
    if op == "HEADER":
        msg = email.message_from_bytes(head)
        return any(key[2].lower() in str(v).lower() for v in msg.get_all(key[1]) or [])
    if op == "BODY":
        return key[1].lower().encode() in body.lower()
    if op == "TEXT":
        return key[1].lower().encode() in data.lower()
    return False


def search(folder, view, key, recent, charset):
    return [i for i, info in enumerate(view, 1) if folder.get(info.uid) is not None
            and _match(folder, info, i, len(view), key, recent)]


def install() -> None:
    """Register the stand-ins where the real modules are missing."""
    import sys

    import mailsrv.imap as pkg
    for name, funcs in (("fetchdata", (envelope, bodystructure, section)), ("search", (search,))):
        full = f"mailsrv.imap.{name}"
        try:
            __import__(full)
        except ImportError:
            mod = types.ModuleType(full)
            for fn in funcs:
                setattr(mod, fn.__name__, fn)
            sys.modules[full] = mod
            setattr(pkg, name, mod)
