"""The PostgreSQL store on its own (no protocol in front), in a throw-away
cluster with fsync on, beside the Maildir store where a figure has a
Maildir counterpart:

- delivery rate: 8 concurrent deliveries of 10 kB messages, each to its
  own user, acknowledged only once durable (Maildir: fsync + rename;
  PostgreSQL: COMMIT), for ``--seconds`` each;
- cross-process notification latency with ``--idlers`` idle sessions: one
  store (process) holds that many accounts' INBOX open with a listener,
  another delivers to random ones of them; from the delivery's
  acknowledgement to the listener being told, p50/p99;
- database size per 1,000 messages, distinct and all alike (one message
  to 1,000 recipients);
- opening a ``--folder``-message INBOX from a fresh store (a POP3 login or
  IMAP SELECT with no session on it).

    python bench/pg_store.py [--seconds 3] [--idlers 1000] [--folder 20000]
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import statistics
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
if REPO not in sys.path:
    sys.path.insert(0, REPO)

from twisted.internet import defer, task  # noqa: E402

from mailsrv.store.pg.cluster import TempCluster  # noqa: E402
from mailsrv.store.pg.store import PgStore  # noqa: E402

SIZE = 10 * 1024


def message(i: int, size: int = SIZE) -> bytes:
    head = b"From: bench@example.org\r\nTo: u@example.org\r\nSubject: bench %d\r\nMessage-ID: <%d@b>\r\n\r\n" % (i, i)
    line = b"All work and no play makes a benchmark a dull tool.\r\n"
    return head + line * ((size - len(head)) // len(line))


async def deliver_rate(store, users: list[str], seconds: float) -> float:
    """Deliveries per second, ``len(users)`` at a time, each to its user."""
    accounts = []
    for u in users:
        a = store.account(u)
        if hasattr(store, "open_account"):
            a = await store.open_account(u)
        accounts.append(a)
    done = 0
    deadline = time.monotonic() + seconds
    start = time.monotonic()

    async def client(k: int) -> None:
        nonlocal done
        i = 0
        while time.monotonic() < deadline:
            await accounts[k].deliver("INBOX", message(k * 1_000_000 + i))
            done += 1
            i += 1

    await defer.gatherResults([defer.ensureDeferred(client(k)) for k in range(len(accounts))])
    return done / (time.monotonic() - start)


async def notify_latency(dsn: str, idlers: int, samples: int, reactor) -> tuple[float, float, float]:
    watcher = PgStore(dsn, reactor, pool_size=4)
    sender = PgStore(dsn, reactor, pool_size=4)
    try:
        told: dict[str, float] = {}

        class Listener:
            def __init__(self, user: str) -> None:
                self.user = user

            def messages_added(self, folder, uids) -> None:
                told[self.user] = time.monotonic()

            def flags_changed(self, folder, uids) -> None:
                pass

            def messages_expunged(self, folder, uids) -> None:
                pass

        users = [f"idle{i}" for i in range(idlers)]
        for batch in range(0, idlers, 50):
            accts = await defer.gatherResults([watcher.open_account(u) for u in users[batch:batch + 50]])
            folders = await defer.gatherResults([a.open_folder("INBOX") for a in accts])
            for u, f in zip(users[batch:batch + 50], folders, strict=True):
                f.add_listener(Listener(u))
        while not watcher.listener.listening:
            await task.deferLater(reactor, 0.01, lambda: None)
        lat = []
        rng = random.Random(7)
        for i in range(samples):
            u = rng.choice(users)
            told.pop(u, None)
            a = await sender.open_account(u)
            await a.deliver("INBOX", message(i, 2000))
            t0 = time.monotonic()
            while u not in told:
                if time.monotonic() - t0 > 5:
                    raise RuntimeError("notification lost")
                await task.deferLater(reactor, 0.0005, lambda: None)
            lat.append(told[u] - t0)
            await task.deferLater(reactor, 0.01, lambda: None)
        lat.sort()
        return statistics.median(lat), lat[int(len(lat) * 0.99) - 1], lat[-1]
    finally:
        await sender.close()
        await watcher.close()


def db_size(dsn: str) -> int:
    import psycopg

    with psycopg.connect(dsn, autocommit=True) as c:
        c.execute("CHECKPOINT")
        return int(c.execute("SELECT pg_database_size(current_database())").fetchone()[0])


async def size_per_1000(dsn: str, reactor) -> tuple[float, float]:
    store = PgStore(dsn, reactor)
    try:
        before = db_size(dsn)
        a = await store.open_account("size-distinct")
        await defer.gatherResults([a.deliver("INBOX", message(10_000_000 + i)) for i in range(1000)])
        mid = db_size(dsn)
        same = message(42)
        for batch in range(0, 1000, 100):
            accts = await defer.gatherResults([store.open_account(f"size-r{i}") for i in range(batch, batch + 100)])
            await defer.gatherResults([x.deliver("INBOX", same) for x in accts])
        after = db_size(dsn)
        return (mid - before) / 1e6, (after - mid) / 1e6
    finally:
        await store.close()


async def open_folder(dsn: str, n: int, reactor) -> tuple[float, float]:
    """Fill an INBOX with n messages (n/100 distinct bodies), then open it
    from a fresh store: seconds (median of 3) and messages/s."""
    filler = PgStore(dsn, reactor)
    a = await filler.open_account("big")
    inbox = await a.open_folder("INBOX")
    bodies = [message(i, 3000) for i in range(max(1, n // 100))]
    for start in range(0, n, 500):
        await defer.gatherResults([inbox.append(bodies[i % len(bodies)], ["\\Seen"] if i % 3 else [])
                                   for i in range(start, min(n, start + 500))])
    await filler.close()
    times = []
    for _ in range(3):
        s = PgStore(dsn, reactor)
        t = time.monotonic()
        f = await (await s.open_account("big")).open_folder("INBOX")
        assert len(f.messages()) == n
        times.append(time.monotonic() - t)
        await s.close()
    m = statistics.median(times)
    return m, n / m


async def maildir_rate(users: list[str], seconds: float) -> float:
    from mailsrv.store import Store

    data = tempfile.mkdtemp(prefix="mailsrv-bench-maildir-")
    try:
        store = Store(data)
        rate = await deliver_rate(store, users, seconds)
        await defer.maybeDeferred(store.close)
        return rate
    finally:
        shutil.rmtree(data, ignore_errors=True)


async def main(reactor, args) -> None:
    users = [f"bench{i}" for i in range(8)]
    with TempCluster(fsync=True) as cluster:
        print(f"PostgreSQL {cluster.bindir}, fsync on; {os.cpu_count()} CPUs")
        md = await maildir_rate(users, args.seconds)
        store = PgStore(cluster.dsn, reactor)
        pg = await deliver_rate(store, users, args.seconds)
        await store.close()
        print(f"delivery, 8 concurrent, 10 kB:  Maildir {md:7.0f}/s   PostgreSQL {pg:7.0f}/s")
        p50, p99, worst = await notify_latency(cluster.dsn, args.idlers, args.samples, reactor)
        print(f"cross-process notification, {args.idlers} idle sessions: p50 {p50 * 1e3:.1f} ms  "
              f"p99 {p99 * 1e3:.1f} ms  max {worst * 1e3:.1f} ms")
        distinct, alike = await size_per_1000(cluster.dsn, reactor)
        print(f"database size per 1,000 10 kB messages: distinct {distinct:.1f} MB, one message to 1,000 "
              f"recipients {alike:.1f} MB")
        secs, rate = await open_folder(cluster.dsn, args.folder, reactor)
        print(f"open a {args.folder}-message INBOX from a fresh store: {secs * 1e3:.0f} ms ({rate:,.0f} messages/s)")


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--idlers", type=int, default=1000)
    ap.add_argument("--samples", type=int, default=200)
    ap.add_argument("--folder", type=int, default=20000)
    task.react(lambda r: defer.ensureDeferred(main(r, ap.parse_args())))
