#!/usr/bin/env python3
"""IMAP figures of issue 3, mailsrv and Dovecot side by side in one run.

For a 10,000- and (unless --quick) a 100,000-message INBOX, per server,
each on a fresh hardlinked copy of the same messages (no index yet):

  first open:  server fresh, page cache dropped: LOGIN+SELECT, FETCH 1:*
               (FLAGS UID RFC822.SIZE), FETCH 1:* (ENVELOPE) (nothing cached)
  restart:     server restarted, page cache dropped, index present:
               LOGIN+SELECT, FETCH 1:* (ENVELOPE)
  warm:        LOGIN+SELECT; FETCH FLAGS/UID/SIZE; ENVELOPE;
               BODY.PEEK[HEADER.FIELDS (SUBJECT FROM)]; UID SEARCH HEADER
               Subject; UID SEARCH UNSEEN; STORE 1:* +FLAGS (\\Seen) (reset
               after each run): one untimed warm-up, then the median of runs
  large:       FETCH 1:* BODY.PEEK[] of 500 large messages (another user)
  memory:      server RSS/PSS (all processes) with the session still open

The client is a raw socket that only tracks literals and the tagged
completion (C-level scanning), so its cost is small and equal for both.
A step that fails prints 'error: <reply>' and the run goes on.
Run as root (page-cache drop, Dovecot): python3 bench/imap_bench.py [--quick]
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import socket
import sys
import time
from collections.abc import Callable, Sequence

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import common  # noqa: E402
from common import MB, PASSWORD, Budget, Result, Table, log, median  # noqa: E402

from mailsrv import ranges  # noqa: E402

SEARCH_WORD = "outage"
COMPACT_AT = 8 << 20  # bytes kept before dropping what was already scanned


class Reply:
    """Outcome of one command: status is OK/NO/BAD, or TIMEOUT/EOF/ERROR
    when the connection is no longer usable."""

    def __init__(self, status: str, text: str = "", nbytes: int = 0, data: bytes = b"", fetches: int = 0,
                 seconds: float = 0.0) -> None:
        self.status, self.text, self.nbytes, self.data = status, text, nbytes, data
        self.fetches, self.seconds = fetches, seconds

    @property
    def ok(self) -> bool:
        return self.status == "OK"

    @property
    def usable(self) -> bool:
        return self.status in ("OK", "NO", "BAD")

    def error(self) -> str:
        return f"{self.status} {self.text}".strip()


class IMAPClient:
    """Send a command, read until its tagged response, count bytes."""

    def __init__(self, port: int, timeout: float) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = bytearray()
        self.n = 0
        deadline = time.monotonic() + timeout
        while b"\r\n" not in self.buf:
            self._fill(deadline)
        self.greeting = bytes(self.buf[: self.buf.index(b"\r\n")])
        del self.buf[: len(self.greeting) + 2]
        if not self.greeting.startswith(b"* OK"):
            raise ConnectionError(f"greeting: {self.greeting[:100]!r}")

    def _fill(self, deadline: float) -> int:
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("step timeout")
        self.sock.settimeout(left)
        chunk = self.sock.recv(1 << 20)
        if not chunk:
            raise EOFError("connection closed by server")
        self.buf += chunk
        return len(chunk)

    def command(self, cmd: str, timeout: float, keep: bool = False) -> Reply:
        """Send `cmd`; read to its tagged completion with C-level scans only
        (bytes.find for the tag at a line start, bytes.count for FETCH
        lines), so a 100,000-line answer costs the client little.  Literals
        are not parsed: the tag is unique, a body holding CRLF + tag + space
        is not a realistic risk."""
        self.n += 1
        tag = b"Zq%05d" % self.n
        needle = b"\r\n" + tag + b" "
        t0 = time.monotonic()
        deadline = t0 + timeout
        kept: list[bytes] = []
        total = fetches = scan = 0
        try:
            self.sock.sendall(tag + b" " + cmd.encode() + b"\r\n")
            while True:
                if self.buf.startswith(tag + b" "):
                    j = 0
                else:
                    i = self.buf.find(needle, scan)
                    if i < 0:
                        scan = max(scan, len(self.buf) - len(needle))
                        if not keep and scan > COMPACT_AT:
                            cut = self.buf.rfind(b"\n", 0, scan) + 1
                            fetches += self.buf.count(b" FETCH (", 0, cut)
                            total += cut
                            del self.buf[:cut]
                            scan -= cut
                        self._fill(deadline)
                        continue
                    j = i + 2
                e = self.buf.find(b"\r\n", j)
                if e < 0:
                    scan = max(0, j - 2)
                    self._fill(deadline)
                    continue
                secs = time.monotonic() - t0
                end = e + 2
                words = bytes(self.buf[j:e]).split(b" ", 2)
                status = words[1].decode(errors="replace") if len(words) > 1 else "BAD"
                text = words[2].decode(errors="replace") if len(words) > 2 else ""
                fetches += self.buf.count(b" FETCH (", 0, j)
                if keep:
                    kept.append(bytes(self.buf[:end]))
                total += end
                del self.buf[:end]
                return Reply(status if status in ("OK", "NO", "BAD") else "BAD", text, total,
                             b"".join(kept), fetches, secs)
        except TimeoutError:
            return Reply("TIMEOUT", f"no tagged reply to {cmd[:40]!r} in {timeout:.0f}s", seconds=time.monotonic() - t0)
        except (EOFError, OSError) as e:
            return Reply("EOF", str(e), seconds=time.monotonic() - t0)

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass


def quote(s: str) -> str:
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


def compress_uids(uids: Sequence[int]) -> str:
    """1,2,3,7 -> '1:3,7' (IMAP sequence-set)."""
    return ranges.render_sorted(uids)


def search_uids(data: bytes) -> list[int]:
    m = re.search(rb"(?m)^\* SEARCH([ \d]*)\r?$", data)
    return [int(x) for x in m.group(1).split()] if m else []


def unseen_from_fetch(data: bytes) -> list[int]:
    """UIDs without \\Seen from '* n FETCH (UID u FLAGS (...))' lines."""
    out = []
    for line in data.split(b"\r\n"):
        m = re.search(rb"UID (\d+)", line)
        f = re.search(rb"FLAGS \(([^)]*)\)", line)
        if m and f and b"\\seen" not in f.group(1).lower():
            out.append(int(m.group(1)))
    return out


class Session:
    """A logged-in, INBOX-selected connection that is reopened (untimed)
    after a step left it unusable, so one failure does not end the run."""

    def __init__(self, port: int, user: str, budget: Budget, step_timeout: float) -> None:
        self.port, self.user, self.budget, self.step_timeout = port, user, budget, step_timeout
        self.conn: IMAPClient | None = None
        self.exists: int | None = None
        self.select_secs = 0.0

    def timeout(self) -> float:
        return self.budget.timeout(self.step_timeout)

    def login_select(self) -> tuple[float | None, str | None]:
        """Fresh connection, LOGIN + SELECT INBOX: (seconds, error); the
        SELECT alone is left in self.select_secs (LOGIN is mostly Argon2id)."""
        self.close()
        t0 = time.monotonic()
        try:
            conn = IMAPClient(self.port, self.timeout())
        except (OSError, ConnectionError, EOFError) as e:
            return None, f"connect: {e}"
        r = conn.command(f"LOGIN {quote(self.user)} {quote(PASSWORD)}", self.timeout())
        if not r.ok:
            conn.close()
            return None, "LOGIN: " + r.error()
        r = conn.command("SELECT INBOX", self.timeout(), keep=True)
        if not r.ok:
            conn.close()
            return None, "SELECT: " + r.error()
        secs = time.monotonic() - t0
        self.select_secs = r.seconds
        m = re.search(rb"\* (\d+) EXISTS", r.data)
        self.exists = int(m.group(1)) if m else None
        self.conn = conn
        return secs, None

    def run(self, cmd: str, keep: bool = False) -> Reply:
        if self.conn is None:
            _, error = self.login_select()
            if error:
                return Reply("ERROR", error)
        r = self.conn.command(cmd, self.timeout(), keep=keep)
        if not r.usable:
            self.close()
        return r

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None

    def logout(self) -> None:
        if self.conn is not None:
            self.conn.command("LOGOUT", 10)
            self.close()


def fetch_note(r: Reply, exists: int | None) -> str:
    if exists is not None and r.fetches != exists:
        return f"{r.fetches} FETCH responses for {exists} messages"
    return ""


def one(r: Reply, exists: int | None = None) -> Result:
    if not r.ok:
        return Result(error=r.error())
    return Result(r.seconds * 1000, note=fetch_note(r, exists))


def repeated(sess: Session, cmd: str, runs: int, keep: bool = False, after=None,
             warmup: bool = True) -> tuple[Result, Reply | None]:
    """One untimed warm-up, then the median of `runs` timings (ms)."""
    times, last = [], None
    for i in range(runs + (1 if warmup else 0)):
        if sess.budget.left() < 5:
            break
        r = sess.run(cmd, keep=keep)
        if not r.ok:
            return Result(error=r.error()), r
        if after:
            after(r)
        if i > 0 or not warmup:
            times.append(r.seconds * 1000)
        last = r
    if not times:
        return Result(error="skipped: time budget"), last
    note = fetch_note(last, sess.exists) if "FETCH" in cmd and "STORE" not in cmd else ""
    return Result(median(times), note=note), last


Record = Callable[[str, Result], None]


def bench_mailbox(server: common.BenchServer, budget: Budget, step_timeout: float, runs: int,
                  large_octets: int) -> dict[str, Result]:
    out: dict[str, Result] = {}
    port_of = lambda: server.ports["imap"]  # noqa: E731
    server.stop()
    common.drop_caches()
    server.start()
    label = server.label

    def record(key: str, res: Result) -> None:
        out[key] = res
        shown = f"{res.value:.1f}" if res.error is None and res.value is not None else str(res.error)
        log(f"{label} {key}: {shown}")

    # first open: nothing indexed, nothing cached
    s = Session(port_of(), "inbox", budget, step_timeout)
    exists = open_phase(s, record, "first")
    # restart: index on disk, page cache dropped
    if budget.left() > 20:
        server.stop()
        common.drop_caches()
        server.start()
        s = Session(port_of(), "inbox", budget, step_timeout)
        open_phase(s, record, "cold", exists)
    warm_phase(s, record, runs, budget)
    unseen = search_phase(s, record, runs)
    store_phase(s, record, runs, unseen)
    if s.conn is None:
        s.login_select()
    if s.conn is not None:
        rss, pss = server.memory()
        out["rss"], out["pss"] = Result(rss), Result(pss)
    s.logout()
    # 500 large messages, full bodies
    if budget.left() > 10:
        out.update(large_phase(Session(port_of(), "large", budget, step_timeout), record, runs, large_octets))
    server.stop()
    return out


def open_phase(s: Session, record: Record, when: str, exists: int | None = None) -> int:
    """SELECT and FETCH 1:* on a server that just started (``when``: "first"
    with nothing indexed, "cold" after a restart); returns the count."""
    secs, error = s.login_select()
    record(f"select_{when}", Result(secs * 1000) if error is None else Result(error=error))
    record(f"selonly_{when}", Result(s.select_secs * 1000) if error is None else Result(error=error))
    if exists is None:
        exists = s.exists
        record("flags_first", one(s.run("FETCH 1:* (FLAGS UID RFC822.SIZE)"), exists))
    record(f"env_{when}", one(s.run("FETCH 1:* (ENVELOPE)"), exists))
    s.logout()
    return exists


def warm_phase(s: Session, record: Record, runs: int, budget: Budget) -> None:
    """SELECT and the FETCHes again, everything cached."""
    sel, selonly = [], []
    for _ in range(runs):
        if budget.left() < 10:
            break
        secs, error = s.login_select()
        if error:
            record("select_warm", Result(error=error))
            break
        sel.append(secs * 1000)
        selonly.append(s.select_secs * 1000)
        s.logout()
    if sel:
        record("select_warm", Result(median(sel)))
        record("selonly_warm", Result(median(selonly)))
    for key, cmd in (("flags_warm", "FETCH 1:* (FLAGS UID RFC822.SIZE)"),
                     ("env_warm", "FETCH 1:* (ENVELOPE)"),
                     ("hdr_warm", "FETCH 1:* (BODY.PEEK[HEADER.FIELDS (SUBJECT FROM)])")):
        record(key, repeated(s, cmd, runs)[0])


def search_phase(s: Session, record: Record, runs: int) -> list[int] | None:
    """Header and flag searches; returns the unseen UIDs (None if unknown)."""
    res, r = repeated(s, f"UID SEARCH HEADER Subject {quote(SEARCH_WORD)}", runs, keep=True)
    if r is not None and res.error is None:
        res.note = f"{len(search_uids(r.data))} hits"
    record("search_hdr", res)
    res, r = repeated(s, "UID SEARCH UNSEEN", runs, keep=True)
    unseen = search_uids(r.data) if r is not None and r.ok else None
    if unseen is not None and res.error is None:
        res.note = f"{len(unseen)} hits"
    record("search_unseen", res)
    if unseen is None:  # derive the set to restore from FLAGS instead
        r = s.run("FETCH 1:* (UID FLAGS)", keep=True)
        if r.ok:
            unseen = unseen_from_fetch(r.data)
    return unseen


def store_phase(s: Session, record: Record, runs: int, unseen: list[int] | None) -> None:
    """STORE 1:* +FLAGS (\\Seen), the unseen set restored after each run."""
    if unseen is None:
        record("store", Result(error="skipped: could not learn the unseen set to restore flags"))
        return
    reset_errors = []

    def reset(_r: Reply) -> None:
        if unseen:
            rr = s.run(f"UID STORE {compress_uids(unseen)} -FLAGS.SILENT (\\Seen)")
            if not rr.ok:
                reset_errors.append(rr.error())

    res, _ = repeated(s, "STORE 1:* +FLAGS (\\Seen)", runs, after=reset, warmup=False)
    if reset_errors:
        res.note = "reset failed: " + reset_errors[0][:60]
    record("store", res)


def large_phase(s: Session, record: Record, runs: int, large_octets: int) -> dict[str, Result]:
    """FETCH 1:* (BODY.PEEK[]) of the large-message folder, and its rate."""
    out: dict[str, Result] = {}
    res, r = repeated(s, "FETCH 1:* (BODY.PEEK[])", runs)
    record("large", res)
    if res.error is None and res.value:
        out["large_mbs"] = Result(large_octets / MB / (res.value / 1000))
        if r is not None and r.nbytes < large_octets:
            out["large_mbs"].note = f"only {r.nbytes} bytes received for {large_octets} octets"
    s.logout()
    return out


ROWS = [
    ("LOGIN+SELECT, first open (no index, page cache dropped)", "select_first", "ms"),
    ("  of which SELECT alone", "selonly_first", "ms"),
    ("FETCH 1:* (FLAGS UID RFC822.SIZE), first", "flags_first", "ms"),
    ("FETCH 1:* (ENVELOPE), first ever (nothing cached)", "env_first", "ms"),
    ("LOGIN+SELECT, cold (restart + page cache dropped)", "select_cold", "ms"),
    ("  of which SELECT alone", "selonly_cold", "ms"),
    ("FETCH 1:* (ENVELOPE), cold (restart + page cache dropped)", "env_cold", "ms"),
    ("LOGIN+SELECT, warm", "select_warm", "ms"),
    ("  of which SELECT alone", "selonly_warm", "ms"),
    ("FETCH 1:* (FLAGS UID RFC822.SIZE), warm", "flags_warm", "ms"),
    ("FETCH 1:* (ENVELOPE), warm", "env_warm", "ms"),
    ("FETCH 1:* BODY.PEEK[HEADER.FIELDS (SUBJECT FROM)], warm", "hdr_warm", "ms"),
    (f'UID SEARCH HEADER Subject "{SEARCH_WORD}", warm', "search_hdr", "ms"),
    ("UID SEARCH UNSEEN, warm", "search_unseen", "ms"),
    ("STORE 1:* +FLAGS (\\Seen) (~10% change)", "store", "ms"),
    ("server RSS, all processes, session open", "rss", "MB"),
    ("server PSS, all processes, session open", "pss", "MB"),
]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="2,000 messages, 50 large: a smoke run under 2 minutes")
    ap.add_argument("--skip-dovecot", action="store_true")
    ap.add_argument("--skip-mailsrv", action="store_true")
    ap.add_argument("--sizes", help="comma-separated INBOX sizes (default 10000,100000; quick 2000)")
    ap.add_argument("--runs", type=int, default=3, help="timed runs per warm step (median)")
    ap.add_argument("--json", help="also write the figures as JSON here")
    ap.add_argument("--budget", type=float, default=None, help="seconds for the whole run (default 570, quick 110)")
    args = ap.parse_args()

    budget = Budget(args.budget or (110 if args.quick else 570))
    sizes = [int(x) for x in args.sizes.split(",")] if args.sizes else ([2000] if args.quick else [10000, 100000])
    n_large = 50 if args.quick else 500
    os.makedirs(common.WORK, exist_ok=True)
    corpus = common.Corpus()
    large_seed = common.seed(corpus, f"large{n_large}", common.largest_spec(corpus, n_large))
    large_n, large_octets = common.seed_octets(large_seed)
    inbox_seeds = {n: common.seed(corpus, f"inbox{n}", common.inbox_spec(corpus, n)) for n in sizes}
    can_drop = common.drop_caches()

    mailsrv_error = None
    if not args.skip_mailsrv and not common.mailsrv_importable("mailsrv.imap:IMAPFactory"):
        mailsrv_error = "mailsrv IMAP not available yet (from mailsrv.imap import IMAPFactory fails)"
        log(mailsrv_error)

    print(f"# imap_bench {'--quick ' if args.quick else ''}{time.strftime('%Y-%m-%d %H:%M:%S')} "
          f"host={platform.node()} cpus={os.cpu_count()} load={os.getloadavg()[0]:.2f} "
          f"python={platform.python_version()} page-cache-drop={'yes' if can_drop else 'no'}")
    print("# passwords: Argon2id m=64MiB t=3 p=1 for both servers; Dovecot 2.3 reference instance "
          f"(private, {common.DOVECOT_BASE}); times in ms, warm = median of {args.runs} after a warm-up")
    tables: list[Table] = []
    dovecot = None if args.skip_dovecot else common.Dovecot(os.path.join(common.WORK, "dovecot-mail"))
    ours = (None if args.skip_mailsrv or mailsrv_error
            else common.Mailsrv(os.path.join(common.WORK, "mailsrv-data"), kinds=("imap",)))
    try:
        for n in sizes:
            results: dict[str, dict[str, Result]] = {}
            step_timeout = 60 if n <= 20000 else 150
            for server in (dovecot, ours):
                if server is None:
                    continue
                if budget.left() < 20:
                    results[server.label] = {k: Result(error="skipped: time budget") for _, k, _ in ROWS}
                    continue
                log(f"--- {server.label}, {n} messages")
                try:
                    server.reset()
                    server.add_user("inbox", inbox_seeds[n])
                    server.add_user("large", large_seed)
                    results[server.label] = bench_mailbox(server, budget, step_timeout, args.runs, large_octets)
                except Exception as e:
                    log(f"{server.label} failed: {e!r}")
                    results[server.label] = {k: Result(error=str(e) or repr(e)) for _, k, _ in ROWS}
                finally:
                    server.stop()
            if mailsrv_error:
                results["mailsrv"] = {k: Result(error=mailsrv_error) for _, k, _ in ROWS}
            t = Table(f"IMAP, {n:,}-message INBOX ({common.seed_octets(inbox_seeds[n])[1] / MB:.0f} MB)")
            for name, key, unit in ROWS:
                t.add(name, unit, False, results.get("mailsrv", {}).get(key), results.get("dovecot", {}).get(key))
            t.add(f"FETCH 1:* BODY.PEEK[] of {large_n} large messages ({large_octets / MB:.1f} MB), warm", "ms", False,
                  results.get("mailsrv", {}).get("large"), results.get("dovecot", {}).get("large"))
            t.add("  same, throughput", "MB/s", True,
                  results.get("mailsrv", {}).get("large_mbs"), results.get("dovecot", {}).get("large_mbs"))
            tables.append(t)
            print()
            print(t.render(), flush=True)
    finally:
        for server in (dovecot, ours):
            if server is not None:
                server.stop()
    print(f"\n# load average at end: {os.getloadavg()[0]:.2f} (other work on the machine skews figures)")
    common.write_json(args.json, tables)
    return 0


if __name__ == "__main__":
    sys.exit(main())
