#!/usr/bin/env python3
"""Hostile address headers: what the reference Dovecot makes of them.

Sends a corpus of address header values (hand-written hostile ones, the
From/To/Cc values of the reference mbox, and deterministic random
combinations of the tokens that break parsers) as the ``To:`` field of one
message each to Dovecot, then records its ENVELOPE ``to`` list for each
and its ``UID SEARCH TO`` answer for words of the values.  With
``--record`` the answers become ``tests/fixtures/dovecot-addresses.json``
(what ``tests/imap/test_addresses.py`` holds mailsrv to); without, the
recorded fixture is compared with mailsrv's parser and the differences
are printed.

    python bench/address_compare.py [--record] [--dovecot-port 13243]

Dovecot runs from the reference scripts under its own base dir and ports
(see imap_compare.py); nothing else is touched.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import sys
from collections.abc import Sequence

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
sys.path.insert(0, HERE)

from imap_compare import Conn, Dovecot, corpus  # noqa: E402

FIXTURE = os.path.join(os.path.dirname(HERE), "tests", "fixtures", "dovecot-addresses.json")
FOLDER = "addrcmp"

HOSTILE: list[bytes] = [
    b"group: g1@d1.org, g2@d2.org;, group2: g3@d3.org;",
    b"group:;, group2: (foo) ;",
    b"group: (comment) ;",
    b'group: "quoted;name" <q@x>;',
    b"group: a@b, (c) ;",
    b"g: a@b, c@d; e@f",
    b"g: a@b",
    b"g:",
    b":a@b;",
    b"; a@b",
    b"a@b;",
    b"a@b:",
    b"a@b, , c@d",
    b",,",
    b",a@b",
    b"a@b,",
    b"a@b ,, c@d",
    b"<user-from (comment)@ (comment) domain.org>",
    b"user@domain (Real Name)",
    b"user@domain (Real (nested) Name)",
    b"user@domain (unterminated",
    b"user@domain (a\\)b)",
    b"\"Last, First\" <f@x.org>",
    b"\"unterminated <a@b>",
    b"\"a\\\"b\" <c@d>",
    b"\"\" <a@b>",
    b"\"q\"@x.org",
    b"\"q x\"@x.org",
    b"John Q. Public <jqp@x>",
    b"John. Q <a@b>",
    b".lead <a@b>",
    b"<@r1,@r2:u@h>",
    b"<@r1:u@h>",
    b"<@r1 u@h>",
    b"<@:u@h>",
    b"Name <@r1,,@r2:u@h>",
    b"<a@b",
    b"unterminated <a@b",
    b"Name <a@b> trailing",
    b"Name <a@b> (comment)",
    b"Name <a>",
    b"Name <>",
    b"<>",
    b"<@>",
    b"Name <a@>",
    b"Name <@b>",
    b"a@[1.2.3.4]",
    b"a@[1.2.3.4",
    b"a@[1\\]2]",
    b"Name <a@[IPv6:::1]>",
    b"a@b.c.",
    b"a@.b",
    b"a@b..c",
    b"a . b @ c . d",
    b"a.@b",
    b"@b",
    b"a@",
    b"@",
    b"a",
    b"a b c",
    b"a b <c@d> e f <g@h>",
    b"<a@b> <c@d>",
    b"Name <a@b>, Other <c@d>",
    b"=?utf-8?q?J=C3=BCrgen?= <j@x>",
    b"=?utf-8?b?SsO8cmdlbg==?= <j@x>",
    b"\"=?utf-8?q?J=C3=BCrgen?=\" <j@x>",
    b"j@x (=?utf-8?q?J=C3=BCrgen?=)",
    b"\xc3\xa9l\xc3\xa8ve <e@x>",
    b"\xe9l\xe8ve <e@x>",
    b"a@b\tc@d",
    b"Name\t<a@b>",
    b"Name\r\n <a@b>",
    b"\"folded\r\n name\" <a@b>",
    b"a@b,\r\n c@d",
    b"Undisclosed recipients:;",
    b"undisclosed-recipients: ;",
    b"Name <a@b>;",
    b"(only a comment)",
    b"()",
    b"(",
    b")",
    b"\\",
    b"\"",
    b"<",
    b">",
    b"[",
    b"]",
    b"a@b>",
    b"a<b@c",
    b"a>b@c",
    b"a(b)c@d",
    b"a\"b\"c@d",
    b"a\\b@c",
    b"x: y: z@w;;",
    b"x: <a@b>, \"c\" <d@e>;",
    b"x: a@b (c), d@e (f);",
    b"Mixed, Case <A@B.ORG>",
    b"user-from1@domain.org, user-from2@domain.org",
    b"groupname: groupuser1@domain.org, groupuser2@domain.org;,\r\n  groupname2: groupuser3@domain.org;",
    b"groupname:;",
]

# fragments the random combinations are built from
PIECES = [b"a@b", b"c@d.org", b"Name", b"\"q s\"", b"<", b">", b"@", b",", b";", b":", b"(", b")", b"(c)",
          b"\"", b"[1.2]", b".", b" ", b"<x@y>", b"g:", b"\\", b"=?utf-8?q?x?=", b"\xc3\xa4"]


def values(n_random: int = 300, n_corpus: int = 120) -> list[bytes]:
    """The corpus of header values, deterministic."""
    out = list(HOSTILE)
    seen = set(out)
    for raw in corpus(200):
        head = raw.split(b"\r\n\r\n", 1)[0]
        for m in re.finditer(rb"(?im)^(?:from|to|cc):[ \t]*((?:.*)(?:\r\n[ \t].*)*)", head):
            v = m.group(1)
            if v not in seen and len(out) < len(HOSTILE) + n_corpus:
                seen.add(v)
                out.append(v)
    rnd = random.Random(5322)
    while len(out) < len(HOSTILE) + n_corpus + n_random:
        v = b"".join(rnd.choice(PIECES) for _ in range(rnd.randint(1, 8))).strip()
        if v and v not in seen and not v.startswith(b"\r\n"):
            seen.add(v)
            out.append(v)
    return out


def message(i: int, value: bytes) -> bytes:
    return (b"From: sender@example.org\r\nSubject: addr %d\r\nTo: " % i) + value + b"\r\n\r\nbody\r\n"


def _sexp_items(s: bytes, pos: int) -> tuple[list[bytes], int]:
    """Raw top-level items of the parenthesised list starting at s[pos]
    ('('), literals and quoted strings skipped whole; returns (items, end)."""
    assert s[pos:pos + 1] == b"("
    items: list[bytes] = []
    i = pos + 1
    depth, start = 0, i
    while i < len(s):
        c = s[i:i + 1]
        if c == b'"':
            i += 1
            while s[i:i + 1] != b'"':
                i += 2 if s[i:i + 1] == b"\\" else 1
        elif c == b"{":
            j = s.index(b"}", i)
            n = int(s[i + 1:j])
            i = j + 3 + n - 1
        elif c == b"(":
            depth += 1
        elif c == b")":
            if depth == 0:
                if s[start:i].strip():
                    items.append(s[start:i].strip())
                return items, i + 1
            depth -= 1
        elif c == b" " and depth == 0:
            if s[start:i].strip():
                items.append(s[start:i].strip())
            start = i + 1
        i += 1
    raise ValueError("unterminated list")


def envelope_to(fetch_line: bytes) -> bytes:
    """The ENVELOPE's 'to' element (raw) from a FETCH response."""
    at = fetch_line.index(b"ENVELOPE (") + len(b"ENVELOPE ")
    items, _ = _sexp_items(fetch_line, at)
    return items[5]


