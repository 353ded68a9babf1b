#!/usr/bin/env python3
"""Issue 10's data-path table: mailsrv next to Dovecot in one run, stock clients.

Every client is Python's own ``imaplib``/``poplib`` (or, for the one-write
APPEND, a plain socket), one OS process per client; logins happen before
the timing, on both servers with the same users and mail (hardlinked copies
of one seed) and ``{PLAIN}`` passwords on Dovecot's side.

Rows (``--rows``, comma-separated; default all):
  append      APPEND via imaplib, one message at a time (msg/s and ms each),
              and the same APPENDs each sent in one write with LITERAL+
  body        UID FETCH 1:* (BODY.PEEK[]) of 500 messages of 20-200 KiB:
              1 client, 4 clients at once (MB/s per client)
  small       UID FETCH 1:* (BODY.PEEK[]) of 10,000 small messages
  store       STORE 1:* +FLAGS (\\Flagged) on 10,000 (reset untimed first)
  concurrent  4 clients at once on the 500-message folder, each repeating
              UID SEARCH HEADER Subject / FETCH 1:* (FLAGS): ms per command
  pop3        RETR of all 500 messages, 1 client / 4 clients (own users)
  tls         the body row over implicit TLS (IMAPS), 1 client
Server CPU (every process and thread of the server, from /proc schedstat,
around the timed part) is reported per MB of message data sent.

A/B in one run: ``--base-tree DIR`` adds a second mailsrv started from
another checkout (``git archive main | tar -x -C DIR``); servers take turns
within every run so background load hits them alike.

    python bench/datapath.py [--rows body,pop3] [--runs 3] [--base-tree DIR]
                             [--no-dovecot] [--json out.json]

Private state under $MAILSRV_BENCH_DIR (default /tmp/mailsrv-datapath) and
Dovecot under $DATAPATH_DOVECOT_BASE (default /tmp/dovecot-datapath), so it
can run beside the other benchmarks.  MB = 10^6 octets.
"""

from __future__ import annotations

import argparse
import imaplib
import json
import multiprocessing
import os
import poplib
import re
import socket
import ssl
import sys
import time
from collections.abc import Callable
from typing import Any

os.environ.setdefault("MAILSRV_BENCH_DIR", "/tmp/mailsrv-datapath")
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import common  # noqa: E402
from common import MB, PASSWORD, Budget, log, median  # noqa: E402

common.DOVECOT_BASE = os.environ.get("DATAPATH_DOVECOT_BASE", "/tmp/dovecot-datapath")

TIMEOUT = 300.0
N_APPEND = 50
N_CONCURRENT = 20  # iterations of SEARCH + FETCH FLAGS per client
SEARCH_WORD = "outage"
POP3_USERS = ("big", "big1", "big2", "big3")
ALL_ROWS = ("append", "body", "small", "store", "concurrent", "pop3", "tls")


# --------------------------------------------------------------------------
# server CPU time


def tree_cpu(pid: int | None) -> float:
    """CPU seconds of every thread of ``pid`` and its descendants
    (nanosecond counters, unlike the 10 ms ticks of /proc/PID/stat)."""
    if pid is None:
        return 0.0
    total = 0
    for p in common.process_tree(pid):
        try:
            tasks = os.listdir(f"/proc/{p}/task")
        except OSError:
            continue
        for t in tasks:
            try:
                with open(f"/proc/{p}/task/{t}/schedstat") as f:
                    total += int(f.read().split()[0])
            except (OSError, ValueError, IndexError):
                pass
    return total / 1e9


# --------------------------------------------------------------------------
# clients: setup() before the start line, timed() after it, finish() after
# the server's CPU was read


def _insecure() -> ssl.SSLContext:
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


def _imap(port: int, user: str, tls: bool = False) -> imaplib.IMAP4:
    c: imaplib.IMAP4
    if tls:
        c = imaplib.IMAP4_SSL("127.0.0.1", port, ssl_context=_insecure(), timeout=TIMEOUT)
    else:
        c = imaplib.IMAP4("127.0.0.1", port, timeout=TIMEOUT)
    typ, data = c.login(user, PASSWORD)
    if typ != "OK":
        raise RuntimeError(f"LOGIN {user}: {data!r}")
    return c


