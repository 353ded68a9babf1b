#!/usr/bin/env python3
"""How long does opening a 100,000-message INBOX take?

Builds a Maildir in a temp dir from the reference corpus
(/work/shared/reference/make-mbox.py): 1,000 real message files, each hard
linked under 100 Dovecot-style names (``<time>.M<usec>P<pid>Q<n>.<host>,S=,W=``
plus a realistic flag mix), so the folder has 100k entries on ~10 MB of disk.
Then measures, with a fresh Store each time (what a POP3 login or IMAP
SELECT costs when no session has the folder open):

- first open (UIDs assigned, dovecot-uidlist written),
- warm open (median), cold open (median, page cache dropped; needs root),
  both with the folder's snapshot (mailsrv-index.sqlite) in use and, for
  comparison, with it disabled (a full listing + uid list parse),
- STAT-like work after open (messages() + sizes + UIDLs),
- APPEND + refresh() on the open folder (own changes must not cost a rescan),
- process RSS.

Usage: python bench/store_open.py [-n 100000] [--reps 5] [--keep DIR]
(MAILSRV_BENCH_NO_DROP=1 skips the cold opens, which drop the whole
machine's page cache.)
"""

from __future__ import annotations

import argparse
import mailbox
import os
import random
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

from twisted.internet import defer, task

from mailsrv.store import Store
from mailsrv.store.crlf import to_crlf

MAKE_MBOX = "/work/shared/reference/make-mbox.py"
FLAG_MIX = ["2,S"] * 60 + ["2,"] * 20 + ["2,RS"] * 10 + ["2,FS"] * 5 + ["2,ST"] * 2 + ["2,DS"] * 3


def rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def corpus(workdir: str, count: int) -> list:
    path = os.path.join(workdir, "corpus.mbox")
    subprocess.run([sys.executable, MAKE_MBOX, "-n", str(count), "-o", path], check=True,
                   stderr=subprocess.DEVNULL, timeout=300)
    msgs = [m.as_bytes() for m in mailbox.mbox(path)]
    os.unlink(path)
    return msgs


def build(maildir: str, n: int, msgs: list) -> None:
    for sub in ("cur", "new", "tmp"):
        os.makedirs(os.path.join(maildir, sub), exist_ok=True)
    originals = []
    for i, data in enumerate(msgs):
        p = os.path.join(maildir, "tmp", f"orig{i}")
        with open(p, "wb") as f:
            f.write(data)
        originals.append((p, len(data), len(to_crlf(data))))
    rnd = random.Random(42)
    t0 = 1_600_000_000
    for i in range(n):
        src, size, vsize = originals[i % len(originals)]
        t = t0 + i * 300
        name = f"{t}.M{rnd.randrange(10**6):06d}P{rnd.randrange(1000, 60000)}Q{i}.mail.example.com," \
               f"S={size},W={vsize}:{rnd.choice(FLAG_MIX)}"
        os.link(src, os.path.join(maildir, "cur", name))
    for p, _s, _v in originals:
        os.unlink(p)


def drop_caches() -> bool:
    """sync + drop the page cache (root only); False when not possible or
    not wanted (MAILSRV_BENCH_NO_DROP=1: a machine shared with other work)."""
    if os.geteuid() != 0 or os.environ.get("MAILSRV_BENCH_NO_DROP"):
        return False
    try:
        os.sync()
        with open("/proc/sys/vm/drop_caches", "w") as f:
            f.write("3\n")
        return True
    except OSError:
        return False


@defer.inlineCallbacks
def open_once(data_dir: str, use_index: bool = True, expect_index=None):
    """Open with a fresh Store (a restarted server); ``expect_index``: fail
    loudly if the snapshot was (not) used, so a figure is what it says."""
    store = Store(data_dir, use_index=use_index)
    t = time.perf_counter()
    folder = yield store.account("bench").open_folder("INBOX")
    opened = time.perf_counter() - t
    if expect_index is not None and folder.opened_from_index != expect_index:
        raise RuntimeError(f"snapshot used: {folder.opened_from_index}, expected {expect_index}")
    t = time.perf_counter()
    infos = folder.messages()
    total = sum(m.size for m in infos)
    uidls = [folder.pop3_uidl(m.uid) for m in infos]
    stat = time.perf_counter() - t
    store.close()
    yield folder.snapshot_idle()
    return opened, stat, len(infos), total, len(uidls), folder


