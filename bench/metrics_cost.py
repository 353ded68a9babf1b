"""What ``--metrics`` costs: IMAP command throughput with and without it.

    python bench/metrics_cost.py [--clients 8] [--seconds 5] [--rounds 3]

Two servers on copies of the same data (one user, a 200-message INBOX), one
plain, one with ``--metrics``.  Each round runs the same load against one
server then the other (ABBA order, so drift on a shared machine hits both):
``--clients`` logged-in connections, each sending one command at a time,
3 ``NOOP`` to 1 ``UID FETCH 1:50 (FLAGS)``; commands completed per second,
and the server's CPU time per command (utime + stime from /proc: less
disturbed by the other work on a shared machine than the rate is).
The metrics server is also scraped once per second during its runs, as a
busy Prometheus would.  Prints the median of the rounds for each server and
the difference.  Bounded: rounds x 2 x seconds, plus start-up.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
if REPO not in sys.path:
    sys.path.insert(0, REPO)

from bench.common import log, on_exit  # noqa: E402
from mailsrv.embedded import LISTEN_RE, TWISTD  # noqa: E402

PASSWORD = "metrics-bench"
MESSAGES = 200


def prepare(data: str) -> None:
    from mailsrv.auth.hashing import hash_password
    from mailsrv.store import layout, maildir

    os.makedirs(data)
    with open(os.path.join(data, "passwd"), "w") as f:
        f.write(f"bench:{hash_password(PASSWORD, 'SSHA512')}\n")
    inbox = layout.folder_dir(data, "bench", "INBOX")
    for i in range(MESSAGES):
        maildir.deliver(inbox, b"From: a@example.org\r\nSubject: m%d\r\n\r\nbody %d\r\n" % (i, i), ["\\Seen"])


class Server:
    def __init__(self, data: str, metrics: bool) -> None:
        self.data = data
        self.metrics = metrics
        self.ports: dict[str, int] = {}
        log_path = os.path.join(data, "twistd.log")
        cmd = [sys.executable, "-c", TWISTD, "-n", "--pidfile=", "--logfile", log_path, "mailsrv", "--data", data,
               "--no-demo-user", "--auth-fail-delay", "0", "--imap", "tcp:0:interface=127.0.0.1"]
        if metrics:
            cmd += ["--metrics", "tcp:0:interface=127.0.0.1"]
        self.proc = subprocess.Popen(cmd, cwd=data, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
        on_exit(self.stop)
        want = {"imap", "metrics"} if metrics else {"imap"}
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not want <= set(self.ports):
            text = open(log_path).read() if os.path.exists(log_path) else ""
            self.ports = {m.group(1): int(m.group(3)) for m in LISTEN_RE.finditer(text)}
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited: {text[-2000:]}")
            time.sleep(0.05)

    def cpu_seconds(self) -> float:
        with open(f"/proc/{self.proc.pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(30)


async def client(port: int, until: float) -> int:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    await reader.readline()

    async def command(tag: bytes, text: bytes) -> None:
        writer.write(tag + b" " + text + b"\r\n")
        while True:
            line = await reader.readline()
            if not line:
                raise ConnectionError("server closed")
            if line.startswith(tag + b" "):
                if not line.startswith(tag + b" OK"):
                    raise RuntimeError(line.decode(errors="replace"))
                return

    await command(b"a", b"LOGIN bench " + PASSWORD.encode())
    await command(b"b", b"SELECT INBOX")
    done = 0
    while time.monotonic() < until:
        await command(b"f" if done % 4 == 3 else b"n", b"UID FETCH 1:50 (FLAGS)" if done % 4 == 3 else b"NOOP")
        done += 1
    writer.close()
    return done


def scrape(port: int) -> None:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as r:
        r.read()


async def load(server: Server, clients: int, seconds: float) -> tuple[float, float]:
    """(commands per second, server CPU microseconds per command)."""
    until = time.monotonic() + seconds
    t0 = time.monotonic()
    cpu0 = server.cpu_seconds()
    tasks = [asyncio.create_task(client(server.ports["imap"], until)) for _ in range(clients)]
    if server.metrics:
        loop = asyncio.get_running_loop()
        while time.monotonic() < until:
            await loop.run_in_executor(None, scrape, server.ports["metrics"])
            await asyncio.sleep(1.0)
    counts = await asyncio.gather(*tasks)
    return sum(counts) / (time.monotonic() - t0), (server.cpu_seconds() - cpu0) * 1e6 / max(1, sum(counts))


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--clients", type=int, default=8)
    p.add_argument("--seconds", type=float, default=5.0)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--json", action="store_true")
    args = p.parse_args()
    top = tempfile.mkdtemp(prefix="mailsrv-metrics-bench-")
    on_exit(lambda: shutil.rmtree(top, ignore_errors=True))
    prepare(os.path.join(top, "plain"))
    shutil.copytree(os.path.join(top, "plain"), os.path.join(top, "metrics"))
    servers = {"without": Server(os.path.join(top, "plain"), False),
               "with": Server(os.path.join(top, "metrics"), True)}
    rates: dict[str, list[float]] = {k: [] for k in servers}
    cpu: dict[str, list[float]] = {k: [] for k in servers}
    try:
        for srv in servers.values():  # warm up: folder loaded, caches filled
            asyncio.run(load(srv, args.clients, 1.0))
        for r in range(args.rounds):
            order = list(servers.items()) if r % 2 == 0 else list(reversed(servers.items()))
            for k, srv in order:  # ABBA: whichever runs second in a round does not always lose
                rate, us = asyncio.run(load(srv, args.clients, args.seconds))
                rates[k].append(rate)
                cpu[k].append(us)
                log(f"round {r + 1}: {k} --metrics: {rate:.0f} commands/s, {us:.1f} us CPU per command")
    finally:
        for srv in servers.values():
            srv.stop()
    result: dict[str, object] = {}
    for k in servers:
        result[f"rate_{k}"] = round(statistics.median(rates[k]), 1)
        result[f"cpu_us_{k}"] = round(statistics.median(cpu[k]), 1)
    result["rate_cost_percent"] = round((1 - statistics.median(rates["with"]) / statistics.median(rates["without"]))
                                        * 100, 1)
    result["cpu_cost_percent"] = round((statistics.median(cpu["with"]) / statistics.median(cpu["without"]) - 1)
                                       * 100, 1)
    result["rounds"] = {k: [round(x) for x in v] for k, v in rates.items()}
    if args.json:
        print(json.dumps(result, indent=1))
    else:
        for k, v in result.items():
            print(f"{k:22} {v}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
