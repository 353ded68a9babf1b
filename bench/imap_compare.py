"""Differential IMAP check: the same scripted sessions against mailsrv and
the reference Dovecot, answers normalised and diffed side by side.

Not a test: it prints what differs so a person can judge which differences
a client or a strict suite (imaptest) would notice.  Both servers get the
same user, the same seeded INBOX (the reference corpus, via APPEND with
fixed dates and flags), and the same commands with the same tags, so
sequence numbers, UIDs and flags match unless behaviour differs.

    python bench/imap_compare.py [-n 50] [--only list,fetch] [--all] [-o out.txt]

Dovecot runs from /work/shared/reference/dovecot-up.sh under its own base
dir and ports (override with --dovecot-base / --dovecot-port).
"""

from __future__ import annotations

import argparse
import hashlib
import mailbox
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

REF = os.environ.get("MAILSRV_REFERENCE", "/work/shared/reference")
USER, PASSWORD = "testuser", "pass"
SPECIAL = {"Sent": "\\Sent", "Drafts": "\\Drafts", "Trash": "\\Trash", "Junk": "\\Junk", "Archive": "\\Archive"}
TIMEOUT = 10.0


# ------------------------------------------------------------------ servers

class Dovecot:
    """The reference instance, with mailsrv's default folders as SPECIAL-USE
    mailboxes so LIST answers are comparable."""

    def __init__(self, base: str, port: int) -> None:
        self.base, self.port = base, port
        self.env = dict(os.environ, DOVECOT_BASE=base, IMAP_PORT=str(port), POP3_PORT=str(port - 33),
                        IMAPS_PORT=str(port + 850), POP3S_PORT=str(port + 852), WIPE_MAIL="1", N_USERS="2")

    def start(self) -> None:
        os.makedirs(self.base, exist_ok=True)
        extra = os.path.join(self.base, "special-use.conf")
        with open(extra, "w") as f:
            f.write("namespace inbox {\n")
            for name, attr in SPECIAL.items():
                f.write(f"  mailbox {name} {{\n    special_use = {attr}\n    auto = subscribe\n  }}\n")
            f.write("}\n")
        self.env["DOVECOT_EXTRA_CONF"] = extra
        self.stop()
        with open(os.path.join(self.base, "up.log"), "wb") as log:
            # dovecot keeps inherited descriptors: never give it a pipe we wait on
            subprocess.run(["bash", os.path.join(REF, "dovecot-up.sh")], env=self.env, stdout=log,
                           stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, check=True, timeout=60)

    def stop(self) -> None:
        subprocess.run(["bash", os.path.join(REF, "dovecot-down.sh")], env=self.env, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL, timeout=30)


class Mailsrv:
    def __init__(self) -> None:
        from mailsrv.embedded import EmbeddedServer, add_user
        self.tmp = tempfile.mkdtemp(prefix="imap-compare-")
        data = os.path.join(self.tmp, "data")
        add_user(data, USER, PASSWORD)
        self.srv = EmbeddedServer(data, kinds=("imap",))

    @property
    def port(self) -> int:
        return self.srv.ports["imap"]

    def start(self) -> None:
        self.srv.start()

    def stop(self) -> None:
        self.srv.stop()
        shutil.rmtree(self.tmp, ignore_errors=True)


# ------------------------------------------------------------------ wire