def age(maildir: str, seconds: float = 3600) -> None:
    """The bench built cur/ moments ago; a real folder's mtimes are older
    (a snapshot of a view with too recent mtimes is never written)."""
    t = time.time() - seconds
    for name in ("new", "cur", "dovecot-uidlist"):
        os.utime(os.path.join(maildir, name), (t, t))


def median_line(label: str, values: list) -> str:
    return (f"{label}: median {statistics.median(values):.3f}s over {len(values)} "
            f"(min {min(values):.3f}s, max {max(values):.3f}s)")


@defer.inlineCallbacks
def own_changes(data_dir: str, count: int):
    """What our own change costs the next refresh (it should be a stat,
    not a rescan of 100k names)."""
    store = Store(data_dir)  # opened from the snapshot of a folder whose mtimes main() aged
    folder = yield store.account("bench").open_folder("INBOX")
    scans = folder.scans
    appends, refreshes = [], []
    for i in range(count):
        t = time.perf_counter()
        yield folder.append(b"Subject: bench %d\r\n\r\nbody\r\n" % i, ["\\Seen"])
        appends.append(time.perf_counter() - t)
        t = time.perf_counter()
        yield folder.refresh()
        refreshes.append(time.perf_counter() - t)
    yield folder.expunge(folder.uids()[-count:])
    store.close()
    return appends, refreshes, folder.scans - scans


@defer.inlineCallbacks
def main(reactor, args):
    deadline = time.monotonic() + args.max_seconds
    work = args.keep or tempfile.mkdtemp(prefix="mailsrv-bench-")
    data_dir = os.path.join(work, "data")
    maildir = os.path.join(data_dir, "bench", "Maildir")
    try:
        if not os.path.isdir(os.path.join(maildir, "cur")):
            t = time.perf_counter()
            msgs = corpus(work, min(1000, args.n))
            build(maildir, args.n, msgs)
            print(f"built {args.n} messages ({len(msgs)} distinct, hard linked) "
                  f"in {time.perf_counter() - t:.1f}s under {maildir}")
        rss0 = rss_mb()
        first, stat, count, total, _, folder = yield open_once(data_dir)
        print(f"first open (assign UIDs, write dovecot-uidlist): {first:.2f}s  "
              f"[{count} messages, {total / 2**20:.0f} MiB]")
        print(f"RSS: {rss_mb():.0f} MiB with the folder loaded "
              f"(+{rss_mb() - rss0:.0f} MiB), peak {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB")
        del folder
        age(maildir)
        yield open_once(data_dir, expect_index=False)  # scans and writes the snapshot
        warm, stats, scan_warm = [], [], []
        for _ in range(args.reps):
            if time.monotonic() > deadline:
                break
            t_open, t_stat, *_rest = yield open_once(data_dir, expect_index=True)
            warm.append(t_open)
            stats.append(t_stat)
            scan_warm.append((yield open_once(data_dir, use_index=False))[0])
        print(median_line("warm open with index", warm)
              + f"; messages()+sizes+UIDLs after open: median {statistics.median(stats) * 1000:.0f} ms")
        print(median_line("warm open without index (full scan)", scan_warm))
        appends, refreshes, scans = yield own_changes(data_dir, 20)
        print(f"APPEND then refresh() on the open folder, 20 times: append median "
              f"{statistics.median(appends) * 1000:.1f} ms, refresh median "
              f"{statistics.median(refreshes) * 1000:.2f} ms, full rescans {scans}")
        age(maildir)
        yield open_once(data_dir, expect_index=False)  # own_changes left a view to rescan
        cold, cold_scan = [], []
        for _ in range(max(1, args.reps // 2)):
            if time.monotonic() > deadline or not drop_caches():
                break
            t_open, *_rest = yield open_once(data_dir, expect_index=True)
            cold.append(t_open)
            if not drop_caches():
                break
            t_open, *_rest = yield open_once(data_dir, use_index=False)
            cold_scan.append(t_open)
        if cold:
            print(median_line("cold open with index (new Store, page cache dropped)", cold))
            print(median_line("cold open without index (full scan, page cache dropped)", cold_scan))
        else:
            print("cold open: not measured (dropping the page cache needs root and no MAILSRV_BENCH_NO_DROP)")
        print(f"peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB")
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("-n", type=int, default=100_000, help="messages in the INBOX")
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--keep", help="build into / reuse this directory and keep it")
    ap.add_argument("--max-seconds", type=float, default=240, help="stop measuring after this long")
    task.react(main, [ap.parse_args()])
