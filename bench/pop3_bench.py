#!/usr/bin/env python3
"""POP3 figures of issue 2, mailsrv and Dovecot side by side in one run.

1. Retrieval of a 500-message, ~12 MB maildrop (login, STAT, RETR every
   message, QUIT) with 1 client and with 4 concurrent clients (4 users, each
   with its own copy, since POP3 locks the maildrop): messages/s and MB/s,
   medians of several runs, the two servers interleaved run by run.
2. Opening a 100,000-message INBOX (connect, USER, PASS, first STAT answer):
   first open ever (no index yet, page cache dropped), warm (second login),
   cold (server restarted, page cache dropped, index present), server
   memory with the session open; plus the same login on an empty mailbox,
   which is the cost of authentication alone (Argon2id for both).

Run as root (page-cache drop, Dovecot): python3 bench/pop3_bench.py [--quick]
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import platform
import re
import socket
import sys
import time
from collections.abc import Callable

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import common  # noqa: E402
from common import MB, PASSWORD, Budget, Result, Table, log, median  # noqa: E402

RETR_USERS = ["bench1", "bench2", "bench3", "bench4"]


class POP3Error(Exception):
    pass


class POP3Client:
    """A minimal POP3 client on a raw socket: no per-line Python work while
    reading a RETR body, so the client costs the same for both servers."""

    def __init__(self, port: int, timeout: float) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = bytearray()
        self.received = 0
        self.expect_ok(self.line(), "greeting")

    def _fill(self) -> None:
        chunk = self.sock.recv(262144)
        if not chunk:
            raise POP3Error("connection closed by server")
        self.received += len(chunk)
        self.buf += chunk

    def line(self) -> bytes:
        while True:
            i = self.buf.find(b"\r\n")
            if i >= 0:
                out = bytes(self.buf[:i])
                del self.buf[: i + 2]
                return out
            if len(self.buf) > 65536:
                raise POP3Error("over-long response line")
            self._fill()

    @staticmethod
    def expect_ok(reply: bytes, what: str) -> bytes:
        if not reply.startswith(b"+OK"):
            raise POP3Error(f"{what}: {reply.decode(errors='replace')[:120]}")
        return reply

    def command(self, cmd: str) -> bytes:
        self.sock.sendall(cmd.encode() + b"\r\n")
        return self.expect_ok(self.line(), cmd.split()[0])

    def multiline(self, cmd: str) -> int:
        """Send a multi-line command; return the body octets (unstuffed
        count not needed: both servers send the same stuffing)."""
        self.command(cmd)
        pos = 0
        while True:
            if pos == 0 and self.buf[:3] == b".\r\n":
                del self.buf[:3]
                return 0
            i = self.buf.find(b"\r\n.\r\n", pos)
            if i >= 0:
                del self.buf[: i + 5]
                return i + 2
            pos = max(0, len(self.buf) - 4)
            self._fill()

    def login(self, user: str, password: str) -> None:
        self.command(f"USER {user}")
        self.command(f"PASS {password}")

    def stat(self) -> tuple[int, int]:
        reply = self.command("STAT")
        m = re.match(rb"\+OK (\d+) (\d+)", reply)
        if not m:
            raise POP3Error(f"bad STAT reply: {reply[:80]!r}")
        return int(m.group(1)), int(m.group(2))

    def quit(self) -> None:
        try:
            self.command("QUIT")
        finally:
            self.close()

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass


def retrieve_all(port: int, user: str, timeout: float, barrier=None) -> tuple[int, int, float, float, float]:
    """One full POP3 download session: (messages, STAT octets, start, end,
    connect time),
    timed from STAT to the QUIT answer.  Login is outside the timing (its
    Argon2id cost is reported by the open test) and before the barrier."""
    t_conn = time.monotonic()
    c = POP3Client(port, timeout)
    try:
        c.login(user, PASSWORD)
        if barrier is not None:
            barrier.wait(timeout)
        t0 = time.monotonic()
        count, octets = c.stat()
        for n in range(1, count + 1):
            c.multiline(f"RETR {n}")
        c.quit()
        t1 = time.monotonic()
    finally:
        c.close()
    return count, octets, t0, t1, t_conn


def _child(port: int, user: str, timeout: float, barrier, queue) -> None:
    try:
        count, octets, t0, t1, _ = retrieve_all(port, user, timeout, barrier)
        queue.put((user, t0, t1, count, octets, None))
    except Exception as e:
        try:
            barrier.abort()
        except Exception:
            pass
        queue.put((user, 0.0, 0.0, 0, 0, repr(e)))


def retrieve_parallel(port: int, users: list[str], timeout: float) -> tuple[int, int, float]:
    """Each user downloads its maildrop in its own process (no GIL between
    clients); aggregate (messages, octets, wall seconds)."""
    ctx = multiprocessing.get_context("fork")
    barrier = ctx.Barrier(len(users))
    queue = ctx.Queue()
    procs = [ctx.Process(target=_child, args=(port, u, timeout, barrier, queue), daemon=True) for u in users]
    for p in procs:
        p.start()
    results = []
    try:
        deadline = time.monotonic() + timeout + 10
        for _ in users:
            results.append(queue.get(timeout=max(1.0, deadline - time.monotonic())))
    finally:
        for p in procs:
            p.join(timeout=5)
            if p.is_alive():
                p.terminate()
                p.join(timeout=5)
    errors = [r[5] for r in results if r[5]]
    if errors:
        raise POP3Error(errors[0])
    wall = max(r[2] for r in results) - min(r[1] for r in results)
    return sum(r[3] for r in results), sum(r[4] for r in results), wall


def open_stat(port: int, user: str, timeout: float) -> tuple[float, tuple[int, int], POP3Client]:
    """connect + USER + PASS + STAT; the session is left open (for RSS)."""
    t0 = time.monotonic()
    c = POP3Client(port, timeout)
    try:
        c.login(user, PASSWORD)
        st = c.stat()
    except Exception:
        c.close()
        raise
    return time.monotonic() - t0, st, c


def err(e: Exception) -> Result:
    return Result(error=str(e) or repr(e))


def bench_retrieval(servers: list[common.BenchServer], runs: int, expect: tuple[int, int], budget: Budget,
                    tables: list[Table]) -> None:
    """Both servers up at once, runs interleaved so background load hits both."""
    per: dict[str, dict[str, list[tuple[int, int, float]]]] = {
        s.label: {"1": [], "4": [], "1+login": []} for s in servers}
    errors: dict[str, dict[str, str]] = {s.label: {} for s in servers}
    notes: dict[str, str] = {}
    for s in servers:  # warm-up: builds each server's index, fills the page cache
        retrieval_warm_up(s, expect, budget, errors[s.label], notes)
    for r in range(runs):
        if budget.left() < 30:
            log("time budget exhausted, stopping retrieval runs")
            break
        for s in servers:
            for mode in ("1", "4"):
                if mode not in errors[s.label]:
                    retrieval_run(s, mode, r, budget, per[s.label], errors[s.label])
    t = Table(f"POP3 retrieval: {expect[0]} messages, {expect[1] / MB:.1f} MB maildrop per user "
              f"(timed STAT, RETR all, QUIT after login; median of {runs} runs; MB = 10^6 octets)")

    def fig(label: str, mode: str, kind: str) -> Result:
        if mode[0] in errors.get(label, {}):
            return Result(error=errors[label][mode[0]])
        vals = per.get(label, {}).get(mode, [])
        if not vals:
            return Result()
        if kind == "msg":
            v = median(c / s for c, _, s in vals)
            return Result(v, note=notes.get(label, "") if mode == "1" else "")
        rates = sorted(o / s / MB for _, o, s in vals)
        return Result(median(rates), note=f"runs {rates[0]:.1f} .. {rates[-1]:.1f} MB/s")

    for mode, name in (("1", "1 client"), ("4", "4 clients (aggregate)")):
        t.add(f"{name}: messages/s", "msg/s", True, fig("mailsrv", mode, "msg"), fig("dovecot", mode, "msg"))
        t.add(f"{name}: MB/s", "MB/s", True, fig("mailsrv", mode, "mb"), fig("dovecot", mode, "mb"))
    t.add("1 client, timed from connect (incl. Argon2id login): MB/s", "MB/s", True,
          fig("mailsrv", "1+login", "mb"), fig("dovecot", "1+login", "mb"))
    tables.append(t)


def retrieval_warm_up(s: common.BenchServer, expect: tuple[int, int], budget: Budget, errors: dict[str, str],
                      notes: dict[str, str]) -> None:
    """Retrieve every maildrop once, untimed; a failure marks both modes failed."""
    for u in RETR_USERS:
        try:
            count, octets, _, _, _ = retrieve_all(s.ports["pop3"], u, budget.timeout(120))
            if (count, octets) != expect:
                notes[s.label] = f"STAT says {count} msgs/{octets} octets, seed has {expect[0]}/{expect[1]}"
        except Exception as e:
            errors["1"] = errors["4"] = str(e)
            break


def retrieval_run(s: common.BenchServer, mode: str, r: int, budget: Budget,
                  per: dict[str, list[tuple[int, int, float]]], errors: dict[str, str]) -> None:
    """One timed run of ``mode`` ("1" client or "4" in parallel) into ``per``."""
    try:
        if mode == "1":
            count, octets, t0, t1, tc = retrieve_all(s.ports["pop3"], RETR_USERS[0], budget.timeout(120))
            res = (count, octets, t1 - t0)
            per["1+login"].append((count, octets, t1 - tc))
        else:
            res = retrieve_parallel(s.ports["pop3"], RETR_USERS, budget.timeout(120))
        per[mode].append(res)
        log(f"run {r + 1}: {s.label} {mode} client(s): {res[0]} msgs {res[1] / MB:.1f} MB in {res[2]:.3f}s")
    except Exception as e:
        errors[mode] = str(e) or repr(e)
        log(f"{s.label} {mode} client(s) failed: {e!r}")


def bench_open(server: common.BenchServer, others: list[common.BenchServer], big_user: str,
               expect: tuple[int, int], budget: Budget, can_drop: bool) -> dict[str, Result]:
    """Open-time figures for one server, alone on the machine."""
    out: dict[str, Result] = {}
    port_timeout = budget.timeout(180)
    for o in others:
        o.stop()
    server.stop()
    common.drop_caches()
    server.start()
    port = server.ports["pop3"]

    def timed(key: str, user: str) -> POP3Client | None:
        try:
            secs, st, conn = open_stat(port, user, budget.timeout(port_timeout))
            note = "" if user != big_user or st == expect else f"STAT {st[0]}/{st[1]}, seed {expect[0]}/{expect[1]}"
            out[key] = Result(secs * 1000, note=note)
            log(f"{server.label} {key}: {secs * 1000:.1f} ms STAT={st}")
            return conn
        except Exception as e:
            out[key] = err(e)
            log(f"{server.label} {key} failed: {e!r}")
            return None

    c = timed("first", big_user)
    if c:
        c.quit()
    conn = warm_opens(timed, out, big_user)
    if conn is not None:
        rss, pss = server.memory()
        out["rss"], out["pss"] = Result(rss), Result(pss)
        conn.quit()
    c = timed("empty", "empty")
    if c:
        c.quit()
    # Restarted twice: the first restart still finds the uid list the first
    # open wrote moments before (too fresh to trust an index snapshot of); the
    # second is what a server restarted on an old mailbox sees (steady state).
    for key in ("cold", "cold2"):
        if budget.left() <= 30:
            break
        server.stop()
        common.drop_caches()
        server.start()
        port = server.ports["pop3"]
        c = timed(key, big_user)
        if c:
            c.quit()
    server.stop()
    if not can_drop:
        for k in ("first", "cold", "cold2"):
            if k in out:
                out[k].note = (out[k].note + " page cache NOT dropped (not root, or MAILSRV_BENCH_NO_DROP)").strip()
    return out


def warm_opens(timed: Callable[[str, str], POP3Client | None], out: dict[str, Result],
               big_user: str) -> POP3Client | None:
    """Three more logins (median into out["warm"]); the last stays open."""
    warm, conn = [], None
    for i in range(3):
        conn = timed("warm", big_user)
        if conn is None:
            break
        warm.append(out["warm"].value)
        if i < 2:
            conn.quit()
    if warm:
        out["warm"] = Result(median(warm), note=out["warm"].note)
    return conn


def make_servers(args: argparse.Namespace, users: list[tuple[str, str | None]]
                 ) -> tuple[list[common.BenchServer], dict[str, str]]:
    """The servers to compare, their users added; setup failures by label."""
    servers: list[common.BenchServer] = []
    setup_errors: dict[str, str] = {}
    if not args.skip_dovecot:
        d = common.Dovecot(os.path.join(common.WORK, "dovecot-mail"))
        d.reset()
        for u, s in users:
            d.add_user(u, s)
        servers.append(d)
    if not args.skip_mailsrv:
        m = common.Mailsrv(os.path.join(common.WORK, "mailsrv-data"), kinds=("pop3",))
        try:
            m.reset()
            for u, s in users:
                m.add_user(u, s)
            servers.append(m)
        except Exception as e:
            setup_errors["mailsrv"] = str(e)
            log(f"mailsrv setup failed: {e}")
    return servers, setup_errors


def open_table(opens: dict[str, dict[str, Result]], big_expect: tuple[int, int]) -> Table:
    t = Table(f"POP3 open of a {big_expect[0]:,}-message INBOX ({big_expect[1] / MB:.0f} MB): "
              "connect + USER + PASS + first STAT answer")

    def g(label: str, key: str) -> Result:
        return opens.get(label, {}).get(key, Result())

    rows = [("empty mailbox (authentication cost alone)", "empty", "ms"),
            ("first open ever (no index; server fresh, page cache dropped)", "first", "ms"),
            ("warm (second login, median of 3)", "warm", "ms"),
            ("cold (server restarted, page cache dropped, index present)", "cold", "ms"),
            ("cold again (second restart: steady state)", "cold2", "ms"),
            ("server RSS, all processes, session open", "rss", "MB"),
            ("server PSS, all processes, session open", "pss", "MB")]
    for name, key, unit in rows:
        t.add(name, unit, False, g("mailsrv", key), g("dovecot", key))
    return t


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="small sizes: a smoke run under 2 minutes")
    ap.add_argument("--skip-dovecot", action="store_true")
    ap.add_argument("--skip-mailsrv", action="store_true")
    ap.add_argument("--runs", type=int, default=None, help="timed retrieval runs (default 7, quick 3)")
    ap.add_argument("--big", type=int, default=None, help="messages in the open-time INBOX (default 100000)")
    ap.add_argument("--json", help="also write the figures as JSON here")
    ap.add_argument("--budget", type=float, default=None, help="seconds for the whole run (default 540, quick 110)")
    args = ap.parse_args()

    budget = Budget(args.budget or (110 if args.quick else 540))
    runs = args.runs or (3 if args.quick else 7)
    drop_n, drop_bytes = (100, 2_400_000) if args.quick else (500, 12_000_000)
    big_n = args.big or (5_000 if args.quick else 100_000)

    os.makedirs(common.WORK, exist_ok=True)
    corpus = common.Corpus()
    drop_seed = common.seed(corpus, f"pop3drop{drop_n}", common.spec_for_total(corpus, drop_n, drop_bytes))
    big_seed = common.seed(corpus, f"inbox{big_n}", common.inbox_spec(corpus, big_n))
    drop_expect, big_expect = common.seed_octets(drop_seed), common.seed_octets(big_seed)
    can_drop = common.drop_caches()

    users: list[tuple[str, str | None]] = [(u, drop_seed) for u in RETR_USERS] + [("big", big_seed), ("empty", None)]
    servers, setup_errors = make_servers(args, users)

    print(f"# pop3_bench {'--quick ' if args.quick else ''}{time.strftime('%Y-%m-%d %H:%M:%S')} "
          f"host={platform.node()} cpus={os.cpu_count()} load={os.getloadavg()[0]:.2f} "
          f"python={platform.python_version()} page-cache-drop={'yes' if can_drop else 'no'}")
    print("# passwords: Argon2id m=64MiB t=3 p=1 for both servers; Dovecot 2.3 reference instance "
          f"(private, {common.DOVECOT_BASE})")
    tables: list[Table] = []
    try:
        started = []
        for s in servers:
            try:
                s.start()
                started.append(s)
            except Exception as e:
                setup_errors[s.label] = str(e)
                log(f"{s.label} failed to start: {e}")
        bench_retrieval(started, runs, drop_expect, budget, tables)
        for label, e in setup_errors.items():
            for row in tables[-1].rows:
                row[3][label] = Result(error=e)
        opens: dict[str, dict[str, Result]] = {}
        for s in started:
            if budget.left() < 20:
                log(f"time budget exhausted before the open test of {s.label}")
                break
            try:
                opens[s.label] = bench_open(s, [o for o in started if o is not s], "big", big_expect, budget, can_drop)
            except Exception as e:
                opens[s.label] = {k: err(e) for k in ("first", "warm", "cold", "cold2", "empty", "rss", "pss")}
            finally:
                s.stop()
        for label, e in setup_errors.items():
            opens[label] = {k: Result(error=e) for k in ("first", "warm", "cold", "cold2", "empty", "rss", "pss")}
        tables.append(open_table(opens, big_expect))
    finally:
        for s in servers:
            s.stop()
    for t in tables:
        print()
        print(t.render())
    print(f"\n# load average at end: {os.getloadavg()[0]:.2f} (other work on the machine skews figures)")
    common.write_json(args.json, tables)
    return 0


if __name__ == "__main__":
    sys.exit(main())
