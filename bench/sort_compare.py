"""Differential check of issue 9's extensions against the reference Dovecot:
SORT (every key, REVERSE, several keys, search criteria), THREAD (the three
algorithms), ESORT/ESEARCH return options with PARTIAL, SEARCHRES (``$``),
update contexts (ADDTO/REMOVEFROM from a second session), BINARY and
CATENATE, on the same seeded messages, with the same commands and tags.
The sibling of ``imap_compare.py`` (whose servers, wire client and
normalisation it uses), printing what differs.

    python bench/sort_compare.py [-n 60] [--only sort,thread] [--all] [-o out.txt]

Where Dovecot 2.3 lacks an extension (CONTEXT=SORT) its answer is printed
for reference but differences are expected.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import imap_compare as IC  # noqa: E402

SORT_KEYS = ["ARRIVAL", "CC", "DATE", "FROM", "SIZE", "SUBJECT", "TO", "DISPLAYFROM", "DISPLAYTO"]

BIN = (b"From: user@domain.org\r\nMime-Version: 1.0\r\nContent-Type: application/octet-stream\r\n"
       b"Content-Transfer-Encoding: binary\r\n\r\n\x00-\xe4\n\r\n")
MIME = (b"From: a@example.org\r\nMime-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"b\"\r\n\r\n"
        b"--b\r\nContent-Type: text/plain\r\nContent-Transfer-Encoding: base64\r\n\r\naGVs\r\nbG8gd29y\r\nbGQ=\r\n"
        b"--b\r\nContent-Type: text/plain\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n"
        b"caf=C3=A9 =\r\nau  \r\nlait=\r\n\r\n"
        b"--b\r\nContent-Type: message/rfc822\r\n\r\nSubject: in\r\nContent-Transfer-Encoding: base64\r\n\r\n"
        b"aW5uZXI=\r\n--b\r\nContent-Type: text/plain\r\nContent-Transfer-Encoding: x-uuencode\r\n\r\nbegin\r\n"
        b"--b--\r\n")


def scripts() -> dict[str, list[IC.Step]]:
    S: dict[str, list[IC.Step]] = {}
    keys = [f"SORT ({k}) UTF-8 ALL" for k in SORT_KEYS] + [f"SORT (REVERSE {k}) UTF-8 ALL" for k in SORT_KEYS]
    S["sort"] = [
        ("login", "A"), "EXAMINE INBOX", *keys, "UID SORT (SUBJECT DATE) UTF-8 ALL",
        "SORT (REVERSE SUBJECT REVERSE SIZE) US-ASCII ALL", "SORT (FROM ARRIVAL) UTF-8 SEEN",
        "SORT (DATE) UTF-8 OR SUBJECT re FROM example", "SORT (CC TO SIZE) utf-8 NOT 1:5",
        "SORT (DATE) KOI8-R ALL", "SORT (DATE) UTF-8", "SORT (BOGUS) UTF-8 ALL", "SORT () UTF-8 ALL",
        "SORT DATE UTF-8 ALL", "SORT (REVERSE) UTF-8 ALL", "LOGOUT",
    ]
    S["esort"] = [
        ("login", "A"), "EXAMINE INBOX", "SORT RETURN (MIN MAX COUNT) (DATE) UTF-8 ALL",
        "SORT RETURN () (SUBJECT) UTF-8 ALL", "UID SORT RETURN (ALL) (REVERSE ARRIVAL) UTF-8 1:20",
        "SORT RETURN (PARTIAL 1:5) (SUBJECT) UTF-8 ALL", "SORT RETURN (PARTIAL 10:3) (REVERSE DATE) UTF-8 ALL",
        "SORT RETURN (PARTIAL 1:*) (DATE) UTF-8 ALL", "SORT RETURN (COUNT) (DATE) UTF-8 SUBJECT zzznothing",
        "SEARCH RETURN (PARTIAL 2:4) ALL", "SEARCH RETURN (PARTIAL 4:2 COUNT) SEEN",
        "UID SEARCH RETURN (PARTIAL 1:3) ALL",
        "SEARCH RETURN (PARTIAL 1000:1001) ALL", "SEARCH RETURN (PARTIAL 1) ALL", "SEARCH RETURN (PARTIAL 1:2 ALL) ALL",
        "SEARCH RETURN (CONTEXT) 1:3", "SEARCH RETURN (CONTEXT COUNT) 1:3", "LOGOUT",
    ]
    S["thread"] = [
        ("login", "A"), "EXAMINE INBOX", "THREAD REFERENCES UTF-8 ALL", "UID THREAD REFERENCES UTF-8 ALL",
        "THREAD ORDEREDSUBJECT UTF-8 ALL", "THREAD REFS UTF-8 ALL", "THREAD REFERENCES UTF-8 NOT 1:10",
        "THREAD REFERENCES UTF-8 SUBJECT re", "THREAD ORDEREDSUBJECT US-ASCII 20:*", "THREAD BOGUS UTF-8 ALL",
        "THREAD REFERENCES KOI8-R ALL", "THREAD REFERENCES UTF-8", "LOGOUT",
    ]
    S["searchres"] = [
        ("login", "A"), "CREATE cmpres", "EXAMINE INBOX", "COPY 1:12 cmpres", "SELECT cmpres",
        "SEARCH RETURN (SAVE) FLAGGED", "FETCH $ (UID FLAGS)", "UID FETCH $ UID", "SEARCH $", "SEARCH UID $",
        "SEARCH RETURN (SAVE MIN MAX) ALL", "FETCH $ UID", "SEARCH RETURN (SAVE PARTIAL 2:3) ALL", "FETCH $ UID",
        "SORT RETURN (SAVE MIN) (REVERSE SIZE) UTF-8 ALL", "FETCH $ UID", "STORE $ +FLAGS (\\Deleted)", "EXPUNGE",
        "FETCH $ UID", "SEARCH RETURN (SAVE) CHARSET KOI8-R ALL", "SEARCH $", "FETCH $,1 UID", "COPY $ Trash",
        "UNSELECT", "DELETE cmpres", "LOGOUT",
    ]
    S["context"] = [
        ("login", "A"), ("login", "B"), "CREATE cmpctx", "EXAMINE INBOX", "COPY 1:8 cmpctx", "SELECT cmpctx",
        ("B", "SELECT cmpctx"), "SEARCH RETURN (UPDATE) SEEN", "UID SEARCH RETURN (UPDATE COUNT) FLAGGED",
        "SEARCH RETURN (UPDATE) ALL", "STORE 1:3 +FLAGS (\\Seen)", "STORE 2 -FLAGS.SILENT (\\Seen)",
        ("B", "STORE 4 +FLAGS (\\Flagged \\Seen)"), "NOOP", ("B", b"APPEND cmpctx (\\Seen) " + IC.lit(IC.MSG, True)),
        "NOOP", ("B", "STORE 1 +FLAGS.SILENT (\\Deleted)"), ("B", "EXPUNGE"), "FETCH 1 UID", "NOOP",
        'CANCELUPDATE "t3"', 'CANCELUPDATE "t3"', "CANCELUPDATE t4", "STORE 2 +FLAGS (\\Flagged)",
        "UNSELECT", "DELETE cmpctx", "LOGOUT",
    ]
    S["binary"] = [
        ("login", "A"), "CREATE cmpbin", b"APPEND cmpbin " + IC.lit(MIME, True), b"APPEND cmpbin ~" + IC.lit(BIN, True),
        "SELECT cmpbin", "FETCH 1 (BINARY.PEEK[1] BINARY.SIZE[1])", "FETCH 1 (BINARY.PEEK[2] BINARY.PEEK[2]<3.4>)",
        "FETCH 1 (BINARY.PEEK[3])", "FETCH 1 (BINARY.PEEK[3.1])", "FETCH 1 (BINARY.PEEK[4])",
        "FETCH 1 (BINARY.SIZE[4])", "FETCH 1 (BINARY.PEEK[9])", "FETCH 1 (BINARY.PEEK[])",
        "FETCH 2 (BINARY.SIZE[1] BINARY.PEEK[1] BODY.PEEK[1] BODY.PEEK[])", "FETCH 2 (BINARY.SIZE[] BINARY.PEEK[])",
        "FETCH 2 (BINARY[1])", "FETCH 2 FLAGS", "FETCH 1 BINARY[HEADER]", "FETCH 1 BINARY.SIZE[1]<0.1>",
        "FETCH 1 BINARY[1.0]", "UNSELECT", "DELETE cmpbin", "LOGOUT",
    ]
    S["catenate"] = [
        ("login", "A"), "CREATE cmpcat", "EXAMINE INBOX", "FETCH 1:2 UID",
        b'APPEND cmpcat CATENATE (URL "/INBOX/;uid=1/;section=HEADER" TEXT ' + IC.lit(b"body1\r\n") + b")",
        b'APPEND cmpcat (\\Seen) CATENATE (TEXT ' + IC.lit(b"X: y\r\n\r\n") + b' URL "/INBOX/;uid=2/;section=TEXT")',
        b'APPEND cmpcat CATENATE (URL "/INBOX/;uid=1/;section=1") CATENATE (URL "/INBOX/;uid=2/;partial=0.40")',
        b'APPEND cmpcat CATENATE (URL "/INBOX;uidvalidity=1/;uid=1")',
        b'APPEND cmpcat CATENATE (URL "/INBOX/;uid=99999")', b'APPEND cmpcat CATENATE (URL "/nosuchbox/;uid=1")',
        b'APPEND cmpcat CATENATE (URL "/INBOX/;uid=1") CATENATE (URL "/INBOX/;uid=99999")',
        b'APPEND nosuchbox CATENATE (URL "/INBOX/;uid=1")', b"APPEND cmpcat CATENATE ()",
        b'APPEND cmpcat CATENATE (TEXT ' + IC.lit(b"A: 1\r\n\r\n") + b" TEXT ~" + IC.lit(b"\x00") + b")",
        "SELECT cmpcat", "FETCH 1:* (FLAGS BODY.PEEK[])", "UNSELECT", "DELETE cmpcat", "LOGOUT",
    ]
    return S


def run(dport: int, mport: int, msgs: Sequence[bytes], only: list[str] | None, show_all: bool,
        write: Callable[[str], None]) -> dict[str, int]:
    counts = {"same": 0, "text": 0, "order": 0, "DIFF": 0}
    seed = [("login", "A")] + IC.seed_steps(msgs) + ["LOGOUT"]
    for port in (dport, mport):
        s = IC.Session(port)
        for st in seed:
            s.run(st)
        s.close()
    for name, steps in scripts().items():
        if only and name not in only:
            continue
        write(f"=== {name}")
        ds, ms = IC.Session(dport, True), IC.Session(mport, True)
        for st in steps:
            label, dout = ds.step(st)
            _, mout = ms.step(st)
            dn = [n for n in map(IC.normalise, dout) if not IC.IGNORED.match(n[0])]
            mn = [n for n in map(IC.normalise, mout) if not IC.IGNORED.match(n[0])]
            c = IC.classify(dn, mn)
            counts[c] += 1
            if c == "same" and not show_all:
                continue
            write(f"{ {'same': '  ', 'text': '~ ', 'order': 'o ', 'DIFF': '! '}[c]}{label}")
            for side, lines in (("D", dn), ("M", mn)):
                for k, t in lines:
                    write(f"      {side} {k}" + (f"  | {t}" if t else "")[:400])
        ds.close()
        ms.close()
    return counts


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("-n", type=int, default=60, help="corpus messages seeded into INBOX")
    ap.add_argument("--only", help="comma-separated script names")
    ap.add_argument("--all", action="store_true", help="print identical steps too")
    ap.add_argument("-o", "--out", help="write the report here as well")
    ap.add_argument("--dovecot-base", default="/tmp/dovecot-sort-compare")
    ap.add_argument("--dovecot-port", type=int, default=13243)
    args = ap.parse_args(argv)
    msgs = IC.corpus(args.n)
    dov = IC.Dovecot(args.dovecot_base, args.dovecot_port)
    ms = IC.Mailsrv()
    out_f = open(args.out, "w") if args.out else None

    def write(s: str) -> None:
        print(s)
        if out_f:
            out_f.write(s + "\n")

    try:
        dov.start()
        ms.start()
        counts = run(args.dovecot_port, ms.port, msgs, args.only.split(",") if args.only else None, args.all, write)
        write("steps: " + ", ".join(f"{k} {v}" for k, v in counts.items())
              + "   (D = Dovecot, M = mailsrv; ~ text only, o order only, ! differs)")
    finally:
        ms.stop()
        dov.stop()
        if out_f:
            out_f.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