class Conn:
    """A raw IMAP connection that reads whole responses, literals included."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)
        self.buf = b""
        self.eof = False
        self.n = 0
        self.greeting = self.read_response()

    def _fill(self, timeout: float) -> bool:
        self.sock.settimeout(timeout)
        try:
            data = self.sock.recv(65536)
        except TimeoutError:
            return False
        except OSError:
            data = b""
        if not data:
            self.eof = True
            return False
        self.buf += data
        return True

    def read_response(self, timeout: float = TIMEOUT) -> bytes | None:
        """One response line with its literals inline, or None on timeout/EOF."""
        deadline = time.monotonic() + timeout
        out = b""
        while True:
            i = self.buf.find(b"\r\n")
            while i < 0:
                left = deadline - time.monotonic()
                if left <= 0 or self.eof or not self._fill(left):
                    return None
                i = self.buf.find(b"\r\n")
            line, self.buf = self.buf[:i + 2], self.buf[i + 2:]
            out += line
            m = re.search(rb"\{(\d+)\}\r\n$", line)
            if not m:
                return out
            n = int(m.group(1))
            while len(self.buf) < n:
                left = deadline - time.monotonic()
                if left <= 0 or self.eof or not self._fill(left):
                    return None
            out += self.buf[:n]
            self.buf = self.buf[n:]

    def drain(self, wait: float) -> list[bytes]:
        """Whatever arrives within ``wait`` seconds."""
        out = []
        deadline = time.monotonic() + wait
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return out
            r = self.read_response(left)
            if r is None:
                return out
            out.append(r)

    def send(self, data: bytes) -> None:
        try:
            self.sock.sendall(data)
        except OSError:
            self.eof = True

    def command(self, payload: bytes, tag: str | None = None) -> tuple[str, list[bytes]]:
        """Send ``tag payload`` (synchronising literals wait for ``+``) and
        read up to the tagged answer."""
        if tag is None:
            self.n += 1
            tag = "t%d" % self.n
        data = tag.encode() + b" " + payload + b"\r\n"
        out: list[bytes] = []
        pos = 0
        while True:
            m = re.compile(rb"\{(\d+)\}\r\n").search(data, pos)
            if not m:
                self.send(data[pos:])
                break
            self.send(data[pos:m.end()])
            pos = m.end()
            r = self.read_until_continuation(tag, out)
            if r != "+":
                return tag, out
            n = int(m.group(1))
            self.send(data[pos:pos + n])
            pos += n
            # the literal may be followed by more text with literals of its own
        self.read_tagged(tag, out)
        return tag, out

    def read_until_continuation(self, tag: str, out: list[bytes]) -> str:
        while True:
            r = self.read_response()
            if r is None:
                out.append(b"<EOF>" if self.eof else b"<TIMEOUT>")
                return "x"
            out.append(r)
            if r.startswith(b"+"):
                return "+"
            if r.startswith(tag.encode() + b" "):
                return "tagged"

    def read_tagged(self, tag: str, out: list[bytes]) -> None:
        while True:
            r = self.read_response()
            if r is None:
                out.append(b"<EOF>" if self.eof else b"<TIMEOUT>")
                return
            out.append(r)
            if r.startswith(tag.encode() + b" "):
                return

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass


# ------------------------------------------------------------------ normalise

_STATUS = re.compile(r"^(\S+) (OK|NO|BAD|BYE|PREAUTH)(?: \[([^\]]*)\])?(?: (.*))?$", re.S)
_TODAY = time.strftime("%d-%b-%Y", time.gmtime()).lstrip("0")


def _literals(line: bytes) -> str:
    out = []
    pos = 0
    for m in re.finditer(rb"\{(\d+)\}\r\n", line):
        if m.start() < pos:
            continue
        out.append(line[pos:m.start()].decode("latin-1"))
        n = int(m.group(1))
        data = line[m.end():m.end() + n]
        if n <= 160 and all(32 <= c < 127 or c in (9, 10, 13) for c in data):
            out.append("{%d}%r" % (n, data.decode("latin-1")))
        else:
            out.append("{%d sha1:%s}" % (n, hashlib.sha1(data).hexdigest()[:10]))
        pos = m.end() + n
    out.append(line[pos:].decode("latin-1"))
    return "".join(out).rstrip("\r\n")


def _sort_flags(m: re.Match[str]) -> str:
    return m.group(1) + " (" + " ".join(sorted(m.group(2).split())) + ")"


def normalise(line: bytes) -> tuple[str, str]:
    """(the part that matters, the human text) of one response line."""
    s = _literals(line)
    s = re.sub(r"(UIDVALIDITY|APPENDUID|COPYUID) \d+", r"\1 <V>", s)
    s = re.sub(r'(FLAGS|PERMANENTFLAGS) \(([^()]*)\)', _sort_flags, s)
    s = re.sub(r'INTERNALDATE "%s [^"]*"' % re.escape(_TODAY.rjust(11)), 'INTERNALDATE "<now>"', s)
    s = re.sub(r'INTERNALDATE "0?%s [^"]*"' % re.escape(_TODAY), 'INTERNALDATE "<now>"', s)
    s = re.sub(r'^(\* (?:LIST|LSUB) \([^)]*\) (?:"."|NIL) )"([^"\\ (){%*]+)"', r"\1\2", s)
    s = re.sub(r'^(\* STATUS )"([^"\\ (){%*]+)"', r"\1\2", s)
    if re.match(r"^\* ID ", s):
        return "* ID <masked>", ""
    m = re.match(r"^(\* CAPABILITY) (.*)$", s)
    if m:
        return m.group(1) + " " + " ".join(sorted(m.group(2).split())), ""
    m = _STATUS.match(s)
    if m:
        tag, status, code, text = m.groups()
        if code and code.upper().startswith("CAPABILITY"):
            code = "CAPABILITY <listed>" if tag != "*" else "CAPABILITY " + " ".join(sorted(code.split()[1:]))
        key = f"{tag} {status}" + (f" [{code}]" if code else "")
        if tag == "*" and status == "OK" and not code:
            key = "* OK <text>"
        return key, text or ""
    if s.startswith("+"):
        return "+ <continuation>", s[1:].strip()
    return s, ""


Step = str | bytes | tuple


class Session:
    """Runs one script's steps on one server and records normalised answers."""

    def __init__(self, port: int, forgive_bad: bool = False) -> None:
        self.port = port
        self.conns: dict[str, Conn] = {}
        self.uidvalidity = 0  # the last one a response named (steps use it as %UV%)
        self.forgive_bad = forgive_bad  # a NOOP after each BAD: Dovecot hangs up after a few in a row

    def step(self, step: Step) -> tuple[str, list[bytes]]:
        label, out = self.run(step)
        name = step[0] if isinstance(step, tuple) else "A"
        if self.forgive_bad and name in self.conns and self.conns[name].eof:
            self.conns.pop(name).close()  # hung up on us: go on with a fresh connection
        elif self.forgive_bad and out and re.match(rb"^\S+ BAD ", out[-1]) and name in self.conns:
            self.conns[name].command(b"NOOP")
        return label, out

    def conn(self, name: str) -> Conn:
        if name not in self.conns:
            self.conns[name] = Conn(self.port)
        return self.conns[name]

    def run(self, step: Step) -> tuple[str, list[bytes]]:
        """A step: 'CMD' or b'CMD' on connection A; ('B', 'CMD') on another;
        ('connect', name); ('login', name); ('drain', name, secs);
        ('idle', name, [steps run elsewhere while idling], done_line)."""
        if isinstance(step, (str, bytes)):
            step = ("A", step)
        kind = step[0]
        if kind == "connect":
            c = self.conn(step[1])
            return f"{step[1]}: <connect>", [c.greeting or b"<no greeting>"]
        if kind == "login":
            c = self.conn(step[1])
            return f"{step[1]}: LOGIN", c.command(f"LOGIN {USER} {PASSWORD}".encode())[1]
        if kind == "drain":
            return f"{step[1]}: <drain {step[2]}s>", self.conn(step[1]).drain(step[2])
        if kind == "close":
            self.conns.pop(step[1]).close()
            return f"{step[1]}: <close>", []
        if kind == "idle":
            _, name, others, done = step
            c = self.conn(name)
            c.n += 1
            tag = "t%d" % c.n
            c.send(tag.encode() + b" IDLE\r\n")
            out: list[bytes] = []
            r = c.read_until_continuation(tag, out)
            if r == "+":
                for other in others:
                    self.run(other)
                    out.extend(c.drain(1.5))
                c.send(done + b"\r\n")
                c.read_tagged(tag, out)
            return f"{name}: IDLE ... {done.decode()}", out
        name, payload = step[0], step[1]
        if isinstance(payload, str):
            payload = payload.encode()
        label = f"{name}: {_literals(payload)[:120]}"
        payload = payload.replace(b"%UV%", b"%d" % self.uidvalidity)  # this server's own UIDVALIDITY
        c = self.conn(name)
        out = c.command(payload)[1]
        for line in out:
            m = re.search(rb"UIDVALIDITY (\d+)", line)
            if m:
                self.uidvalidity = int(m.group(1))
        return label, out

    def close(self) -> None:
        for c in self.conns.values():
            c.close()


