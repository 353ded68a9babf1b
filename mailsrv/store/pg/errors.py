"""Errors of the PostgreSQL backend."""

from __future__ import annotations

from mailsrv.store.interfaces import StoreError


class StoreUnavailable(StoreError):
    """The database cannot be reached or failed (server restart, lost
    connection, timeout): try again later.  IMAP answers ``NO [UNAVAILABLE]``,
    POP3 ``-ERR [SYS/TEMP]``, LMTP ``451``.  ``uncertain`` is True when
    the failure hit a COMMIT: the change may or may not have been made
    (it was never acknowledged, so either is allowed)."""

    code = "UNAVAILABLE"

    def __init__(self, message: str = "the mail database is unavailable", uncertain: bool = False) -> None:
        super().__init__(message)
        self.uncertain = uncertain


class TooManyKeywords(StoreError):
    """A folder has room for MAX_KEYWORDS distinct keywords (garbage in:
    a client inventing a keyword per message must not grow them forever)."""

    code = "LIMIT"
