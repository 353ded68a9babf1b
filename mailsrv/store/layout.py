"""Where things live on disk: Maildir++ paths, folder-name encoding and the
``subscriptions`` file, in the form Dovecot uses with ``separator = /``.

``<data>/<user>/Maildir`` is INBOX; IMAP folder ``a/b`` is
``<Maildir>/.a.b`` with every component in modified UTF-7.
"""

from __future__ import annotations

import codecs
import os

from mailsrv.store.fsutil import atomic_write
from mailsrv.store.interfaces import InvalidFolderName


def _imap4_utf7(name: str) -> codecs.CodecInfo | None:
    """Find the 'imap4-utf-7' codec without importing twisted.mail.imap4 at start-up:
    ``mailsrv deliver`` runs once per message and pays for every import."""
    if name in ("imap4-utf-7", "imap4_utf_7"):
        from twisted.mail.imap4 import imap4_utf_7

        return imap4_utf_7(name)
    return None


codecs.register(_imap4_utf7)


def _direct(text: str) -> bool:
    """Printable ASCII without '&' is its own modified UTF-7 (RFC 3501 5.1.3)."""
    return "&" not in text and all(" " <= c <= "~" for c in text)


def mutf7_encode(part: str) -> str:
    return part if _direct(part) else part.encode("imap4-utf-7").decode("ascii")


def mutf7_decode(part: str) -> str:
    return part if _direct(part) else part.encode("ascii").decode("imap4-utf-7")

INBOX = "INBOX"
SEP = "/"
MAILDIR = "Maildir"
SUBSCRIPTIONS = "subscriptions"
DEFAULT_FOLDERS = {
    "Sent": "\\Sent",
    "Drafts": "\\Drafts",
    "Trash": "\\Trash",
    "Junk": "\\Junk",
    "Archive": "\\Archive",
}
_FORBIDDEN = set(".*%") | {chr(c) for c in range(32)} | {"\x7f"}
MAX_NAME_BYTES = 240


def check_user(user: str) -> None:
    """User names become directory names: refuse anything that could escape."""
    if (not user or user in (".", "..") or "/" in user or "\x00" in user
            or any(ord(c) < 32 for c in user) or user.startswith(".")):
        raise ValueError(f"invalid user name {user!r}")


def canonical(name: str) -> str:
    """Validate an IMAP folder name; INBOX (as a whole or as the first
    component) is matched case-insensitively.  Raises InvalidFolderName."""
    if not isinstance(name, str) or not name:
        raise InvalidFolderName("empty folder name")
    if name.startswith(SEP) or name.endswith(SEP):
        raise InvalidFolderName("folder names cannot start or end with '/'")
    parts = name.split(SEP)
    for p in parts:
        if not p:
            raise InvalidFolderName("empty hierarchy level in folder name")
        bad = _FORBIDDEN.intersection(p)
        if bad:
            raise InvalidFolderName(f"folder names cannot contain {''.join(sorted(bad))!r}")
        if p.strip() != p:
            raise InvalidFolderName("hierarchy levels cannot start or end with spaces")
    if parts[0].upper() == INBOX:
        parts[0] = INBOX
    try:
        encoded = encode_name(SEP.join(parts))
    except UnicodeError:
        raise InvalidFolderName("folder name is not valid Unicode") from None
    if len(encoded.encode()) > MAX_NAME_BYTES:
        raise InvalidFolderName("folder name too long")
    return SEP.join(parts)


def encode_name(name: str) -> str:
    """IMAP name -> directory name (without the leading dot)."""
    return ".".join(mutf7_encode(p) for p in name.split(SEP))


def decode_name(dirname: str) -> str | None:
    """Directory name (without the leading dot) -> IMAP name, or None when it
    is not a valid folder directory name."""
    try:
        parts = [mutf7_decode(p) for p in dirname.split(".")]
    except (UnicodeError, ValueError):
        return None
    if any(not p for p in parts):
        return None
    return SEP.join(parts)


def maildir_root(data_dir: str, user: str) -> str:
    check_user(user)
    return os.path.join(data_dir, user, MAILDIR)


def user_exists_dir(data_dir: str, user: str) -> bool:
    """True if the user's Maildir exists (mail has been stored for them)."""
    try:
        return os.path.isdir(os.path.join(maildir_root(data_dir, user), "cur"))
    except ValueError:
        return False


def folder_path(root: str, name: str) -> str:
    """Directory of a canonical folder name under a Maildir root."""
    if name == INBOX:
        return root
    return os.path.join(root, "." + encode_name(name))


def folder_dir(data_dir: str, user: str, folder_name: str) -> str:
    """Directory of ``folder_name`` of ``user`` (it need not exist)."""
    return folder_path(maildir_root(data_dir, user), canonical(folder_name))


def list_folder_names(root: str) -> list[str]:
    """Every folder with a directory under ``root``, INBOX first then sorted."""
    names = []
    try:
        entries = os.listdir(root)
    except FileNotFoundError:
        return [INBOX]
    for e in entries:
        if not e.startswith(".") or e in (".", "..") or e.startswith(".."):
            continue
        name = decode_name(e[1:])
        if name is None or name.upper() == INBOX:
            continue
        if os.path.isdir(os.path.join(root, e)):
            names.append(name)
    return [INBOX] + sorted(names)


def make_folder_dirs(path: str, is_inbox: bool = False) -> None:
    for sub in ("cur", "new", "tmp"):
        os.makedirs(os.path.join(path, sub), exist_ok=True)
    if not is_inbox:
        marker = os.path.join(path, "maildirfolder")
        if not os.path.exists(marker):
            open(marker, "wb").close()


def read_subscriptions(root: str) -> list[str]:
    """Dovecot 2.3 ``subscriptions`` ("V\\t2" header, levels separated by
    tabs, modified UTF-7) or the older one-name-per-line form."""
    try:
        with open(os.path.join(root, SUBSCRIPTIONS), "rb") as f:
            text = f.read().decode("utf-8", "replace")
    except FileNotFoundError:
        return []
    lines = text.split("\n")
    if lines and lines[0].startswith("V\t"):
        lines = lines[1:]
        parts_sep = "\t"
    else:
        parts_sep = None
    out = []
    for line in lines:
        line = line.rstrip("\r")
        if not line:
            continue
        parts = line.split(parts_sep) if parts_sep else line.split(SEP)
        try:
            name = SEP.join(mutf7_decode(p) for p in parts)
        except (UnicodeError, ValueError):
            name = SEP.join(parts)
        if name not in out:
            out.append(name)
    return out


def write_subscriptions(root: str, names: list[str]) -> None:
    body = "".join("\t".join(mutf7_encode(p) for p in n.split(SEP)) + "\n"
                   for n in names)
    atomic_write(os.path.join(root, SUBSCRIPTIONS), ("V\t2\n\n" + body).encode("ascii"), fsync=False)
