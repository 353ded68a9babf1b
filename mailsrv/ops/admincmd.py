"""``mailsrv who`` and ``mailsrv kick``: the live sessions of the server
serving the data folder, through its admin socket (:mod:`mailsrv.ops.adminsock`).

Modelled on ``doveadm who`` / ``doveadm kick``: ``who`` lists each session
(user, protocol, remote address, since when, selected mailbox, IDLE, TLS);
``kick USER`` ends every session of USER, ``--protocol`` narrows it.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

from mailsrv.ops.adminsock import AdminError, request

PROTOCOLS = ("imap", "pop3", "lmtp")


class CommandFailed(Exception):
    """One line for the operator (the CLI prints ``mailsrv: ...``)."""


def _ask(config: Any, message: dict[str, Any]) -> dict[str, Any]:
    try:
        return request(config.data_dir, message)
    except AdminError as e:
        raise CommandFailed(str(e)) from None


def _since(epoch: float) -> str:
    t = time.localtime(epoch)
    fmt = "%H:%M:%S" if time.localtime()[:3] == t[:3] else "%Y-%m-%d %H:%M"
    return time.strftime(fmt, t)


def _row(s: dict[str, Any]) -> list[str]:
    host = str(s.get("rip", ""))
    where = f"[{host}]:{s.get('rport')}" if ":" in host else f"{host}:{s.get('rport')}"
    return [s.get("user") or "(login)", str(s.get("protocol", "")), where, _since(float(s.get("since", 0))),
            s.get("mailbox") or "-", "yes" if s.get("idle") else "no", "yes" if s.get("tls") else "no"]


def cmd_who(args: argparse.Namespace, config: Any) -> int:
    sessions = _ask(config, {"command": "who"})["sessions"]
    if args.user:
        sessions = [s for s in sessions if s.get("user") == args.user]
    if args.protocol:
        sessions = [s for s in sessions if s.get("protocol") == args.protocol]
    if args.json:
        json.dump(sessions, sys.stdout, indent=1)
        sys.stdout.write("\n")
        return 0
    if not sessions:
        print("no sessions")
        return 0
    table = [["USER", "PROTO", "FROM", "SINCE", "MAILBOX", "IDLE", "TLS"]] + [_row(s) for s in sessions]
    widths = [max(len(r[i]) for r in table) for i in range(len(table[0]))]
    for r in table:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip())
    return 0


def cmd_kick(args: argparse.Namespace, config: Any) -> int:
    n = int(_ask(config, {"command": "kick", "user": args.user, "protocol": args.protocol})["kicked"])
    what = f"{args.protocol} " if args.protocol else ""
    if n:
        print(f"kicked {n} {what}session{'s' if n != 1 else ''} of {args.user}")
    else:
        print(f"{args.user} has no {what}session")
    return 0


def _entry(fn: Any) -> Any:
    """A failure is one ``mailsrv: ...`` line and exit code 1."""
    def run(args: argparse.Namespace, config: Any) -> int:
        try:
            return int(fn(args, config))
        except CommandFailed as e:
            print("mailsrv: " + " ".join(str(e).split()), file=sys.stderr)
            return 1
    return run


def register(subparsers: Any, common: argparse.ArgumentParser | None = None) -> None:
    parents = [common] if common is not None else []
    w = subparsers.add_parser("who", parents=parents, help="list the running server's live sessions",
                              description="List the live sessions of the server serving the data folder "
                                          "(through its admin socket DATA/.mailsrv-admin.sock).")
    w.add_argument("user", metavar="USER", nargs="?", help="only this user's sessions")
    w.add_argument("--protocol", choices=PROTOCOLS, help="only this protocol")
    w.add_argument("--json", action="store_true", help="print JSON instead of a table")
    w.set_defaults(func=_entry(cmd_who))
    k = subparsers.add_parser("kick", parents=parents, help="end a user's live sessions",
                              description="End every live session of USER on the running server "
                                          "(IMAP clients get '* BYE', POP3 clients '-ERR').")
    k.add_argument("user", metavar="USER")
    k.add_argument("--protocol", choices=PROTOCOLS, help="only this protocol's sessions")
    k.set_defaults(func=_entry(cmd_kick))
