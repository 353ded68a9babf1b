"""maildir.locate while another thread or process moves the file from
new/ to cur/ (a STORE's background rename, Dovecot on the same Maildir):
the file is found.  Listing cur/ before new/ missed it, and the live
folder then took the message for gone: an internal date of 0 cached for
good (imaptest: "SEARCH result missing seq" for SINCE/ON), or MessageGone
for a message that is still there."""

from __future__ import annotations

import os

from mailsrv.store import maildir
from mailsrv.store.maildir import locate


def _folder(tmp_path) -> str:
    for sub in ("cur", "new", "tmp"):
        (tmp_path / sub).mkdir()
    (tmp_path / "new" / "1700000000.M1P1.host").write_bytes(b"Subject: x\r\n\r\nbody\r\n")
    return str(tmp_path)


def test_a_move_from_new_to_cur_during_the_listing_is_seen(tmp_path, monkeypatch) -> None:
    """The file moves (new/ -> cur/, flagged) right after the first
    directory listing, whichever directory that was."""
    d = _folder(tmp_path)
    real_listdir = os.listdir
    moved = []

    def listdir(path: str) -> list[str]:
        names = real_listdir(path)
        if not moved:
            os.rename(os.path.join(d, "new", "1700000000.M1P1.host"),
                      os.path.join(d, "cur", "1700000000.M1P1.host:2,S"))
            moved.append(True)
        return names

    monkeypatch.setattr(maildir.os, "listdir", listdir)
    assert locate(d, "1700000000.M1P1.host") == ("cur", "2,S")
    assert moved


def test_a_file_that_is_gone_is_gone(tmp_path) -> None:
    d = _folder(tmp_path)
    os.unlink(os.path.join(d, "new", "1700000000.M1P1.host"))
    assert locate(d, "1700000000.M1P1.host") is None


def test_found_where_it_is(tmp_path) -> None:
    d = _folder(tmp_path)
    assert locate(d, "1700000000.M1P1.host") == ("new", None)
    assert locate(d, "1700000000.M1P1") is None  # a key is the whole base name
