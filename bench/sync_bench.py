#!/usr/bin/env python3
"""Flag changes and resynchronisation, mailsrv and Dovecot side by side in
one run (issues 9 and 10).

Each server gets a fresh hardlinked copy of the same seeded messages
(bench/common.py) and the same commands over a raw socket:

  STORE        STORE 1:* +FLAGS (\\Flagged) on a 10,000-message INBOX (every
               message changes; reset with -FLAGS.SILENT between runs)
  concurrency  4 clients at once, each repeating UID SEARCH HEADER Subject
               "outage" and FETCH 1:* FLAGS on a 500-message INBOX: the
               median latency of each over all clients
  CHANGEDSINCE FETCH 1:* (FLAGS) (CHANGEDSINCE n) after 100 messages of a
               100,000-message INBOX changed (--big for the size), warm and
               cold (server restarted, page cache dropped unless
               MAILSRV_BENCH_NO_DROP=1)
  QRESYNC      SELECT INBOX (QRESYNC (uidvalidity n)) after 1,000 expunges
               since n, warm and cold; server memory (RSS/PSS) afterwards

Warm figures are the median of --runs after one untimed run.  The machine
may be shared: figures are provisional, the ratio in the same run is what
matters.  Run as root (Dovecot, page-cache drop):

    python3 bench/sync_bench.py [--quick] [--big 100000] [--runs 5] [--json out.json]
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import sys
import threading
import time
from collections.abc import Callable

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import common  # noqa: E402
from common import PASSWORD, Budget, Result, Table, log, median  # noqa: E402
from imap_bench import IMAPClient, Reply, compress_uids, quote, search_uids  # noqa: E402

SEARCH_WORD = "outage"
USERS = ("store", "conc", "big")


class Conn:
    """One logged-in connection with INBOX selected."""

    def __init__(self, port: int, user: str, timeout: float, enable: str | None = None,
                 select: str | None = "SELECT INBOX") -> None:
        self.client = IMAPClient(port, timeout)
        self.timeout = timeout
        self.must(f"LOGIN {quote(user)} {quote(PASSWORD)}")
        if enable:
            self.must(f"ENABLE {enable}")
        self.selected = self.must(select, keep=True) if select else None

    def run(self, cmd: str, keep: bool = False) -> Reply:
        return self.client.command(cmd, self.timeout, keep=keep)

    def must(self, cmd: str, keep: bool = False) -> Reply:
        r = self.run(cmd, keep=keep)
        if not r.ok:
            raise RuntimeError(f"{cmd[:60]}: {r.error()}")
        return r

    def close(self) -> None:
        self.run("LOGOUT")
        self.client.close()


def timed(conn: Conn, cmd: str, runs: int, before: Callable[[], None] | None = None,
          check: Callable[[Reply], str] | None = None) -> Result:
    """One untimed run, then the median of ``runs`` (ms); ``before`` runs
    untimed before each; ``check`` returns a note (e.g. a wrong count)."""
    times: list[float] = []
    note = ""
    for i in range(runs + 1):
        if before:
            before()
        r = conn.run(cmd, keep=check is not None)
        if not r.ok:
            return Result(error=r.error())
        if check:
            note = check(r) or note
        if i:
            times.append(r.seconds * 1000)
    return Result(median(times), note=note)


def highestmodseq(r: Reply) -> int:
    m = re.search(rb"HIGHESTMODSEQ (\d+)", r.data)
    if not m:
        raise RuntimeError("no HIGHESTMODSEQ in: " + r.data[-200:].decode(errors="replace"))
    return int(m.group(1))


# -- the steps ---------------------------------------------------------------------------------


def bench_store(port: int, runs: int) -> dict[str, Result]:
    c = Conn(port, "store", 120)
    n = int(re.search(rb"\* (\d+) EXISTS", c.selected.data).group(1))  # type: ignore[union-attr]

    def count(r: Reply) -> str:
        return "" if r.fetches == n else f"{r.fetches} FETCH responses for {n} messages"

    def reset() -> None:
        c.must("STORE 1:* -FLAGS.SILENT (\\Flagged)")
        c.must("NOOP")  # mailsrv answers a STORE before its renames: let them finish, untimed

    res = timed(c, "STORE 1:* +FLAGS (\\Flagged)", runs, before=reset)
    if res.error is None:
        last = c.run("STORE 1:* -FLAGS.SILENT (\\Flagged)")
        r = c.run("STORE 1:* +FLAGS (\\Flagged)")
        res.note = count(r) if last.ok and r.ok else res.note
    c.close()
    return {"store": res}


def bench_concurrent(port: int, clients: int = 4, rounds: int = 25) -> dict[str, Result]:
    """``clients`` connections at once, each alternating the two commands."""
    conns = [Conn(port, "conc", 60) for _ in range(clients)]
    times: dict[str, list[float]] = {"search": [], "flags": []}
    errors: list[str] = []
    lock = threading.Lock()
    start = threading.Barrier(clients)

    def work(c: Conn) -> None:
        start.wait()
        for i in range(rounds + 1):
            for key, cmd in (("search", f"UID SEARCH HEADER Subject {quote(SEARCH_WORD)}"),
                             ("flags", "FETCH 1:* FLAGS")):
                r = c.run(cmd)
                with lock:
                    if not r.ok:
                        errors.append(r.error())
                    elif i:  # the first round warms the caches
                        times[key].append(r.seconds * 1000)

    threads = [threading.Thread(target=work, args=(c,)) for c in conns]
    for t in threads:
        t.start()
    for t in threads:
        t.join(300)
    for c in conns:
        c.close()
    if errors:
        return {k: Result(error=errors[0]) for k in times}
    return {"conc_" + k: Result(median(v), note=f"{len(v)} commands") for k, v in times.items()}


def prepare_big(port: int) -> dict[str, int]:
    """100 messages changed after ``since100``, 1,000 expunged after
    ``since1000``; returns those points and the UIDVALIDITY."""
    c = Conn(port, "big", 600, enable="CONDSTORE")
    uids = search_uids(c.must("UID SEARCH ALL", keep=True).data)
    c.must("FETCH 1:* (FLAGS)")  # warm-up: Dovecot builds its index here too
    since100 = highestmodseq(c.must("STATUS INBOX (HIGHESTMODSEQ)", keep=True))
    step = max(1, len(uids) // 100)
    c.must(f"UID STORE {compress_uids(uids[::step][:100])} +FLAGS.SILENT (\\Answered)")
    since1000 = highestmodseq(c.must("STATUS INBOX (HIGHESTMODSEQ)", keep=True))
    step = max(1, len(uids) // 1000)
    doomed = compress_uids(uids[1::step][:1000])
    c.must(f"UID STORE {doomed} +FLAGS.SILENT (\\Deleted)")
    c.must(f"UID EXPUNGE {doomed}")
    st = c.must("STATUS INBOX (UIDVALIDITY)", keep=True)
    uidvalidity = int(re.search(rb"UIDVALIDITY (\d+)", st.data).group(1))  # type: ignore[union-attr]
    c.close()
    return {"since100": since100, "since1000": since1000, "uidvalidity": uidvalidity}


def _count_changed(r: Reply) -> str:
    return "" if r.fetches == 100 else f"{r.fetches} FETCH lines, 100 expected"


def _count_vanished(r: Reply) -> str:
    m = re.search(rb"\* VANISHED \(EARLIER\) ([\d:,]+)", r.data)
    if not m:
        return "no VANISHED (EARLIER)"
    n = sum(int(b) - int(a) + 1 if a else 1 for a, b in
            ((p.split(b":") if b":" in p else (None, p)) for p in m.group(1).split(b",")))
    return "" if n == 1000 else f"{n} UIDs vanished, 1000 expected"


def bench_big(server: common.BenchServer, points: dict[str, int], runs: int) -> dict[str, Result]:
    out: dict[str, Result] = {}
    changed = f"FETCH 1:* (FLAGS) (CHANGEDSINCE {points['since100']})"
    qresync = f"SELECT INBOX (QRESYNC ({points['uidvalidity']} {points['since1000']}))"
    for when in ("cold", "warm"):
        if when == "cold":
            server.stop()
            common.drop_caches()
            server.start()
        port = server.ports["imap"]
        q = Conn(port, "big", 600, enable="QRESYNC", select=None)
        r = q.run(qresync, keep=True)
        if when == "cold":
            out["qresync_cold"] = Result(r.seconds * 1000, note=_count_vanished(r)) if r.ok else Result(error=r.error())
            c = Conn(port, "big", 600, enable="CONDSTORE")
            r = c.run(changed)
            out["changed_cold"] = Result(r.seconds * 1000, note=_count_changed(r)) if r.ok else Result(error=r.error())
        else:
            out["qresync_warm"] = timed(q, qresync, runs, check=_count_vanished)
            c = Conn(port, "big", 600, enable="CONDSTORE")
            out["changed_warm"] = timed(c, changed, runs, check=_count_changed)
            out["rss"], out["pss"] = (Result(v) for v in server.memory())
        c.close()
        q.close()
    return out


# -- the run -----------------------------------------------------------------------------------

ROWS = [
    ("STORE 1:* +FLAGS (\\Flagged), 10,000 messages, all change", "store", "ms"),
    ("4 clients at once, 500 messages: UID SEARCH HEADER Subject, median", "conc_search", "ms"),
    ("4 clients at once, 500 messages: FETCH 1:* FLAGS, median", "conc_flags", "ms"),
    ("FETCH 1:* (FLAGS) (CHANGEDSINCE n), 100 changed, warm", "changed_warm", "ms"),
    ("FETCH 1:* (FLAGS) (CHANGEDSINCE n), 100 changed, cold", "changed_cold", "ms"),
    ("SELECT (QRESYNC (uv n)), 1,000 expunged since, warm", "qresync_warm", "ms"),
    ("SELECT (QRESYNC (uv n)), 1,000 expunged since, cold", "qresync_cold", "ms"),
    ("server RSS after the big folder, all processes", "rss", "MB"),
    ("server PSS after the big folder, all processes", "pss", "MB"),
]


def run_server(server: common.BenchServer, seeds: dict[str, str], runs: int, budget: Budget) -> dict[str, Result]:
    out: dict[str, Result] = {}
    server.reset()
    for user in USERS:
        server.add_user(user, seeds[user])
    server.start()
    try:
        log(f"{server.label}: STORE")
        out.update(bench_store(server.ports["imap"], runs))
        log(f"{server.label}: 4 clients")
        out.update(bench_concurrent(server.ports["imap"]))
        if budget.left() > 60:
            log(f"{server.label}: big folder")
            points = prepare_big(server.ports["imap"])
            out.update(bench_big(server, points, runs))
    finally:
        server.stop()
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="a 10,000-message big folder, 3 runs")
    ap.add_argument("--big", type=int, default=100_000, help="size of the CHANGEDSINCE/QRESYNC folder")
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--skip-dovecot", action="store_true")
    ap.add_argument("--json", help="also write the figures as JSON here")
    ap.add_argument("--budget", type=float, default=1200, help="seconds for the whole run")
    args = ap.parse_args()
    big = 10_000 if args.quick else args.big
    runs = 3 if args.quick else args.runs
    budget = Budget(args.budget)
    corpus = common.Corpus()
    seeds = {"store": common.seed(corpus, "inbox10000", common.inbox_spec(corpus, 10_000)),
             "conc": common.seed(corpus, "inbox500", common.inbox_spec(corpus, 500)),
             "big": common.seed(corpus, f"inbox{big}", common.inbox_spec(corpus, big))}
    print(f"# sync_bench {time.strftime('%Y-%m-%d %H:%M:%S')} host={platform.node()} cpus={os.cpu_count()} "
          f"load={os.getloadavg()[0]:.2f} big={big} runs={runs}")
    results: dict[str, dict[str, Result]] = {}
    servers: list[common.BenchServer] = [common.Mailsrv(os.path.join(common.WORK, "sync-mailsrv"), kinds=("imap",))]
    if not args.skip_dovecot:
        servers.insert(0, common.Dovecot(os.path.join(common.WORK, "sync-dovecot-mail")))
    for server in servers:
        try:
            results[server.label] = run_server(server, seeds, runs, budget)
        except Exception as e:  # noqa: BLE001  one server failing still prints the other
            log(f"{server.label} failed: {e!r}")
            results[server.label] = {k: Result(error=str(e)) for _, k, _ in ROWS}
    t = Table(f"flag changes and resynchronisation (big folder: {big:,} messages)")
    for name, key, unit in ROWS:
        t.add(name, unit, False, results.get("mailsrv", {}).get(key), results.get("dovecot", {}).get(key))
    print(t.render())
    print(f"# load average at end: {os.getloadavg()[0]:.2f} (shared machine: provisional figures)")
    common.write_json(args.json, [t])
    return 0


if __name__ == "__main__":
    sys.exit(main())