def _check(typ: str, data: Any, what: str) -> None:
    if typ != "OK":
        raise RuntimeError(f"{what}: {typ} {data!r}"[:300])


class Client:
    def setup(self) -> None: ...

    def timed(self) -> dict[str, float]:
        raise NotImplementedError

    def finish(self) -> None: ...


class FetchBodies(Client):
    """``UID FETCH 1:* (BODY.PEEK[])`` through imaplib; checks the count
    and the octets against the seed."""

    def __init__(self, port: int, user: str, expect: tuple[int, int], tls: bool = False) -> None:
        self.port, self.user, self.expect, self.tls = port, user, expect, tls

    def setup(self) -> None:
        self.c = _imap(self.port, self.user, self.tls)
        typ, data = self.c.select("INBOX")
        _check(typ, data, "SELECT")

    def timed(self) -> dict[str, float]:
        t0 = time.perf_counter()
        typ, data = self.c.uid("FETCH", "1:*", "(BODY.PEEK[])")
        dt = time.perf_counter() - t0
        _check(typ, data[-1:], "UID FETCH")
        bodies = [d[1] for d in data if isinstance(d, tuple)]
        got = (len(bodies), sum(map(len, bodies)))
        if got != self.expect:
            raise RuntimeError(f"FETCH returned {got[0]} bodies / {got[1]} octets, expected {self.expect}")
        return {"seconds": dt, "octets": got[1]}

    def finish(self) -> None:
        self.c.logout()


class StoreAll(Client):
    """``STORE 1:* +FLAGS (\\Flagged)``; the flag is taken off everywhere
    first (untimed), so every run changes every message."""

    def __init__(self, port: int, user: str) -> None:
        self.port, self.user = port, user

    def setup(self) -> None:
        self.c = _imap(self.port, self.user)
        _check(*self.c.select("INBOX"), "SELECT")
        _check(*self.c.store("1:*", "-FLAGS.SILENT", "(\\Flagged)"), "reset STORE")
        _check(*self.c.noop(), "NOOP")
        time.sleep(1.0)  # let a server that writes flags behind the answer finish

    def timed(self) -> dict[str, float]:
        t0 = time.perf_counter()
        typ, data = self.c.store("1:*", "+FLAGS", "(\\Flagged)")
        dt = time.perf_counter() - t0
        _check(typ, data[-1:], "STORE")
        return {"seconds": dt}

    def finish(self) -> None:
        self.c.logout()


class SearchAndFlags(Client):
    """Alternating ``UID SEARCH HEADER Subject`` and ``FETCH 1:* (FLAGS)``."""

    def __init__(self, port: int, user: str) -> None:
        self.port, self.user = port, user

    def setup(self) -> None:
        self.c = _imap(self.port, self.user)
        _check(*self.c.select("INBOX"), "SELECT")

    def timed(self) -> dict[str, float]:
        search = flags = 0.0
        for _ in range(N_CONCURRENT):
            t0 = time.perf_counter()
            typ, data = self.c.uid("SEARCH", "HEADER", "Subject", SEARCH_WORD)
            t1 = time.perf_counter()
            _check(typ, data, "UID SEARCH")
            typ, data = self.c.fetch("1:*", "(FLAGS)")
            t2 = time.perf_counter()
            _check(typ, data[-1:], "FETCH FLAGS")
            search += t1 - t0
            flags += t2 - t1
        return {"search_ms": 1000 * search / N_CONCURRENT, "flags_ms": 1000 * flags / N_CONCURRENT,
                "seconds": search + flags}

    def finish(self) -> None:
        self.c.logout()


class AppendImaplib(Client):
    """imaplib's APPEND, one message at a time (literal and CRLF in two writes)."""

    def __init__(self, port: int, user: str, messages: list[bytes]) -> None:
        self.port, self.user, self.messages = port, user, messages

    def setup(self) -> None:
        self.c = _imap(self.port, self.user)

    def timed(self) -> dict[str, float]:
        t0 = time.perf_counter()
        for m in self.messages:
            _check(*self.c.append("INBOX", None, None, m), "APPEND")
        return {"seconds": time.perf_counter() - t0, "count": len(self.messages)}

    def finish(self) -> None:
        self.c.logout()


