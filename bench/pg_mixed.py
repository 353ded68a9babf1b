"""Mixed IMAP load, imaptest-style, with its own driver: N clients, each
its own user, each looping over a session of LOGIN, SELECT, FETCH 1:*
(FLAGS RFC822.SIZE), FETCH of a few whole messages, STORE +FLAGS \\Seen,
APPEND, STORE +FLAGS \\Deleted, EXPUNGE, LOGOUT, for a fixed time.  Per
server: commands per second and the p50/p99 latency of a command.

Servers, one after the other, same machine, same messages: mailsrv on the
Maildir store (one process), mailsrv on PostgreSQL with 1, 2 and 4
workers (a throw-away cluster, fsync on), and the reference Dovecot 2.3
(when /work/shared/reference is there and we run as root).  Passwords are
a cheap hash on every server (SSHA512 / PLAIN): the login's hashing is not
what is measured.

Also, with ``--pop3`` and ``--lmtp``: POP3 RETR throughput of 4 clients
(MB/s) and LMTP delivery rate of 8 clients, on the same servers (Dovecot
without LMTP).  Everything is bounded (``--seconds`` per measurement).

    python bench/pg_mixed.py [--clients 10,100] [--seconds 8] [--pop3] [--lmtp]
        [--only maildir,pg1,pg2,pg4,dovecot]

The driver is one asyncio process on the same cores as the servers: its
own CPU use weighs the same on every server, and the figures are a
comparison, not absolute capacity.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import re
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

from mailsrv.embedded import EmbeddedServer, add_user  # noqa: E402

PASSWORD = "pass"
REF = "/work/shared/reference"
SEED = 30  # messages per user before a run
_LIT = re.compile(rb"\{(\d+)\}\r\n$")


def message(i: int, size: int = 2000) -> bytes:
    head = b"From: bench@example.org\r\nTo: u@example.org\r\nSubject: mixed %d\r\nMessage-ID: <%d.%d@b>\r\n\r\n" % (
        i, i, random.randrange(1 << 30))
    line = b"The quick brown fox jumps over the lazy dog; mail keeps flowing.\r\n"
    return head + line * max(1, (size - len(head)) // len(line))


class Imap:
    """A minimal IMAP client: commands in, the tagged answer out (literals
    skipped over by their length)."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.r, self.w, self.n = reader, writer, 0

    @classmethod
    async def connect(cls, port: int) -> Imap:
        r, w = await asyncio.open_connection("127.0.0.1", port)
        await r.readline()
        return cls(r, w)

    async def cmd(self, text: str, literal: bytes | None = None) -> tuple[bytes, bytes]:
        self.n += 1
        tag = b"t%d" % self.n
        if literal is None:
            self.w.write(tag + b" " + text.encode() + b"\r\n")
        else:
            self.w.write(tag + b" " + text.encode() + b" {%d+}\r\n" % len(literal) + literal + b"\r\n")
        data = []
        while True:
            line = await self.r.readline()
            if not line:
                raise ConnectionError("closed")
            m = _LIT.search(line)
            if m:
                await self.r.readexactly(int(m.group(1)))
                continue
            if line.startswith(tag + b" "):
                return line[len(tag) + 1:len(tag) + 3], b"".join(data)
            data.append(line)

    def close(self) -> None:
        self.w.close()


async def session(port: int, user: str, lat: list[float], errors: list[str], i: int) -> int:
    """One client session; returns the number of commands run."""
    t0 = time.perf_counter()
    c = await Imap.connect(port)
    n = 0

    async def run(text: str, literal: bytes | None = None) -> bytes:
        nonlocal n, t0
        t = time.perf_counter()
        status, data = await c.cmd(text, literal)
        lat.append(time.perf_counter() - t)
        n += 1
        if status != b"OK":
            errors.append(f"{text.split()[0]}: {status!r} {data[-200:]!r}")
        return data

    try:
        await run(f"LOGIN {user} {PASSWORD}")
        data = await run("SELECT INBOX")
        m = re.search(rb"\* (\d+) EXISTS", data)
        exists = int(m.group(1)) if m else 0
        await run("FETCH 1:* (FLAGS RFC822.SIZE)")
        if exists:
            picks = sorted({random.randrange(1, exists + 1) for _ in range(3)})
            await run("FETCH " + ",".join(map(str, picks)) + " (BODY.PEEK[])")
            await run("STORE " + ",".join(map(str, picks)) + " +FLAGS (\\Seen)")
        await run("APPEND INBOX", message(i))
        await run(f"STORE {exists + 1} +FLAGS.SILENT (\\Deleted)")
        await run("EXPUNGE")
        await run("LOGOUT")
    finally:
        c.close()
    return n


