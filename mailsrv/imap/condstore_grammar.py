"""The grammar of CONDSTORE and QRESYNC (RFC 7162 section 4): SELECT/EXAMINE
parameters, FETCH and STORE modifiers, the MODSEQ search key.

:mod:`grammar` calls these where its commands allow them; they read with
the same :class:`~mailsrv.imap.reader.Reader` and raise
:class:`~mailsrv.imap.reader.Syntax` (a BAD) on anything else, so a
command either parses whole or not at all.
"""

from __future__ import annotations

from mailsrv.imap import commands as C
from mailsrv.imap import searchkeys as K
from mailsrv.imap.reader import DIGITS, Reader, Syntax

MAX_MODSEQ = (1 << 63) - 1  # mod-sequence-value: a positive 63-bit number
ENTRY_TYPES = ("priv", "shared", "all")


def modseq(r: Reader, what: str, zero_ok: bool = False) -> int:
    """A mod-sequence-value (``zero_ok``: mod-sequence-valzer)."""
    try:
        digits = r.chars(DIGITS, what)
    except Syntax:
        raise Syntax(f"invalid {what}") from None
    if len(digits) > 19 or int(digits) > MAX_MODSEQ or (int(digits) == 0 and not zero_ok):
        raise Syntax(f"invalid {what}")
    return int(digits)


def select(r: Reader, tag: str, name: str, uid: bool) -> C.Command:
    """SELECT / EXAMINE mailbox [(CONDSTORE | QRESYNC (...) ...)]."""
    r.sp()
    cmd = C.Select(tag, name, mailbox=r.mailbox())
    if not r.at_end():
        r.sp()
        r.paren_list(lambda: _select_param(r, cmd))
    r.end()
    return cmd


def _select_param(r: Reader, cmd: C.Select) -> None:
    param = r.atom().upper()
    if param == "CONDSTORE":
        cmd.condstore = True
    elif param == "QRESYNC" and cmd.qresync is None:
        r.sp()
        cmd.qresync = _qresync(r)
    else:
        raise Syntax(f"unknown SELECT parameter {param}")


def _qresync(r: Reader) -> C.Qresync:
    """``(uidvalidity modseq [known-uids [(known-seqs known-uids)]])``;
    Dovecot also takes a modseq of 0."""
    r.expect(b"(")
    uidvalidity = r.number()
    if uidvalidity == 0:
        raise Syntax("invalid QRESYNC uidvalidity")
    r.sp()
    q = C.Qresync(uidvalidity, modseq(r, "QRESYNC modseq", zero_ok=True))
    if r.maybe(b" "):
        if r.peek() != 0x28:
            q.known_uids = _no_star(r.seqset(), "known-uids")
            if not r.maybe(b" "):
                r.expect(b")")
                return q
        if r.peek() == 0x28:
            r.expect(b"(")
            seqs = _no_star(r.seqset(), "known-sequence-set")
            r.sp()
            uids = _no_star(r.seqset(), "known-uid-set")
            r.expect(b")")
            q.seq_match = (seqs, uids)
    r.expect(b")")
    return q


def _no_star(seqset: C.SeqSet, what: str) -> C.SeqSet:
    if any(lo is None or hi is None for lo, hi in seqset):
        raise Syntax(f"invalid QRESYNC {what}")
    return seqset


def fetch_modifiers(r: Reader, cmd: C.Fetch) -> None:
    """``(CHANGEDSINCE n [VANISHED])`` after a FETCH's data items."""
    def modifier() -> None:
        word = r.atom().upper()
        if word == "CHANGEDSINCE" and cmd.changedsince is None:
            r.sp()
            cmd.changedsince = modseq(r, "CHANGEDSINCE modseq", zero_ok=True)  # 0 too, as Dovecot
        elif word == "VANISHED" and not cmd.vanished:
            cmd.vanished = True
        else:
            raise Syntax(f"unknown FETCH modifier {word}")

    r.paren_list(modifier, allow_empty=False)
    if cmd.vanished and cmd.changedsince is None:
        raise Syntax("VANISHED used without CHANGEDSINCE")


def store_modifiers(r: Reader, cmd: C.Store) -> None:
    """``(UNCHANGEDSINCE n)`` before a STORE's data item."""
    def modifier() -> None:
        word = r.atom().upper()
        if word != "UNCHANGEDSINCE" or cmd.unchangedsince is not None:
            raise Syntax(f"unknown STORE modifier {word}")
        r.sp()
        cmd.unchangedsince = modseq(r, "UNCHANGEDSINCE modseq", zero_ok=True)

    r.paren_list(modifier, allow_empty=False)


def modseq_key(r: Reader, name: str, text: object) -> K.SearchKey:
    """``MODSEQ [entry-name entry-type-req] n``: the entry names a flag's
    own mod-sequence, which this server does not keep apart from the
    message's (RFC 7162 3.1.5 allows that); it is checked and ignored."""
    r.sp()
    if r.peek() == 0x22:
        entry = r.quoted().decode("ascii", "replace")
        if not entry.lower().startswith("/flags/"):
            raise Syntax("invalid MODSEQ entry name")
        r.sp()
        kind = r.atom().lower()
        if kind not in ENTRY_TYPES:
            raise Syntax("invalid MODSEQ entry type")
        r.sp()
    return K.Modseq(modseq(r, "MODSEQ value", zero_ok=True))
