"""``mailsrv quota get [USER]`` and ``mailsrv quota recalc [USER]``: a
user's quota usage and limits, and a re-count of ``maildirsize`` from the
folders (safe while the server runs: the server re-reads the file when it
changes)."""

from __future__ import annotations

import argparse
import sys
from typing import Any, TextIO

from mailsrv.admin.common import AdminError, entry, human, user_root, users
from mailsrv.store.quota import QuotaTracker, rules_for


def tracker(config: Any, name: str) -> QuotaTracker:
    """The user's tracker with the rules the server would apply."""
    from mailsrv.auth.passwd import PasswdFile

    root = user_root(config, name)
    rules = rules_for(config.quota_rules, PasswdFile(config.passwd_path).user_fields(name), name)
    return QuotaTracker(root, name, lambda: rules, config.quota_warnings, config.quota_full_tempfail)


def _limit(value: int, size: bool) -> str:
    if not value:
        return "-"
    return human(value) if size else str(value)


def usage_line(config: Any, name: str) -> str:
    """``alice  3.2 MiB of 1.0 GiB (0%)  12 of 50000 messages``."""
    t = tracker(config, name)
    octets, messages = t.usage()
    rules = t.rules()
    pct = f" ({100 * octets // rules.bytes}%)" if rules.bytes else ""
    return (f"{name}  {human(octets)} of {_limit(rules.bytes, True)}{pct}  "
            f"{messages} of {_limit(rules.count, False)} messages")


def _names(args: argparse.Namespace, config: Any) -> list[str]:
    if args.name:
        return [args.name]
    names = users(config)
    if not names:
        raise AdminError("no users with mail")
    return names


def cmd_quota_get(args: argparse.Namespace, config: Any, out: TextIO | None = None) -> int:
    out = out or sys.stdout
    for name in _names(args, config):
        out.write(usage_line(config, name) + "\n")
    return 0


def cmd_quota_recalc(args: argparse.Namespace, config: Any, out: TextIO | None = None) -> int:
    out = out or sys.stdout
    for name in _names(args, config):
        octets, messages = tracker(config, name).recalc()
        out.write(f"{name}: recounted {human(octets)} in {messages} messages\n")
    return 0


def register(subparsers: Any, common: argparse.ArgumentParser | None = None) -> None:
    parents = [common] if common is not None else []
    q = subparsers.add_parser("quota", parents=parents, help="quota usage and limits (RFC 9208, Dovecot rules)",
                              description="Show quota usage and limits, or re-count usage from the folders.")
    qs = q.add_subparsers(dest="quota_command", metavar="ACTION", required=True)
    g = qs.add_parser("get", parents=parents, help="usage and limits of a user (default: every user)")
    g.add_argument("name", metavar="USER", nargs="?")
    g.set_defaults(func=entry(cmd_quota_get))
    r = qs.add_parser("recalc", parents=parents, help="re-count usage from the folders (rewrites maildirsize)")
    r.add_argument("name", metavar="USER", nargs="?")
    r.set_defaults(func=entry(cmd_quota_recalc))
