"""A bounded imaptest-style stress run on the real ``twistd mailsrv``.

Six imaplib clients share alice's INBOX for about ten seconds and do random
APPEND / FETCH / STORE / EXPUNGE / SELECT / NOOP / COPY.  Each keeps its own
model of its sequence-number view, fed by every untagged response in the
order it arrived, and checks what RFC 3501 promises:

- EXISTS is never below the messages it knows (after the EXPUNGEs reported
  before it); EXPUNGE names a sequence number that exists, and later numbers
  shift down by one;
- every FETCH that carries a UID agrees with the model (sequence numbers
  shift correctly), UIDs in the view stay strictly ascending and an
  expunged UID never comes back; APPENDUID is above every UID seen so far;
- no BAD, no SERVERBUG, no dropped connection; a NO only with EXPUNGEISSUED;
- at the end every client, after NOOP, sees the same messages and every
  keyword any client set on a surviving message.

Bounded in time (RUN_SECONDS) and in count (MAX_OPS per client).
"""

from __future__ import annotations

import imaplib
import random
import re
import threading
import time

from tests.e2e.conftest import USERS

CLIENTS = 6
RUN_SECONDS = 10.0
MAX_OPS = 1500
MAX_MESSAGES = 60  # above this, clients expunge rather than append
SOCKET_TIMEOUT = 30

_FETCH_UID = re.compile(rb"^(\d+) \(.*?\bUID (\d+)")
_FETCH_SEQ = re.compile(rb"^(\d+) \(")
_CODE = re.compile(rb"\[([A-Z-]+)")


class Violation(AssertionError):
    pass


class Tracked(imaplib.IMAP4):
    """imaplib that also records every untagged response in arrival order."""

    def __init__(self, *args, **kw) -> None:
        self.events: list[tuple] = []
        super().__init__(*args, **kw)

    def _append_untagged(self, typ, dat):  # imaplib's single entry for untagged data
        super()._append_untagged(typ, dat)
        self.events.append((typ, dat))


