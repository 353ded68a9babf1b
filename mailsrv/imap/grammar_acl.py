"""Grammar of the ACL (RFC 4314) and QUOTA (RFC 9208) commands: their
typed commands and parse functions, merged into
:data:`mailsrv.imap.grammar.COMMANDS`.

Kept in its own module so the two extensions stay one unit with their
handlers (:mod:`commands_acl`, :mod:`commands_quota`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from mailsrv.imap import commands as C
from mailsrv.imap.reader import Reader, Syntax


@dataclass
class AclCommand(C.Command):
    """SETACL, DELETEACL, GETACL, LISTRIGHTS, MYRIGHTS (fields they lack stay empty)."""

    mailbox: str = ""
    identifier: str = ""
    rights: str = ""


@dataclass
class GetQuota(C.Command):
    """GETQUOTA (``root``) and GETQUOTAROOT (``mailbox``)."""

    root: str = ""
    mailbox: str = ""


@dataclass
class SetQuota(C.Command):
    root: str = ""
    limits: list[tuple[str, int]] = field(default_factory=list)


def _text(r: Reader) -> str:
    return r.astring().decode("utf-8", "replace")


def _acl(r: Reader, tag: str, name: str, uid: bool) -> C.Command:
    r.sp()
    cmd = AclCommand(tag, name, mailbox=r.mailbox())
    if name in ("SETACL", "DELETEACL", "LISTRIGHTS"):
        r.sp()
        cmd.identifier = _text(r)
    if name == "SETACL":
        r.sp()
        cmd.rights = _text(r)
    r.end()
    return cmd


def _getquota(r: Reader, tag: str, name: str, uid: bool) -> C.Command:
    r.sp()
    if name == "GETQUOTAROOT":
        cmd = GetQuota(tag, name, mailbox=r.mailbox())
    else:
        cmd = GetQuota(tag, name, root=_text(r))
    r.end()
    return cmd


def _setquota(r: Reader, tag: str, name: str, uid: bool) -> C.Command:
    r.sp()
    cmd = SetQuota(tag, name, root=_text(r))
    r.sp()

    def limit() -> tuple[str, int]:
        res = r.atom().upper()
        r.sp()
        return res, r.number()

    r.expect(b"(")
    if not r.maybe(b")"):
        while True:
            cmd.limits.append(limit())
            if r.maybe(b")"):
                break
            r.sp()
    r.end()
    if any(not res for res, _ in cmd.limits):
        raise Syntax("bad quota resource")
    return cmd


COMMANDS = {
    **{n: _acl for n in ("SETACL", "DELETEACL", "GETACL", "LISTRIGHTS", "MYRIGHTS")},
    "GETQUOTA": _getquota,
    "GETQUOTAROOT": _getquota,
    "SETQUOTA": _setquota,
}