# ------------------------------------------------------------------ corpus & scripts

def corpus(n: int) -> list[bytes]:
    path = os.path.join(tempfile.gettempdir(), "imap-compare-corpus.mbox")
    if not os.path.exists(path):
        subprocess.run([sys.executable, os.path.join(REF, "make-mbox.py"), "-n", str(max(n, 60)), "-o", path],
                       check=True, stdout=subprocess.DEVNULL)
    box = mailbox.mbox(path)
    out = []
    for key in list(box.keys())[:n]:
        raw = box.get_bytes(key)
        out.append(re.sub(rb"\r?\n", b"\r\n", raw))
    return out


def seed_steps(msgs: Sequence[bytes]) -> list[Step]:
    steps: list[Step] = []
    for i, m in enumerate(msgs, 1):
        flags = []
        if i % 5 == 0:
            flags.append("\\Seen")
        if i % 7 == 0:
            flags.append("\\Flagged")
        if i % 11 == 0:
            flags.append("$Important")
        date = "%02d-%s-2023 12:%02d:00 +0000" % (1 + i % 28, ["Jan", "Feb", "Mar", "Apr", "May", "Jun"][i % 6], i % 60)
        steps.append(b"APPEND INBOX (%s) \"%s\" {%d+}\r\n" % (" ".join(flags).encode(), date.encode(), len(m)) + m)
    return steps


MSG = (b"From: a@example.org\r\nTo: b@example.org\r\nSubject: small\r\n"
       b"Date: Tue, 2 Jan 2024 10:00:00 +0000\r\n\r\nhello\r\n")


def lit(data: bytes, plus: bool = False) -> bytes:
    return b"{%d%s}\r\n" % (len(data), b"+" if plus else b"") + data