class Client:
    """One stress client with its model of its own view of INBOX."""

    def __init__(self, n: int, port: int, shared: Shared) -> None:
        self.n = n
        self.rng = random.Random(1000 + n)
        self.shared = shared
        self.m = Tracked("127.0.0.1", port, timeout=SOCKET_TIMEOUT)
        self.view: list[int | None] = []
        self.gone: set[int] = set()
        self.max_uid = 0
        self.uidvalidity: int | None = None
        self.ops = 0
        self.log: list[str] = []

    # -- model
    def fail(self, what: str) -> None:
        tail = "\n  ".join(self.log[-12:])
        raise Violation(f"client {self.n}: {what}\n  last commands:\n  {tail}")

    def absorb(self) -> None:
        """Apply the untagged responses received so far, in order."""
        events, self.m.events = self.m.events, []
        for typ, dat in events:
            line = dat[0] if isinstance(dat, tuple) else dat
            if typ == "EXPUNGE":
                seq = int(line)
                if not 1 <= seq <= len(self.view):
                    self.fail(f"EXPUNGE {seq} outside the view of {len(self.view)}")
                uid = self.view.pop(seq - 1)
                if uid is not None:
                    self.gone.add(uid)
            elif typ == "EXISTS":
                count = int(line)
                if count < len(self.view):
                    self.fail(f"EXISTS {count} below the {len(self.view)} messages known")
                self.view.extend([None] * (count - len(self.view)))
            elif typ == "FETCH":
                self.absorb_fetch(line)
            elif typ == "BYE":
                self.fail(f"server said BYE: {line!r}")
        known = [u for u in self.view if u is not None]
        if any(a >= b for a, b in zip(known, known[1:], strict=False)):
            self.fail(f"UIDs not strictly ascending: {known}")

    def absorb_fetch(self, line: bytes) -> None:
        """An untagged FETCH: its UID must fit the view (or fill a gap in it)."""
        m = _FETCH_UID.match(line)
        if m is None:
            s = _FETCH_SEQ.match(line)
            if s and not 1 <= int(s.group(1)) <= len(self.view):
                self.fail(f"FETCH for {s.group(1)} outside the view of {len(self.view)}")
            return
        seq, uid = int(m.group(1)), int(m.group(2))
        if not 1 <= seq <= len(self.view):
            self.fail(f"FETCH {seq} (UID {uid}) outside the view of {len(self.view)}")
        if uid in self.gone:
            self.fail(f"expunged UID {uid} came back as message {seq}")
        known = self.view[seq - 1]
        if known is None:
            self.view[seq - 1] = uid
        elif known != uid:
            self.fail(f"message {seq} is UID {uid}, the view says {known}")
        self.max_uid = max(self.max_uid, uid)

    def run(self, typ_data, what: str, allow_no: bool = True):
        self.log.append(what)
        typ, data = typ_data
        self.absorb()
        text = b" ".join(d if isinstance(d, bytes) else d[0] for d in data if d) if data else b""
        if b"SERVERBUG" in text:
            self.fail(f"{what}: SERVERBUG {text!r}")
        if typ == "NO":
            codes = set(_CODE.findall(text))
            if not allow_no or not codes & {b"EXPUNGEISSUED"}:
                self.fail(f"{what}: NO {text!r}")
        elif typ != "OK":
            self.fail(f"{what}: {typ} {text!r}")
        return typ, data

    def call(self, what: str, fn, *args, allow_no: bool = True):
        try:
            res = fn(*args)
        except imaplib.IMAP4.abort as e:
            self.fail(f"{what}: connection dropped ({e})")
        except imaplib.IMAP4.error as e:
            self.fail(f"{what}: BAD ({e})")
        return self.run(res, what, allow_no)

    # -- commands
    def select(self) -> None:
        self.view = []
        self.m.events = []
        self.call("SELECT INBOX", self.m.select, "INBOX")
        code = self.m.response("UIDVALIDITY")[1]
        if code and code[-1]:
            v = int(code[-1])
            if self.uidvalidity not in (None, v):
                self.fail(f"UIDVALIDITY changed {self.uidvalidity} -> {v}")
            self.uidvalidity = v
        if self.view:
            self.call("FETCH 1:* UID", self.m.fetch, "1:*", "(UID)")

    def some_seq(self) -> int | None:
        return self.rng.randint(1, len(self.view)) if self.view else None

    def op(self) -> None:
        r = self.rng.random()
        m = self.m
        if r < 0.15:
            if len(self.view) >= MAX_MESSAGES:
                return self.expunge()
            body = (f"From: c{self.n}@example.org\r\nSubject: stress {self.n}-{self.ops}\r\n\r\n"
                    f"body {self.rng.random()}\r\n").encode()
            before = self.max_uid
            typ, data = self.call("APPEND", m.append, "INBOX", "(\\Seen)" if r < 0.05 else None, None, body)
            mo = re.search(rb"APPENDUID \d+ (\d+)", data[0] or b"")
            if mo is None:
                self.fail(f"APPEND without APPENDUID: {data!r}")
            uid = int(mo.group(1))
            if uid <= before or uid in self.gone:
                self.fail(f"APPENDUID {uid} not above every UID seen ({before})")
            self.max_uid = max(self.max_uid, uid)
        elif r < 0.35:
            seq = self.some_seq()
            if seq is None:
                return
            hi = min(len(self.view), seq + self.rng.randint(0, 5))
            items = self.rng.choice(["(UID FLAGS)", "(UID RFC822.SIZE BODY.PEEK[HEADER.FIELDS (SUBJECT)])",
                                     "(FLAGS UID INTERNALDATE)"])
            self.call(f"FETCH {seq}:{hi} {items}", m.fetch, f"{seq}:{hi}", items)
        elif r < 0.55:
            seq = self.some_seq()
            if seq is None:
                return
            uid = self.view[seq - 1]
            if uid is not None and self.rng.random() < 0.5:
                kw = f"$k{self.n}x{self.rng.randint(0, 2)}"  # Maildir holds 26 keywords a folder
                self.call(f"UID STORE {uid} +FLAGS ({kw})", m.uid, "STORE", str(uid), "+FLAGS", f"({kw})")
                self.shared.keyword(uid, kw)
            else:
                mode = self.rng.choice(["+FLAGS", "-FLAGS", "+FLAGS.SILENT"])
                flag = self.rng.choice(["(\\Seen)", "(\\Flagged)", "(\\Answered \\Seen)"])
                self.call(f"STORE {seq} {mode} {flag}", m.store, str(seq), mode, flag)
        elif r < 0.65:
            self.expunge()
        elif r < 0.70:
            self.select()
        elif r < 0.90:
            self.call("NOOP", m.noop)
        else:
            seq = self.some_seq()
            if seq is None:
                return
            typ, data = self.call(f"COPY {seq} Archive", m.copy, str(seq), "Archive")
            if typ == "OK" and b"COPYUID" not in (data[0] or b""):
                self.fail(f"COPY without COPYUID: {data!r}")

    def expunge(self) -> None:
        seq = self.some_seq()
        if seq is None:
            return
        self.call(f"STORE {seq} +FLAGS.SILENT (\\Deleted)", self.m.store, str(seq), "+FLAGS.SILENT", "(\\Deleted)")
        uid = self.view[seq - 1] if seq <= len(self.view) else None
        if uid is not None and self.rng.random() < 0.5:
            self.call(f"UID EXPUNGE {uid}", self.m.uid, "EXPUNGE", str(uid))
        else:
            self.call("EXPUNGE", self.m.expunge)

    def final_view(self) -> list[int]:
        self.call("NOOP", self.m.noop)
        if self.view:
            self.call("FETCH 1:* (UID FLAGS)", self.m.fetch, "1:*", "(UID FLAGS)")
        if None in self.view:
            self.fail(f"messages without a UID after FETCH 1:*: {self.view}")
        return list(self.view)  # type: ignore[arg-type]