async def mixed(port: int, users: list[str], seconds: float) -> dict[str, float]:
    lat: list[float] = []
    errors: list[str] = []
    deadline = time.monotonic() + seconds
    count = 0

    async def client(k: int) -> None:
        nonlocal count
        i = 0
        while time.monotonic() < deadline:
            try:
                n = await session(port, users[k], lat, errors, k * 100000 + i)
                count += n  # not "count += await ...": that reads count before waiting
            except (ConnectionError, OSError) as e:
                errors.append(f"connection: {e!r}")
                await asyncio.sleep(0.05)
            i += 1

    start = time.monotonic()
    await asyncio.gather(*(client(k) for k in range(len(users))))
    wall = time.monotonic() - start
    lat.sort()
    return {"cmds": count / wall, "p50": statistics.median(lat) * 1e3 if lat else 0,
            "p99": lat[int(len(lat) * 0.99) - 1] * 1e3 if lat else 0, "errors": len(errors),
            "first_error": errors[0] if errors else ""}


async def seed(port: int, users: list[str]) -> None:
    async def one(u: str) -> None:
        c = await Imap.connect(port)
        await c.cmd(f"LOGIN {u} {PASSWORD}")
        for i in range(SEED):
            await c.cmd("APPEND INBOX", message(i, random.choice((2000, 8000, 40000))))
        await c.cmd("LOGOUT")
        c.close()

    sem = asyncio.Semaphore(10)

    async def guarded(u: str) -> None:
        async with sem:
            await one(u)

    await asyncio.gather(*(guarded(u) for u in users))


async def pop3_rate(port: int, users: list[str], seconds: float) -> float:
    """MB/s of RETR, 4 clients each downloading its user's whole drop (kept)."""
    total = 0
    deadline = time.monotonic() + seconds

    async def client(u: str) -> None:
        nonlocal total
        while time.monotonic() < deadline:
            r, w = await asyncio.open_connection("127.0.0.1", port)
            await r.readline()
            for line in (f"USER {u}", f"PASS {PASSWORD}", "STAT"):
                w.write(line.encode() + b"\r\n")
                answer = await r.readline()
                if not answer.startswith(b"+OK"):
                    raise RuntimeError(f"POP3 {line.split()[0]}: {answer!r}")
            n = int(answer.split()[1])
            for k in range(1, n + 1):
                w.write(b"RETR %d\r\n" % k)
                while (line := await r.readline()) != b".\r\n":
                    total += len(line)
                    if not line:
                        raise ConnectionError("closed")
            w.write(b"QUIT\r\n")
            await r.readline()
            w.close()

    start = time.monotonic()
    await asyncio.gather(*(client(u) for u in users[:4]))
    return total / (time.monotonic() - start) / 1e6


async def lmtp_rate(port: int, users: list[str], seconds: float) -> float:
    done = 0
    deadline = time.monotonic() + seconds

    async def client(u: str) -> None:
        nonlocal done
        r, w = await asyncio.open_connection("127.0.0.1", port)
        await r.readline()
        w.write(b"LHLO bench\r\n")
        while not (await r.readline()).startswith(b"250 "):
            pass
        i = 0
        while time.monotonic() < deadline:
            body = message(i, 10240).replace(b"\r\n.", b"\r\n..")
            w.write(b"MAIL FROM:<b@example.org>\r\nRCPT TO:<%s@example.org>\r\nDATA\r\n" % u.encode())
            for _ in range(3):
                await r.readline()
            w.write(body + b".\r\n")
            reply = await r.readline()
            if reply.startswith(b"250"):
                done += 1
            i += 1
        w.write(b"QUIT\r\n")
        w.close()

    start = time.monotonic()
    await asyncio.gather(*(client(u) for u in users[:8]))
    return done / (time.monotonic() - start)


# --- servers ---------------------------------------------------------------------------------

class Target:
    def __init__(self, label: str) -> None:
        self.label = label
        self.ports: dict[str, int] = {}

    def users(self, n: int) -> list[str]:
        return [f"testuser{i}" for i in range(1, n + 1)]


class MailsrvTarget(Target):
    def __init__(self, label: str, n_users: int, dsn: str | None = None, workers: int = 0) -> None:
        super().__init__(label)
        self.dir = tempfile.mkdtemp(prefix="mailsrv-mixed-")
        data = os.path.join(self.dir, "data")
        extra = []
        if dsn is None:
            for u in self.users(n_users):
                add_user(data, u, PASSWORD, "SSHA512")
        else:
            from mailsrv.auth.hashing import hash_password
            from mailsrv.store.pg.db import Database

            stored = hash_password(PASSWORD, "SSHA512")
            db = Database(dsn, max_size=1, start=False)
            db.call(lambda c: c.cursor().executemany("INSERT INTO users (name, password) VALUES (%s, %s) "
                                                     "ON CONFLICT DO NOTHING",
                                                     [(u, stored) for u in self.users(n_users)]))
            db.close_now()
            extra = ["--dsn", dsn] + (["--workers", str(workers)] if workers else [])
        # a deep accept queue: 100 clients reconnecting at once overflow Twisted's default of 50,
        # and dropped SYNs come back only after a one-second retransmit
        self.server = EmbeddedServer(data, kinds=("imap", "pop3", "lmtp"), extra=extra,
                                     endpoint="tcp:0:interface=127.0.0.1:backlog=1024")

    def start(self) -> None:
        self.server.start()
        self.ports = self.server.ports

    def stop(self) -> None:
        self.server.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