class AppendOneWrite(Client):
    """The same APPENDs, each sent in one write with LITERAL+ (TCP_NODELAY)."""

    def __init__(self, port: int, user: str, messages: list[bytes]) -> None:
        self.port, self.user = port, user
        self.messages = [re.sub(rb"\r?\n", b"\r\n", m) for m in messages]

    def _tagged(self, tag: bytes) -> bytes:
        while True:
            line = self.f.readline()
            if not line:
                raise RuntimeError("connection closed")
            if line.startswith(tag + b" "):
                if not line.startswith(tag + b" OK"):
                    raise RuntimeError(line.decode(errors="replace"))
                return line

    def setup(self) -> None:
        self.s = socket.create_connection(("127.0.0.1", self.port), timeout=TIMEOUT)
        self.s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.f = self.s.makefile("rb")
        self.f.readline()
        self.s.sendall(b"l LOGIN %s %s\r\n" % (self.user.encode(), PASSWORD.encode()))
        self._tagged(b"l")

    def timed(self) -> dict[str, float]:
        t0 = time.perf_counter()
        for i, m in enumerate(self.messages):
            tag = b"a%d" % i
            self.s.sendall(b"%s APPEND INBOX {%d+}\r\n%s\r\n" % (tag, len(m), m))
            self._tagged(tag)
        return {"seconds": time.perf_counter() - t0, "count": len(self.messages)}

    def finish(self) -> None:
        self.s.sendall(b"z LOGOUT\r\n")
        self.s.close()


class Pop3RetrAll(Client):
    """poplib: STAT, RETR every message (octets checked against STAT)."""

    def __init__(self, port: int, user: str) -> None:
        self.port, self.user = port, user

    def setup(self) -> None:
        self.c = poplib.POP3("127.0.0.1", self.port, timeout=TIMEOUT)
        self.c.user(self.user)
        self.c.pass_(PASSWORD)

    def timed(self) -> dict[str, float]:
        t0 = time.perf_counter()
        count, size = self.c.stat()
        got = 0
        for n in range(1, count + 1):
            _, lines, _ = self.c.retr(n)
            got += sum(len(x) + 2 for x in lines) - sum(1 for x in lines if x.startswith(b".."))
        dt = time.perf_counter() - t0
        if got != size:
            raise RuntimeError(f"RETR gave {got} octets, STAT said {size}")
        return {"seconds": dt, "octets": size}

    def finish(self) -> None:
        self.c.quit()


# --------------------------------------------------------------------------
# running clients in their own processes


def _client_main(make: Callable[[], Client], start: Any, results: Any, leave: Any) -> None:
    client: Client | None = None
    try:
        client = make()
        client.setup()
    except Exception as e:
        client = None
        results.put({"error": f"setup: {e!r}"[:300]})
    try:
        start.wait(TIMEOUT)
    except Exception:  # noqa: BLE001  another client failed: go on to report
        pass
    if client is None:
        return
    try:
        results.put(client.timed())
    except Exception as e:
        results.put({"error": repr(e)[:300]})
    leave.wait(TIMEOUT)
    try:
        client.finish()
    except Exception:  # noqa: BLE001  logging out is not measured
        pass


def run_clients(server_pid: int | None, makers: list[Callable[[], Client]]) -> tuple[list[dict], float]:
    """Start one process per client, start them together, return their
    results and the server's CPU seconds over the timed part."""
    ctx = multiprocessing.get_context("fork")
    start = ctx.Barrier(len(makers) + 1)
    leave = ctx.Event()
    results = ctx.Queue()
    procs = [ctx.Process(target=_client_main, args=(m, start, results, leave), daemon=True) for m in makers]
    for p in procs:
        p.start()
    out: list[dict] = []
    try:
        start.wait(TIMEOUT)
        cpu0 = tree_cpu(server_pid)
        deadline = time.monotonic() + TIMEOUT
        for _ in procs:
            out.append(results.get(timeout=max(1.0, deadline - time.monotonic())))
        cpu = tree_cpu(server_pid) - cpu0
    finally:
        leave.set()
        for p in procs:
            p.join(timeout=30)
            if p.is_alive():
                p.terminate()
                p.join(timeout=5)
    errors = [r["error"] for r in out if "error" in r]
    if errors:
        raise RuntimeError(errors[0])
    return out, cpu


