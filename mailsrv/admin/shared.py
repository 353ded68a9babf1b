"""``mailsrv shared create NAME --grant alice=lrswipkxte ...``: a public
mailbox (``Public/NAME``) in the public namespace's Maildir++ root, with its
``dovecot-acl``; ``shared list`` shows them with their rights.

A public mailbox is deliverable over LMTP as ``NAME@domain`` when no user
of that name exists: creation grants ``anyone p`` (post) for that, unless
``--no-lmtp``.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any, TextIO

from mailsrv.admin.common import AdminError, entry
from mailsrv.store import acl as aclmod
from mailsrv.store import layout
from mailsrv.store.interfaces import InvalidFolderName
from mailsrv.store.sharedfiles import acl_changed, public_root


def _grants(specs: list[str], lmtp: bool) -> aclmod.Acl:
    pairs = []
    for spec in specs:
        ident, sep, rights = spec.partition("=")
        if not sep or not ident:
            raise AdminError(f"bad --grant {spec!r} (want USER=RIGHTS, e.g. alice=lrswipkxte)", 64)
        pairs.append((ident, rights))
    if lmtp and not any(i == "anyone" for i, _ in pairs):
        pairs.append(("anyone", "p"))
    try:
        return aclmod.grants(pairs)
    except aclmod.BadRights as e:
        raise AdminError(f"bad rights: {e}", 64) from None


def cmd_shared_create(args: argparse.Namespace, config: Any, out: TextIO | None = None) -> int:
    out = out or sys.stdout
    try:
        name = layout.canonical(args.name)
    except InvalidFolderName as e:
        raise AdminError(f"bad mailbox name {args.name!r}: {e}") from None
    if name == layout.INBOX:
        raise AdminError("INBOX cannot be a public mailbox")
    acl = _grants(args.grant or [], not args.no_lmtp)
    if config.store_backend == "postgresql":
        from mailsrv import pgcli
        from mailsrv.store.interfaces import FolderExists

        try:
            pgcli.shared_create(config, name, acl, args.update)
        except FolderExists as e:
            raise AdminError(str(e)) from None
        out.write(f"public mailbox Public/{name}: " + ", ".join(f"{aclmod.to_imap(i)}={r}" for i, r in acl.entries)
                  + "\n")
        return 0
    root = public_root(config.data_dir)
    layout.make_folder_dirs(root, is_inbox=True)
    path = layout.folder_path(root, name)
    if os.path.isdir(path) and not args.update:
        raise AdminError(f"public mailbox {name} exists (use --update to replace its rights)")
    layout.make_folder_dirs(path)
    aclmod.write(path, acl)
    acl_changed(root)
    out.write(f"public mailbox Public/{name}: " + ", ".join(f"{aclmod.to_imap(i)}={r}" for i, r in acl.entries) + "\n")
    return 0


def cmd_shared_list(args: argparse.Namespace, config: Any, out: TextIO | None = None) -> int:
    out = out or sys.stdout
    if config.store_backend == "postgresql":
        from mailsrv import pgcli

        for name, text in pgcli.shared_list(config):
            acl = aclmod.parse(text) if text else None
            rights = ", ".join(f"{aclmod.to_imap(i)}={r}" for i, r in acl.entries) if acl else "(no rights)"
            out.write(f"Public/{name}  {rights}\n")
        return 0
    root = public_root(config.data_dir)
    for name in layout.list_folder_names(root) if os.path.isdir(root) else []:
        if name == layout.INBOX:
            continue
        acl = aclmod.read(layout.folder_path(root, name))
        rights = ", ".join(f"{aclmod.to_imap(i)}={r}" for i, r in acl.entries) if acl else "(no rights)"
        out.write(f"Public/{name}  {rights}\n")
    return 0


def register(subparsers: Any, common: argparse.ArgumentParser | None = None) -> None:
    parents = [common] if common is not None else []
    p = subparsers.add_parser("shared", parents=parents, help="public shared mailboxes (Public/NAME)",
                              description="Create and list public mailboxes shared by several users.")
    ps = p.add_subparsers(dest="shared_command", metavar="ACTION", required=True)
    c = ps.add_parser("create", parents=parents, help="create a public mailbox with rights")
    c.add_argument("name", metavar="NAME")
    c.add_argument("--grant", action="append", metavar="USER=RIGHTS",
                   help="RFC 4314 rights, e.g. alice=lrswipkxte (repeatable; anyone/authenticated too)")
    c.add_argument("--no-lmtp", action="store_true", help="not deliverable as NAME@domain over LMTP")
    c.add_argument("--update", action="store_true", help="replace the rights of an existing one")
    c.set_defaults(func=entry(cmd_shared_create))
    ls = ps.add_parser("list", parents=parents, help="public mailboxes and their rights")
    ls.set_defaults(func=entry(cmd_shared_list))
