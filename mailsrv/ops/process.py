"""Process-wide resources: the open-file limit.

Every connection is a file descriptor; 10,000 idle IMAP clients need more
than the usual soft limit of 1,024.  At start the soft limit is raised to
the hard limit (and, when starting as root, the hard limit to
``WANTED`` where the kernel allows), and the result is logged: an operator
learns at start, not at the 1,025th connection, how many fit.
"""

from __future__ import annotations

import resource

from twisted.logger import Logger

log = Logger()

WANTED = 65536
SPARE = 64  # descriptors kept for files, the log, the listeners
FEW = 4096  # below this many, a busy server will run out: a warning


def raise_fd_limit(wanted: int = WANTED) -> tuple[int, int]:
    """Raise RLIMIT_NOFILE as far as allowed; returns the (soft, hard) in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    before = soft
    targets = []
    if hard != resource.RLIM_INFINITY and hard < wanted:
        targets.append((wanted, wanted))  # only root may raise the hard limit
    targets.append((hard if hard != resource.RLIM_INFINITY else max(soft, wanted), hard))
    for target in targets:
        if target[0] <= soft and target[1] == hard:
            break
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, target)
        except (ValueError, OSError):
            continue
        break
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft > before:
        log.info("open-file limit raised from {before} to {soft}: room for about {n} connections",
                 before=before, soft=soft, n=soft - SPARE)
    elif soft < wanted:
        emit = log.warn if soft < FEW else log.info
        emit("open-file limit is {soft} and cannot be raised (hard limit {hard}): about {n} connections "
             "at most; raise it with LimitNOFILE= (systemd) or ulimit -n", soft=soft, hard=hard, n=soft - SPARE)
    return soft, hard
