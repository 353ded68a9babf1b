"""The Dovecot-style passwd file: ``user:{SCHEME}hash:uid:gid:gecos:home:shell:extra``.

Only the first two fields matter to mailsrv; everything else (comments,
extra fields, unknown lines) is kept byte for byte on rewrite so the same
file can serve Dovecot.  Writers (the ``mailsrv user`` commands) take a
lock file and replace the file atomically; the server re-reads it when its
identity (inode, size, mtime) changes, which is one ``stat`` per login, so
new users work at once without a reload signal.
"""

from __future__ import annotations

import fcntl
import os
import secrets
import threading
from collections.abc import Callable
from dataclasses import dataclass

from mailsrv.auth.hashing import Argon2Params, UnsupportedScheme, check_scheme, hash_password, verify_password
from mailsrv.config import Config
from mailsrv.store.fsutil import atomic_write, unlink_quiet


class AuthError(Exception):
    """A user-management problem, reported to the operator as one line."""


class InvalidUsername(AuthError):
    pass


class UserExists(AuthError):
    pass


class NoSuchUser(AuthError):
    pass


MAX_USERNAME = 255


def validate_username(name: str) -> str:
    """Return ``name`` if it is a safe user name, else raise InvalidUsername.

    A user name is a passwd-file key *and* a directory under the data folder,
    so ':' (field separator), '/' and a leading '.' (path tricks, hidden
    Maildir++ folders), control characters and whitespace (protocol
    tokenizing) are refused.
    """
    if not isinstance(name, str):
        raise InvalidUsername("user name must be text")
    if not name:
        raise InvalidUsername("empty user name")
    if len(name) > MAX_USERNAME:
        raise InvalidUsername(f"user name longer than {MAX_USERNAME} characters")
    if name.startswith("."):
        raise InvalidUsername(f"user name {name!r} starts with '.'")
    for ch in name:
        if ch in ":/\\" or ord(ch) < 0x20 or ord(ch) == 0x7F or ch.isspace():
            raise InvalidUsername(f"user name {name!r} contains {ch!r}")
    return name


@dataclass
class PasswdEntry:
    name: str
    password: str  # '{SCHEME}value'; empty means the account is disabled
    extra: list[str]  # fields 3.. as found (uid, gid, gecos, home, shell, extra)

    def extra_fields(self) -> dict[str, str]:
        """Dovecot's extra fields (everything after the 7th colon: space-
        separated ``key=value``), ``userdb_`` prefixes dropped as the
        passwd-file userdb does: ``userdb_quota_rule=*:storage=1G`` ->
        ``{"quota_rule": "*:storage=1G"}``.  A key without ``=`` maps to ""."""
        out: dict[str, str] = {}
        for token in ":".join(self.extra[5:]).split():
            key, _, value = token.partition("=")
            if key.startswith("userdb_"):
                key = key[len("userdb_"):]
            if key:
                out.setdefault(key, value)
        return out


def _parse_line(line: str) -> PasswdEntry | None:
    text = line.rstrip("\r\n")
    if not text or text.lstrip().startswith("#"):
        return None
    fields = text.split(":")
    if not fields[0]:
        return None
    return PasswdEntry(fields[0], fields[1] if len(fields) > 1 else "", fields[2:])


def _parse(text: str) -> dict[str, PasswdEntry]:
    entries: dict[str, PasswdEntry] = {}
    for line in text.splitlines():
        e = _parse_line(line)
        if e is not None and e.name not in entries:  # first entry wins
            entries[e.name] = e
    return entries