def scripts(msgs: Sequence[bytes]) -> dict[str, list[Step]]:
    S: dict[str, list[Step]] = {}
    S["nonauth"] = [
        ("connect", "A"), "CAPABILITY", "NOOP", "noop", "SELECT INBOX", "EXAMINE INBOX", "CREATE x", "DELETE x",
        "RENAME x y", "SUBSCRIBE x", "LIST \"\" *", "LSUB \"\" *", "STATUS INBOX (MESSAGES)",
        b"APPEND INBOX {3+}\r\nabc",
        "CHECK", "CLOSE", "UNSELECT", "EXPUNGE", "FETCH 1 FLAGS", "STORE 1 +FLAGS (\\Seen)", "SEARCH ALL",
        "COPY 1 x", "MOVE 1 x", "UID FETCH 1 FLAGS", "NAMESPACE", "ENABLE IMAP4rev1", "IDLE", "ID NIL",
        'ID ("name" "compare")', "ID", "FOO", "LOGIN", "LOGIN onlyuser", "LOGIN a b c",
        "AUTHENTICATE FOO", "AUTHENTICATE PLAIN ====", "STARTTLS x",
        "LOGIN testuser pass", "LOGIN testuser pass", "AUTHENTICATE PLAIN", "STARTTLS", "CAPABILITY", "LOGOUT",
    ]
    S["badsyntax"] = [
        ("connect", "A"), "", b" NOOP", "NOOP extra", "NOOP  ", b"+ NOOP", b"* NOOP", b"a{ NOOP", "UID", "UID FOO 1",
        "UID NOOP", "LOGIN \"unterminated", ("login", "A"), "CREATE cmpbad", "EXAMINE INBOX", "COPY 1:3 cmpbad",
        "UNSELECT", "SELECT", "SELECT INBOX extra",
        "SELECT \"INBOX", "CREATE", "RENAME a", "LIST", "LIST \"\"", "LSUB \"\"", "STATUS INBOX", "STATUS INBOX ()",
        "STATUS INBOX MESSAGES", "STATUS INBOX (FOO)", "APPEND", "APPEND INBOX", "APPEND INBOX (\\Seen)",
        b"APPEND cmpbad \"bad date\" {3+}\r\nabc", b"APPEND cmpbad (\\Bogus) {3+}\r\nabc",
        b"APPEND cmpbad (\\Recent) {3+}\r\nabc", b"APPEND cmpbad (\\Seen {3+}\r\nabc",
        "SELECT cmpbad", "FETCH", "FETCH 1", "FETCH 1 ()", "FETCH 1 (FOO)", "FETCH 1 FLAGS)", "FETCH 1 (FLAGS",
        "FETCH 1 BODY[", "FETCH 1 BODY[FOO]", "FETCH 1 BODY[0]", "FETCH 1 BODY[1.0]", "FETCH 1 BODY[]<0.0>",
        "FETCH 1 BODY[]<a.1>", "FETCH 1 BODY[HEADER.FIELDS]", "FETCH 1 BODY[HEADER.FIELDS ()]", "FETCH 1 BODY[MIME]",
        "FETCH 1 BINARY[]", "STORE", "STORE 1", "STORE 1 +FLAGS", "STORE 1 FOO (\\Seen)", "STORE 1 +FLAGS (\\Bogus)",
        "SEARCH", "SEARCH FOO", "SEARCH (", "SEARCH ()", "SEARCH OR SEEN", "SEARCH BEFORE 2024-01-01",
        "SEARCH LARGER x", "SEARCH CHARSET FOO ALL", "SEARCH CHARSET", "SEARCH RETURN (FOO) ALL",
        "SEARCH RETURN (SAVE) ALL", "COPY", "COPY 1", "MOVE 1", "UID EXPUNGE", "UID COPY x y",
        "ENABLE", "ENABLE CONDSTORE", "ENABLE FOO", "ENABLE UTF8=ACCEPT", "NAMESPACE x",
        "CHECK x", "CLOSE x", "CAPABILITY x", "UNSELECT x", "UNSELECT", "DELETE cmpbad", "LOGOUT x",
        ("login", "A"), "a" * 70000, "NOOP",
    ]
    S["select"] = [
        ("login", "A"), "CREATE cmpro", "EXAMINE INBOX", "COPY 1:3 cmpro", "SELECT INBOX", "EXAMINE INBOX",
        "SELECT inbox", "SELECT \"InBoX\"", "SELECT nonexistent",
        "FETCH 1 FLAGS", "SELECT \"\"", "SELECT Trash", "SELECT INBOX (CONDSTORE)", "EXAMINE Trash", "CLOSE",
        "SELECT INBOX", "UNSELECT", "UNSELECT", "CLOSE", "EXAMINE cmpro", "STORE 1 +FLAGS (\\Deleted)",
        "EXPUNGE", "UID EXPUNGE 1", "FETCH 1 (FLAGS)", "FETCH 1 (BODY[HEADER.FIELDS (SUBJECT)])", "FETCH 1 FLAGS",
        "COPY 1 Trash", "MOVE 1 Trash", "CLOSE", "SELECT cmpro", "FETCH 1 FLAGS", "STATUS cmpro (MESSAGES UNSEEN)",
        "CLOSE", "DELETE cmpro", "LOGOUT",
    ]
    S["list"] = [
        ("login", "A"), "CREATE cmp/a", "CREATE cmp/b/c", "CREATE cmp/&AOQgrA-", "CREATE cmp2",
        'LIST "" "*"', 'LIST "" "%"', 'LIST "" "cmp/%"', 'LIST "cmp/" "%"', 'LIST "cmp" "/%"', 'LIST "" "inbox"',
        'LIST "" "InBoX"', 'LIST "" ""', 'LIST "cmp/" ""', 'LIST "" "cmp"', 'LIST "" "cmp/*"', 'LIST "" "*/c"',
        'LIST "" "c%"', 'LIST "" "nonexist*"', 'LIST "" %/%', 'LIST "" cmp/&AOQgrA-', 'LIST "" "INBOX*"',
        'LIST "" "inbox/%"', b'LIST "" {5}\r\ncmp/*', b'LIST "" "cmp/\xc3\xa4\xe2\x82\xac"', 'LIST "" "&Jjo"',
        'LSUB "" "*"', "SUBSCRIBE cmp/b/c", "SUBSCRIBE nosuchbox", 'LSUB "" "*"', 'LSUB "" "cmp/%"', 'LSUB "" "%"',
        'LIST (SUBSCRIBED) "" "*"', 'LIST (SUBSCRIBED RECURSIVEMATCH) "" "%"', 'LIST (SPECIAL-USE) "" "*"',
        'LIST "" "*" RETURN (SPECIAL-USE)', 'LIST "" "%" RETURN (CHILDREN)', 'LIST "" "%" RETURN (SUBSCRIBED)',
        'LIST "" (INBOX cmp/*)', 'LIST (REMOTE) "" "%"', 'LIST () "" "%"', 'LIST "" "%" RETURN ()',
        'LIST "" "cmp*" RETURN (STATUS (MESSAGES UNSEEN UIDNEXT))', 'LIST "" "*" RETURN (STATUS (MESSAGES SIZE))',
        'LIST (SUBSCRIBED) "" "*" RETURN (STATUS (MESSAGES))',
        'LIST (FOO) "" "*"', 'LIST "" "*" RETURN (FOO)', 'LIST (RECURSIVEMATCH) "" "*"',
        "UNSUBSCRIBE cmp/b/c", "UNSUBSCRIBE nosuchbox", "UNSUBSCRIBE nosuchbox", 'LSUB "" "*"',
        "DELETE cmp/b/c", "DELETE cmp/b", "DELETE cmp/&AOQgrA-", "DELETE cmp/a", "DELETE cmp", "DELETE cmp2",
        'LIST "" "*"', "LOGOUT",
    ]
    S["mailboxes"] = [
        ("login", "A"), "CREATE INBOX", "CREATE inbox", "CREATE cmpx", "CREATE cmpx", "CREATE cmpy/", 'LIST "" cmpy*',
        "CREATE cmpz/sub", 'LIST "" cmpz*', "DELETE cmpz", 'LIST "" cmpz*', "DELETE cmpz", "DELETE cmpz/sub",
        "DELETE cmpz", "DELETE INBOX", "DELETE inbox", "DELETE nonexistent", "CREATE \"\"", "CREATE \"a*b\"",
        "CREATE \"a%b\"", "CREATE \"a.b\"", "CREATE \"a//b\"", "CREATE \"/lead\"", "CREATE " + "L" * 300,
        b"CREATE \"raw\xc3\xa4\"", "CREATE \"&Jjo\"", "CREATE INBOX/child", 'LIST "" "INBOX*"',
        "DELETE INBOX/child", "RENAME nonexistent cmpq", "RENAME cmpx cmpy", "RENAME cmpx INBOX", "RENAME cmpx cmpx",
        "RENAME cmpx cmpx/child", "RENAME cmpx cmpw/deep", 'LIST "" "cmp*"', "RENAME cmpw cmpv", 'LIST "" "cmp*"',
        "SELECT cmpy", "DELETE cmpy", "FETCH 1 FLAGS", "NOOP", "CREATE cmpy", "SELECT cmpy", "RENAME cmpy cmpu",
        "NOOP", "FETCH 1 FLAGS", "UNSELECT", "DELETE cmpu", "DELETE cmpv/deep", "DELETE cmpv",
        "SUBSCRIBE cmpgone", "CREATE cmpgone", "DELETE cmpgone", 'LSUB "" cmpgone', "UNSUBSCRIBE cmpgone", "LOGOUT",
    ]
    S["status"] = [
        ("login", "A"), "STATUS INBOX (MESSAGES RECENT UIDNEXT UIDVALIDITY UNSEEN)", "STATUS inbox (MESSAGES)",
        "STATUS INBOX (SIZE)", "STATUS INBOX (HIGHESTMODSEQ)", "STATUS INBOX (APPENDLIMIT)",
        "STATUS nonexist (MESSAGES)",
        "STATUS Trash (MESSAGES UNSEEN RECENT)", "SELECT INBOX", "STATUS INBOX (MESSAGES RECENT)", "LOGOUT",
    ]
    date = b'"14-Mar-2021 09:15:00 +0100"'
    S["append"] = [
        ("login", "A"), "CREATE cmpapp",
        b"APPEND cmpapp (\\Seen) " + date + b" " + lit(MSG), b"APPEND cmpapp (\\Flagged $Work Custom) " + lit(MSG),
        b"APPEND cmpapp () " + lit(MSG, True), b"APPEND cmpapp " + date + b" " + lit(MSG, True),
        b'APPEND cmpapp " 5-Jan-2022 01:02:03 -0500" ' + lit(MSG, True),
        b'APPEND cmpapp "05-Jan-2022 01:02:03" ' + lit(MSG, True), b"APPEND nonexist " + lit(MSG),
        b"APPEND cmpapp " + lit(b""), b"APPEND cmpapp {0+}\r\n", b"APPEND cmpapp " + lit(b"no header line here"),
        b"APPEND cmpapp " + lit(MSG, True) + b" (\\Draft) " + lit(MSG, True),
        b"APPEND cmpapp " + lit(MSG, True) + b" (\\Bogus) " + lit(MSG, True),
        "SELECT cmpapp", b"APPEND cmpapp " + lit(MSG, True),
        "FETCH 1:* (UID FLAGS INTERNALDATE RFC822.SIZE)", "STATUS cmpapp (MESSAGES UIDNEXT)", "UNSELECT",
        "DELETE cmpapp", "LOGOUT",
    ]
    S["fetch"] = [
        ("login", "A"), "CREATE cmpf", "EXAMINE INBOX", "COPY 1:20 cmpf", "SELECT cmpf",
        "FETCH 1 ALL", "FETCH 1 FAST", "FETCH 1 FULL", "FETCH 1:20 (UID FLAGS RFC822.SIZE INTERNALDATE)",
        "FETCH 1:20 ENVELOPE", "FETCH 1:20 BODY", "FETCH 1:20 BODYSTRUCTURE",
        "FETCH 1:20 (BODY.PEEK[HEADER])", "FETCH 1:20 (BODY.PEEK[TEXT]<0.64>)", "FETCH 1:20 (BODY.PEEK[1])",
        "FETCH 1:20 (BODY.PEEK[1.MIME])", "FETCH 1:20 (BODY.PEEK[2.MIME])", "FETCH 1:20 (BODY.PEEK[2])",
        "FETCH 1:20 (BODY.PEEK[1.1])", "FETCH 1:20 (BODY.PEEK[2.HEADER])", "FETCH 1:20 (BODY.PEEK[2.TEXT])",
        "FETCH 1:20 (BODY.PEEK[3])", "FETCH 1:20 (BODY.PEEK[1.2.HEADER])", "FETCH 1:20 (BODY.PEEK[9])",
        "FETCH 1:20 (BODY.PEEK[2.1.MIME])", "FETCH 1:20 (BODY.PEEK[1.TEXT])",
        "FETCH 1:5 (BODY.PEEK[HEADER.FIELDS (From Subject)])",
        "FETCH 1:5 (BODY.PEEK[HEADER.FIELDS.NOT (From Subject Received)])",
        "FETCH 1:5 (BODY.PEEK[HEADER.FIELDS (\"X-None\")])", "FETCH 1 (BODY.PEEK[HEADER.FIELDS (FROM)]<0.10>)",
        "FETCH 1:3 (BODY.PEEK[]<0.10>)", "FETCH 1 (BODY.PEEK[]<10.20>)", "FETCH 1 (BODY.PEEK[]<10000000.10>)",
        "FETCH 1 (BODY.PEEK[TEXT]<10000000.10>)", "FETCH 1 (BODY.PEEK[1]<2.5>)", "FETCH 2 (BODY.PEEK[]<1300.100000>)",
        "FETCH 1 RFC822.HEADER", "FETCH 1 FLAGS", "FETCH 2 (BODY.PEEK[] FLAGS)", "FETCH 2 FLAGS",
        "FETCH 2 BODY[HEADER.FIELDS (SUBJECT)]", "FETCH 2 FLAGS", "FETCH 3 RFC822.TEXT", "FETCH 4 RFC822",
        "FETCH 5 (FLAGS BODY[TEXT]<0.5>)", "FETCH 6 (BODY[1])", "FETCH 7 RFC822.SIZE", "FETCH 1:8 FLAGS",
        "fetch 1 (flags body.peek[header.fields (subject)])", "FETCH 1 (UID UID FLAGS)",
        "FETCH 1 (BODY.PEEK[HEADER.FIELDS (Subject)] BODY.PEEK[HEADER.FIELDS (subject)])",
        "UID FETCH 1:* FLAGS", "UID FETCH 3 (FLAGS)", "UID FETCH 999 FLAGS", "UID FETCH 999:* FLAGS",
        "UID FETCH 5:2 UID", "FETCH 1 BINARY.PEEK[1]", "FETCH 1 BINARY.SIZE[1]", "CLOSE", "DELETE cmpf", "LOGOUT",
    ]
    S["store"] = [
        ("login", "A"), ("login", "B"), "CREATE cmps", "EXAMINE INBOX", "COPY 1:6 cmps", "SELECT cmps",
        ("B", "SELECT cmps"), "STORE 1 +FLAGS (\\Flagged)", "STORE 1 -FLAGS (\\Flagged)",
        "STORE 1 FLAGS (\\Seen $Label)",
        "STORE 1:3 +FLAGS.SILENT (\\Answered)", "STORE 2 +FLAGS \\Deleted", "STORE 2 -FLAGS \\Deleted \\Answered",
        "STORE 1 +FLAGS (\\Recent)", "STORE 1 +FLAGS ()", "STORE 1 FLAGS ()", "STORE 1 -FLAGS.SILENT (\\Seen)",
        "STORE 1 +flags (\\seen \\FLAGGED)", "UID STORE 2 +FLAGS (\\Draft)", "UID STORE 2 +FLAGS.SILENT (\\Draft)",
        "UID STORE 999 +FLAGS (\\Seen)", "STORE 100 +FLAGS (\\Seen)", "STORE 1:* FLAGS ($A $B)",
        ("B", "NOOP"), ("B", "STORE 3 +FLAGS.SILENT (\\Flagged NewKw)"), "NOOP", "FETCH 3 FLAGS",
        ("B", "STORE 4 +FLAGS (\\Seen)"), "FETCH 4 FLAGS", "NOOP", ("B", "UNSELECT"),
        "STORE 5 +FLAGS ($MDNSent)", "STORE 5 -FLAGS ($MDNSent)", "FETCH 5 FLAGS", "CLOSE", "DELETE cmps", "LOGOUT",
    ]
    S["copymove"] = [
        ("login", "A"), "CREATE cmpc", "CREATE cmpd", "CREATE cmpr", "EXAMINE INBOX", "COPY 1:6 cmpc", "COPY 1:6 cmpr",
        "EXAMINE cmpr", "COPY 2,4 cmpd", "COPY 1 nonexist", "COPY 100 cmpd", "UID COPY 999 cmpd", "UID COPY 1:* cmpd",
        "COPY 1 cmpr", "MOVE 1 cmpd", "UID MOVE 1 cmpd",
        "SELECT cmpc", "COPY 3:1 cmpd", "MOVE 1 cmpd", "UID MOVE 3,5 cmpd", "UID MOVE 999 cmpd", "MOVE 1 nonexist",
        "MOVE 1 cmpc", "FETCH 1:* UID", "UID MOVE 1:* cmpd", "MOVE 1 cmpd",
        "COPY 1:* cmpd", "STATUS cmpd (MESSAGES UIDNEXT)",
        "UNSELECT", "DELETE cmpc", "DELETE cmpd", "DELETE cmpr", "LOGOUT",
    ]
    S["expunge"] = [
        ("login", "A"), ("login", "B"), "CREATE cmpe", "EXAMINE INBOX", "COPY 1:10 cmpe", "SELECT cmpe",
        ("B", "SELECT cmpe"), "EXPUNGE", "STORE 2,4 +FLAGS.SILENT (\\Deleted)", "EXPUNGE", "FETCH 1:* UID",
        "STORE 1:3 +FLAGS.SILENT (\\Deleted)", "UID EXPUNGE 3", "UID EXPUNGE 1:2", "UID EXPUNGE 999",
        "FETCH 1:* (UID FLAGS)", ("B", "FETCH 1:* UID"), ("B", "STORE 1 +FLAGS (\\Deleted)"), ("B", "EXPUNGE"),
        "FETCH 1:* UID", "SEARCH ALL", "STORE 1 +FLAGS (\\Seen)", "UID FETCH 1:* UID", "NOOP", "FETCH 1:* UID",
        ("B", "STORE 2 +FLAGS.SILENT (\\Deleted)"), ("B", "CLOSE"), "NOOP", ("B", "EXAMINE cmpe"),
        "STORE 1 +FLAGS.SILENT (\\Deleted)", ("B", "CLOSE"), "NOOP", "CLOSE", "STATUS cmpe (MESSAGES)",
        "SELECT cmpe", "STORE 1 +FLAGS.SILENT (\\Deleted)", "UNSELECT", "STATUS cmpe (MESSAGES)",
        "DELETE cmpe", "LOGOUT",
    ]
    S["search"] = [
        ("login", "A"), "CREATE cmpq", "EXAMINE INBOX", "COPY 1:30 cmpq", "SELECT cmpq",
        "STORE 2 +FLAGS.SILENT (\\Answered \\Draft)", "STORE 3 +FLAGS.SILENT (\\Deleted $Label)",
        "SEARCH ALL", "SEARCH ANSWERED", "SEARCH BCC example", "SEARCH BEFORE 1-Mar-2023", "SEARCH BODY the",
        "SEARCH CC example", "SEARCH DELETED", "SEARCH DRAFT", "SEARCH FLAGGED", "SEARCH FROM example",
        "SEARCH HEADER Message-ID example", "SEARCH HEADER X-Nope \"\"", "SEARCH HEADER Subject \"\"",
        "SEARCH HEADER List-Id \"\"", "SEARCH KEYWORD $Label", "SEARCH KEYWORD $Important", "SEARCH LARGER 20000",
        "SEARCH NEW", "SEARCH NOT SEEN", "SEARCH OLD", "SEARCH ON 2-Mar-2023", "SEARCH OR SEEN FLAGGED",
        "SEARCH RECENT", "SEARCH SEEN", "SEARCH SENTBEFORE 1-Jan-2020", "SEARCH SENTON 1-Jan-2024",
        "SEARCH SENTSINCE 1-Jan-2020", "SEARCH SINCE 1-Apr-2023", "SEARCH SMALLER 5000", "SEARCH SUBJECT re",
        "SEARCH TEXT meeting", "SEARCH TO example", "SEARCH UID 1:5", "SEARCH UNANSWERED", "SEARCH UNDELETED",
        "SEARCH UNDRAFT", "SEARCH UNFLAGGED", "SEARCH UNKEYWORD $Label", "SEARCH UNSEEN", "SEARCH 1:3",
        "SEARCH *", "SEARCH 5:*", "SEARCH 100", "SEARCH 29:100", "SEARCH (OR SEEN FLAGGED) UNDELETED",
        "SEARCH NOT (SEEN FLAGGED)", "SEARCH OR OR SEEN FLAGGED DELETED", "search subject RE",
        b"SEARCH CHARSET UTF-8 SUBJECT {2}\r\n\xc3\xbc", b"SEARCH CHARSET UTF-8 BODY {5}\r\nM\xc3\xbcll",
        "SEARCH CHARSET US-ASCII ALL", "SEARCH CHARSET utf-8 ALL", "SEARCH CHARSET ISO-8859-1 ALL",
        "SEARCH CHARSET FOO ALL", "UID SEARCH ALL", "UID SEARCH UID 2:4", "UID SEARCH 2:4", "UID SEARCH UID 999",
        "SEARCH RETURN (MIN MAX COUNT ALL) ALL", "SEARCH RETURN () ALL", "SEARCH RETURN (COUNT) DELETED",
        "SEARCH RETURN (MIN) UID 999", "SEARCH RETURN (ALL) UID 999", "SEARCH RETURN (COUNT) UID 999",
        "UID SEARCH RETURN (MIN MAX) SEEN", "UID SEARCH RETURN (ALL) 1:5", "SEARCH RETURN (MAX) RETURN (MIN) ALL",
        "SEARCH LARGER 4294967295", "SEARCH LARGER 4294967296",
        "SEARCH SINCE 31-Feb-2023", "SEARCH SINCE \"1-Apr-2023\"",
        "SEARCH HEADER \"\" x", "SEARCH BODY \"\"", "CLOSE", "DELETE cmpq", "LOGOUT",
    ]
    S["seqset"] = [
        ("login", "A"), "CREATE cmpn", "SELECT cmpn", "FETCH 1:* FLAGS", "FETCH * FLAGS", "FETCH 1 FLAGS",
        "SEARCH ALL", "SEARCH 1:*", "UID SEARCH ALL", "UID FETCH 1:* FLAGS", "STORE 1:* +FLAGS (\\Seen)",
        "COPY 1:* Trash", "UID COPY 1:* Trash", "UID STORE 1:* +FLAGS (\\Seen)", "MOVE 1:* Trash", "EXPUNGE",
        "UID EXPUNGE 1:*", b"APPEND cmpn " + lit(MSG, True), b"APPEND cmpn " + lit(MSG, True),
        b"APPEND cmpn " + lit(MSG, True), "NOOP", "FETCH 0 FLAGS", "FETCH 0:* FLAGS", "FETCH 1:0 FLAGS",
        "FETCH * FLAGS", "FETCH *:1 UID", "FETCH 3:1 UID", "FETCH 2:* UID", "FETCH 5:* UID", "FETCH 4 UID",
        "FETCH 2:4 UID", "FETCH 1,3 UID", "FETCH 3,1,2,1 UID", "FETCH 4294967295 UID", "FETCH 4294967296 UID",
        "FETCH 1,,2 UID", "FETCH 1: UID", "FETCH :1 UID", "FETCH 1:*:2 UID", "FETCH 01 UID", "FETCH -1 UID",
        "UID FETCH 0:* UID", "UID FETCH 0 UID", "UID FETCH *:1 UID", "UID FETCH 3:* UID", "UID FETCH 100:* UID",
        "UID FETCH 4294967295 UID", "SEARCH 0", "SEARCH 1:5", "SEARCH UID 0", "STORE 0 +FLAGS (\\Seen)",
        "COPY 0 Trash", "CLOSE", "DELETE cmpn", "LOGOUT",
    ]
    S["idle"] = [
        ("login", "A"), ("login", "B"), "CREATE cmpi", "EXAMINE INBOX", "COPY 1:3 cmpi", "SELECT cmpi",
        ("B", "SELECT cmpi"),
        ("idle", "A", [("B", b"APPEND cmpi " + lit(MSG, True)), ("B", "STORE 1 +FLAGS (\\Flagged)"),
                       ("B", "STORE 2 +FLAGS.SILENT (\\Deleted)"), ("B", "EXPUNGE")], b"DONE"),
        "FETCH 1:* UID", ("idle", "A", [], b"done"), ("idle", "A", [], b"NOTDONE"), "NOOP",
        "UNSELECT", ("idle", "A", [("B", "NOOP")], b"DONE"), ("B", "UNSELECT"), "DELETE cmpi", "LOGOUT",
    ]
    S["condstore"] = [
        ("login", "A"), ("login", "B"), "CREATE cmpm", "EXAMINE INBOX", "COPY 1:6 cmpm", "SELECT cmpm",
        "FETCH 1:* (UID FLAGS MODSEQ)", "STORE 1 +FLAGS (\\Seen)", "STORE 2:3 +FLAGS.SILENT (\\Flagged)",
        "FETCH 1:* (FLAGS) (CHANGEDSINCE 2)", "UID FETCH 1:* (FLAGS) (CHANGEDSINCE 3)",
        "STORE 1:4 (UNCHANGEDSINCE 3) +FLAGS (\\Answered)", "UID STORE 1:4 (UNCHANGEDSINCE 0) -FLAGS (\\Answered)",
        "STORE 5 (UNCHANGEDSINCE 99) +FLAGS.SILENT ($Done)", "SEARCH MODSEQ 3",
        "SEARCH RETURN (MIN MAX COUNT) MODSEQ 3",
        'SEARCH MODSEQ "/flags/\\\\answered" all 4', "UID SEARCH RETURN (ALL) MODSEQ 1",
        "STATUS cmpm (HIGHESTMODSEQ MESSAGES)", ("B", "SELECT cmpm (CONDSTORE)"),
        ("B", "STORE 6 +FLAGS.SILENT (\\Deleted)"), ("B", "EXPUNGE"), "NOOP", "FETCH 1:* MODSEQ",
        ("B", "STORE 1 -FLAGS (\\Seen)"), "NOOP", "FETCH 1 (FLAGS) (CHANGEDSINCE x)",
        "FETCH 1 (FLAGS) (FOO)", "UID FETCH 1 (FLAGS) (VANISHED)", "UID FETCH 1 (FLAGS) (CHANGEDSINCE 1 VANISHED)",
        "STORE 1 (UNCHANGEDSINCE x) +FLAGS (\\Seen)", "STORE 1 (FOO 1) +FLAGS (\\Seen)",
        "SEARCH MODSEQ x", "SELECT cmpm (QRESYNC (1 2))", "EXAMINE cmpm (CONDSTORE)", "SELECT cmpm (FOO)",
        ("B", "UNSELECT"), "CLOSE", "DELETE cmpm", "LOGOUT",
    ]
    S["qresync"] = [
        ("login", "A"), ("login", "B"), "ENABLE QRESYNC", ("B", "ENABLE QRESYNC"), "CREATE cmpv",
        "EXAMINE INBOX", "COPY 1:8 cmpv", "SELECT cmpv", ("B", "SELECT cmpv"),
        "STORE 2,4 +FLAGS.SILENT (\\Deleted)", "EXPUNGE", ("B", "NOOP"), "UID STORE 5 +FLAGS (\\Seen)",
        "UID FETCH 1:* (FLAGS) (CHANGEDSINCE 2 VANISHED)", "UID FETCH 3:6 (FLAGS) (CHANGEDSINCE 2 VANISHED)",
        ("B", "UID STORE 7 +FLAGS.SILENT (\\Deleted)"), ("B", "UID EXPUNGE 7"), "FETCH 1 FLAGS", "NOOP",
        "CLOSE", ("B", "UID STORE 3 +FLAGS.SILENT (\\Flagged)"), ("B", "UID STORE 8 +FLAGS.SILENT (\\Deleted)"),
        ("B", "EXPUNGE"), "SELECT cmpv (QRESYNC (%UV% 2))", "SELECT cmpv (QRESYNC (%UV% 2 1:6))",
        "SELECT cmpv (QRESYNC (%UV% 2 (1:3 1,3,5)))", "SELECT cmpv (QRESYNC (%UV% 12))",
        "SELECT cmpv (QRESYNC (1 2))", "EXAMINE cmpv (QRESYNC (%UV% 2) CONDSTORE)",
        "SELECT cmpv (QRESYNC (%UV% 2 1:*))", "SELECT cmpv (QRESYNC (%UV%))", ("B", "UNSELECT"), "UNSELECT",
        "DELETE cmpv", "LOGOUT",
    ]
    S["misc"] = [
        ("login", "A"), "NAMESPACE", 'ID ("name" "cmp" "version" "1")', "ID NIL", "ID (\"name\")", "ID ()",
        "ENABLE CONDSTORE", "ENABLE QRESYNC", "ENABLE IMAP4rev2", "CHECK", "SELECT INBOX", "CHECK",
        "NAMESPACE", "ID NIL", "ENABLE X-FOO", "NOOP", "LOGOUT",
    ]
    S["literals"] = [
        ("connect", "A"), b"LOGIN {8}\r\ntestuser {4}\r\npass", b"SELECT {5+}\r\nINBOX", b"SELECT {5}\r\nINBOX",
        b"CREATE {6+}\r\ncmplit", b"DELETE {6}\r\ncmplit", b"FETCH 1 (BODY.PEEK[HEADER.FIELDS ({7}\r\nSUBJECT)])",
        b"SEARCH SUBJECT {2}\r\nre", b"SEARCH HEADER {7}\r\nSubject {0}\r\n", b"STATUS {5}\r\nINBOX (MESSAGES)",
        b"LIST {0}\r\n {1}\r\n%", b"FETCH {1}\r\n1 FLAGS",
        b"LOGOUT",
    ]
    S["rename_inbox"] = [
        ("login", "A"), "STATUS INBOX (MESSAGES UIDNEXT)", "SELECT INBOX", ("login", "B"),
        ("B", "RENAME INBOX cmpold"), "NOOP", "FETCH 1 UID", ("B", "STATUS INBOX (MESSAGES UIDNEXT)"),
        ("B", "STATUS cmpold (MESSAGES UIDNEXT)"), ("B", 'LIST "" "*"'), "CLOSE", ("B", "RENAME INBOX cmpold"),
        ("B", "CREATE INBOX/sub"), ("B", "RENAME INBOX cmpold2"), ("B", 'LIST "" "*"'), "LOGOUT",
    ]
    return S