SPECIAL_NEEDLES = ["missing", "missing_mailbox", "missing_domain", "syntax_error", "invalid_route", "<", ">",
                   "@", ",", ";", ":", '"', "'", "\\", "(", "<>", "realto", "j\u00fcrgen"]


def needles(vals: Sequence[bytes]) -> list[str]:
    words: list[str] = list(SPECIAL_NEEDLES)
    for v in vals:
        for w in re.findall(rb"[A-Za-z0-9][A-Za-z0-9.\-]{1,}", v):
            s = w.decode("ascii").lower()
            if s not in words:
                words.append(s)
    return words[:280]


def record(port: int) -> dict:
    vals = values()
    c = Conn(port)
    c.command(b"LOGIN testuser pass")
    c.command(b"DELETE " + FOLDER.encode())
    tag, out = c.command(b"CREATE " + FOLDER.encode())
    assert out[-1].split(b" ")[1] == b"OK", out
    for i, v in enumerate(vals, 1):
        m = message(i, v)
        _, out = c.command(b"APPEND %s {%d+}\r\n" % (FOLDER.encode(), len(m)) + m)
        assert out[-1].split(b" ")[1] == b"OK", (v, out)
    c.command(b"SELECT " + FOLDER.encode())
    _, out = c.command(b"FETCH 1:* (UID ENVELOPE)")
    env = {}
    for line in out:
        m = re.match(rb"\* (\d+) FETCH", line)
        if m:
            env[int(m.group(1))] = envelope_to(line)
    searches = []
    for w in needles(vals):
        quoted = b'"' + w.encode().replace(b"\\", b"\\\\").replace(b'"', b'\\"') + b'"'
        if w.isascii():
            cmd = b"UID SEARCH TO " + quoted
        else:
            cmd = b"UID SEARCH CHARSET UTF-8 TO {%d+}\r\n" % len(w.encode()) + w.encode()
        _, out = c.command(cmd)
        uids = [int(x) for line in out if line.startswith(b"* SEARCH") for x in line.split()[2:]]
        searches.append([w, uids])
    c.command(b"CLOSE")
    c.command(b"DELETE " + FOLDER.encode())
    c.command(b"LOGOUT")
    return {
        "about": "To: values and Dovecot 2.3's ENVELOPE to-list / UID SEARCH TO answers (bench/address_compare.py)",
        "values": [v.decode("latin-1") for v in vals],
        "envelope_to": [env[i].decode("latin-1") for i in range(1, len(vals) + 1)],
        "search_to": searches,
    }