class PasswdFile:
    """A passwd file, cached in memory and re-read when it changes on disk.

    Thread-safe: the checker looks users up from thread-pool threads.
    """

    def __init__(self, path: str) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._ident: tuple[int, int, int, int] | None = None
        self._entries: dict[str, PasswdEntry] = {}

    # -- reading -------------------------------------------------------------

    def _refresh(self) -> dict[str, PasswdEntry]:
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            self._ident, self._entries = None, {}
            return self._entries
        ident = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)
        if ident != self._ident:
            try:
                with open(self.path, "rb") as f:
                    fst = os.fstat(f.fileno())
                    data = f.read()
            except FileNotFoundError:
                self._ident, self._entries = None, {}
                return self._entries
            self._entries = _parse(data.decode("utf-8", "surrogateescape"))
            self._ident = (fst.st_dev, fst.st_ino, fst.st_size, fst.st_mtime_ns)
        return self._entries

    def lookup(self, name: str) -> PasswdEntry | None:
        """The entry for ``name`` from the current file (OSError if unreadable)."""
        with self._lock:
            return self._refresh().get(name)

    def user_fields(self, name: str) -> dict[str, str]:
        """The extra fields of ``name`` ({} for an unknown user)."""
        entry = self.lookup(name)
        return entry.extra_fields() if entry is not None else {}

    def users(self) -> list[str]:
        """User names in file order."""
        with self._lock:
            return list(self._refresh())

    def first_password(self) -> str | None:
        """The stored value of the first enabled entry (to shape dummy work)."""
        with self._lock:
            for e in self._refresh().values():
                if e.password:
                    return e.password
        return None

    # -- writing -------------------------------------------------------------

    def add_user(self, name: str, stored: str) -> None:
        """Append an entry; UserExists if the name is taken."""
        validate_username(name)

        def change(lines: list[str]) -> list[str]:
            if _find(lines, name):
                raise UserExists(f"user {name} already exists")
            if lines and not lines[-1].endswith("\n"):
                lines[-1] += "\n"
            return lines + [f"{name}:{stored}\n"]

        self._rewrite(change)

    def set_password(self, name: str, stored: str) -> None:
        """Replace the password field of ``name``, keeping its other fields."""

        def change(lines: list[str]) -> list[str]:
            idx = _find(lines, name)
            if not idx:
                raise NoSuchUser(f"no such user {name}")
            for i in idx:
                text = lines[i].rstrip("\r\n")
                eol = lines[i][len(text):]
                fields = text.split(":")
                if len(fields) < 2:
                    fields.append("")
                fields[1] = stored
                lines[i] = ":".join(fields) + (eol or "\n")
            return lines

        self._rewrite(change)

    def remove_user(self, name: str) -> None:
        """Drop every entry of ``name``; NoSuchUser if there is none."""

        def change(lines: list[str]) -> list[str]:
            idx = set(_find(lines, name))
            if not idx:
                raise NoSuchUser(f"no such user {name}")
            return [line for i, line in enumerate(lines) if i not in idx]

        self._rewrite(change)

    def _rewrite(self, change: Callable[[list[str]], list[str]]) -> None:
        """Read-modify-write under an exclusive lock, replacing the file
        atomically (temp file, fsync, rename, fsync of the directory)."""
        directory = os.path.dirname(os.path.abspath(self.path))
        os.makedirs(directory, exist_ok=True)
        lock_fd = os.open(self.path + ".lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(lock_fd, fcntl.LOCK_EX)
            try:
                with open(self.path, "rb") as f:
                    old_stat: os.stat_result | None = os.fstat(f.fileno())
                    text = f.read().decode("utf-8", "surrogateescape")
            except FileNotFoundError:
                old_stat, text = None, ""
            lines = change(text.splitlines(keepends=True))
            # as root, keep the server's (dropped-privilege) user able to read it
            owner = (old_stat.st_uid, old_stat.st_gid) if old_stat is not None and os.geteuid() == 0 else None
            atomic_write(self.path, "".join(lines).encode("utf-8", "surrogateescape"), owner=owner)
        finally:
            os.close(lock_fd)
        with self._lock:
            self._ident = None  # force a re-read on next lookup


def _find(lines: list[str], name: str) -> list[int]:
    out = []
    for i, line in enumerate(lines):
        e = _parse_line(line)
        if e is not None and e.name == name:
            out.append(i)
    return out


DEMO_USER = "demo"


def ensure_demo_user(config: Config, params: Argon2Params | None = None) -> str | None:
    """Create user ``demo`` with a generated password when the passwd file
    has no users and ``config.demo_user`` is on; return the password (to be
    shown once), else None.  Blocking: call at startup, before the reactor."""
    if not config.demo_user:
        return None
    pf = PasswdFile(config.passwd_path)
    if pf.users():
        return None
    password = secrets.token_urlsafe(12)
    pf.add_user(DEMO_USER, hash_password(password, check_scheme(config.hash_scheme), params))
    remember_demo_password(config, password)
    return password


# The demo password is shown at every start until it is changed: a first
# start that fails after creating the user (a port in use) must not lose it.
DEMO_PASSWORD_FILE = ".demo-password"


def demo_password_path(config: Config) -> str:
    return os.path.join(config.data_dir, DEMO_PASSWORD_FILE)


def remember_demo_password(config: Config, password: str) -> None:
    """Keep the generated password in DATA/.demo-password (mode 0600)."""
    atomic_write(demo_password_path(config), password.encode("utf-8") + b"\n")


def remembered_demo_password(config: Config) -> str | None:
    """The generated password while it is still the demo user's; the file
    goes once the password was changed (or the user deleted).  Blocking
    (a hash check): call at start, before the reactor."""
    path = demo_password_path(config)
    try:
        with open(path, encoding="utf-8") as f:
            password = f.read().strip()
    except (OSError, UnicodeDecodeError):
        return None
    entry = PasswdFile(config.passwd_path).lookup(DEMO_USER)
    try:
        still = entry is not None and bool(entry.password) and verify_password(entry.password, password)
    except (UnsupportedScheme, ValueError):
        still = False
    if not still:
        forget_demo_password(config)
        return None
    return password


def forget_demo_password(config: Config) -> None:
    unlink_quiet(demo_password_path(config))