# ------------------------------------------------------------------ diff

FORGIVING = {"nonauth", "badsyntax"}
# nothing is ignored since mailsrv has CONDSTORE/QRESYNC too (issue 9)
IGNORED = re.compile(r"(?!)")

def classify(d: list[tuple[str, str]], m: list[tuple[str, str]]) -> str:
    dk = [k for k, _ in d]
    mk = [k for k, _ in m]
    if dk == mk:
        return "same" if [t for _, t in d] == [t for _, t in m] else "text"
    if sorted(dk) == sorted(mk):
        return "order"
    return "DIFF"


def run_all(dport: int, mport: int, msgs: Sequence[bytes], only: list[str] | None, show_all: bool,
            write: Callable[[str], None]) -> dict[str, int]:
    counts = {"same": 0, "text": 0, "order": 0, "DIFF": 0}
    seed = [("login", "A")] + seed_steps(msgs) + ["LOGOUT"]
    for port in (dport, mport):
        s = Session(port)
        for st in seed:
            _, out = s.run(st)
            if out and not out[-1].split(b" ", 2)[1:2] == [b"OK"] and st != "LOGOUT":
                write(f"seed failed on port {port}: {out[-1]!r}")
        s.close()
    for name, steps in scripts(msgs).items():
        if only and name not in only:
            continue
        write(f"=== {name}")
        forgive = name in FORGIVING
        ds, ms = Session(dport, forgive), Session(mport, forgive)
        for st in steps:
            label, dout = ds.step(st)
            _, mout = ms.step(st)
            dn = [n for n in map(normalise, dout) if not IGNORED.match(n[0])]
            mn = [n for n in map(normalise, mout) if not IGNORED.match(n[0])]
            c = classify(dn, mn)
            counts[c] += 1
            if c == "same" and not show_all:
                continue
            mark = {"same": "  ", "text": "~ ", "order": "o ", "DIFF": "! "}[c]
            write(f"{mark}{label}")
            if c == "same":
                for k, t in dn:
                    write(f"      = {k} {t}"[:400])
                continue
            dkeys, mkeys = {k for k, _ in dn}, {k for k, _ in mn}
            for side, lines, other in (("D", dn, mkeys), ("M", mn, dkeys)):
                for k, t in lines:
                    if c == "DIFF" and k in other and not re.match(r"^\S+ (OK|NO|BAD)", k):
                        continue  # the same line on both sides: only the differences matter here
                    write(f"      {side} {k}" + (f"  | {t}" if t else "")[:400])
        ds.close()
        ms.close()
    return counts


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("-n", type=int, default=50, help="corpus messages seeded into INBOX")
    ap.add_argument("--only", help="comma-separated script names")
    ap.add_argument("--all", action="store_true", help="print identical steps too")
    ap.add_argument("-o", "--out", help="write the report here as well")
    ap.add_argument("--dovecot-base", default="/tmp/dovecot-compare")
    ap.add_argument("--dovecot-port", type=int, default=13143)
    args = ap.parse_args(argv)
    msgs = corpus(args.n)
    dov = Dovecot(args.dovecot_base, args.dovecot_port)
    ms = Mailsrv()
    out_f = open(args.out, "w") if args.out else None

    def write(s: str) -> None:
        print(s)
        if out_f:
            out_f.write(s + "\n")

    try:
        dov.start()
        ms.start()
        counts = run_all(args.dovecot_port, ms.port, msgs, args.only.split(",") if args.only else None,
                         args.all, write)
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
