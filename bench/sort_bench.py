#!/usr/bin/env python3
"""SORT and THREAD figures of issue 9, mailsrv and Dovecot side by side in
one run, on the same messages (hardlinked copies of one seed, see common).

For an N-message INBOX (default 100,000; --sizes), per server:

  first:  server fresh on a copy with no index or cache, page cache dropped:
          each command once, in the order below (the first one pays for
          reading the headers of every message; what it caches may serve
          the later ones)
  cold:   server restarted, page cache dropped, index/cache on disk:
          each command once
  warm:   median of --runs after the cold run
  new:    once more after one new message was appended (what was kept
          for the old set of messages has to be brought up to date)
  memory: server RSS/PSS (all processes) with the session still open

Commands: UID SORT (DATE) UTF-8 ALL, UID SORT (SUBJECT), UID SORT (FROM),
UID SORT (SIZE), UID THREAD REFERENCES UTF-8 ALL.  The answers of the two
servers are compared too (same order of UIDs?), since a fast wrong answer
is no answer.

Run as root for the page-cache drop (MAILSRV_BENCH_NO_DROP=1 skips it on a
shared machine):  python3 bench/sort_bench.py [--sizes 10000] [--runs 3]
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import common  # noqa: E402
from common import MB, Budget, Result, Table, log, median  # noqa: E402
from imap_bench import Reply, Session  # noqa: E402

COMMANDS = [
    ("sort_date", "UID SORT (DATE) UTF-8 ALL", "UID SORT (DATE)"),
    ("sort_subject", "UID SORT (SUBJECT) UTF-8 ALL", "UID SORT (SUBJECT)"),
    ("sort_from", "UID SORT (FROM) UTF-8 ALL", "UID SORT (FROM)"),
    ("sort_size", "UID SORT (SIZE) UTF-8 ALL", "UID SORT (SIZE)"),
    ("thread_refs", "UID THREAD REFERENCES UTF-8 ALL", "UID THREAD REFERENCES"),
]
PHASES = ("first", "cold", "warm", "new")


def answer(r: Reply) -> bytes:
    """The untagged SORT/THREAD line of a kept reply (for the comparison)."""
    m = re.search(rb"(?m)^\* (?:SORT|THREAD)[^\r\n]*", r.data)
    return m.group(0) if m else b""


def run_phase(s: Session, when: str, runs: int, budget: Budget, out: dict[str, Result],
              answers: dict[str, bytes]) -> None:
    for key, cmd, _ in COMMANDS:
        if budget.left() < 5:
            out[f"{key}_{when}"] = Result(error="skipped: time budget")
            continue
        times: list[float] = []
        last: Reply | None = None
        for _ in range(runs if when == "warm" else 1):
            r = s.run(cmd, keep=True)
            last = r
            if not r.ok:
                break
            times.append(r.seconds * 1000)
        if last is None or not last.ok:
            out[f"{key}_{when}"] = Result(error=last.error() if last else "not run")
            continue
        out[f"{key}_{when}"] = Result(median(times))
        answers[key] = answer(last)
        log(f"{key} {when}: {median(times):.1f} ms")


def bench_server(server: common.BenchServer, budget: Budget, runs: int,
                 step_timeout: float) -> tuple[dict[str, Result], dict[str, bytes]]:
    out: dict[str, Result] = {}
    answers: dict[str, bytes] = {}
    server.stop()
    common.drop_caches()
    server.start()
    s = Session(server.ports["imap"], "inbox", budget, step_timeout)
    secs, error = s.login_select()
    if error:
        raise RuntimeError(error)
    run_phase(s, "first", 1, budget, out, answers)
    s.logout()
    server.stop()
    common.drop_caches()
    server.start()
    s = Session(server.ports["imap"], "inbox", budget, step_timeout)
    run_phase(s, "cold", 1, budget, out, answers)
    run_phase(s, "warm", runs, budget, out, answers)
    # one new message: what is remembered for the old set (rankings, THREAD
    # answers) no longer fits, each command pays its update once
    new = (b"Message-ID: <sortbench-new@example.org>\r\nSubject: Re: a new one\r\n"
           b"Date: Mon, 1 Jan 2024 00:00:00 +0000\r\nFrom: new@example.org\r\n\r\nnew\r\n")
    s.run("APPEND INBOX {%d+}\r\n%s" % (len(new), new.decode()))
    s.run("NOOP")
    run_phase(s, "new", 1, budget, out, answers)
    if s.conn is not None:
        rss, pss = server.memory()
        out["rss"], out["pss"] = Result(rss), Result(pss)
    s.logout()
    server.stop()
    return out, answers


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="100000", help="comma-separated INBOX sizes (default 100000)")
    ap.add_argument("--runs", type=int, default=3, help="timed warm runs per command (median)")
    ap.add_argument("--skip-dovecot", action="store_true")
    ap.add_argument("--skip-mailsrv", action="store_true")
    ap.add_argument("--json", help="also write the figures as JSON here")
    ap.add_argument("--budget", type=float, default=900, help="seconds for the whole run")
    args = ap.parse_args()

    budget = Budget(args.budget)
    # a private Dovecot base, so another benchmark's instance is never stopped by ours
    common.DOVECOT_BASE = os.environ.get("MAILSRV_BENCH_DOVECOT_BASE", "/tmp/dovecot-sort-bench")
    sizes = [int(x) for x in args.sizes.split(",")]
    os.makedirs(common.WORK, exist_ok=True)
    corpus = common.Corpus()
    seeds = {n: common.seed(corpus, f"inbox{n}", common.inbox_spec(corpus, n)) for n in sizes}
    can_drop = common.drop_caches()
    print(f"# sort_bench {time.strftime('%Y-%m-%d %H:%M:%S')} host={platform.node()} cpus={os.cpu_count()} "
          f"load={os.getloadavg()[0]:.2f} python={platform.python_version()} "
          f"page-cache-drop={'yes' if can_drop else 'no'}")
    print(f"# times in ms; warm = median of {args.runs}; Dovecot 2.3 reference ({common.DOVECOT_BASE})")
    dovecot = None if args.skip_dovecot else common.Dovecot(os.path.join(common.WORK, "dovecot-mail"))
    ours = None if args.skip_mailsrv else common.Mailsrv(os.path.join(common.WORK, "mailsrv-data"), kinds=("imap",))
    tables: list[Table] = []
    try:
        for n in sizes:
            results: dict[str, dict[str, Result]] = {}
            answers: dict[str, dict[str, bytes]] = {}
            step_timeout = 60 if n <= 20000 else 300
            for server in (dovecot, ours):
                if server is None:
                    continue
                log(f"--- {server.label}, {n} messages")
                try:
                    server.reset()
                    server.add_user("inbox", seeds[n])
                    results[server.label], answers[server.label] = bench_server(server, budget, args.runs,
                                                                                step_timeout)
                except Exception as e:  # noqa: BLE001  one server failing must not lose the other's figures
                    log(f"{server.label} failed: {e!r}")
                    results[server.label] = {}
                finally:
                    server.stop()
            t = Table(f"SORT/THREAD, {n:,}-message INBOX ({common.seed_octets(seeds[n])[1] / MB:.0f} MB)")
            for key, _, label in COMMANDS:
                for when in PHASES:
                    t.add(f"{label}, {when}", "ms", False, results.get("mailsrv", {}).get(f"{key}_{when}"),
                          results.get("dovecot", {}).get(f"{key}_{when}"))
            t.add("server RSS, all processes, session open", "MB", False,
                  results.get("mailsrv", {}).get("rss"), results.get("dovecot", {}).get("rss"))
            t.add("server PSS, all processes, session open", "MB", False,
                  results.get("mailsrv", {}).get("pss"), results.get("dovecot", {}).get("pss"))
            tables.append(t)
            print()
            print(t.render(), flush=True)
            if "mailsrv" in answers and "dovecot" in answers:
                for key, _, label in COMMANDS:
                    a, b = answers["mailsrv"].get(key), answers["dovecot"].get(key)
                    same = "same" if a == b else f"DIFFERENT ({len(a or b'')} vs {len(b or b'')} bytes)"
                    print(f"answer of {label}: {same}")
    finally:
        for server in (dovecot, ours):
            if server is not None:
                server.stop()
    print(f"\n# load average at end: {os.getloadavg()[0]:.2f} (other work on the machine skews figures)")
    common.write_json(args.json, tables)
    return 0


if __name__ == "__main__":
    sys.exit(main())