# --------------------------------------------------------------------------
# servers and seeds


class MailsrvTree(common.Mailsrv):
    """mailsrv started from a given source tree (PYTHONPATH of the twistd
    child and of its admin commands)."""

    def __init__(self, data: str, label: str, tree: str) -> None:
        super().__init__(data, kinds=("pop3", "imap", "imaps"))
        self.label, self.tree = label, os.path.abspath(tree)

    def _with_tree(self, fn: Callable[[], Any]) -> Any:
        old = os.environ.get("PYTHONPATH")
        os.environ["PYTHONPATH"] = self.tree
        try:
            return fn()
        finally:
            if old is None:
                os.environ.pop("PYTHONPATH", None)
            else:
                os.environ["PYTHONPATH"] = old

    def add_user(self, name: str, seed_path: str | None) -> None:
        self._with_tree(lambda: common.Mailsrv.add_user(self, name, seed_path))

    def start(self, timeout: float = 60.0) -> None:
        self._with_tree(lambda: common.Mailsrv.start(self, timeout))


class Setup:
    """Seeds and the users every server gets."""

    def __init__(self) -> None:
        corpus = common.Corpus()
        self.large = common.seed(corpus, "large500", common.largest_spec(corpus, 500))
        self.small = common.seed(corpus, "inbox10000", common.inbox_spec(corpus, 10_000))
        self.large_expect = common.seed_octets(self.large)
        self.small_expect = common.seed_octets(self.small)
        self.append_msgs = [corpus.variant(i, 7) for i in range(N_APPEND)]
        self.users: list[tuple[str, str | None]] = [(u, self.large) for u in POP3_USERS]
        self.users += [("small", self.small), ("app", None), ("app1", None)]

    def prepare(self, server: common.BenchServer) -> None:
        server.reset()
        for name, seed_path in self.users:
            server.add_user(name, seed_path)
        server.start()


def imaps_port(server: common.BenchServer) -> int:
    if isinstance(server, common.Dovecot):
        return server.all_ports["imaps"]
    return server.ports["imaps"]


# --------------------------------------------------------------------------
# rows

Figures = dict[str, float]


def row_append(s: common.BenchServer, setup: Setup) -> Figures:
    port = s.ports["imap"]
    res, _ = run_clients(s.main_pid(), [lambda: AppendImaplib(port, "app", setup.append_msgs)])
    one, _ = run_clients(s.main_pid(), [lambda: AppendOneWrite(port, "app1", setup.append_msgs)])
    return {"append msg/s": res[0]["count"] / res[0]["seconds"],
            "append ms": 1000 * res[0]["seconds"] / res[0]["count"],
            "append1 ms": 1000 * one[0]["seconds"] / one[0]["count"]}


def _bodies(s: common.BenchServer, n: int, user: str, expect: tuple[int, int], tls: bool = False) -> Figures:
    port = imaps_port(s) if tls else s.ports["imap"]
    res, cpu = run_clients(s.main_pid(), [lambda: FetchBodies(port, user, expect, tls)] * n)
    octets = sum(r["octets"] for r in res)
    return {"mbs": sum(r["octets"] / r["seconds"] for r in res) / n / MB, "cpu": 1000 * cpu / (octets / MB)}


def row_body(s: common.BenchServer, setup: Setup) -> Figures:
    one = _bodies(s, 1, "big", setup.large_expect)
    four = _bodies(s, 4, "big", setup.large_expect)
    return {"body1 MB/s": one["mbs"], "body1 cpu": one["cpu"], "body4 MB/s": four["mbs"], "body4 cpu": four["cpu"]}


def row_small(s: common.BenchServer, setup: Setup) -> Figures:
    r = _bodies(s, 1, "small", setup.small_expect)
    return {"small MB/s": r["mbs"], "small cpu": r["cpu"]}


