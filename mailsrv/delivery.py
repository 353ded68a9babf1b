"""``mailsrv deliver``: a local delivery agent (Postfix ``mailbox_command``,
fetchmail ``--mda``, procmail) writing one message from stdin into a Maildir.

It runs without a reactor and alongside a running server: the message is
written crash-safely by the store's synchronous helper (tmp/, fsync, rename
into new/ or cur/), which the server notices like any external delivery.

Exit codes follow sysexits(3), so the calling MTA knows whether to bounce
or to retry, with a one-line reason on stderr:

- 0  delivered;
- 64 (EX_USAGE) a flag that is not a system flag or keyword atom;
- 65 (EX_DATAERR) bad input: an empty message, a first line that is not a
  header field, a NUL byte in the header, or a message larger than
  ``lmtp_max_size`` (a permanent condition: retrying cannot help);
- 67 (EX_NOUSER) the user is not in the password file;
- 73 (EX_CANTCREAT) the mailbox is over quota (issue 12; 75 instead with
  ``[quota] full_tempfail = yes``, so the MTA retries);
- 75 (EX_TEMPFAIL) anything that may pass: a missing or unreadable password
  file, disk full, I/O errors, store trouble;
- 78 (EX_CONFIG) the data folder does not exist: the command line or the
  configuration names the wrong place, which no retry mends.

A ``--folder`` that does not exist is not an error: like Dovecot's LDA, the
message goes to INBOX (a note on stderr says so), since bouncing mail over a
filing preference would lose it.
"""

from __future__ import annotations

import os
import re
import sys
import tempfile
from typing import IO, TYPE_CHECKING, BinaryIO, TextIO

from mailsrv.store.interfaces import SYSTEM_FLAGS

if TYPE_CHECKING:
    from mailsrv.config import Config

EX_OK = 0
EX_USAGE = 64
EX_DATAERR = 65
EX_NOUSER = 67
EX_CANTCREAT = 73
EX_TEMPFAIL = 75
EX_CONFIG = 78

HEAD_SIZE = 64 * 1024  # read before anything is written, to validate the header
CHUNK = 64 * 1024
SPOOL_IN_MEMORY = 1024 * 1024

# \Recent is not among them: it is never stored, so asking for it is a usage error.
_SYSTEM_FLAGS = {f.lower(): f for f in SYSTEM_FLAGS}
_KEYWORD = re.compile(r"[!#$&'+\-.0-9:;<=>?@A-Z^_`a-z|~]+\Z")  # IMAP atom without specials
_HEADER_LINE = re.compile(rb"[\x21-\x39\x3b-\x7e]+[ \t]*:")


class DeliveryFailed(Exception):
    """Carries the exit code and the one-line reason."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


def deliver_command(
    config: Config,
    name: str,
    folder: str | None,
    flags: list[str],
    stdin: BinaryIO,
    stderr: TextIO | None = None,
) -> int:
    """Deliver the message on ``stdin`` to ``name``; return a sysexits code."""
    err = stderr if stderr is not None else sys.stderr
    try:
        if not os.path.isdir(config.data_dir):
            raise DeliveryFailed(EX_CONFIG, f"data folder {os.path.abspath(config.data_dir)} does not exist")
        user = find_user(config.passwd_path, name)
        wanted = normalize_flags(flags)
        with spool_message(stdin, config.lmtp_max_size) as message:
            fell_back = _deliver(config.data_dir, user, folder or "INBOX", message, wanted, config)
    except DeliveryFailed as e:
        err.write(f"mailsrv deliver: {e.reason}\n")
        return e.code
    if fell_back:
        err.write(f"mailsrv deliver: folder {folder!r} does not exist; delivered to INBOX\n")
    return EX_OK


def find_user(passwd_path: str, name: str) -> str:
    """The passwd-file spelling of ``name``.  Tries the name as given, then
    the local part of an address without ``+detail``, each exactly and then
    case-insensitively (mail addresses are case-insensitive)."""
    from mailsrv.auth.passwd import PasswdFile

    try:
        os.stat(passwd_path)
        users = PasswdFile(passwd_path).users()
    except FileNotFoundError:
        raise DeliveryFailed(EX_TEMPFAIL, f"no password file at {passwd_path}") from None
    except OSError as e:
        raise DeliveryFailed(EX_TEMPFAIL, f"cannot read {passwd_path}: {e.strerror}") from None
    candidates = [name]
    if "@" in name:
        candidates.append(name.rpartition("@")[0])
    candidates.append(candidates[-1].partition("+")[0])
    by_lower: dict[str, str] = {}
    for u in users:
        by_lower.setdefault(u.lower(), u)
    for c in candidates:
        if c in users:
            return c
        if c.lower() in by_lower:
            return by_lower[c.lower()]
    raise DeliveryFailed(EX_NOUSER, f"unknown user {name!r}")


def normalize_flags(flags: list[str]) -> list[str]:
    """System flags in canonical case, keywords as given; ``\\Recent`` and
    anything that is not an atom is a usage error."""
    out: list[str] = []
    for item in flags:
        for flag in item.replace(",", " ").split():
            if flag.startswith("\\"):
                canonical = _SYSTEM_FLAGS.get(flag.lower())
                if canonical is None:
                    raise DeliveryFailed(EX_USAGE, f"not a settable flag: {flag}")
                flag = canonical
            elif not _KEYWORD.match(flag):
                raise DeliveryFailed(EX_USAGE, f"not a valid keyword: {flag!r}")
            if flag not in out:
                out.append(flag)
    return out


def spool_message(stdin: BinaryIO, limit: int) -> IO[bytes]:
    """Copy stdin into a temporary file (memory up to 1 MiB), checking it on
    the way; returns the file positioned at 0.  A leading mbox ``From `` line
    is dropped, as Dovecot's LDA does."""
    try:
        head = _read_head(stdin)
        if head.startswith(b"From "):
            nl = head.find(b"\n")
            head = head[nl + 1 :] if nl >= 0 else b""
        _check_head(head)
        spool = tempfile.SpooledTemporaryFile(max_size=SPOOL_IN_MEMORY)
        try:
            size = len(head)
            spool.write(head)
            while True:
                _check_size(size, limit)
                chunk = stdin.read(CHUNK)
                if not chunk:
                    break
                size += len(chunk)
                spool.write(chunk)
            spool.seek(0)
        except BaseException:
            spool.close()
            raise
    except OSError as e:
        raise DeliveryFailed(EX_TEMPFAIL, f"cannot read the message: {e.strerror or e}") from None
    return spool