def compare(fx: dict) -> int:
    from mailsrv.imap import envelope as E
    from mailsrv.imap import headers

    bad = 0
    for i, (v, want) in enumerate(zip(fx["values"], fx["envelope_to"], strict=True), 1):
        raw = message(i, v.encode("latin-1"))
        fields = headers.parse_fields(raw[:headers.header_end(raw)])
        got = envelope_to(b"* 1 FETCH (ENVELOPE " + E.envelope(fields) + b")")
        if got != want.encode("latin-1"):
            bad += 1
            print(f"{i}: {v!r}\n   dovecot {want!r}\n   mailsrv {got.decode('latin-1')!r}")
    print(f"{bad} of {len(fx['values'])} ENVELOPE to-lists differ")
    return bad


def compare_search(fx: dict) -> int:
    from mailsrv.imap import searchkeys as K
    from mailsrv.imap.search import search
    from tests.fakestore import FakeFolder

    folder = FakeFolder()
    for i, v in enumerate(fx["values"], 1):
        folder.add(message(i, v.encode("latin-1")))
    view = folder.messages()
    bad = 0
    for needle, want in fx["search_to"]:
        got = [view[s - 1].uid for s in search(folder, view, K.Address("To", needle), set())]
        if got != want:
            bad += 1
            extra, missing = sorted(set(got) - set(want)), sorted(set(want) - set(got))
            print(f"TO {needle!r}: mailsrv also {extra[:8]}, not {missing[:8]}")
            for u in (extra + missing)[:3]:
                print(f"   {u}: {fx['values'][u - 1]!r}")
    print(f"{bad} of {len(fx['search_to'])} SEARCH TO answers differ")
    return bad


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--record", action="store_true", help="ask Dovecot and write the fixture")
    ap.add_argument("--dovecot-base", default="/tmp/dovecot-addrcmp")
    ap.add_argument("--dovecot-port", type=int, default=13243)
    ap.add_argument("--running", action="store_true", help="use a Dovecot already listening on the port")
    args = ap.parse_args(argv)
    if args.record:
        dov = None if args.running else Dovecot(args.dovecot_base, args.dovecot_port)
        try:
            if dov is not None:
                dov.start()
            fx = record(args.dovecot_port)
        finally:
            if dov is not None:
                dov.stop()
        with open(FIXTURE, "w") as f:
            json.dump(fx, f, indent=0, ensure_ascii=True)
            f.write("\n")
        print(f"wrote {FIXTURE}: {len(fx['values'])} values, {len(fx['search_to'])} searches")
    with open(FIXTURE) as f:
        fx = json.load(f)
    return 1 if compare(fx) + compare_search(fx) else 0


if __name__ == "__main__":
    sys.exit(main())
