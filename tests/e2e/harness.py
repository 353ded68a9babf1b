"""The real ``twistd -n mailsrv`` on ephemeral loopback ports, for end-to-end tests.

The process handling is :class:`mailsrv.embedded.EmbeddedServer` (which the
demo and the benchmarks use too); tests add users through the real admin
command and drop mail in as an outside MTA would (into the Maildir, or
with ``mailsrv deliver``'s code into the database).  A server on the
PostgreSQL store (``dsn=``) gets a config file naming its database, which
the admin command reads too (``cli_args``).
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
    """A running server; ``kinds`` are the listeners, all on 127.0.0.1 port 0;
    ``dsn``: serve from that PostgreSQL database instead of a Maildir."""

    def __init__(self, data: str, kinds=("pop3", "pop3s", "imap", "imaps"), extra=None,
                 dsn: str | None = None, endpoint: str = "tcp:0:interface=127.0.0.1") -> None:
        import os

        self.dsn = dsn
        self.cli_args = ["--data", data]
        if dsn is not None:
            os.makedirs(data, exist_ok=True)
            ini = os.path.join(data, "mailsrv.ini")
            with open(ini, "w", encoding="utf-8") as f:
                f.write(f"[server]\ndata = {os.path.abspath(data)}\n[store]\nbackend = postgresql\ndsn = {dsn}\n")
            self.cli_args = ["--config", ini]
            extra = ["--config", ini, *(extra or [])]
        super().__init__(data, kinds=kinds, extra=extra, endpoint=endpoint)

    @property
    def backend(self) -> str:
        return "maildir" if self.dsn is None else "postgresql"

    def cli(self, *args: str, stdin: bytes = b"", check: bool = True) -> subprocess.CompletedProcess:
        """The ``mailsrv`` admin command on this server's store."""
        cmd = [sys.executable, "-m", "mailsrv.cli", *self.cli_args, *args]
        return subprocess.run(cmd, input=stdin, capture_output=True, check=check, timeout=120)

    def add_user(self, name: str, password: str) -> None:
        """``mailsrv user add NAME`` with the password on stdin (the CLI contract)."""
        self.cli("user", "add", name, stdin=password.encode() + b"\n")

    def deliver(self, user: str, message: bytes, folder: str = "INBOX", flags=()) -> None:
        """Drop a message in as an external MTA would."""
        if self.dsn is not None:
            import io

            from mailsrv import pgcli
            from mailsrv.config import Config

            cfg = Config(data_dir=self.data, store_backend="postgresql", store_dsn=self.dsn)
            code = pgcli.deliver_command(cfg, user, folder, list(flags), io.BytesIO(message))
            assert code == 0, code
            return
        from mailsrv.store import layout, maildir

        maildir.deliver(layout.folder_dir(self.data, user, folder), message, flags)


def have(tool: str) -> bool:
    return shutil.which(tool) is not None