def _read_head(stdin: BinaryIO) -> bytes:
    parts, size = [], 0
    while size < HEAD_SIZE:
        chunk = stdin.read(HEAD_SIZE - size)
        if not chunk:
            break
        parts.append(chunk)
        size += len(chunk)
    return b"".join(parts)


def _check_head(head: bytes) -> None:
    if not head.strip():
        raise DeliveryFailed(EX_DATAERR, "empty message")
    if not _HEADER_LINE.match(head):
        raise DeliveryFailed(EX_DATAERR, "message does not start with a header field")
    end = min((i for i in (head.find(b"\n\n"), head.find(b"\r\n\r\n")) if i >= 0), default=len(head))
    if b"\0" in head[:end]:
        raise DeliveryFailed(EX_DATAERR, "NUL byte in the message header")


def _check_size(size: int, limit: int) -> None:
    if limit > 0 and size > limit:
        raise DeliveryFailed(EX_DATAERR, f"message too large (over {limit} bytes)")


def _quota(config: Config | None, user: str, root: str) -> object | None:
    """The user's quota tracker (mailsrv.store.quota), or None without limits."""
    if config is None:
        return None
    from mailsrv.auth.passwd import PasswdFile
    from mailsrv.store.quota import QuotaTracker, rules_for

    rules = rules_for(config.quota_rules, PasswdFile(config.passwd_path).user_fields(user), user)
    if not rules.enforced:
        return None
    return QuotaTracker(root, user, lambda: rules, config.quota_warnings, config.quota_full_tempfail)


def _deliver(data_dir: str, user: str, folder: str, message: IO[bytes], flags: list[str],
             config: Config | None = None) -> bool:
    """Write into ``folder``, or INBOX when it does not exist (returns True
    then); counted against the user's quota when one applies."""
    try:
        from mailsrv.store import layout, maildir
        from mailsrv.store.interfaces import OverQuota, StoreError
        from mailsrv.store.quota import QuotaTracker

        path: str | None
        try:
            path = layout.folder_dir(data_dir, user, folder)
        except StoreError:  # an invalid folder name cannot exist
            path = None
        inbox = folder.upper() == "INBOX"
        fell_back = not inbox and (path is None or not os.path.isdir(os.path.join(path, "cur")))
        if path is None or inbox or fell_back:
            path = layout.folder_dir(data_dir, user, "INBOX")
            folder = "INBOX"
        root = layout.maildir_root(data_dir, user)
        os.makedirs(root, exist_ok=True)
        tracker = _quota(config, user, root)
        size = message.seek(0, os.SEEK_END)
        message.seek(0)
        if isinstance(tracker, QuotaTracker):
            try:
                tracker.change(folder, size, 1, check=True)
            except OverQuota as e:
                raise DeliveryFailed(EX_TEMPFAIL if e.temporary else EX_CANTCREAT, f"{user}: {e}") from None
        try:
            maildir.deliver(path, message, flags)  # creates a missing Maildir itself
        except BaseException:
            if isinstance(tracker, QuotaTracker):
                tracker.change(folder, -size, -1, check=False)
            raise
    except DeliveryFailed:
        raise
    except OSError as e:
        raise DeliveryFailed(EX_TEMPFAIL, f"cannot write to the mailbox of {user}: {e.strerror or e}") from None
    except Exception as e:  # store trouble of any kind: retry later rather than bounce
        raise DeliveryFailed(EX_TEMPFAIL, f"store error for {user}: {type(e).__name__}: {e}") from None
    return fell_back
