"""Many IMAP sessions in IDLE on one ``twistd mailsrv`` process.

    python bench/idle_sessions.py [--sessions 10000] [--users 1000] [--deliveries 100]

What it measures (figures on stdout, progress on stderr, JSON with --json):

- set-up time: N connections each doing LOGIN, SELECT INBOX, IDLE (at most
  ``--concurrency`` in progress at once), until every one is idling;
- server memory: RSS before the first connection and with all N idling,
  per idle session;
- notification latency: one message dropped into each of ``--deliveries``
  users' ``new/`` by a plain ``os.rename`` (what Postfix's ``virtual`` does),
  10 ms apart; every session of that user must see ``* n EXISTS``; the time
  from the rename to each session's line, p50/p99/max;
- server CPU while the N sessions idle (the IDLE poll and keepalive cost).

Users are ``--users`` accounts with N/users sessions each (10 by default:
Dovecot's ``mail_max_userip_connections``); the per-address connection limit
is off for the run (every client is 127.0.0.1).  The client is one asyncio
process with plain protocol objects (10,000 sockets need no threads).
Bounded: ``--budget`` seconds for the whole run; the server is stopped and
the data folder removed on exit.  Figures on a shared machine are noisy.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
if REPO not in sys.path:
    sys.path.insert(0, REPO)

from bench.common import log, on_exit, rss_mb  # noqa: E402
from mailsrv.embedded import LISTEN_RE, TWISTD  # noqa: E402

PASSWORD = "idle-bench"
MSG = b"From: bench@example.org\r\nSubject: ping\r\n\r\nping\r\n"


class IdleClient(asyncio.Protocol):
    """One connection: greeting, LOGIN, SELECT, IDLE; then it waits for EXISTS."""

    def __init__(self, user: str, ready: asyncio.Future[None], bench: Bench) -> None:
        self.user = user
        self.ready = ready
        self.bench = bench
        self.buf = b""
        self.step = 0
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.buf += data
        while b"\r\n" in self.buf:
            line, self.buf = self.buf.split(b"\r\n", 1)
            self._line(line)

    def _line(self, line: bytes) -> None:
        assert self.transport is not None
        if self.step == 0 and line.startswith(b"* OK"):
            self.step = 1
            self.transport.write(b"a LOGIN %s %s\r\n" % (self.user.encode(), PASSWORD.encode()))
        elif self.step == 1 and line.startswith(b"a "):
            if not line.startswith(b"a OK"):
                return self._fail(line)
            self.step = 2
            self.transport.write(b"b SELECT INBOX\r\n")
        elif self.step == 2 and line.startswith(b"b "):
            if not line.startswith(b"b OK"):
                return self._fail(line)
            self.step = 3
            self.transport.write(b"c IDLE\r\n")
        elif self.step == 3 and line.startswith(b"+"):
            self.step = 4
            if not self.ready.done():
                self.ready.set_result(None)
        elif self.step == 4 and line.endswith(b" EXISTS"):
            self.bench.notified(self.user, time.monotonic())
        elif line.startswith(b"* BYE"):
            self._fail(line)

    def _fail(self, line: bytes) -> None:
        if not self.ready.done():
            self.ready.set_exception(RuntimeError(f"{self.user}: {line.decode(errors='replace')}"))

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.ready.done():
            self.ready.set_exception(ConnectionError(f"{self.user}: connection lost at step {self.step}"))
        elif self.step == 4:
            self.bench.lost += 1


class Bench:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.data = tempfile.mkdtemp(prefix="mailsrv-idle-bench-")
        on_exit(lambda: shutil.rmtree(self.data, ignore_errors=True))
        self.proc: subprocess.Popen[bytes] | None = None
        self.port = 0
        self.clients: list[IdleClient] = []
        self.sent: dict[str, float] = {}
        self.latencies: list[float] = []
        self.lost = 0

    # -- the server ---------------------------------------------------------

    def users(self) -> list[str]:
        return [f"u{i:05d}" for i in range(self.args.users)]

    def prepare(self) -> None:
        """The password file in one write (SSHA512: the logins are not what is measured)."""
        from mailsrv.auth.hashing import hash_password

        stored = hash_password(PASSWORD, "SSHA512")
        with open(os.path.join(self.data, "passwd"), "w") as f:
            f.writelines(f"{u}:{stored}\n" for u in self.users())
        ini = os.path.join(self.data, "bench.ini")
        with open(ini, "w") as f:
            f.write("[limits]\nconnections_per_ip = 0\nlogin_timeout = 0\n")

    def start(self) -> None:
        log_path = os.path.join(self.data, "twistd.log")
        cmd = [sys.executable, "-c", TWISTD, "-n", "--pidfile=", "--logfile", log_path, "mailsrv",
               "--data", self.data, "--config", os.path.join(self.data, "bench.ini"), "--no-demo-user",
               "--auth-fail-delay", "0", "--imap", "tcp:0:interface=127.0.0.1:backlog=4096"]
        self.proc = subprocess.Popen(cmd, cwd=self.data, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
        on_exit(self.stop)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            text = open(log_path).read() if os.path.exists(log_path) else ""
            m = LISTEN_RE.search(text)
            if m:
                self.port = int(m.group(3))
                return
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited: {text[-2000:]}")
            time.sleep(0.05)
        raise RuntimeError("server did not start")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(30)
        self.proc = None

    def cpu_seconds(self) -> float:
        assert self.proc is not None
        with open(f"/proc/{self.proc.pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    # -- the clients ----------------------------------------------------------

    async def connect_all(self) -> float:
        loop = asyncio.get_running_loop()
        users = self.users()
        sem = asyncio.Semaphore(self.args.concurrency)
        t0 = time.monotonic()
        done = 0

        async def one(i: int) -> None:
            nonlocal done
            async with sem:
                ready: asyncio.Future[None] = loop.create_future()
                user = users[i % len(users)]
                _, proto = await loop.create_connection(lambda: IdleClient(user, ready, self), "127.0.0.1",
                                                        self.port)
                self.clients.append(proto)
                await ready
                done += 1
                if done % 1000 == 0:
                    log(f"{done} sessions idling ({time.monotonic() - t0:.1f}s)")

        await asyncio.gather(*(one(i) for i in range(self.args.sessions)))
        return time.monotonic() - t0

    def notified(self, user: str, at: float) -> None:
        sent = self.sent.get(user)
        if sent is not None:
            self.latencies.append(at - sent)

    async def deliver(self) -> None:
        """One message into each of the first ``--deliveries`` users' INBOX, from outside."""
        per_user = self.args.sessions // self.args.users
        expected = self.args.deliveries * per_user
        for user in self.users()[: self.args.deliveries]:
            inbox = os.path.join(self.data, user, "Maildir")
            name = f"{time.time():.6f}.{user}.bench"
            tmp = os.path.join(inbox, "tmp", name)
            with open(tmp, "wb") as f:
                f.write(MSG)
            self.sent[user] = time.monotonic()
            os.rename(tmp, os.path.join(inbox, "new", name))
            await asyncio.sleep(0.01)
        deadline = time.monotonic() + 30
        while len(self.latencies) < expected and time.monotonic() < deadline:
            await asyncio.sleep(0.05)

    async def run(self) -> dict[str, object]:
        a = self.args
        self.prepare()
        self.start()
        assert self.proc is not None
        await asyncio.sleep(1.0)
        rss0 = rss_mb(self.proc.pid)
        log(f"server up on port {self.port}, RSS {rss0:.1f} MB; connecting {a.sessions} sessions")
        setup = await asyncio.wait_for(self.connect_all(), a.budget)
        await asyncio.sleep(2.0)
        rss1 = rss_mb(self.proc.pid)
        log(f"{a.sessions} sessions idling after {setup:.1f}s; RSS {rss1:.1f} MB")
        cpu0, t0 = self.cpu_seconds(), time.monotonic()
        await asyncio.sleep(a.idle_seconds)
        idle_cpu = (self.cpu_seconds() - cpu0) / (time.monotonic() - t0)
        log(f"idle: server CPU {idle_cpu * 100:.1f}% of a core")
        await self.deliver()
        lat = sorted(self.latencies)
        expected = a.deliveries * (a.sessions // a.users)
        result: dict[str, object] = {
            "sessions": a.sessions, "users": a.users, "setup_s": round(setup, 2),
            "setup_per_s": round(a.sessions / setup, 1),
            "rss_before_mb": round(rss0, 1), "rss_idle_mb": round(rss1, 1),
            "rss_per_session_kb": round((rss1 - rss0) * 1e6 / 1024 / a.sessions, 1),
            "idle_cpu_percent": round(idle_cpu * 100, 1),
            "notifications": len(lat), "expected": expected, "lost_connections": self.lost,
        }
        if lat:
            result.update(p50_ms=round(statistics.median(lat) * 1000, 1),
                          p99_ms=round(lat[min(len(lat) - 1, int(len(lat) * 0.99))] * 1000, 1),
                          max_ms=round(lat[-1] * 1000, 1))
        for c in self.clients:
            if c.transport is not None:
                c.transport.close()
        return result


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sessions", type=int, default=10_000)
    p.add_argument("--users", type=int, default=1000)
    p.add_argument("--deliveries", type=int, default=100)
    p.add_argument("--concurrency", type=int, default=200, help="connections being set up at once")
    p.add_argument("--idle-seconds", type=float, default=10.0, help="how long to watch the server idle")
    p.add_argument("--budget", type=float, default=900.0, help="seconds for the whole run")
    p.add_argument("--json", action="store_true")
    args = p.parse_args()
    if args.sessions % args.users or args.deliveries > args.users:
        p.error("--sessions must be a multiple of --users, --deliveries at most --users")
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < args.sessions + 100:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, args.sessions + 1000), hard))
    bench = Bench(args)
    try:
        result = asyncio.run(asyncio.wait_for(bench.run(), args.budget + 120))
    finally:
        bench.stop()
    if args.json:
        print(json.dumps(result, indent=1))
    else:
        for k, v in result.items():
            print(f"{k:22} {v}")
    return 0 if result.get("notifications") == result.get("expected") else 1


if __name__ == "__main__":
    sys.exit(main())
