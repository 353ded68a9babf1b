"""Errors of the PostgreSQL backend."""

from __future__ import annotations

from mailsrv.store.interfaces import StoreError


class StoreUnavailable(StoreError):
    """The database cannot be reached or failed (server restart, lost
    connection, timeout): try again later.  IMAP answers ``NO [UNAVAILABLE]``,
    POP3 ``-ERR [SYS/TEMP]``, LMTP ``451``.  ``uncertain`` is True when
    the failure hit a COMMIT: the change may or may not have been made
    (it was never acknowledged, so either is allowed).  What went wrong
    in detail is in ``detail``, for the log."""

    code = "UNAVAILABLE"
    MESSAGE = "The mail database is unavailable, try again later"

    def __init__(self, detail: str = "", uncertain: bool = False) -> None:
        """``detail`` (the driver's words: socket paths, host names) goes to
        the log, never to a client: ``str()`` is the fixed MESSAGE."""
        super().__init__(self.MESSAGE)
        self.detail = detail
        self.uncertain = uncertain


class TooManyKeywords(StoreError):
    """A folder has room for MAX_KEYWORDS distinct keywords (garbage in:
    a client inventing a keyword per message must not grow them forever)."""

    code = "LIMIT"


def describe(e: object) -> str:
    """An error for the log: its message and, for StoreUnavailable, the detail."""
    detail = getattr(e, "detail", "")
    return f"{e} ({detail})" if detail else str(e)
