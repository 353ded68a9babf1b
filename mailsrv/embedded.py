"""An embedded server for tests, benchmarks and the demo: the real
``twistd -n mailsrv`` as a subprocess on ephemeral loopback ports, with its
own data folder.

The server logs ``mailsrv <kind> listening on HOST:PORT`` for each listener;
we read the ports from that line, so port 0 works and runs never collide.
A subprocess (rather than listeners in this process) keeps the
clients honest: everything they learn comes over real sockets.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterable

# ``python -m twisted`` is twist(1), not twistd(1): run twistd's entry point.
TWISTD = "import sys; from twisted.scripts.twistd import run; sys.argv[0] = 'twistd'; run()"
LISTEN_RE = re.compile(r"mailsrv (\w+) listening on ([\d.:a-f\[\]]+):(\d+)")


class ServerError(Exception):
    """The embedded server did not start (one line, with the log's last line)."""


def add_user(data: str, name: str, password: str, scheme: str = "SSHA512") -> None:
    """Add a user to DATA/passwd (a cheap hash: this is a throwaway server)."""
    from mailsrv.auth import PasswdFile, hash_password

    os.makedirs(data, mode=0o700, exist_ok=True)
    PasswdFile(os.path.join(data, "passwd")).add_user(name, hash_password(password, scheme))


class EmbeddedServer:
    """A running ``twistd -n mailsrv`` process on 127.0.0.1 ephemeral ports."""

    def __init__(self, data: str, kinds: Iterable[str] = ("pop3", "imap", "lmtp"),
                 extra: list[str] | None = None, endpoint: str = "tcp:0:interface=127.0.0.1") -> None:
        """``endpoint``: what each listener binds (``haproxy:tcp:0:...`` puts
        them behind a PROXY-protocol load balancer)."""
        self.data = os.path.abspath(data)  # twistd runs with cwd=data
        self.kinds = tuple(kinds)
        self.extra = list(extra or [])
        self.endpoint = endpoint
        self.ports: dict[str, int] = {}
        self.proc: subprocess.Popen | None = None
        self.log_path = os.path.join(self.data, "twistd.log")

    def start(self, timeout: float = 60.0) -> EmbeddedServer:
        os.makedirs(self.data, exist_ok=True)
        args = [sys.executable, "-c", TWISTD, "-n", "--pidfile=", "--logfile", self.log_path, "mailsrv",
                "--data", self.data, "--auth-fail-delay", "0", "--no-demo-user"]
        for kind in self.kinds:
            args += [f"--{kind}", self.endpoint]
        args += self.extra
        self.ports = {}
        if os.path.exists(self.log_path):
            os.remove(self.log_path)
        with open(os.path.join(self.data, "twistd.out"), "wb") as console:
            self.proc = subprocess.Popen(args, cwd=self.data, stdin=subprocess.DEVNULL,
                                         stdout=console, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                code = self.proc.returncode
                self.proc = None
                raise ServerError(f"twistd mailsrv exited with code {code}: {self.last_log_line()}")
            for m in LISTEN_RE.finditer(self.log()):
                self.ports[m.group(1)] = int(m.group(3))
            if all(k in self.ports for k in self.kinds):
                return self
            time.sleep(0.05)
        self.stop()
        raise ServerError(f"twistd mailsrv did not listen within {timeout:.0f}s: {self.last_log_line()}")

    def log(self) -> str:
        try:
            with open(self.log_path, encoding="utf-8", errors="replace") as f:
                return f.read()
        except OSError:
            return ""

    def last_log_line(self) -> str:
        try:
            with open(os.path.join(self.data, "twistd.out"), encoding="utf-8", errors="replace") as f:
                console = f.read()
        except OSError:
            console = ""
        lines = [ln for ln in (self.log() + "\n" + console).splitlines() if ln.strip()]
        for ln in reversed(lines):
            if "Error" in ln or "error" in ln or "Traceback" in ln:
                return ln.strip()
        return lines[-1].strip() if lines else "(no log)"

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=15)
        self.proc = None

    def restart(self) -> None:
        self.stop()
        self.start()

    def __enter__(self) -> EmbeddedServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