class DovecotTarget(Target):
    def __init__(self, n_users: int) -> None:
        super().__init__("dovecot")
        import socket

        def free() -> int:
            with socket.socket() as s:
                s.bind(("127.0.0.1", 0))
                return int(s.getsockname()[1])

        self.base = tempfile.mkdtemp(prefix="dv-pgmixed-")
        self.ports = {"imap": free(), "pop3": free()}
        self.env = dict(os.environ, DOVECOT_BASE=self.base, IMAP_PORT=str(self.ports["imap"]),
                        POP3_PORT=str(self.ports["pop3"]), IMAPS_PORT=str(free()), POP3S_PORT=str(free()),
                        N_USERS=str(n_users), WIPE_MAIL="1")

    def start(self) -> None:
        with open(os.path.join(self.base, "up.log"), "wb") as log:
            subprocess.run([f"{REF}/dovecot-up.sh"], env=self.env, check=True, timeout=60, stdout=log,
                           stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)

    def stop(self) -> None:
        subprocess.run([f"{REF}/dovecot-down.sh"], env=self.env, timeout=30, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL)
        shutil.rmtree(self.base, ignore_errors=True)


def have_dovecot() -> bool:
    return os.geteuid() == 0 and os.path.exists(f"{REF}/dovecot-up.sh") and shutil.which("dovecot") is not None


def measure(target: Target, args: argparse.Namespace, clients: list[int]) -> list[str]:
    out = []
    target.start()
    try:
        users = target.users(max(clients))
        asyncio.run(seed(target.ports["imap"], users))
        for n in clients:
            asyncio.run(mixed(target.ports["imap"], users[:n], 1.0))  # warm-up
            r = asyncio.run(mixed(target.ports["imap"], users[:n], args.seconds))
            note = f"  ({r['first_error']})" if r["errors"] else ""
            out.append(f"{target.label:14} {n:4} clients  {r['cmds']:8.0f} cmds/s  p50 {r['p50']:6.1f} ms  "
                       f"p99 {r['p99']:7.1f} ms  errors {r['errors']}{note}")
            print(out[-1], flush=True)
        if args.pop3 and "pop3" in target.ports:
            mb = asyncio.run(pop3_rate(target.ports["pop3"], users, args.seconds))
            out.append(f"{target.label:14} POP3 4 clients RETR  {mb:7.1f} MB/s")
            print(out[-1], flush=True)
        if args.lmtp and "lmtp" in target.ports:
            rate = asyncio.run(lmtp_rate(target.ports["lmtp"], users, args.seconds))
            out.append(f"{target.label:14} LMTP 8 clients, 10 kB  {rate:7.0f} deliveries/s")
            print(out[-1], flush=True)
    finally:
        target.stop()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--clients", default="10,100")
    ap.add_argument("--seconds", type=float, default=8.0)
    ap.add_argument("--pop3", action="store_true")
    ap.add_argument("--lmtp", action="store_true")
    ap.add_argument("--only", default="maildir,pg1,pg2,pg4,dovecot")
    args = ap.parse_args()
    clients = [int(c) for c in args.clients.split(",")]
    wanted = args.only.split(",")
    n_users = max(clients)
    print(f"{os.cpu_count()} CPUs; {args.seconds:.0f} s per figure; {SEED} messages per user to start with")
    if "maildir" in wanted:
        measure(MailsrvTarget("maildir", n_users), args, clients)
    pg = [w for w in wanted if w.startswith("pg")]
    if pg:
        from mailsrv.store.pg.cluster import TempCluster

        with TempCluster(fsync=True, settings={"max_connections": "300"}) as cluster:
            for w in pg:
                name = f"pgmixed{w}"
                cluster.create_database(name)
                measure(MailsrvTarget(f"postgresql x{w[2:]}", n_users, cluster.dsn_for(name), int(w[2:])),
                        args, clients)
    if "dovecot" in wanted:
        if have_dovecot():
            measure(DovecotTarget(n_users), args, clients)
        else:
            print("dovecot: skipped (needs root and the reference scripts)")


if __name__ == "__main__":
    main()
