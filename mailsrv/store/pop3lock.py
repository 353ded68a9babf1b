"""The POP3 maildrop lock on disk: one holder per Maildir, across processes.

RFC 1939 wants the maildrop locked for a POP3 session's life.  The lock is
``flock(LOCK_EX | LOCK_NB)`` on ``<Maildir>/mailsrv-pop3.lock``: the kernel
drops it when the holder's file descriptor closes, so a crashed or killed
server leaves no lock behind (the empty file stays, harmlessly, and is
reused).  flock locks belong to the open file, not the process, so two
sessions of one process exclude each other too, as do a second ``twistd
mailsrv`` and any tool on the same data folder.  The file is never removed:
removing a lock file that others may hold open is how such locks break.

Blocking (an open and a non-waiting flock): call from a worker thread.
"""

from __future__ import annotations

import fcntl
import os

LOCK_NAME = "mailsrv-pop3.lock"


def try_lock(maildir_root: str) -> int | None:
    """The lock's file descriptor if this caller now holds it, None if
    someone else does.  OSError if the lock file cannot be opened."""
    fd = os.open(os.path.join(maildir_root, LOCK_NAME), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    except BaseException:
        os.close(fd)
        raise
    return fd


def unlock(fd: int) -> None:
    """Give the lock back (closing the descriptor releases it)."""
    os.close(fd)
