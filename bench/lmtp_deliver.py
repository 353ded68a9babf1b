"""Delivery speed: LMTP (1 and 8 concurrent clients) and ``mailsrv deliver``,
against this machine's fsync rate measured in the same run.

Every figure is 10 KB messages, fsync-safe (each delivery is on disk before
it is acknowledged), the median of a few fixed-length runs.  The LMTP server
runs in its own process (``--serve``) on the real Maildir store.  Clients
keep one connection each and send MAIL/RCPT/DATA in a loop, as Postfix's
LMTP client does with connection caching; each client delivers
to its own user.  The whole script stays under two minutes.

    python bench/lmtp_deliver.py [--runs 3] [--seconds 2.5]
"""

from __future__ import annotations

import argparse
import io
import os
import shutil
import smtplib
import statistics
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
if REPO not in sys.path:
    sys.path.insert(0, REPO)

MSG_SIZE = 10 * 1024
USERS = [f"bench{i}" for i in range(8)]


def message(i: int) -> bytes:
    head = (b"From: bench@example.org\r\nTo: user@example.org\r\nSubject: bench %d\r\n"
            b"Message-ID: <%d@bench>\r\n\r\n" % (i, i))
    line = b"The quick brown fox jumps over the lazy dog, again and again.\r\n"
    body = (line * (MSG_SIZE // len(line) + 1))[: MSG_SIZE - len(head) - 2] + b"\r\n"
    return head + body


# -- the server process ---------------------------------------------------------


def serve(data_dir: str) -> None:
    from twisted.internet import reactor

    from mailsrv.config import Config
    from mailsrv.lmtp import LMTPFactory
    from mailsrv.store import Store

    store, kind = Store(data_dir), "real store (mailsrv.store.Store)"
    factory = LMTPFactory(store, Config(data_dir=data_dir), lambda name: name in USERS, reactor=reactor)
    port = reactor.listenTCP(0, factory, interface="127.0.0.1")
    print(port.getHost().port, kind, flush=True)
    reactor.run()


# -- measurements ------------------------------------------------------------------


def fsync_rate(seconds: float, dir_fsync: bool = False) -> float:
    """write + fsync + rename of 10 KB files in a temp Maildir, per second
    (with ``dir_fsync``, also fsync new/ after the rename, as the store does
    so that the rename itself survives a crash)."""
    root = tempfile.mkdtemp(prefix="fsync-bench-", dir=os.environ.get("MAILSRV_BENCH_TMP"))
    try:
        for sub in ("tmp", "new", "cur"):
            os.mkdir(os.path.join(root, sub))
        data = message(0)
        n, t0 = 0, time.perf_counter()
        while time.perf_counter() - t0 < seconds and n < 100_000:
            tmp = os.path.join(root, "tmp", f"{n}.bench")
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            os.write(fd, data)
            os.fsync(fd)
            os.close(fd)
            os.rename(tmp, os.path.join(root, "new", f"{n}.bench"))
            if dir_fsync:
                dfd = os.open(os.path.join(root, "new"), os.O_RDONLY)
                os.fsync(dfd)
                os.close(dfd)
            n += 1
        return n / (time.perf_counter() - t0)
    finally:
        shutil.rmtree(root, ignore_errors=True)


def lmtp_rate(port: int, clients: int, seconds: float) -> float:
    """Acknowledged deliveries per second over ``clients`` connections."""
    counts = [0] * clients
    errors: list = []
    start = threading.Barrier(clients + 1)
    stop_at = [0.0]

    def client(k: int) -> None:
        try:
            with smtplib.LMTP("127.0.0.1", port, local_hostname="bench", timeout=30) as c:
                c.ehlo()
                start.wait(timeout=30)
                i = 0
                while time.perf_counter() < stop_at[0]:
                    refused = c.sendmail("bench@example.org", [f"{USERS[k]}@example.org"], message(i))
                    if refused:
                        raise RuntimeError(f"refused: {refused}")
                    counts[k] += 1
                    i += 1
        except Exception as e:  # reported below; a broken run must not pass silently
            errors.append(e)
            try:
                start.abort()
            except threading.BrokenBarrierError:
                pass

    threads = [threading.Thread(target=client, args=(k,), daemon=True) for k in range(clients)]
    for t in threads:
        t.start()
    stop_at[0] = time.perf_counter() + seconds + 60  # provisional, set for real at the barrier
    start.wait(timeout=30)
    t0 = time.perf_counter()
    stop_at[0] = t0 + seconds
    for t in threads:
        t.join(timeout=seconds + 30)
    elapsed = time.perf_counter() - t0
    if errors:
        raise RuntimeError(f"LMTP client failed: {errors[0]!r}")
    return sum(counts) / elapsed


def deliver_inprocess_rate(data_dir: str, seconds: float) -> float:
    """``mailsrv deliver`` as a function call (no interpreter start-up)."""
    from mailsrv.config import Config
    from mailsrv.delivery import deliver_command

    cfg = Config(data_dir=data_dir)
    err = io.StringIO()
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds and n < 100_000:
        code = deliver_command(cfg, "bench0", None, [], io.BytesIO(message(n).replace(b"\r\n", b"\n")), stderr=err)
        if code != 0:
            raise RuntimeError(f"deliver exit {code}: {err.getvalue().strip()}")
        n += 1
    return n / (time.perf_counter() - t0)


def deliver_process_rate(data_dir: str, count: int, seconds: float) -> float:
    """``mailsrv deliver`` as a process per message, as Postfix runs it."""
    argv = [sys.executable, "-m", "mailsrv.cli", "--data", data_dir, "deliver", "bench1"]
    n, t0 = 0, time.perf_counter()
    while n < count and time.perf_counter() - t0 < seconds:
        res = subprocess.run(argv, input=message(n).replace(b"\r\n", b"\n"), capture_output=True, timeout=30)
        if res.returncode != 0:
            why = res.stderr.decode(errors="replace").strip()[-200:]
            raise RuntimeError(f"mailsrv deliver exit {res.returncode}: {why}")
        n += 1
    return n / (time.perf_counter() - t0)


def median_of(fn, runs: int) -> tuple:
    values = [fn() for _ in range(runs)]
    return statistics.median(values), values


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--seconds", type=float, default=2.5, help="length of each run")
    ap.add_argument("--serve", metavar="DATA", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.serve:
        serve(args.serve)
        return 0

    budget_end = time.monotonic() + 110
    data = tempfile.mkdtemp(prefix="lmtp-bench-", dir=os.environ.get("MAILSRV_BENCH_TMP"))
    server = None
    try:
        with open(os.path.join(data, "passwd"), "w") as f:
            f.writelines(f"{u}:{{PLAIN}}x::::::\n" for u in USERS)
        server_log = open(os.path.join(data, "server.log"), "w")
        server = subprocess.Popen([sys.executable, os.path.abspath(__file__), "--serve", data],
                                  stdout=subprocess.PIPE, stderr=server_log, text=True)
        first = server.stdout.readline().split(None, 1)
        if len(first) != 2:
            raise RuntimeError("LMTP server did not start")
        port, kind = int(first[0]), first[1].strip()

        rows = []

        def measure(label, fn):
            if time.monotonic() > budget_end:
                rows.append((label, None, "skipped: time budget"))
                return
            try:
                med, values = median_of(fn, args.runs)
                rows.append((label, med, "runs: " + ", ".join(f"{v:.0f}" for v in values)))
            except Exception as e:
                rows.append((label, None, f"error: {e}"))

        measure("fsync rate (write+fsync+rename 10 KB)", lambda: fsync_rate(args.seconds))
        measure("  same + fsync of new/ (the store's way)", lambda: fsync_rate(args.seconds, dir_fsync=True))
        measure("LMTP, 1 client", lambda: lmtp_rate(port, 1, args.seconds))
        measure("LMTP, 8 clients", lambda: lmtp_rate(port, 8, args.seconds))
        measure("mailsrv deliver (in-process call)", lambda: deliver_inprocess_rate(data, args.seconds))
        measure("mailsrv deliver (process per message)", lambda: deliver_process_rate(data, 40, args.seconds * 2))

        fsync = rows[0][1]
        print(f"10 KB messages, median of {args.runs} runs of {args.seconds:.1f} s; LMTP server: {kind}")
        print(f"{'figure':42} {'deliveries/s':>13} {'vs fsync':>9}  detail")
        for label, value, detail in rows:
            v = f"{value:13.0f}" if value is not None else f"{'-':>13}"
            ratio = f"{value / fsync:9.2f}" if value and fsync else f"{'':>9}"
            print(f"{label:42} {v} {ratio}  {detail}")
        if any(value is None for _, value, _ in rows):
            with open(server_log.name) as f:
                print("server log (tail):\n" + "".join(f.readlines()[-10:]))
        return 0
    finally:
        if server is not None:
            server.terminate()
            try:
                server.wait(timeout=10)
            except subprocess.TimeoutExpired:
                server.kill()
        shutil.rmtree(data, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
