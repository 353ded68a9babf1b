"""Shared plumbing for the mailsrv-vs-Dovecot benchmarks.

Both servers are measured in the same run, on the same messages (hardlinked
copies of one pristine seed, so they never see each other's index files),
with the same password hash (Argon2id, m=64 MiB, t=3, p=1, which is both
mailsrv's and Dovecot's default cost).  Everything here is bounded in time
and every process started is stopped on exit.
"""

from __future__ import annotations

import atexit
import hashlib
import json
import os
import pwd
import re
import signal
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Sequence

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
if REPO not in sys.path:
    sys.path.insert(0, REPO)

WORK = os.environ.get("MAILSRV_BENCH_DIR", "/tmp/mailsrv-bench")
REFERENCE = os.environ.get("MAILSRV_REFERENCE", "/work/shared/reference")
DOVECOT_BASE = "/tmp/dovecot-bench"
DOVECOT_PORTS = {"imap": 11143, "pop3": 11110, "imaps": 11993, "pop3s": 11995}
# If another process holds one of those, the next free set of these is used.
DOVECOT_PORT_OFFSETS = (0, 1000, 2000, 3000)
PASSWORD = "bench-pass"
SEED_VERSION = "v1"
MB = 1e6  # throughput unit: 10^6 octets

# --------------------------------------------------------------------------
# cleanup: run registered callbacks once, on normal exit or on a signal

_cleanups: list[Callable[[], None]] = []


def on_exit(fn: Callable[[], None]) -> Callable[[], None]:
    """Register a cleanup; returns fn so it can be called early too."""
    _cleanups.append(fn)
    return fn


def _run_cleanups() -> None:
    while _cleanups:
        fn = _cleanups.pop()
        try:
            fn()
        except Exception as e:  # cleanup must go on whatever failed
            print(f"cleanup error: {e!r}", file=sys.stderr)


def _signal_exit(signum, frame) -> None:
    raise SystemExit(128 + signum)


atexit.register(_run_cleanups)
for _sig in (signal.SIGTERM, signal.SIGHUP):
    signal.signal(_sig, _signal_exit)


class Budget:
    """A wall-clock allowance for a whole script, so full runs stay bounded."""

    def __init__(self, seconds: float) -> None:
        self.deadline = time.monotonic() + seconds

    def left(self) -> float:
        return self.deadline - time.monotonic()

    def timeout(self, wanted: float) -> float:
        """A step timeout that never overruns the budget (at least 1 s)."""
        return max(1.0, min(wanted, self.left()))


# --------------------------------------------------------------------------
# statistics and output


def median(values: Iterable[float]) -> float | None:
    vals = [v for v in values if v is not None]
    return statistics.median(vals) if vals else None


def log(msg: str) -> None:
    """Progress goes to stderr so stdout holds only the tables."""
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


class Result:
    """One figure: a number (in `unit`) or an error text."""

    def __init__(self, value: float | None = None, error: str | None = None, note: str = "") -> None:
        self.value = value
        self.error = error
        self.note = note

    def text(self, fmt: str) -> str:
        if self.error is not None:
            return "error: " + " ".join(self.error.split())[:70]
        if self.value is None:
            return "-"
        return fmt.format(self.value)


