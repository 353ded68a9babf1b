"""Quota accounting cost per delivery against mailbox size (issue 12).

For each size N, a Maildir with N messages (empty files named with their
``S=`` size, as Dovecot names them) is made once; the first use counts it
(the one re-count), then D deliveries are written with ``mailsrv.store.maildir.deliver``
and accounted with ``QuotaTracker.change(..., check=True)``.  Prints the
re-count time and the accounting time per delivery: the latter must not grow
with N (it reads at most a 4 KiB maildirsize and appends one line).

    python bench/quota_cost.py [--sizes 1000,100000] [--deliveries 2000]
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time

from mailsrv.store import maildir
from mailsrv.store.quota import QuotaTracker, parse_rules

MSG = b"From: a@example.org\r\nSubject: bench\r\n\r\n" + b"x" * 2000 + b"\r\n"


def make(root: str, n: int) -> None:
    for d in ("cur", "new", "tmp"):
        os.makedirs(os.path.join(root, d), exist_ok=True)
    cur = os.path.join(root, "cur")
    for i in range(n):
        open(os.path.join(cur, f"1700000000.M{i}P1.bench,S=4000,W=4100:2,S"), "wb").close()


def run(n: int, deliveries: int) -> tuple[float, float, float]:
    base = tempfile.mkdtemp(prefix="mailsrv-quota-bench-")
    try:
        root = os.path.join(base, "Maildir")
        make(root, n)
        rules = parse_rules(["*:storage=100G", "*:messages=10000000"])
        t = QuotaTracker(root, "bench", lambda: rules)
        t0 = time.perf_counter()
        t.usage()  # the one re-count
        recount = time.perf_counter() - t0
        acct = write = 0.0
        for _ in range(deliveries):
            t1 = time.perf_counter()
            maildir.deliver(root, MSG)
            t2 = time.perf_counter()
            t.change("INBOX", len(MSG), 1, check=True)
            t3 = time.perf_counter()
            write += t2 - t1
            acct += t3 - t2
        assert t.usage() == (n * 4000 + deliveries * len(MSG), n + deliveries)
        assert t.recalcs == 1, t.recalcs
        return recount, acct / deliveries, write / deliveries
    finally:
        shutil.rmtree(base, ignore_errors=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="1000,100000")
    ap.add_argument("--deliveries", type=int, default=2000)
    args = ap.parse_args()
    print(f"{'messages':>10} {'recount ms':>11} {'quota us/delivery':>18} {'write us/delivery':>18}")
    for n in (int(s) for s in args.sizes.split(",")):
        recount, acct, write = run(n, args.deliveries)
        print(f"{n:>10} {recount * 1e3:>11.1f} {acct * 1e6:>18.1f} {write * 1e6:>18.1f}")


if __name__ == "__main__":
    main()
