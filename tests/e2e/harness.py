"""Start the real ``twistd -n mailsrv`` on ephemeral loopback ports for end-to-end tests.

The server logs ``mailsrv <kind> listening on HOST:PORT`` for each listener;
the harness reads those lines, so port 0 works and tests never collide.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from typing import Dict, List, Optional

LISTEN_RE = re.compile(r"mailsrv (\w+) listening on ([\d.:a-f\[\]]+):(\d+)")
KINDS = ("pop3", "pop3s", "imap", "imaps", "lmtp")


def twistd_command() -> List[str]:
    """The twistd of the running interpreter (its venv), else the one on PATH."""
    local = os.path.join(os.path.dirname(sys.executable), "twistd")
    return [local] if os.path.exists(local) else [shutil.which("twistd") or "twistd"]


def mailsrv_cli(data: str, *args: str, stdin: bytes = b"", check: bool = True) -> subprocess.CompletedProcess:
    """Run the ``mailsrv`` admin command as a subprocess."""
    cmd = [sys.executable, "-m", "mailsrv.cli", "--data", data, *args]
    return subprocess.run(cmd, input=stdin, capture_output=True, check=check, timeout=120)


class Server:
    """A running ``twistd -n mailsrv`` process."""

    def __init__(self, data: str, kinds=("pop3", "pop3s", "imap", "imaps"), extra: Optional[List[str]] = None) -> None:
        self.data = data
        self.kinds = kinds
        self.extra = list(extra or [])
        self.ports: Dict[str, int] = {}
        self.proc: Optional[subprocess.Popen] = None
        self.log_path = os.path.join(data, "twistd.log")

    def add_user(self, name: str, password: str) -> None:
        mailsrv_cli(self.data, "user", "add", name, stdin=password.encode() + b"\n")

    def start(self, timeout: float = 60.0) -> "Server":
        os.makedirs(self.data, exist_ok=True)
        args = [*twistd_command(), "-n", "--pidfile=", "--logfile", self.log_path, "mailsrv",
                "--data", self.data, "--auth-fail-delay", "0", "--no-demo-user"]
        for kind in self.kinds:
            args += [f"--{kind}", "tcp:0:interface=127.0.0.1"]
        args += self.extra
        self.ports = {}
        if os.path.exists(self.log_path):
            os.remove(self.log_path)
        self.proc = subprocess.Popen(args, cwd=self.data, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"twistd mailsrv exited {self.proc.returncode}:\n{self.log()}")
            for m in LISTEN_RE.finditer(self.log()):
                self.ports[m.group(1)] = int(m.group(3))
            if all(k in self.ports for k in self.kinds):
                return self
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"twistd mailsrv did not listen in {timeout}s:\n{self.log()}")

    def log(self) -> str:
        try:
            with open(self.log_path, encoding="utf-8", errors="replace") as f:
                return f.read()
        except OSError:
            return ""

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=15)
        self.proc = None

    def deliver(self, user: str, message: bytes, folder: str = "INBOX", flags=()) -> None:
        """Drop a message into the Maildir as an external MTA would."""
        from mailsrv.store import layout, maildir

        maildir.deliver(layout.folder_dir(self.data, user, folder), message, flags)


def have(tool: str) -> bool:
    return shutil.which(tool) is not None
