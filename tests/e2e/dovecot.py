"""A private Dovecot 2.3 on a mailsrv data folder, for tests that compare
the two servers on the same files.

It reads what mailsrv writes, where mailsrv writes it: ``DATA/passwd`` as
both passdb and userdb (a passwd-file, so ``userdb_quota_rule=...`` extra
fields apply as they do to mailsrv), ``DATA/<user>/Maildir`` with the
``maildir`` quota backend (``maildirsize``), the ``acl`` plugin with the
``vfile`` backend (``dovecot-acl`` in each folder) and
``acl_shared_dict = file:DATA/shared-mailboxes``, an other-users namespace
``Shared/<user>/`` and a public namespace ``Public/`` on
``DATA/.public/Maildir`` - the configuration README's "Quota and shared
mailboxes" section describes for taking a mailsrv installation over.
Dovecot's own index files go to a directory of their own, outside the data.

Nothing from the system's /etc/dovecot is read; it listens on 127.0.0.1
only.  Run as root, mail is accessed as the ``mail`` user (Dovecot refuses
uid 0), so the data folder is handed to that user first.
"""

from __future__ import annotations

import grp
import os
import pwd
import shutil
import signal
import socket
import subprocess
import time

DOVECOT = shutil.which("dovecot") or "/usr/sbin/dovecot"


class DovecotError(Exception):
    """The private Dovecot did not start (with its log's tail)."""


def available() -> bool:
    """Dovecot with the quota and ACL plugins is installed."""
    modules = "/usr/lib/dovecot/modules"
    return (os.access(DOVECOT, os.X_OK)
            and all(os.path.exists(os.path.join(modules, f)) for f in (
                "lib10_quota_plugin.so", "lib01_acl_plugin.so", "lib11_imap_quota_plugin.so",
                "lib02_imap_acl_plugin.so")))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _chown_tree(top: str, uid: int, gid: int) -> None:
    os.chown(top, uid, gid)
    for root, dirs, files in os.walk(top):
        for n in dirs + files:
            os.lchown(os.path.join(root, n), uid, gid)


