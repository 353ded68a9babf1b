"""What the maintenance commands share: the error that becomes one
``mailsrv: ...`` line, the entry wrapper mailsrv.cli calls, and finding
users and folders under the data folder."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from typing import Any

from mailsrv import ranges
from mailsrv.store import layout
from mailsrv.store.interfaces import InvalidFolderName, StoreError


class AdminError(Exception):
    """Reported as one ``mailsrv: ...`` line; ``code`` is the exit status."""

    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.code = code


def entry(fn: Callable[[argparse.Namespace, Any], int]) -> Callable[[Any, Any], int]:
    """mailsrv.cli calls func(args, config); accept (config, args) too.  Turns
    expected failures into one stderr line and an exit code."""

    def call(a: Any, b: Any) -> int:
        args, config = (a, b) if isinstance(a, argparse.Namespace) else (b, a)
        try:
            return fn(args, config)
        except AdminError as e:
            err(str(e))
            return e.code
        except (StoreError, ValueError) as e:
            err(str(e) or type(e).__name__)
            return 1
        except OSError as e:
            where = f"{e.filename}: " if e.filename else ""
            err(f"{where}{e.strerror or e}")
            return 1
        except KeyboardInterrupt:
            err("interrupted")
            return 130

    call.__name__ = fn.__name__
    call.__doc__ = fn.__doc__
    return call


def err(message: str) -> None:
    print("mailsrv: " + " ".join(message.split("\n")), file=sys.stderr)


def user_root(config: Any, name: str, must_exist: bool = True) -> str:
    """The user's Maildir root; the user must be in the passwd file or have mail."""
    from mailsrv.auth.passwd import PasswdFile

    try:
        root = layout.maildir_root(config.data_dir, name)
    except ValueError:
        raise AdminError(f"invalid user name {name!r}") from None
    known = False
    if os.path.exists(config.passwd_path):
        known = PasswdFile(config.passwd_path).lookup(name) is not None
    if not known and not os.path.isdir(root):
        raise AdminError(f"no such user: {name}", 67)
    if must_exist and not os.path.isdir(root):
        raise AdminError(f"{name} has no mail store yet ({root})")
    return root


def folders(root: str, only: str | None = None) -> list[tuple[str, str]]:
    """(IMAP name, directory) of every folder, or of ``only``."""
    if only is not None:
        try:
            name = layout.canonical(only)
        except InvalidFolderName as e:
            raise AdminError(f"bad folder name {only!r}: {e}") from None
        path = layout.folder_path(root, name)
        if not os.path.isdir(os.path.join(path, "cur")):
            raise AdminError(f"no such folder: {only}")
        return [(name, path)]
    out = []
    for name in layout.list_folder_names(root):
        path = layout.folder_path(root, name)
        if os.path.isdir(os.path.join(path, "cur")):
            out.append((name, path))
    return out


def users(config: Any) -> list[str]:
    """Users with a mail store under the data folder."""
    try:
        entries = sorted(os.listdir(config.data_dir))
    except FileNotFoundError:
        raise AdminError(f"no data folder {config.data_dir}") from None
    return [u for u in entries
            if not u.startswith(".") and os.path.isdir(os.path.join(config.data_dir, u, layout.MAILDIR))]


def human(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GiB"


def uid_ranges(nums: Sequence[int]) -> str:
    """[1,2,3,7] -> '1-3, 7' (at most a few ranges shown)."""
    return ranges.render(nums, sep="-", joiner=", ", limit=8)