def row_tls(s: common.BenchServer, setup: Setup) -> Figures:
    r = _bodies(s, 1, "big", setup.large_expect, tls=True)
    return {"tls MB/s": r["mbs"], "tls cpu": r["cpu"]}


def row_store(s: common.BenchServer, setup: Setup) -> Figures:
    res, _ = run_clients(s.main_pid(), [lambda: StoreAll(s.ports["imap"], "small")])
    return {"store ms": 1000 * res[0]["seconds"]}


def row_concurrent(s: common.BenchServer, setup: Setup) -> Figures:
    res, _ = run_clients(s.main_pid(), [lambda: SearchAndFlags(s.ports["imap"], "big")] * 4)
    return {"search4 ms": sum(r["search_ms"] for r in res) / 4, "flags4 ms": sum(r["flags_ms"] for r in res) / 4}


def row_pop3(s: common.BenchServer, setup: Setup) -> Figures:
    port = s.ports["pop3"]
    one, cpu1 = run_clients(s.main_pid(), [lambda: Pop3RetrAll(port, "big")])
    four, cpu4 = run_clients(s.main_pid(), [lambda u=u: Pop3RetrAll(port, u) for u in POP3_USERS])
    return {"pop1 MB/s": one[0]["octets"] / one[0]["seconds"] / MB,
            "pop1 cpu": 1000 * cpu1 / (one[0]["octets"] / MB),
            "pop4 MB/s": sum(r["octets"] / r["seconds"] for r in four) / 4 / MB,
            "pop4 cpu": 1000 * cpu4 / (sum(r["octets"] for r in four) / MB)}


ROWS: dict[str, Callable[[common.BenchServer, Setup], Figures]] = {
    "append": row_append, "body": row_body, "small": row_small, "store": row_store,
    "concurrent": row_concurrent, "pop3": row_pop3, "tls": row_tls,
}

# (figure key, row, label, unit, higher is better), in the order
LINES = [
    ("append msg/s", "append", "APPEND via imaplib, one message at a time", "msg/s", True),
    ("append ms", "append", "  the same, per APPEND", "ms", False),
    ("append1 ms", "append", "APPEND in one write with LITERAL+, per APPEND", "ms", False),
    ("body1 MB/s", "body", "UID FETCH 1:* (BODY.PEEK[]), 500 x 20-200 KiB, 1 client", "MB/s", True),
    ("body4 MB/s", "body", "  the same, 4 clients (per client)", "MB/s", True),
    ("small MB/s", "small", "UID FETCH 1:* (BODY.PEEK[]), 10,000 small", "MB/s", True),
    ("store ms", "store", "STORE 1:* +FLAGS (\\Flagged) on 10,000", "ms", False),
    ("search4 ms", "concurrent", "4 clients on the 500 folder: UID SEARCH HEADER", "ms", False),
    ("flags4 ms", "concurrent", "4 clients on the 500 folder: FETCH 1:* (FLAGS)", "ms", False),
    ("pop1 MB/s", "pop3", "POP3 RETR of 500 messages, 1 client", "MB/s", True),
    ("pop4 MB/s", "pop3", "POP3 RETR of 500 messages, 4 clients (per client)", "MB/s", True),
    ("tls MB/s", "tls", "UID FETCH 1:* (BODY.PEEK[]) over TLS, 500 large, 1 client", "MB/s", True),
    ("body1 cpu", "body", "server CPU per MB: body, 1 client", "ms/MB", False),
    ("body4 cpu", "body", "server CPU per MB: body, 4 clients", "ms/MB", False),
    ("small cpu", "small", "server CPU per MB: 10,000 small", "ms/MB", False),
    ("tls cpu", "tls", "server CPU per MB: body over TLS", "ms/MB", False),
    ("pop1 cpu", "pop3", "server CPU per MB: POP3, 1 client", "ms/MB", False),
    ("pop4 cpu", "pop3", "server CPU per MB: POP3, 4 clients", "ms/MB", False),
]


