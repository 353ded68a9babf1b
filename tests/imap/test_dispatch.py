"""The grammar table and the handler table agree; every handler has the
documented shape ``async def h(ctx: Context, cmd) -> Result | None``."""

from __future__ import annotations

import inspect
import typing

import pytest

from mailsrv.imap import commands as C
from mailsrv.imap.context import Context
from mailsrv.imap.dispatch import TABLE, build_table
from mailsrv.imap.grammar import COMMANDS, UID_COMMANDS, command_parser
from mailsrv.imap.results import ANY_STATE, AUTHENTICATED, State, ok


def _names_the_grammar_produces() -> set[str]:
    names = {n for n in COMMANDS if n != "UID"}
    names.add("UID EXPUNGE")  # the one UID form with its own handler
    return names


def test_every_parsed_command_has_a_handler_and_back() -> None:
    assert set(TABLE) == _names_the_grammar_produces()


def test_uid_forms_share_the_plain_parse_functions() -> None:
    p = command_parser()
    for name, line in (("FETCH", b"1 FLAGS"), ("STORE", b"1 +FLAGS (\\Seen)"), ("COPY", b"1 Trash"),
                       ("MOVE", b"1 Trash"), ("SEARCH", b"ALL")):
        plain, = p.feed(b"a " + name.encode() + b" " + line + b"\r\n")
        uid, = p.feed(b"a UID " + name.encode() + b" " + line + b"\r\n")
        assert type(plain) is type(uid) and plain.name == uid.name == name
        assert (plain.uid, uid.uid) == (False, True)  # type: ignore[union-attr]
    uid_expunge, = p.feed(b"a UID EXPUNGE 1:3\r\n")
    assert uid_expunge == C.UidExpunge("a", "UID EXPUNGE", seqset=[(1, 3)])
    assert UID_COMMANDS <= set(COMMANDS)


@pytest.mark.parametrize("name", sorted(TABLE))
def test_handler_shape(name: str) -> None:
    handler, states = TABLE[name]
    assert inspect.iscoroutinefunction(handler), name
    hints = typing.get_type_hints(handler)
    params = list(inspect.signature(handler).parameters)
    assert len(params) == 2 and hints[params[0]] is Context, name
    assert params[1] in hints and "return" in hints, name
    assert states and isinstance(states, frozenset) and all(isinstance(s, State) for s in states)
    assert State.LOGOUT not in states


def test_states() -> None:
    assert TABLE["CAPABILITY"][1] == ANY_STATE
    assert TABLE["LOGIN"][1] == frozenset({State.NOT_AUTHENTICATED})
    assert TABLE["APPEND"][1] == AUTHENTICATED
    assert TABLE["FETCH"][1] == frozenset({State.SELECTED})


def test_a_command_claimed_twice_is_refused() -> None:
    async def h(ctx: Context, cmd: C.Simple) -> None:
        return None

    assert build_table({"X": (h, ANY_STATE)}, {"Y": (h, ANY_STATE)}).keys() == {"X", "Y"}
    with pytest.raises(ValueError, match="two handlers"):
        build_table({"X": (h, ANY_STATE)}, {"X": (h, ANY_STATE)})


def test_ok_shares_the_plain_answer() -> None:
    assert ok() is ok() and ok() == ok("completed")
    assert ok("done").text == "done" and ok(code="X").code == "X"