class Shared:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.keywords: dict[int, set[str]] = {}
        self.errors: list[BaseException] = []

    def keyword(self, uid: int, kw: str) -> None:
        with self.lock:
            self.keywords.setdefault(uid, set()).add(kw)


def _worker(c: Client, deadline: float, shared: Shared) -> None:
    try:
        while time.monotonic() < deadline and c.ops < MAX_OPS:
            c.op()
            c.ops += 1
    except BaseException as e:  # noqa: BLE001  reported by the main thread
        shared.errors.append(e)


def test_concurrent_clients_keep_rfc3501_invariants(server):
    port = server.ports["imap"]
    shared = Shared()
    seed = imaplib.IMAP4("127.0.0.1", port, timeout=SOCKET_TIMEOUT)
    seed.login("alice", USERS["alice"])
    for i in range(10):
        seed.append("INBOX", None, None, f"Subject: seed {i}\r\n\r\nseed\r\n".encode())
    seed.logout()

    clients = []
    for n in range(CLIENTS):
        c = Client(n, port, shared)
        c.call("LOGIN", c.m.login, "alice", USERS["alice"])
        c.select()
        clients.append(c)
    deadline = time.monotonic() + RUN_SECONDS
    threads = [threading.Thread(target=_worker, args=(c, deadline, shared), daemon=True) for c in clients]
    for t in threads:
        t.start()
    for t in threads:
        t.join(RUN_SECONDS + 4 * SOCKET_TIMEOUT)
    assert not any(t.is_alive() for t in threads), "a client hung"
    assert not shared.errors, "\n\n".join(str(e) for e in shared.errors)
    assert sum(c.ops for c in clients) > 50, [c.ops for c in clients]
    print("ops per client:", [c.ops for c in clients])

    views = [c.final_view() for c in clients]
    assert all(v == views[0] for v in views), views
    survivors = set(views[0])
    for c in clients:
        typ, data = c.m.uid("FETCH", "1:*", "(FLAGS)") if survivors else ("OK", [])
        flags = {}
        for d in data:
            if not isinstance(d, bytes):
                continue
            u, f = re.search(rb"UID (\d+)", d), re.search(rb"FLAGS \(([^)]*)\)", d)
            if u and f:
                flags[int(u.group(1))] = f.group(1).decode()
        for uid, kws in shared.keywords.items():
            if uid in survivors:
                have = set(flags.get(uid, "").split())
                assert kws <= have, f"client {c.n}: UID {uid} lacks {kws - have} (has {have})"
    for c in clients:
        c.m.logout()
    log = server.log()
    assert "Traceback" not in log and "Unhandled" not in log, log[-3000:]