def render(labels: list[str], figures: dict[str, dict[str, list[float]]], errors: dict[str, dict[str, str]],
           runs: int) -> str:
    """Medians side by side; the ratio column compares each mailsrv with
    Dovecot, oriented so that >= 1.0 means at least as good."""
    ref = "dovecot" if "dovecot" in labels else None
    head = ["figure", "unit", *labels] + [f"{m}/dovecot" for m in labels if ref and m != ref]
    rows = [head]
    for key, row, text, unit, higher in LINES:
        cells = [text, unit]
        meds: dict[str, float | None] = {}
        for lab in labels:
            err = errors.get(lab, {}).get(row)
            vals = figures.get(lab, {}).get(key, [])
            meds[lab] = median(vals) if vals else None
            m = meds[lab]
            cells.append("error" if err and m is None else ("-" if m is None else
                         (f"{m:.0f}" if unit == "msg/s" else f"{m:.2f}" if unit == "ms/MB" else f"{m:.1f}")))
        if ref:
            for lab in labels:
                if lab == ref:
                    continue
                a, b = meds.get(lab), meds.get(ref)
                cells.append(f"{(a / b if higher else b / a):.2f}" if a and b else "")
        if any(c not in ("-", "") for c in cells[2:]):
            rows.append(cells)
    widths = [max(len(r[i]) for r in rows) for i in range(len(head))]
    out = [f"== issue 10 data path: median of {runs} run(s); ratio >= 1.00 means mailsrv is at least as good =="]
    for i, r in enumerate(rows):
        out.append("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip())
        if i == 0:
            out.append("  ".join("-" * w for w in widths))
    for lab, errs in errors.items():
        for row, e in errs.items():
            out.append(f"error: {lab} {row}: {e}")
    return "\n".join(out)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", default=",".join(ALL_ROWS), help="comma-separated: " + ",".join(ALL_ROWS))
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--base-tree", help="another mailsrv checkout, measured as 'base' in the same run")
    ap.add_argument("--no-dovecot", action="store_true")
    ap.add_argument("--budget", type=float, default=1800.0, help="seconds for the whole run")
    ap.add_argument("--json", help="write the raw figures here")
    args = ap.parse_args()
    rows = [r for r in args.rows.split(",") if r]
    unknown = set(rows) - set(ROWS)
    if unknown:
        ap.error(f"unknown rows: {', '.join(sorted(unknown))}")
    budget = Budget(args.budget)
    setup = Setup()
    work = common.WORK
    servers: list[common.BenchServer] = [MailsrvTree(os.path.join(work, "mailsrv-data"), "mailsrv", common.REPO)]
    if args.base_tree:
        servers.append(MailsrvTree(os.path.join(work, "base-data"), "base", args.base_tree))
    if not args.no_dovecot:
        servers.append(common.Dovecot(os.path.join(work, "dovecot-mail"), plain_passwords=True))
    for s in servers:
        log(f"preparing {s.label}")
        setup.prepare(s)
    figures: dict[str, dict[str, list[float]]] = {s.label: {} for s in servers}
    errors: dict[str, dict[str, str]] = {s.label: {} for s in servers}
    for s in servers:  # warm-up: indexes built, page cache filled, not timed
        for row in rows:
            if row not in ("append", "store"):
                _attempt(s, row, setup, None, errors)
    for r in range(args.runs):
        if budget.left() < 60:
            log("time budget spent; stopping")
            break
        order = servers[r % len(servers):] + servers[:r % len(servers)]
        for row in rows:
            for s in order:
                if row not in errors[s.label]:
                    figs = _attempt(s, row, setup, figures[s.label], errors)
                    log(f"run {r + 1} {row} {s.label}: " + ", ".join(f"{k}={v:.2f}" for k, v in figs.items()))
    print(render([s.label for s in servers], figures, errors, args.runs))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"figures": figures, "errors": errors}, f, indent=1)
    return 0


def _attempt(s: common.BenchServer, row: str, setup: Setup, into: dict[str, list[float]] | None,
             errors: dict[str, dict[str, str]]) -> Figures:
    try:
        figs = ROWS[row](s, setup)
    except Exception as e:
        errors[s.label][row] = str(e)[:200] or repr(e)
        log(f"{s.label} {row} failed: {e!r}"[:300])
        return {}
    if into is not None:
        for k, v in figs.items():
            into.setdefault(k, []).append(v)
    return figs


if __name__ == "__main__":
    sys.exit(main())
