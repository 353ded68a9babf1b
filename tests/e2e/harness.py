"""The real ``twistd -n mailsrv`` on ephemeral loopback ports, for end-to-end tests.

The process handling is :class:`mailsrv.embedded.EmbeddedServer` (which the
demo and the benchmarks use too); tests add users through the real admin
command and drop mail into the Maildir as an outside MTA would.
"""

from __future__ import annotations

import shutil
import subprocess
import sys

from mailsrv.embedded import TWISTD, EmbeddedServer


def twistd_command() -> list[str]:
    """twistd of the running interpreter (``python -m twisted`` is twist, not twistd)."""
    return [sys.executable, "-c", TWISTD]


def mailsrv_cli(data: str, *args: str, stdin: bytes = b"", check: bool = True) -> subprocess.CompletedProcess:
    """Run the ``mailsrv`` admin command as a subprocess."""
    cmd = [sys.executable, "-m", "mailsrv.cli", "--data", data, *args]
    return subprocess.run(cmd, input=stdin, capture_output=True, check=check, timeout=120)


class Server(EmbeddedServer):
    """A running server; ``kinds`` are the listeners, all on 127.0.0.1 port 0."""

    def __init__(self, data: str, kinds=("pop3", "pop3s", "imap", "imaps"), extra=None) -> None:
        super().__init__(data, kinds=kinds, extra=extra)

    def add_user(self, name: str, password: str) -> None:
        """``mailsrv --data DIR user add NAME`` with the password on stdin (the CLI contract)."""
        mailsrv_cli(self.data, "user", "add", name, stdin=password.encode() + b"\n")

    def deliver(self, user: str, message: bytes, folder: str = "INBOX", flags=()) -> None:
        """Drop a message into the Maildir as an external MTA would."""
        from mailsrv.store import layout, maildir

        maildir.deliver(layout.folder_dir(self.data, user, folder), message, flags)


def have(tool: str) -> bool:
    return shutil.which(tool) is not None