class Dovecot:
    """``Dovecot(base, data, quota_rules).start()``; ``port`` is its IMAP port."""

    def __init__(self, base: str, data: str, quota_rules: dict[str, str] | None = None) -> None:
        """``quota_rules``: plugin settings (quota_rule, quota_rule2, ...,
        acl_anyone) as mailsrv.ini would give them."""
        self.base = os.path.abspath(base)
        self.data = os.path.abspath(data)
        self.quota_rules = dict(quota_rules or {})
        self.conf = os.path.join(self.base, "dovecot.conf")
        self.log_path = os.path.join(self.base, "dovecot.log")
        self.port = 0
        if os.geteuid() == 0:
            mail = pwd.getpwnam("mail")
            self.uid, self.gid = mail.pw_uid, mail.pw_gid
            self.login_user, self.internal_user, self.internal_group = "dovenull", "dovecot", "dovecot"
        else:  # everything as the one user we are
            self.uid, self.gid = os.getuid(), os.getgid()
            self.login_user = self.internal_user = pwd.getpwuid(self.uid).pw_name
            self.internal_group = grp.getgrgid(self.gid).gr_name

    def config(self) -> str:
        b, d = self.base, self.data
        # Dovecot expands % variables in settings: a literal % is %%
        rules = "".join(f"  {k} = {v.replace('%', '%%')}\n" for k, v in sorted(self.quota_rules.items()))
        return f"""# a private test instance (tests/e2e/dovecot.py)
instance_name = mailsrv-test-{os.path.basename(b)}
base_dir = {b}/run
state_dir = {b}/state
log_path = {self.log_path}
protocols = imap
listen = 127.0.0.1
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain
default_login_user = {self.login_user}
default_internal_user = {self.internal_user}
default_internal_group = {self.internal_group}
first_valid_uid = {self.uid}
last_valid_uid = 0
first_valid_gid = {self.gid}
mail_uid = {self.uid}
mail_gid = {self.gid}

passdb {{
  driver = passwd-file
  args = username_format=%u {d}/passwd
}}
userdb {{
  driver = passwd-file
  args = username_format=%u {d}/passwd
  override_fields = home={d}/%u
}}

mail_location = maildir:{d}/%u/Maildir:INDEX={b}/index/%u
namespace inbox {{
  inbox = yes
  separator = /
  prefix =
}}
namespace shared {{
  type = shared
  separator = /
  prefix = Shared/%%u/
  location = maildir:{d}/%%u/Maildir:INDEX={b}/index/%%u:INDEXPVT={b}/pvt/%u/%%u
  subscriptions = no
  list = children
}}
namespace public {{
  type = public
  separator = /
  prefix = Public/
  location = maildir:{d}/.public/Maildir:INDEX={b}/index/.public:INDEXPVT={b}/pvt/%u/.public
  subscriptions = no
  list = children
}}

mail_plugins = $mail_plugins quota acl
protocol imap {{
  mail_plugins = $mail_plugins imap_quota imap_acl
  mail_max_userip_connections = 100
}}
plugin {{
  quota = maildir:User quota
{rules}  acl = vfile
  acl_shared_dict = file:{d}/shared-mailboxes
}}
service imap-login {{
  inet_listener imap {{
    address = 127.0.0.1
    port = {self.port}
  }}
  inet_listener imaps {{
    port = 0
  }}
}}
{self.unprivileged()}"""

    def unprivileged(self) -> str:
        """Not root: no chroot for the services that would want one."""
        if os.geteuid() == 0:
            return ""
        return "".join(f"service {name} {{\n  chroot =\n}}\n" for name in ("anvil", "imap-login"))

    def start(self, timeout: float = 30.0) -> Dovecot:
        for sub in ("run", "state", "index", "pvt"):
            os.makedirs(os.path.join(self.base, sub), exist_ok=True)
        os.chmod(self.base, 0o755)
        os.chmod(os.path.join(self.base, "run"), 0o755)
        for sub in ("index", "pvt"):
            os.chown(os.path.join(self.base, sub), self.uid, self.gid)
        self.hand_over()
        self.port = free_port()
        with open(self.conf, "w", encoding="utf-8") as f:
            f.write(self.config())
        check = subprocess.run([DOVECOT, "-c", self.conf, "-n"], capture_output=True, timeout=30,
                               stdin=subprocess.DEVNULL)
        if check.returncode:
            raise DovecotError("bad configuration: " + check.stderr.decode(errors="replace")[-2000:])
        # the master daemonizes; its output to a file (an inherited pipe stays open forever)
        with open(os.path.join(self.base, "start.out"), "wb") as out:
            up = subprocess.run([DOVECOT, "-c", self.conf], stdin=subprocess.DEVNULL, stdout=out,
                                stderr=subprocess.STDOUT, timeout=30)
        if up.returncode:
            raise DovecotError("dovecot did not start: " + self.log_tail())
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return self
            except OSError:
                time.sleep(0.1)
        self.stop()
        raise DovecotError("dovecot did not listen: " + self.log_tail())

    def hand_over(self) -> None:
        """Make the data folder the mail user's (call again after mailsrv,
        running as root, wrote more files)."""
        if os.geteuid() == 0:
            _chown_tree(self.data, self.uid, self.gid)
            for sub in ("index", "pvt"):
                _chown_tree(os.path.join(self.base, sub), self.uid, self.gid)
        os.chmod(self.data, 0o755)
        os.chmod(os.path.join(self.data, "passwd"), 0o644)

    def log_tail(self) -> str:
        out = []
        for name in ("start.out", "dovecot.log"):
            try:
                with open(os.path.join(self.base, name), encoding="utf-8", errors="replace") as f:
                    out.append(f.read()[-2000:])
            except OSError:
                pass
        return "\n".join(out)

    def errors(self) -> list[str]:
        """Error and panic lines of the log (a test asserts there are none)."""
        try:
            with open(self.log_path, encoding="utf-8", errors="replace") as f:
                return [ln for ln in f if " Error: " in ln or " Panic: " in ln or " Fatal: " in ln]
        except OSError:
            return []

    def stop(self) -> None:
        pidfile = os.path.join(self.base, "run", "master.pid")
        try:
            with open(pidfile, encoding="ascii") as f:
                pid = int(f.read().strip())
        except (OSError, ValueError):
            return
        # the master we started shuts everything down on SIGTERM (what "dovecot stop" sends)
        for sig, wait in ((signal.SIGTERM, 15.0), (signal.SIGKILL, 5.0)):
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                return
            deadline = time.monotonic() + wait
            while time.monotonic() < deadline:
                try:
                    os.kill(pid, 0)
                except ProcessLookupError:
                    return
                time.sleep(0.1)

    def __enter__(self) -> Dovecot:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