class Table:
    """Figures for mailsrv and Dovecot side by side, with the ratio."""

    def __init__(self, title: str) -> None:
        self.title = title
        self.rows: list[tuple[str, str, bool, dict[str, Result]]] = []

    def add(self, figure: str, unit: str, higher_better: bool, mailsrv: Result | None, dovecot: Result | None) -> None:
        results = {"mailsrv": mailsrv or Result(), "dovecot": dovecot or Result()}
        self.rows.append((figure, unit, higher_better, results))

    def render(self) -> str:
        head = ("figure", "unit", "mailsrv", "Dovecot", "mailsrv/Dovecot")
        lines = []
        for figure, unit, higher, res in self.rows:
            fmt = "{:.0f}" if unit in ("msg/s",) else ("{:.1f}" if unit in ("MB/s", "MB", "ms") else "{:.3g}")
            m, d = res["mailsrv"], res["dovecot"]
            ratio = ""
            if m.value and d.value and m.error is None and d.error is None:
                r = m.value / d.value
                good = r >= 1.0 if higher else r <= 1.0
                ratio = f"{r:.2f}x " + ("ok" if good else ("(higher better)" if higher else "(lower better)"))
            lines.append((figure, unit, m.text(fmt), d.text(fmt), ratio))
        widths = [max(len(str(x[i])) for x in [head] + lines) for i in range(5)]
        out = [f"== {self.title} =="]
        out.append("  ".join(str(h).ljust(w) for h, w in zip(head, widths, strict=True)))
        out.append("  ".join("-" * w for w in widths))
        for row in lines:
            out.append("  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())
        notes = [f"  {fig}: {server}: {r.note}" for fig, _, _, res in self.rows for server, r in res.items() if r.note]
        if notes:
            out.append("notes:")
            out.extend(notes)
        return "\n".join(out)

    def as_json(self) -> dict:
        return {
            "title": self.title,
            "rows": [
                {"figure": f, "unit": u, **{k: {"value": r.value, "error": r.error} for k, r in res.items()}}
                for f, u, _, res in self.rows
            ],
        }


def write_json(path: str | None, tables: Sequence[Table], extra: dict | None = None) -> None:
    if path:
        with open(path, "w") as f:
            json.dump({"tables": [t.as_json() for t in tables], **(extra or {})}, f, indent=1)


# --------------------------------------------------------------------------
# processes: RSS/PSS from /proc, page cache


def _children_map() -> dict[int, list[int]]:
    kids: dict[int, list[int]] = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as f:
                stat = f.read()
            ppid = int(stat[stat.rindex(b")") + 2:].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        kids.setdefault(ppid, []).append(int(name))
    return kids


def process_tree(pid: int) -> list[int]:
    """pid and all its descendants (Dovecot is a master plus children)."""
    kids = _children_map()
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(kids.get(p, []))
    return out


def _status_kb(pid: int, field: str, path: str = "status") -> int:
    try:
        with open(f"/proc/{pid}/{path}") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def rss_mb(pid: int) -> float:
    """Resident set size of one process, MB (10^6 bytes)."""
    return _status_kb(pid, "VmRSS") * 1024 / MB


def tree_memory_mb(pid: int) -> tuple[float, float]:
    """(sum of RSS, sum of PSS) over a process tree, MB.  PSS splits shared
    pages between the processes, so it is the fair figure for a forking
    server like Dovecot; for one process RSS and PSS are nearly equal."""
    pids = process_tree(pid)
    rss = sum(_status_kb(p, "VmRSS") for p in pids) * 1024 / MB
    pss = sum(_status_kb(p, "Pss", "smaps_rollup") for p in pids) * 1024 / MB
    return rss, pss


def drop_caches() -> bool:
    """sync + drop the page cache (root only); False when not possible or
    not wanted (MAILSRV_BENCH_NO_DROP=1: a machine shared with other work)."""
    if os.environ.get("MAILSRV_BENCH_NO_DROP"):
        return False
    os.sync()
    try:
        with open("/proc/sys/vm/drop_caches", "w") as f:
            f.write("3\n")
        return True
    except OSError:
        return False


def run(cmd: Sequence[str], timeout: float = 120, env: dict | None = None,
        stdin: bytes = b"") -> subprocess.CompletedProcess:
    return subprocess.run(list(cmd), input=stdin, capture_output=True, timeout=timeout, env=env)


def rmtree(path: str) -> None:
    if os.path.lexists(path):
        run(["rm", "-rf", "--one-file-system", path], timeout=300)


# --------------------------------------------------------------------------
# corpus and seeded mailboxes

_MSGID_RE = re.compile(rb"^Message-ID:[ \t]*<[^>\n]*(?=>)", re.I | re.M)
_FROM_QUOTED = re.compile(rb"^>(>*From )", re.M)


def corpus_path() -> str:
    path = os.path.join(WORK, "corpus.mbox")
    if not os.path.exists(path):
        os.makedirs(WORK, exist_ok=True)
        log("generating corpus (make-mbox.py, 1,000 messages)")
        res = run([sys.executable, os.path.join(REFERENCE, "make-mbox.py"), "-o", path + ".tmp"], timeout=180)
        if res.returncode != 0:
            raise RuntimeError("make-mbox.py failed: " + res.stderr.decode(errors="replace"))
        os.rename(path + ".tmp", path)
    return path


class Corpus:
    """The reference mbox as a list of messages (LF line ends, as an MTA
    delivers them), plus variations so big mailboxes hold distinct mail."""

    def __init__(self) -> None:
        with open(corpus_path(), "rb") as f:
            data = f.read()
        parts = re.split(rb"(?m)^From [^\n]*\n", data)
        self.messages: list[bytes] = []
        self._msgid_end: list[int] = []
        for part in parts:
            if not part.strip():
                continue
            if part.endswith(b"\n\n"):  # mbox separator blank line
                part = part[:-1]
            msg = _FROM_QUOTED.sub(rb"\1", part)
            head_end = msg.find(b"\n\n")
            m = _MSGID_RE.search(msg, 0, head_end if head_end > 0 else len(msg))
            self._msgid_end.append(m.end() if m else -1)
            self.messages.append(msg)
        self.sizes = [len(m) for m in self.messages]

    def variant(self, index: int, round_: int) -> bytes:
        """Message `index`, made unique for repetition `round_` (>0) by a
        suffix on its Message-ID, so every message of a big box differs."""
        msg = self.messages[index]
        if round_ == 0:
            return msg
        at = self._msgid_end[index]
        tag = b".r%d" % round_
        if at < 0:
            return b"Message-ID: <bench%d%s@bench.example>\n" % (index, tag) + msg
        return msg[:at] + tag + msg[at:]


Spec = list[tuple[int, int, str]]  # (corpus index, round, maildir flags)


def inbox_spec(corpus: Corpus, n: int) -> Spec:
    """n messages cycling through the corpus; ~10% unseen, some flagged or
    answered, so flag searches and STORE have realistic work."""
    spec = []
    for i in range(n):
        flags = "" if i % 10 == 3 else "S"
        if i % 50 == 7:
            flags = "F" + flags
        if i % 10 == 5:
            flags = "R" + flags
        spec.append((i % len(corpus.messages), i // len(corpus.messages), flags))
    return spec


def spec_for_total(corpus: Corpus, n: int, total_bytes: int, flags: str = "S") -> Spec:
    """n corpus messages (distinct while possible) whose sizes add up to
    about total_bytes: greedy pick nearest to the remaining average."""
    import random

    rnd = random.Random(1939)
    order = list(range(len(corpus.messages)))
    rnd.shuffle(order)
    used: dict[int, int] = {}
    spec: Spec = []
    remaining = total_bytes
    for i in range(n):
        want = remaining / (n - i)
        pool = order[(i * 37) % len(order):][:200] or order[:200]
        best = min(pool, key=lambda k: (used.get(k, 0), abs(corpus.sizes[k] - want)))
        rnd_round = used.get(best, 0)
        used[best] = rnd_round + 1
        spec.append((best, rnd_round, flags))
        remaining -= corpus.sizes[best]
    return spec


def largest_spec(corpus: Corpus, n: int, distinct: int = 250) -> Spec:
    """n large messages: the `distinct` biggest corpus messages, repeated."""
    big = sorted(range(len(corpus.messages)), key=lambda k: -corpus.sizes[k])[:distinct]
    return [(big[i % len(big)], i // len(big), "S") for i in range(n)]


def mail_owner() -> tuple[int, int]:
    """uid/gid Dovecot's reference instance uses for mail when run as root."""
    if os.getuid() != 0:
        return os.getuid(), os.getgid()
    pw = pwd.getpwnam("mail")
    return pw.pw_uid, pw.pw_gid


def seed(corpus: Corpus, name: str, spec: Spec) -> str:
    """A pristine Maildir `cur/` for `spec`, written once and cached under
    WORK/seed (Dovecot-style names with S= and W= sizes, mtimes in order).
    Returns the seed folder; copies are hardlinked from it."""
    from mailsrv.store.crlf import to_crlf

    digest = hashlib.sha1((SEED_VERSION + repr(spec)).encode()).hexdigest()[:12]
    path = os.path.join(WORK, "seed", f"{name}-{digest}")
    marker = os.path.join(path, ".complete")
    if os.path.exists(marker) and _seed_intact(path):
        return path
    rmtree(path)
    cur = os.path.join(path, "cur")
    os.makedirs(cur)
    uid, gid = mail_owner()
    t0 = time.monotonic()
    base = 1_600_000_000
    total = 0
    for i, (idx, rnd, flags) in enumerate(spec):
        msg = corpus.variant(idx, rnd)
        size, wsize = len(msg), len(to_crlf(msg))
        fn = os.path.join(cur, f"{base + i}.M{i}P4242.benchhost,S={size},W={wsize}:2,{flags}")
        with open(fn, "wb") as f:
            f.write(msg)
        os.utime(fn, (base + i, base + i))
        if os.getuid() == 0:
            os.chown(fn, uid, gid)
        total += size
    if os.getuid() == 0:
        os.chown(cur, uid, gid)
        os.chown(path, uid, gid)
    with open(marker, "w") as f:
        f.write(f"{len(spec)} {total}\n")
    log(f"seeded {name}: {len(spec)} messages, {total / MB:.1f} MB in {time.monotonic() - t0:.1f}s")
    return path


def _seed_intact(path: str) -> bool:
    """Cheap guard against a server having rewritten a shared inode."""
    cur = os.path.join(path, "cur")
    names = sorted(os.listdir(cur))
    for fn in names[:: max(1, len(names) // 50)]:
        m = re.search(r",S=(\d+)", fn)
        if not m or os.path.getsize(os.path.join(cur, fn)) != int(m.group(1)):
            return False
    return True


def seed_octets(path: str) -> tuple[int, int]:
    """(message count, total CRLF octets) of a seed, i.e. what POP3 STAT must say."""
    n = w = 0
    for fn in os.listdir(os.path.join(path, "cur")):
        m = re.search(r",W=(\d+)", fn)
        n += 1
        w += int(m.group(1)) if m else 0
    return n, w


def install_maildir(seed_path: str | None, maildir: str, owner: tuple[int, int] | None = None) -> None:
    """Make `maildir` hold a hardlinked copy of the seed (or nothing).
    Maildir files are never rewritten in place, so links are safe and make
    a 100,000-message copy take a second instead of a minute."""
    os.makedirs(maildir, exist_ok=True)
    for sub in ("new", "tmp"):
        os.makedirs(os.path.join(maildir, sub), exist_ok=True)
    cur = os.path.join(maildir, "cur")
    rmtree(cur)
    if seed_path:
        res = run(["cp", "-al", os.path.join(seed_path, "cur"), cur], timeout=300)
        if res.returncode != 0:
            raise RuntimeError("cp -al failed: " + res.stderr.decode(errors="replace"))
    else:
        os.makedirs(cur)
    if owner:
        for d in (os.path.dirname(maildir), maildir, cur, os.path.join(maildir, "new"), os.path.join(maildir, "tmp")):
            os.chown(d, *owner)


def argon2_hash(password: str) -> str:
    """An Argon2id PHC string at mailsrv's and Dovecot's default cost."""
    import argon2

    return argon2.PasswordHasher(time_cost=3, memory_cost=65536, parallelism=1).hash(password)


# --------------------------------------------------------------------------
# servers


class BenchServer:
    """Common shape of the two servers under test."""

    label = ""
    ports: dict[str, int]

    def maildir(self, user: str) -> str:
        raise NotImplementedError

    def start(self) -> None:
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError

    def main_pid(self) -> int | None:
        raise NotImplementedError

    def memory(self) -> tuple[float, float]:
        pid = self.main_pid()
        return tree_memory_mb(pid) if pid else (0.0, 0.0)


class Mailsrv(BenchServer):
    """Our server: ``twistd -n mailsrv`` on ephemeral loopback ports, run by
    the demo's EmbeddedServer (as the end-to-end tests do)."""

    label = "mailsrv"

    def __init__(self, data: str, kinds: Sequence[str] = ("pop3", "imap")) -> None:
        self.data = data
        self.kinds = tuple(kinds)
        self.server = None
        self.proc: subprocess.Popen | None = None
        self.ports = {}
        self.users: list[str] = []
        on_exit(self.stop)

    def reset(self) -> None:
        self.stop()
        rmtree(self.data)
        os.makedirs(self.data)
        self.users = []

    def add_user(self, name: str, seed_path: str | None) -> None:
        res = run([sys.executable, "-m", "mailsrv.cli", "--data", self.data, "user", "add", name],
                  stdin=PASSWORD.encode() + b"\n", timeout=60)
        if res.returncode != 0:
            raise RuntimeError(f"mailsrv user add {name} failed: {res.stderr.decode(errors='replace').strip()}")
        install_maildir(seed_path, self.maildir(name))
        self.users.append(name)

    def maildir(self, user: str) -> str:
        return os.path.join(self.data, user, "Maildir")

    def start(self, timeout: float = 60.0) -> None:
        from mailsrv.embedded import EmbeddedServer

        self.stop()
        self.server = EmbeddedServer(self.data, kinds=self.kinds).start(timeout)
        self.proc, self.ports = self.server.proc, self.server.ports

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop()
        self.server, self.proc = None, None

    def main_pid(self) -> int | None:
        return self.proc.pid if self.proc else None


class Dovecot(BenchServer):
    """The reference Dovecot 2.3 on private ports and base folder, with the
    same Argon2id password entries as mailsrv (or PLAIN if asked)."""

    label = "dovecot"

    def __init__(self, mail_root: str, plain_passwords: bool = False) -> None:
        self.base = DOVECOT_BASE
        self.mail_root = mail_root
        self.plain = plain_passwords
        self.users: list[str] = []
        self.all_ports = dict(DOVECOT_PORTS)
        self.ports = {"imap": DOVECOT_PORTS["imap"], "pop3": DOVECOT_PORTS["pop3"]}
        self.owner = mail_owner()
        self._hash = argon2_hash(PASSWORD)
        self.running = False
        on_exit(self.stop)

    @staticmethod
    def _free(port: int) -> bool:
        with socket.socket() as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                sock.bind(("127.0.0.1", port))
                return True
            except OSError:
                return False

    def _pick_ports(self) -> None:
        """The brief's ports unless something else listens there."""
        for off in DOVECOT_PORT_OFFSETS:
            ports = {k: v + off for k, v in DOVECOT_PORTS.items()}
            if all(self._free(p) for p in ports.values()):
                if off:
                    log(f"dovecot: default ports busy, using {ports}")
                self.all_ports = ports
                self.ports = {"imap": ports["imap"], "pop3": ports["pop3"]}
                return
        raise RuntimeError("no free port set for Dovecot (tried 11143.. and +1000/+2000/+3000)")

    def env(self) -> dict:
        env = dict(os.environ)
        env.update(
            DOVECOT_BASE=self.base,
            IMAP_PORT=str(self.all_ports["imap"]),
            POP3_PORT=str(self.all_ports["pop3"]),
            IMAPS_PORT=str(self.all_ports["imaps"]),
            POP3S_PORT=str(self.all_ports["pop3s"]),
            MAIL_ROOT=self.mail_root,
            USERS_FILE=os.path.join(WORK, "dovecot-users.txt"),
            WIPE_MAIL="0",
        )
        return env

    def reset(self) -> None:
        self.stop()
        rmtree(self.mail_root)
        os.makedirs(self.mail_root)
        self.users = []

    def add_user(self, name: str, seed_path: str | None) -> None:
        install_maildir(seed_path, self.maildir(name), owner=self.owner)
        self.users.append(name)

    def maildir(self, user: str) -> str:
        return os.path.join(self.mail_root, user, "Maildir")

    def start(self) -> None:
        with open(os.path.join(WORK, "dovecot-users.txt"), "w") as f:
            f.writelines(f"{u}:{PASSWORD}\n" for u in self.users)
        self._down()  # a stale instance from an interrupted run
        self._pick_ports()
        # output to a file, not a pipe: the daemonized master inherits it
        out_path = os.path.join(WORK, "dovecot-up.out")
        with open(out_path, "wb") as out:
            rc = subprocess.run(["bash", os.path.join(REFERENCE, "dovecot-up.sh")], env=self.env(),
                                stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, timeout=90).returncode
        if rc != 0:
            with open(out_path, "rb") as f:
                raise RuntimeError("dovecot-up.sh failed: " + f.read().decode(errors="replace")[-2000:])
        self.running = True
        if not self.plain:
            passwd = os.path.join(self.base, "passwd")
            with open(passwd, "w") as f:  # keeps owner and mode; reloaded on change
                f.writelines(f"{u}:{{ARGON2ID}}{self._hash}::::::\n" for u in self.users)

    def _down(self) -> None:
        run(["bash", os.path.join(REFERENCE, "dovecot-down.sh")], env=self.env(), timeout=60)

    def stop(self) -> None:
        if self.running or os.path.exists(os.path.join(self.base, "run", "master.pid")):
            self._down()
        self.running = False

    def main_pid(self) -> int | None:
        try:
            with open(os.path.join(self.base, "run", "master.pid")) as f:
                return int(f.read().strip())
        except (OSError, ValueError):
            return None


def mailsrv_importable(what: str) -> bool:
    """Whether a mailsrv module/class exists yet (the server is being built)."""
    mod, _, name = what.partition(":")
    res = run([sys.executable, "-c", f"from {mod} import {name}" if name else f"import {mod}"], timeout=60)
    return res.returncode == 0

