"""What a handler answers and which session state it runs in.

Kept apart from the protocol so command modules, the dispatch table and the
session context can all import it without importing each other: this module
imports nothing of the IMAP package.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Literal

Status = Literal["OK", "NO", "BAD"]


class State(enum.Enum):
    """RFC 3501 section 3 connection states."""

    NOT_AUTHENTICATED = "not authenticated"
    AUTHENTICATED = "authenticated"
    SELECTED = "selected"
    LOGOUT = "logout"


NOT_AUTH = State.NOT_AUTHENTICATED
AUTH = State.AUTHENTICATED
SELECTED = State.SELECTED
LOGOUT = State.LOGOUT

# The state sets a handler is registered with.
ANY_STATE: frozenset[State] = frozenset({NOT_AUTH, AUTH, SELECTED})
NOT_AUTHENTICATED_ONLY: frozenset[State] = frozenset({NOT_AUTH})
AUTHENTICATED: frozenset[State] = frozenset({AUTH, SELECTED})
SELECTED_ONLY: frozenset[State] = frozenset({SELECTED})


@dataclass(frozen=True, slots=True)
class Result:
    """The tagged response a handler asks for; the server prefixes the
    command name to ``text`` ("FETCH completed")."""

    status: Status = "OK"
    text: str = "completed"
    code: str | None = None


_COMPLETED = Result()


def ok(text: str = "completed", code: str | None = None) -> Result:
    if code is None and text == "completed":
        return _COMPLETED  # frozen, so shared: most commands answer this
    return Result("OK", text, code)


def no(text: str, code: str | None = None) -> Result:
    return Result("NO", text, code)


def bad(text: str, code: str | None = None) -> Result:
    return Result("BAD", text, code)
