"""A throw-away PostgreSQL cluster: ``initdb`` in a temporary directory, a
free loopback port and the unix socket in that directory.

Used by the tests (``tests/pg``), the benches and the demo, never by the
server itself.  PostgreSQL refuses to run as root, and the tests run as root
in CI, so as root the cluster is owned by and run as an unprivileged user
(``nobody`` unless told otherwise) through ``runuser``.
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time

SEARCH_DIRS = ("/usr/lib/postgresql/17/bin", "/usr/lib/postgresql/16/bin", "/usr/lib/postgresql/15/bin",
               "/usr/lib/postgresql/14/bin", "/usr/local/bin", "/usr/bin")


class ClusterError(Exception):
    """The cluster could not be created, started or stopped."""


def find_bindir() -> str | None:
    """The directory holding initdb, pg_ctl and postgres, or None."""
    for d in SEARCH_DIRS:
        if all(os.access(os.path.join(d, b), os.X_OK) for b in ("initdb", "pg_ctl", "postgres")):
            return d
    found = shutil.which("initdb")
    if found:
        d = os.path.dirname(os.path.realpath(found))
        if all(os.access(os.path.join(d, b), os.X_OK) for b in ("pg_ctl", "postgres")):
            return d
    return None


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class TempCluster:
    """``start()`` makes and starts it, ``dsn`` connects to its ``mailsrv``
    database, ``stop()`` stops it and ``destroy()`` removes everything.

    ``fsync``: keep it on for anything measuring durability or speed; off
    is fine for functional tests (a killed postgres loses nothing the OS
    already has; only a machine crash would).
    """

    def __init__(self, base: str | None = None, fsync: bool = True, user: str = "nobody",
                 bindir: str | None = None, settings: dict[str, str] | None = None) -> None:
        self.bindir = bindir or find_bindir()
        if self.bindir is None:
            raise ClusterError("PostgreSQL server binaries (initdb, pg_ctl, postgres) not found")
        self.base = base or tempfile.mkdtemp(prefix="mailsrv-pg-")
        self.datadir = os.path.join(self.base, "data")
        self.logfile = os.path.join(self.base, "postgres.log")
        self.port = free_port()
        self.fsync = fsync
        self.settings = dict(settings or {})
        self.run_as = user if os.geteuid() == 0 else None
        self.dbname = "mailsrv"

    # --- naming -----------------------------------------------------------------------

    @property
    def host(self) -> str:
        """The unix socket directory (libpq's ``host`` for a socket)."""
        return self.base

    def dsn_for(self, dbname: str) -> str:
        return f"host={self.base} port={self.port} user=mailsrv dbname={dbname}"

    @property
    def dsn(self) -> str:
        return self.dsn_for(self.dbname)

    @property
    def tcp_dsn(self) -> str:
        return f"postgresql://mailsrv@127.0.0.1:{self.port}/{self.dbname}"

    # --- running commands -----------------------------------------------------------------

    def _cmd(self, *argv: str, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess:
        full = [os.path.join(self.bindir or "", argv[0]), *argv[1:]]
        if self.run_as:
            full = ["runuser", "-u", self.run_as, "--", *full]
        env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
        env["LC_ALL"] = "C"
        r = subprocess.run(full, capture_output=True, text=True, timeout=timeout, env=env, cwd=self.base)
        if check and r.returncode != 0:
            raise ClusterError(f"{argv[0]} failed ({r.returncode}): {r.stderr.strip() or r.stdout.strip()}"
                               f"\n{self.log_tail()}")
        return r

    def log_tail(self, lines: int = 20) -> str:
        try:
            with open(self.logfile, encoding="utf-8", errors="replace") as f:
                return "".join(f.readlines()[-lines:])
        except OSError:
            return ""

    # --- life cycle -----------------------------------------------------------------------

    def init(self) -> None:
        os.chmod(self.base, 0o755)
        if self.run_as:
            pw = pwd.getpwnam(self.run_as)
            os.chown(self.base, pw.pw_uid, pw.pw_gid)
        self._cmd("initdb", "-D", self.datadir, "-U", "mailsrv", "--auth=trust", "-E", "UTF8",
                  "--no-locale", "--no-sync")
        conf = {
            "listen_addresses": "'127.0.0.1'",
            "port": str(self.port),
            "unix_socket_directories": f"'{self.base}'",
            "fsync": "on" if self.fsync else "off",
            "full_page_writes": "on" if self.fsync else "off",
            "max_connections": "200",
            "shared_buffers": "128MB",
            "log_min_messages": "warning",
            "log_line_prefix": "'%m [%p] '",
        }
        conf.update(self.settings)
        with open(os.path.join(self.datadir, "postgresql.auto.conf"), "a", encoding="utf-8") as f:
            for k, v in conf.items():
                f.write(f"{k} = {v}\n")

    def start(self) -> TempCluster:
        if not os.path.exists(os.path.join(self.datadir, "PG_VERSION")):
            self.init()
            self.pg_ctl_start()
            self.create_database(self.dbname)
        else:
            self.pg_ctl_start()
        return self

    def pg_ctl_start(self) -> None:
        self._cmd("pg_ctl", "-D", self.datadir, "-l", self.logfile, "-w", "-t", "60", "start")

    def stop(self, mode: str = "fast") -> None:
        """``mode``: smart, fast or immediate (immediate is a crash: the
        next start replays the WAL)."""
        if os.path.exists(os.path.join(self.datadir, "postmaster.pid")):
            self._cmd("pg_ctl", "-D", self.datadir, "-m", mode, "-w", "-t", "60", "stop", check=False)

    def restart(self, mode: str = "fast") -> None:
        self.stop(mode)
        self.pg_ctl_start()

    def kill(self) -> None:
        """SIGKILL the postmaster (its children notice and exit)."""
        pid = self.postmaster_pid()
        if pid:
            os.kill(pid, signal.SIGKILL)
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                try:
                    os.kill(pid, 0)
                except ProcessLookupError:
                    break
                time.sleep(0.05)

    def postmaster_pid(self) -> int | None:
        try:
            with open(os.path.join(self.datadir, "postmaster.pid"), encoding="ascii") as f:
                return int(f.readline().strip())
        except (OSError, ValueError):
            return None

    def create_database(self, name: str) -> None:
        import psycopg

        with psycopg.connect(self.dsn_for("postgres"), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')

    def drop_database(self, name: str) -> None:
        import psycopg

        with psycopg.connect(self.dsn_for("postgres"), autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def destroy(self) -> None:
        self.stop("immediate")
        shutil.rmtree(self.base, ignore_errors=True)

    def __enter__(self) -> TempCluster:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.destroy()
